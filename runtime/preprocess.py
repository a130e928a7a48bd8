"""The model's input pipeline without torch: PIL resize (shorter side, bilinear) + center crop + normalize.

Matches torchvision's ``Resize(resize) -> CenterCrop(crop) -> ToTensor -> Normalize`` on PIL images, which
is what the paper's evaluation uses, so the same image gives the same tensor on the device as in PyTorch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from sc2edge.errors import Sc2edgeError

ImageLike = str | Path | Image.Image


def load_image(image: ImageLike, grayscale: bool = False) -> Image.Image:
    """Open an image file (or take a PIL image) in the model's colour mode."""
    if not isinstance(image, Image.Image):
        try:
            with Image.open(image) as opened:
                image = opened.copy()
        except FileNotFoundError as exc:
            raise Sc2edgeError(f"image not found: {image}") from exc
        except (UnidentifiedImageError, OSError) as exc:
            raise Sc2edgeError(f"cannot read image {image}: {exc}") from exc
    return image.convert("L" if grayscale else "RGB")


def preprocess_image(image: ImageLike, spec: Mapping[str, Any]) -> np.ndarray:
    """An image -> float32 CHW array, per the bundle's ``preprocess`` record (resize, crop, mean, std, grayscale)."""
    return normalize_image(crop_image(image, spec), spec)


def crop_image(image: ImageLike, spec: Mapping[str, Any]) -> Image.Image:
    """The model's view of an image as pixels: resize (shorter side) + center crop, in the model's colour mode.

    An input codec compresses this crop, so the bytes carry only what the model sees.
    """
    img = load_image(image, bool(spec.get("grayscale", False)))
    resize, crop = int(spec["resize"]), int(spec["crop"])
    w, h = img.size
    if w <= h:
        size = (resize, int(resize * h / w))
    else:
        size = (int(resize * w / h), resize)
    if size != img.size:
        img = img.resize(size, Image.BILINEAR)
    w, h = img.size
    left, top = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
    return img.crop((left, top, left + crop, top + crop))


def normalize_image(image: Image.Image, spec: Mapping[str, Any]) -> np.ndarray:
    """A crop already at the model's size -> float32 CHW: scale to 0..1, subtract mean, divide by std."""
    image = image.convert("L" if spec.get("grayscale", False) else "RGB")
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[:, :, None] if array.ndim == 2 else array
    mean = np.asarray(spec["mean"], dtype=np.float32)
    std = np.asarray(spec["std"], dtype=np.float32)
    return np.ascontiguousarray(((array - mean) / std).transpose(2, 0, 1))
