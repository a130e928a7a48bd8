"""Input codecs on real photos: round trip, deterministic bytes, bytes that grow with quality, bad input refused.
HEIF and JPEG XL come from the plugin packages of sc2edge[full] (pillow-heif, pillow-jxl-plugin)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, features

from sc2edge.runtime.input_codecs import (
    AvifCodec,
    HeifCodec,
    InputCodecError,
    JpegCodec,
    JxlCodec,
    PluginCodec,
    available_input_codecs,
    input_codec,
    jxl_codestream_size,
    list_input_codecs,
    parse_codec_spec,
    register_input_codec,
)
from sc2edge.runtime.preprocess import crop_image

CROP = {"resize": 256, "crop": 224, "mean": [0.5] * 3, "std": [0.5] * 3}
GRAY_CROP = {"resize": 28, "crop": 28, "mean": [0.5], "std": [0.5], "grayscale": True}
PILLOW_CODECS = ["avif", "jpeg", "webp"]
PLUGIN_CODECS = ["heif", "jxl"]
ALL_CODECS = PILLOW_CODECS + PLUGIN_CODECS


@pytest.fixture(scope="module")
def crops(photos) -> list[Image.Image]:
    return [crop_image(p, CROP) for p in photos[:4]]


def _psnr(a: Image.Image, b: Image.Image) -> float:
    error = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(error, 1e-12)))


def test_registry_lists_the_pillow_codecs_and_this_pillow_runs_them():
    assert set(ALL_CODECS) <= set(list_input_codecs())
    pillow = {n for n in PILLOW_CODECS if features.check(n.replace("jpeg", "jpg"))}
    assert set(available_input_codecs()) == pillow | set(PLUGIN_CODECS)
    assert "avif" in available_input_codecs(), "Pillow >= 11.2 ships AVIF; this test environment should have it"


def test_a_codec_whose_plugin_is_missing_is_refused_in_one_line():
    missing = type("Missing", (PluginCodec,), {"name": "missing", "plugin": "sc2edge_no_such_plugin",
                                               "package": "no-such-plugin", "pil_format": "NOPE"})
    assert not missing.available()
    assert missing.unavailable_reason() == ("its Pillow plugin is not installed: pip install no-such-plugin "
                                            "(or sc2edge[full])")


@pytest.mark.parametrize("name", ALL_CODECS)
def test_round_trip_on_real_photos(name, crops):
    codec = input_codec(name, 90)
    for crop in crops:
        data = codec.encode(crop)
        decoded = codec.decode(data)
        assert decoded.size == crop.size and decoded.mode == "RGB"
        assert Image.open(io.BytesIO(data)).format == codec.pil_format
        assert 0 < len(data) < crop.width * crop.height * 3
        assert _psnr(decoded, crop) > 28, f"{name} at quality 90 is far from the photo"


@pytest.mark.parametrize("name", ALL_CODECS)
def test_grayscale_round_trip(name, photos):
    crop = crop_image(photos[0], GRAY_CROP)
    decoded = input_codec(name, 90).decode(input_codec(name, 90).encode(crop)).convert("L")
    assert decoded.size == (28, 28)
    assert _psnr(decoded, crop) > 20


@pytest.mark.parametrize("name", ALL_CODECS)
def test_same_image_and_quality_give_the_same_bytes(name, crops):
    first = [input_codec(name, 60).encode(c) for c in crops]
    again = [input_codec(name, 60).encode(c.copy()) for c in crops]
    assert first == again


@pytest.mark.parametrize("name", ALL_CODECS)
def test_bytes_grow_with_quality(name, crops):
    for crop in crops:
        sizes = [len(input_codec(name, q).encode(crop)) for q in (10, 40, 70, 95)]
        assert sizes == sorted(sizes) and sizes[0] < sizes[-1], f"{name}: bytes per quality {sizes}"


def test_defaults_label_and_spec_parsing():
    assert input_codec("jpeg").quality == 75 and input_codec("webp").quality == 80
    assert parse_codec_spec("WebP:30").label == "webp-q30"
    assert parse_codec_spec("jpeg").quality == JpegCodec.default_quality
    assert (JpegCodec.extension, JpegCodec.mime) == (".jpg", "image/jpeg")
    assert (AvifCodec.extension, AvifCodec.mime) == (".avif", "image/avif")
    assert (HeifCodec.extension, HeifCodec.mime, JxlCodec.extension, JxlCodec.mime) == (
        ".heic", "image/heif", ".jxl", "image/jxl")
    assert parse_codec_spec("heif:30").label == "heif-q30" and input_codec("jxl").quality == 90


@pytest.mark.parametrize("quality", [0, 101, -5, 7.5, True, "80"])
def test_bad_quality_is_refused(quality):
    with pytest.raises(InputCodecError, match="quality must be an integer 1..100"):
        input_codec("jpeg", quality)


def test_unknown_codec_and_bad_spec_are_refused():
    with pytest.raises(InputCodecError, match='unknown input codec "bpg".*avif, heif, jpeg, jxl, webp'):
        input_codec("bpg")
    with pytest.raises(InputCodecError, match="NAME\\[:QUALITY\\]"):
        parse_codec_spec("jpeg:high")


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register_input_codec(type("Again", (JpegCodec,), {}))


@pytest.mark.parametrize("name", ALL_CODECS)
def test_bytes_that_are_not_the_codec_are_refused(name, crops):
    codec = input_codec(name, 50)
    png = io.BytesIO()
    crops[0].save(png, format="PNG")
    data = codec.encode(crops[0])
    for bad in (b"", b"not an image at all", png.getvalue(), data[: len(data) // 2]):
        with pytest.raises(InputCodecError, match=name):
            codec.decode(bad)


def test_a_huge_canvas_is_refused_before_decoding():
    header = io.BytesIO()
    Image.new("L", (8, 8)).save(header, format="JPEG")
    data = bytearray(header.getvalue())
    sof = data.index(b"\xff\xc0")  # baseline frame header: length(2) precision(1) height(2) width(2)
    for side, message in ((6000, "6000 x 6000 pixels, more than the"), (60000, "decompression bomb")):
        data[sof + 5:sof + 9] = side.to_bytes(2, "big") * 2
        with pytest.raises(InputCodecError, match=message):
            input_codec("jpeg").decode(bytes(data))


def test_encode_refuses_what_is_not_an_image():
    with pytest.raises(InputCodecError, match="encodes PIL images"):
        input_codec("jpeg").encode(np.zeros((8, 8, 3), dtype=np.uint8))


def _jxl_header(width: int, height: int) -> bytes:
    """A bare JPEG XL codestream signature and SizeHeader for a width x height canvas (30-bit fields, no pixels)."""
    bits = 0 | (3 << 1) | ((height - 1) << 3) | (0 << 33) | (3 << 36) | ((width - 1) << 38)
    return b"\xff\x0a" + bits.to_bytes(9, "little")


def test_jxl_size_header_is_read_before_decoding(crops):
    from PIL import Image

    for size in [(224, 224), (28, 28), (300, 200), (17, 500), (1001, 1003)]:
        data = input_codec("jxl", 50).encode(Image.new("RGB", size, (10, 200, 30)))
        assert jxl_codestream_size(data) == size
    assert jxl_codestream_size(_jxl_header(70000, 50000)) == (70000, 50000)
    with pytest.raises(InputCodecError, match="70000 x 50000 pixels, more than the"):
        input_codec("jxl").decode(_jxl_header(70000, 50000))
    with pytest.raises(InputCodecError, match="ends inside its size header"):
        input_codec("jxl").decode(b"\xff\x0a\x00")
    with pytest.raises(InputCodecError, match="not a bare JPEG XL codestream"):
        input_codec("jxl").decode(b"\x00\x00\x00\x0cJXL \r\n\x87\n" + bytes(20))  # the container form
