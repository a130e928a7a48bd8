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
