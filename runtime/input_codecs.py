"""Input codecs: the image codecs a device can send instead of a split model's stream (the paper's baselines).

One small interface, ``InputCodec``: a name, a quality, ``encode(image) -> bytes`` (device) and
``decode(bytes) -> image`` (server), a file extension and a MIME type. Codecs register by name, so a new one is
a class plus ``@register_input_codec``. JPEG, WebP and AVIF come from Pillow, HEIF (HEVC intra, BPG's core) and
JPEG XL from Pillow plugin packages (pillow-heif, pillow-jxl-plugin); a codec this installation lacks stays
registered (it is listed) but ``input_codec`` refuses it with a one-line reason.

Every encoder setting that changes the output is fixed here, so the same image and quality give the same bytes.
"""

from __future__ import annotations

import importlib
import io
import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from PIL import Image, UnidentifiedImageError, features

from sc2edge.errors import Sc2edgeError

MIN_QUALITY, MAX_QUALITY = 1, 100
# A decoded baseline image is at most this many pixels: the model's crop is far smaller, and a hostile
# header announcing a huge canvas is refused before Pillow allocates it.
MAX_DECODED_PIXELS = 4096 * 4096


class InputCodecError(Sc2edgeError):
    """An input codec that is unknown or unavailable here, a bad quality, or bytes that do not decode."""


