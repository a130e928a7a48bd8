"""The model's input pipeline without torch: PIL resize (shorter side, bilinear) + center crop + normalize.

Matches torchvision's ``Resize(resize) -> CenterCrop(crop) -> ToTensor -> Normalize`` on PIL images, which
is what the paper's evaluation uses, so the same image gives the same tensor on the device as in PyTorch.

The device path is built for large camera photos on a small CPU (docs/DESIGN.md, "Device preprocessing"): by
default only the crop's source region is resized (``Image.resize(box=...)``), a JPEG is decoded at a reduced DCT
scale where it stays at least ``FAST_MARGIN`` times the resized size (``Image.draft``), a large image is
box-reduced by the same rule, and a bundle whose device graph takes uint8 NHWC (``PreprocessSpec.graph_input``)
gets the crop's pixels as they are: the graph casts and normalizes, so no float image is built in Python.
``fast=False`` keeps torchvision's exact pixels.

Images come from outside, so their size is checked before any pixel is decoded or resized (a 196-byte
1x30000 PNG would otherwise be resized to 256x7,680,000), EXIF orientation is applied, and 16-bit and float
images are scaled to the 8-bit range the model expects instead of being clipped to all white or all black.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.manifest import PIXEL_GRAPH_INPUT, PreprocessSpec

ImageLike = str | Path | Image.Image | np.ndarray

MAX_IMAGE_PIXELS = 64_000_000  # an 8000x8000 photo; larger files are refused before decoding
MAX_ASPECT_RATIO = 16.0  # longer side / shorter side; beyond it the shorter-side resize explodes in memory
MAX_RESIZED_PIXELS = 16_000_000  # the resized image before the crop (bounds a manifest's `resize` too)
# The fast path reduces an image (JPEG DCT scaling, box reduction of frames) only while it stays at least this many
# times the resized size, so the bilinear resize that follows still averages over several source pixels.
FAST_MARGIN = 2.0
_ORIENTATION = 0x0112  # the EXIF tag ImageOps.exif_transpose reads
_SWAPS_SIDES = (5, 6, 7, 8)  # orientations that rotate by 90 degrees


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


def _frame(frame: np.ndarray) -> Image.Image:
    """A camera frame (uint8 HxWx3 RGB, or HxW / HxWx1 gray) as a PIL image; anything else is refused."""
    if frame.dtype != np.uint8:
        raise Sc2edgeError(f"a frame must be uint8 (H x W x 3 RGB or H x W gray), got dtype {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
        raise Sc2edgeError(f"a frame must be H x W x 3 (RGB) or H x W (gray) uint8, got shape {frame.shape}")
    _check_size((frame.shape[1], frame.shape[0]), "(frame)")
    return Image.fromarray(np.ascontiguousarray(frame), mode="RGB" if frame.ndim == 3 else "L")


def _open(image: str | Path, resize: int | None) -> tuple[Image.Image, tuple[int, int]]:
    """Read an image file, checked for size from its header; returns it and its full upright size. With ``resize``
    a JPEG is decoded at the smallest DCT scale that keeps it ``FAST_MARGIN`` x its resized size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(image)
            try:
                _check_size(opened.size, image)  # from the header: nothing is decoded yet
                swapped = opened.getexif().get(_ORIENTATION) in _SWAPS_SIDES
                w, h = opened.size
                full = (h, w) if swapped else (w, h)
                if resize is not None and opened.format == "JPEG":
                    target = _resized_size(full, resize)
                    wanted = (int(np.ceil(target[0] * FAST_MARGIN)), int(np.ceil(target[1] * FAST_MARGIN)))
                    opened.draft(opened.mode, wanted[::-1] if swapped else wanted)
                opened.load()  # closes a single-frame file
                if getattr(opened, "fp", None) is not None:  # multi-frame formats keep theirs open
                    loaded = opened.copy()
                    opened.close()
                    opened = loaded
            except BaseException:
                opened.close()
                raise
            return opened, full
    except FileNotFoundError as exc:
        raise Sc2edgeError(f"image not found: {image}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Sc2edgeError(f"image {image} refused as a possible decompression bomb: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise Sc2edgeError(f"cannot read image {image}: {exc}") from exc


def _upright(image: Image.Image, grayscale: bool, name: object) -> Image.Image:
    """EXIF orientation applied (only where the image has one: the transpose copies), 8 bits, the model's mode."""
    if image.getexif().get(_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    image = _to_8bit(image, name)
    mode = "L" if grayscale else "RGB"
    return image if image.mode == mode else image.convert(mode)


def _load(image: ImageLike, grayscale: bool, resize: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """The image upright in the model's mode, and its full upright size (larger than the image when a JPEG was
    decoded at a reduced scale for a shorter side of ``resize``)."""
    if isinstance(image, np.ndarray):
        loaded = _upright(_frame(image), grayscale, "(frame)")
        return loaded, loaded.size
    if isinstance(image, Image.Image):
        _check_size(image.size, "(in memory)")
        loaded = _upright(image, grayscale, "(in memory)")
        return loaded, loaded.size
    opened, full = _open(image, resize)
    return _upright(opened, grayscale, image), full


def load_image(image: ImageLike, grayscale: bool = False) -> Image.Image:
    """Open an image file (or take a PIL image or a uint8 frame) in the model's colour mode, upright, checked for
    size first."""
    return _load(image, grayscale)[0]


def _spec(spec: PreprocessSpec | Mapping[str, Any]) -> PreprocessSpec:
    return spec if isinstance(spec, PreprocessSpec) else PreprocessSpec.from_json(spec)  # bounded sizes


def _resized_size(size: tuple[int, int], resize: int, max_size: int | None = None) -> tuple[int, int]:
    """torchvision's Resize(int): the shorter side to ``resize``, the other in proportion (truncated). With
    ``max_size``, GeneralizedRCNNTransform's rule instead (eager PyTorch): one scale, min(resize / shorter,
    max_size / longer) in double precision, and each side floor(side * scale) (its interpolate with
    recompute_scale_factor)."""
    w, h = size
    if max_size is not None:
        scale = min(resize / min(w, h), max_size / max(w, h))
        return max(1, math.floor(w * scale)), max(1, math.floor(h * scale))
    return (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)


def resized_size(size: tuple[int, int], spec: PreprocessSpec | Mapping[str, Any]) -> tuple[int, int]:
    """The (width, height) an image of ``size`` (width, height) has after the model's resize, before its crop or
    padding."""
    spec = _spec(spec)
    return _resized_size(size, spec.resize, spec.max_size)


def crop_image(image: ImageLike, spec: PreprocessSpec | Mapping[str, Any], *, fast: bool = True) -> Image.Image:
    """The model's view of an image as pixels: resize (shorter side) + center crop (none for a dynamic input), in
    the model's colour mode.

    ``fast=False`` gives exactly the pixels of torchvision's Resize + CenterCrop on the full-size image. ``fast``
    (the default) resizes only the crop's source region (``resize(box=...)``: the same pixels up to Pillow's
    fixed-point weights, +-1 level on about 0.02 % of values), after decoding a JPEG file at a reduced DCT scale and
    box-reducing a large image, each only while it stays at least ``FAST_MARGIN`` x the resized size. An input codec
    compresses this crop, so the bytes carry only what the model sees.
    """
    spec = _spec(spec)
    resize, crop = spec.resize, spec.crop
    img, full = _load(image, spec.grayscale, resize if fast else None)
    # The resize is defined on the full-size image: a draft-decoded JPEG maps to it by the scale it was decoded at.
    size = _resized_size(full, resize, spec.max_size)
    if size[0] * size[1] > MAX_RESIZED_PIXELS:
        raise Sc2edgeError(f"resizing a {full[0]}x{full[1]} image to {size[0]}x{size[1]} (preprocess resize {resize}) "
                           f"is over the {MAX_RESIZED_PIXELS:,}-pixel limit")
    if crop is None:  # dynamic input: the resized image as it is
        return img if size == img.size else img.resize(size, Image.BILINEAR)
    left, top = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
    if not fast or size == img.size:
        img = img if size == img.size else img.resize(size, Image.BILINEAR)
        return img.crop((left, top, left + crop, top + crop))
    sx, sy = img.size[0] / size[0], img.size[1] / size[1]
    box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
    return img.resize((crop, crop), Image.BILINEAR, box=box, reducing_gap=FAST_MARGIN)


def crop_input(crop: Image.Image, spec: PreprocessSpec | Mapping[str, Any]) -> np.ndarray:
    """A crop already at the model's size -> the device graph's input for it, per ``graph_input``: uint8 H x W x C
    pixels (C = 1 for grayscale) or the normalized float32 CHW image."""
    spec = _spec(spec)
    if spec.graph_input != PIXEL_GRAPH_INPUT:
        return normalize_image(crop, spec)
    mode = "L" if spec.grayscale else "RGB"
    array = np.asarray(crop if crop.mode == mode else crop.convert(mode))
    return array[:, :, None] if array.ndim == 2 else array


def normalize_image(image: Image.Image, spec: PreprocessSpec | Mapping[str, Any]) -> np.ndarray:
    """A crop already at the model's size -> float32 CHW: scale to 0..1, subtract mean, divide by std (then zero
    padding to ``pad_multiple``, where the record has one)."""
    spec = _spec(spec)
    array = np.asarray(image.convert("L" if spec.grayscale else "RGB"))
    return normalize_pixels(array[:, :, None] if array.ndim == 2 else array, spec)


def normalize_pixels(pixels: np.ndarray, spec: PreprocessSpec | Mapping[str, Any]) -> np.ndarray:
    """uint8 pixels, H x W x C (or a batch, N x H x W x C) -> the normalized float32 image, C x H x W (N x C x H x
    W): the host's arithmetic, which a uint8 device graph repeats in its front."""
    spec = _spec(spec)
    array = pixels.astype(np.float32) / 255.0
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    chw = np.moveaxis((array - mean) / std, -1, -3)
    if spec.pad_multiple:  # GeneralizedRCNNTransform's batching: zeros (after normalization) at the bottom and right
        height, width = chw.shape[-2:]
        multiple = spec.pad_multiple
        chw = np.pad(chw, [(0, 0)] * (chw.ndim - 2) + [(0, -height % multiple), (0, -width % multiple)])
    return np.ascontiguousarray(chw)


def float_item(item: np.ndarray, spec: PreprocessSpec | Mapping[str, Any]) -> np.ndarray:
    """One device-graph input (``preprocess_image``'s result, or a batch of them) -> the normalized float32 image
    that PyTorch and the reference graph read: uint8 pixels are normalized, a float image is returned as it is."""
    spec = _spec(spec)
    return normalize_pixels(item, spec) if spec.graph_input == PIXEL_GRAPH_INPUT else item


def float_input(image: ImageLike, spec: PreprocessSpec | Mapping[str, Any], *, fast: bool = True) -> np.ndarray:
    """An image -> the model's float32 CHW input (normalized), whatever the bundle's device graph takes: what a
    PyTorch module and the reference graph read."""
    return normalize_image(crop_image(image, spec, fast=fast), spec)


def preprocess_image(image: ImageLike, spec: PreprocessSpec | Mapping[str, Any], *, fast: bool = True) -> np.ndarray:
    """An image -> the device graph's input for one item, per the ``preprocess`` record: uint8 HWC pixels where
    its ``graph_input`` is "uint8-nhwc" (the graph normalizes), else float32 CHW (normalized here).

    Args:
        image (ImageLike): an image file, a PIL image, or a uint8 frame (H x W x 3 RGB, or H x W gray).
        spec (PreprocessSpec | Mapping): the bundle's (or model's) preprocessing record.
        fast (bool): reduced-scale JPEG decoding and box reduction of large frames (see ``crop_image``).
            Defaults to True.
    """
    return crop_input(crop_image(image, spec, fast=fast), spec)


def graph_input_spec(spec: PreprocessSpec | Mapping[str, Any], height: int, width: int,
                     batch: int = 1) -> tuple[tuple[int, ...], np.dtype]:
    """The device graph's input (shape, dtype) for ``batch`` images of ``height`` x ``width``, per ``graph_input``."""
    spec = _spec(spec)
    if spec.graph_input == PIXEL_GRAPH_INPUT:
        return (batch, height, width, spec.channels), np.dtype(np.uint8)
    return (batch, spec.channels, height, width), np.dtype(np.float32)
