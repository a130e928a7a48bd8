"""The model's input pipeline without torch: PIL resize (shorter side, bilinear) + center crop + normalize.

Matches torchvision's ``Resize(resize) -> CenterCrop(crop) -> ToTensor -> Normalize`` on PIL images, which
is what the paper's evaluation uses, so the same image gives the same tensor on the device as in PyTorch.

Images come from outside, so their size is checked before any pixel is decoded or resized (a 196-byte
1x30000 PNG would otherwise be resized to 256x7,680,000), EXIF orientation is applied, and 16-bit and float
images are scaled to the 8-bit range the model expects instead of being clipped to all white or all black.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.manifest import PreprocessSpec

ImageLike = str | Path | Image.Image

MAX_IMAGE_PIXELS = 64_000_000  # an 8000x8000 photo; larger files are refused before decoding
MAX_ASPECT_RATIO = 16.0  # longer side / shorter side; beyond it the shorter-side resize explodes in memory
MAX_RESIZED_PIXELS = 16_000_000  # the resized image before the crop (bounds a manifest's `resize` too)


def _check_size(size: tuple[int, int], name: object) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise Sc2edgeError(f"image {name} is empty ({w}x{h})")
    if w * h > MAX_IMAGE_PIXELS:
        raise Sc2edgeError(f"image {name} is {w}x{h}, over the {MAX_IMAGE_PIXELS:,}-pixel limit")
    if max(w, h) / min(w, h) > MAX_ASPECT_RATIO:
        raise Sc2edgeError(f"image {name} is {w}x{h}: aspect ratio over {MAX_ASPECT_RATIO:g}:1 is refused")


def _to_8bit(image: Image.Image, name: object) -> Image.Image:
    """16-bit and 32-bit integer images scaled from 0..65535, float images from 0..1 (or 0..255), to mode L."""
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image).astype(np.float64)
        top = 65535.0
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise Sc2edgeError(f"image {name} is a float image with NaN or infinite pixels")
        top = 1.0 if values.max(initial=0.0) <= 1.0 else 255.0
    else:
        return image
    low, high = values.min(initial=0.0), values.max(initial=0.0)
    if low < 0 or high > top:
        raise Sc2edgeError(f"image {name} ({image.mode}) has pixel values {low:g}..{high:g}, outside 0..{top:g}: "
                           "convert it to 8-bit first")
    return Image.fromarray(np.round(values * (255.0 / top)).astype(np.uint8), mode="L")


def load_image(image: ImageLike, grayscale: bool = False) -> Image.Image:
    """Open an image file (or take a PIL image) in the model's colour mode, upright, checked for size first."""
    name = image if not isinstance(image, Image.Image) else "(in memory)"
    if not isinstance(image, Image.Image):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(image) as opened:
                    _check_size(opened.size, name)  # from the header: nothing is decoded yet
                    image = opened.copy()
        except FileNotFoundError as exc:
            raise Sc2edgeError(f"image not found: {image}") from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise Sc2edgeError(f"image {image} refused as a possible decompression bomb: {exc}") from exc
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise Sc2edgeError(f"cannot read image {image}: {exc}") from exc
    else:
        _check_size(image.size, name)
    image = ImageOps.exif_transpose(image)
    return _to_8bit(image, name).convert("L" if grayscale else "RGB")


def preprocess_image(image: ImageLike, spec: PreprocessSpec | Mapping[str, Any]) -> np.ndarray:
    """An image -> float32 CHW array, per the bundle's ``preprocess`` record (resize, crop, mean, std, grayscale)."""
    spec = _spec(spec)
    return normalize_image(crop_image(image, spec), spec)


def _spec(spec: PreprocessSpec | Mapping[str, Any]) -> PreprocessSpec:
    return spec if isinstance(spec, PreprocessSpec) else PreprocessSpec.from_json(spec)  # bounded sizes


def crop_image(image: ImageLike, spec: PreprocessSpec | Mapping[str, Any]) -> Image.Image:
    """The model's view of an image as pixels: resize (shorter side) + center crop (none for a dynamic input), in
    the model's colour mode.

    An input codec compresses this crop, so the bytes carry only what the model sees.
    """
    spec = _spec(spec)
    img = load_image(image, spec.grayscale)
    resize, crop = spec.resize, spec.crop
    w, h = img.size
    if w <= h:
        size = (resize, int(resize * h / w))
    else:
        size = (int(resize * w / h), resize)
    if size[0] * size[1] > MAX_RESIZED_PIXELS:
        raise Sc2edgeError(f"resizing a {w}x{h} image to {size[0]}x{size[1]} (preprocess resize {resize}) is over the "
                           f"{MAX_RESIZED_PIXELS:,}-pixel limit")
    if size != img.size:
        img = img.resize(size, Image.BILINEAR)
    if crop is None:  # dynamic input: the resized image as it is
        return img
    w, h = img.size
    left, top = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
    return img.crop((left, top, left + crop, top + crop))


def normalize_image(image: Image.Image, spec: PreprocessSpec | Mapping[str, Any]) -> np.ndarray:
    """A crop already at the model's size -> float32 CHW: scale to 0..1, subtract mean, divide by std."""
    spec = _spec(spec)
    image = image.convert("L" if spec.grayscale else "RGB")
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[:, :, None] if array.ndim == 2 else array
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(((array - mean) / std).transpose(2, 0, 1))