class InputCodec(ABC):
    """One image codec at one quality. Subclasses set the class attributes and ``encode``/``decode``.

    Args:
        quality (int | None): 1 (smallest) .. 100 (best). Defaults to None (the codec's ``default_quality``).
    """

    name: ClassVar[str]
    extension: ClassVar[str]  # file suffix, with the dot
    mime: ClassVar[str]
    default_quality: ClassVar[int]

    def __init__(self, quality: int | None = None):
        quality = self.default_quality if quality is None else quality
        if isinstance(quality, bool) or not isinstance(quality, int) or not MIN_QUALITY <= quality <= MAX_QUALITY:
            raise InputCodecError(f"{self.name} quality must be an integer {MIN_QUALITY}..{MAX_QUALITY}, "
                                  f"got {quality!r}")
        self.quality = quality

    @classmethod
    def available(cls) -> bool:
        """Whether this installation can encode and decode the format."""
        return True

    @classmethod
    def unavailable_reason(cls) -> str:
        return ""

    @property
    def label(self) -> str:
        """``name-qQUALITY``: how reports and file names refer to this codec setting."""
        return f"{self.name}-q{self.quality}"

    @abstractmethod
    def encode(self, image: Image.Image) -> bytes:
        """A PIL image (RGB or L) -> the codec's bytes."""

    @abstractmethod
    def decode(self, data: bytes) -> Image.Image:
        """The codec's bytes -> a PIL image, fully loaded; anything else is refused with InputCodecError."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(quality={self.quality})"


class PillowCodec(InputCodec):
    """A codec Pillow encodes and decodes; subclasses name the format, the feature and the fixed save options."""

    pil_format: ClassVar[str]
    pil_feature: ClassVar[str]  # the name PIL.features.check knows
    install_hint: ClassVar[str] = ""

    @classmethod
    def available(cls) -> bool:
        return bool(features.check(cls.pil_feature))

    @classmethod
    def unavailable_reason(cls) -> str:
        return f"this Pillow ({Image.__version__}) was built without {cls.pil_format} support{cls.install_hint}"

    def save_options(self) -> dict[str, Any]:
        return {"quality": self.quality}

    def encode(self, image: Image.Image) -> bytes:
        if not isinstance(image, Image.Image):
            raise InputCodecError(f"{self.name} encodes PIL images, got {type(image).__name__}")
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format=self.pil_format, **self.save_options())
        return buffer.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        if not isinstance(data, (bytes, bytearray, memoryview)) or not data:
            raise InputCodecError(f"{self.name}: expected non-empty bytes to decode")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(bytes(data)), formats=[self.pil_format])
                if image.width * image.height > MAX_DECODED_PIXELS:
                    raise InputCodecError(f"{self.name}: the image is {image.width} x {image.height} pixels, "
                                          f"more than the {MAX_DECODED_PIXELS} a decoded input may have")
                image.load()
        except InputCodecError:
            raise
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
                Image.DecompressionBombWarning, RuntimeError) as exc:  # RuntimeError: pillow-jxl-plugin's decoder
            raise InputCodecError(f"{self.name}: the bytes are not a valid {self.pil_format} image ({exc})") from exc
        return image


_CODECS: dict[str, type[InputCodec]] = {}


def register_input_codec(cls: type[InputCodec]) -> type[InputCodec]:
    """Class decorator: make ``cls`` available as ``input_codec(cls.name)``; a name registers once."""
    if cls.name in _CODECS:
        raise ValueError(f'input codec "{cls.name}" is already registered')
    _CODECS[cls.name] = cls
    return cls


@register_input_codec
class JpegCodec(PillowCodec):
    """Baseline JPEG (libjpeg via Pillow), 4:2:0 chroma, no optimisation pass: the codec cameras ship."""

    name, extension, mime, default_quality = "jpeg", ".jpg", "image/jpeg", 75  # Pillow's default
    pil_format, pil_feature = "JPEG", "jpg"

    def save_options(self) -> dict[str, Any]:
        return {"quality": self.quality, "subsampling": "4:2:0", "optimize": False, "progressive": False}


@register_input_codec
class WebpCodec(PillowCodec):
    """Lossy WebP (libwebp via Pillow) at its default effort (method 4)."""

    name, extension, mime, default_quality = "webp", ".webp", "image/webp", 80  # Pillow's default
    pil_format, pil_feature = "WEBP", "webp"

    def save_options(self) -> dict[str, Any]:
        return {"quality": self.quality, "method": 4, "lossless": False, "exact": False}


@register_input_codec
class AvifCodec(PillowCodec):
    """AVIF (AV1 intra via libavif, Pillow >= 11.2), 4:2:0, speed 6 (libavif's default), one encoder thread.

    Pillow's default uses every core, and libaom's output with one thread differs from its output with several
    (measured here on photo crops): one thread keeps the bytes the same on every device, at some encode time.
    """

    name, extension, mime, default_quality = "avif", ".avif", "image/avif", 75  # Pillow's default
    pil_format, pil_feature = "AVIF", "avif"
    install_hint = " (Pillow >= 11.2 wheels include it; older Pillow needs the pillow-avif-plugin package)"

    def save_options(self) -> dict[str, Any]:
        return {"quality": self.quality, "speed": 6, "subsampling": "4:2:0", "max_threads": 1}


class PluginCodec(PillowCodec):
    """A codec that a Pillow plugin package adds (imported, and its format registered, on first use)."""

    plugin: ClassVar[str]  # the package's import name
    package: ClassVar[str]  # its PyPI name

    @classmethod
    def _load_plugin(cls) -> bool:
        try:
            module = importlib.import_module(cls.plugin)
        except ImportError:
            return False
        cls.register_plugin(module)
        return cls.pil_format in Image.SAVE

    @classmethod
    def register_plugin(cls, module: Any) -> None:
        """Register the plugin's format with Pillow (importing it is enough for most plugins)."""

    @classmethod
    def available(cls) -> bool:
        return cls._load_plugin()

    @classmethod
    def unavailable_reason(cls) -> str:
        return f"its Pillow plugin is not installed: pip install {cls.package} (or sc2edge[full])"


@register_input_codec
class HeifCodec(PluginCodec):
    """HEIF with HEVC intra coding (libheif + x265 via pillow-heif), 4:2:0: the core of BPG, which the paper
    compares against and which no maintained package encodes any more. x265's defaults otherwise."""

    name, extension, mime, default_quality = "heif", ".heic", "image/heif", 50  # pillow-heif's default
    pil_format, plugin, package = "HEIF", "pillow_heif", "pillow-heif"

    @classmethod
    def register_plugin(cls, module: Any) -> None:
        module.register_heif_opener()  # no options: pillow-heif's global settings stay as they are

    def save_options(self) -> dict[str, Any]:
        return {"quality": self.quality, "chroma": "420", "save_nclx_profile": False}


@register_input_codec
class JxlCodec(PluginCodec):
    """Lossy JPEG XL (libjxl via pillow-jxl-plugin), effort 7 (libjxl's default), one encoder thread, a bare
    codestream (no container). Decoding refuses anything else, and reads the canvas size from the codestream's
    header before the plugin decodes (it decodes as it opens)."""

    name, extension, mime, default_quality = "jxl", ".jxl", "image/jxl", 90  # the plugin's default
    pil_format, plugin, package = "JXL", "pillow_jxl", "pillow-jxl-plugin"

    def save_options(self) -> dict[str, Any]:
        return {"quality": self.quality, "effort": 7, "decoding_speed": 0, "lossless": False,
                "use_container": False, "num_threads": 1}

    def decode(self, data: bytes) -> Image.Image:
        if isinstance(data, (bytes, bytearray, memoryview)) and data:
            width, height = jxl_codestream_size(bytes(data[:64]))
            if width * height > MAX_DECODED_PIXELS:
                raise InputCodecError(f"{self.name}: the image is {width} x {height} pixels, more than the "
                                      f"{MAX_DECODED_PIXELS} a decoded input may have")
        return super().decode(data)


_JXL_SIGNATURE = b"\xff\x0a"
_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


def jxl_codestream_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a bare JPEG XL codestream's SizeHeader (ISO/IEC 18181-1, bits read LSB first)."""
    if data[:2] != _JXL_SIGNATURE:
        raise InputCodecError("jxl: the bytes are not a bare JPEG XL codestream (signature FF 0A)")
    bits = int.from_bytes(data[2:], "little")
    at = 0

    def read(count: int) -> int:
        nonlocal at
        if at + count > 8 * (len(data) - 2):
            raise InputCodecError("jxl: the codestream ends inside its size header")
        value = (bits >> at) & ((1 << count) - 1)
        at += count
        return value

    def dimension(small: bool) -> int:
        if small:
            return (read(5) + 1) * 8
        return read((9, 13, 18, 30)[read(2)]) + 1

    small = bool(read(1))
    height = dimension(small)
    ratio = read(3)
    if ratio:
        numerator, denominator = _JXL_RATIOS[ratio]
        return height * numerator // denominator, height
    return dimension(small), height


def list_input_codecs() -> list[str]:
    """Every registered codec name, available here or not."""
    return sorted(_CODECS)


def available_input_codecs() -> list[str]:
    """The registered codecs this installation can run."""
    return [name for name in list_input_codecs() if _CODECS[name].available()]


def input_codec(name: str, quality: int | None = None) -> InputCodec:
    """The codec ``name`` at ``quality`` (None: its default), or InputCodecError saying why not."""
    cls = _CODECS.get(str(name).lower())
    if cls is None:
        raise InputCodecError(f'unknown input codec "{name}" (registered: {", ".join(list_input_codecs())})')
    if not cls.available():
        raise InputCodecError(f'input codec "{cls.name}" is unavailable: {cls.unavailable_reason()}')
    return cls(quality)


def parse_codec_spec(text: str) -> InputCodec:
    """``NAME`` or ``NAME:QUALITY`` (e.g. "jpeg:75") -> the codec."""
    name, _, quality = str(text).partition(":")
    if quality and not quality.strip().isdigit():
        raise InputCodecError(f"an input codec is NAME[:QUALITY], e.g. jpeg:75, got {text!r}")
    return input_codec(name.strip(), int(quality) if quality else None)


__all__ = ["AvifCodec", "HeifCodec", "InputCodec", "InputCodecError", "JpegCodec", "JxlCodec", "PillowCodec",
           "PluginCodec", "WebpCodec", "jxl_codestream_size",
           "available_input_codecs", "input_codec", "list_input_codecs", "parse_codec_spec", "register_input_codec"]
