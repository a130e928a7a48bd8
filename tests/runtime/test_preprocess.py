"""Hostile and unusual images: bounded before any work, upright, and never silently white or black."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.preprocess import load_image, preprocess_image

SPEC = {"resize": 256, "crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
GRAY_SPEC = {"resize": 32, "crop": 28, "mean": [0.5], "std": [0.25], "grayscale": True}


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height 8-bit gray pixels (a decompression bomb's first bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND",
                                                                                                             b"")


def test_thin_image_is_refused_before_the_resize(tmp_path):
    path = tmp_path / "thin.png"
    Image.new("RGB", (3000, 1), (120, 30, 200)).save(path)  # 863 MB once resized to a 256-pixel shorter side
    with pytest.raises(Sc2edgeError, match="aspect ratio"):
        preprocess_image(path, SPEC)


@pytest.mark.parametrize("side", [9000, 40000])
def test_huge_headers_are_one_line_errors(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(side, side))
    with pytest.raises(Sc2edgeError) as info:
        load_image(path)
    assert "\n" not in str(info.value) and ("pixel limit" in str(info.value) or "bomb" in str(info.value))


def test_manifest_resize_is_bounded_before_resizing(photos):
    with pytest.raises(Sc2edgeError, match=r"resize = 60000 is outside \[1, 4096\]"):
        preprocess_image(photos[0], {**SPEC, "resize": 60000, "crop": 224})
    wide = Image.new("RGB", (1600, 100))  # 16:1: a shorter side of 4096 would make 268 M pixels
    with pytest.raises(Sc2edgeError, match="pixel limit"):
        preprocess_image(wide, {**SPEC, "resize": 4096, "crop": 224})


def test_exif_orientation_is_honoured(tmp_path, photos):
    upright = load_image(photos[0])
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes, with "rotate 90 CW to view"
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.png"
    stored.save(path, exif=exif)
    np.testing.assert_array_equal(preprocess_image(path, SPEC), preprocess_image(upright, SPEC))


def test_16_bit_png_is_scaled_not_clipped_to_white(tmp_path, photos):
    gray = load_image(photos[0], grayscale=True)
    path = tmp_path / "deep.png"
    Image.fromarray(np.asarray(gray).astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode.startswith("I")
    for spec in (SPEC, GRAY_SPEC):
        np.testing.assert_array_equal(preprocess_image(path, spec), preprocess_image(gray, spec))


def test_float_tiff_is_scaled_not_black(tmp_path, photos):
    gray = load_image(photos[0], grayscale=True)
    path = tmp_path / "float.tiff"
    Image.fromarray(np.asarray(gray, dtype=np.float32) / 255.0, mode="F").save(path)
    np.testing.assert_array_equal(preprocess_image(path, GRAY_SPEC), preprocess_image(gray, GRAY_SPEC))


@pytest.mark.parametrize("values", [np.full((40, 40), -3.0), np.full((40, 40), 1e6), np.full((40, 40), np.nan)])
def test_float_images_out_of_range_are_refused(values):
    with pytest.raises(Sc2edgeError, match="float image|outside"):
        preprocess_image(Image.fromarray(values.astype(np.float32), mode="F"), GRAY_SPEC)


def test_empty_image_is_refused():
    with pytest.raises(Sc2edgeError, match="empty"):
        preprocess_image(Image.new("RGB", (0, 0)), SPEC)


def _camera_jpeg(tmp_path, photo, size=(2592, 1944)):
    """A camera-size JPEG made from an offline photo (upscaled): large enough for the fast path to reduce it."""
    path = tmp_path / f"camera_{size[0]}x{size[1]}.jpg"
    load_image(photo).resize(size, Image.BICUBIC).save(path, quality=90)
    return path


def test_exact_mode_gives_todays_pixels_for_files_and_frames(tmp_path, photos):
    """fast=False is the pixel-exact reference (torchvision's Resize + CenterCrop on the full image), from a file
    or from the same image as a uint8 H x W x 3 frame."""
    from sc2edge.runtime.preprocess import crop_image

    camera = _camera_jpeg(tmp_path, photos[0])
    for path in (photos[0], camera):
        full = load_image(path)
        w, h = full.size
        size = (int(256 * w / h), 256) if w > h else (256, int(256 * h / w))
        left, top = int(round((size[0] - 224) / 2.0)), int(round((size[1] - 224) / 2.0))
        expected = np.asarray(full.resize(size, Image.BILINEAR).crop((left, top, left + 224, top + 224)))
        np.testing.assert_array_equal(np.asarray(crop_image(path, SPEC, fast=False)), expected)
        np.testing.assert_array_equal(np.asarray(crop_image(np.asarray(full), SPEC, fast=False)), expected)


def test_fast_mode_stays_close_to_the_exact_pixels(tmp_path, photos):
    """The reduced-scale JPEG decode and the box reduction move pixels by about a level on average, no more."""
    from sc2edge.runtime.preprocess import crop_image

    camera = _camera_jpeg(tmp_path, photos[0])
    exact = np.asarray(crop_image(camera, SPEC, fast=False)).astype(np.int16)
    for source in (camera, np.asarray(load_image(camera))):
        fast = np.asarray(crop_image(source, SPEC)).astype(np.int16)
        assert fast.shape == exact.shape
        assert 0 < np.abs(fast - exact).mean() < 2.0  # it did reduce, and stayed within ~1 level on average


def test_uint8_graph_input_is_the_crop_pixels(photos):
    """A bundle whose device graph normalizes gets uint8 H x W x C pixels; float bundles get today's float CHW."""
    from sc2edge.runtime.preprocess import float_input, graph_input_spec

    pixel_spec = {**SPEC, "graph_input": "uint8-nhwc"}
    pixels = preprocess_image(photos[0], pixel_spec)
    floats = preprocess_image(photos[0], SPEC)
    assert pixels.dtype == np.uint8 and pixels.shape == (224, 224, 3)
    assert floats.dtype == np.float32 and floats.shape == (3, 224, 224)
    np.testing.assert_array_equal(float_input(photos[0], pixel_spec), floats)
    assert graph_input_spec(pixel_spec, 224, 224) == ((1, 224, 224, 3), np.dtype(np.uint8))
    assert preprocess_image(photos[0], {**GRAY_SPEC, "graph_input": "uint8-nhwc"}).shape == (28, 28, 1)


def test_graph_input_in_the_manifest_is_checked():
    from sc2edge.errors import BundleError
    from sc2edge.runtime.manifest import PreprocessSpec

    assert "graph_input" not in PreprocessSpec.from_json(SPEC).to_json()  # older readers see what they know
    assert PreprocessSpec.from_json({**SPEC, "graph_input": "uint8-nhwc"}).to_json()["graph_input"] == "uint8-nhwc"
    with pytest.raises(BundleError, match="graph_input must be one of"):
        PreprocessSpec.from_json({**SPEC, "graph_input": "int16-nchw"})


@pytest.mark.parametrize("frame", [np.zeros((64, 64, 3), np.float32), np.zeros((64, 64, 4), np.uint8),
                                   np.zeros((2, 64, 64, 3), np.uint8), np.zeros((1, 40000, 3), np.uint8)])
def test_bad_frames_are_one_line_errors(frame):
    with pytest.raises(Sc2edgeError) as info:
        preprocess_image(frame, SPEC)
    assert "\n" not in str(info.value)
