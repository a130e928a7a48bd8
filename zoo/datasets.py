"""Offline data for training and evaluation: the held-out split of the packaged photos, crops, Fashion-MNIST.

Torch-free on purpose (numpy + PIL): calibration and benchmarks can draw the same crops and the same
held-out split without a training stack. The torch side (batches, augmentation tensors) is in
``sc2edge.zoo.training``.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sc2edge.errors import Sc2edgeError
from sc2edge.photos import system_photos

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# The fixed evaluation photos (by file name), never seen in training: ImageNet-like objects and scenes from
# each source. Everything else that ``sc2edge.photos.system_photos`` finds is training data.
HELD_OUT_PHOTOS = (
    "astronaut.png", "baboon.jpg", "butterfly.jpg", "chelsea.png", "coffee.png", "fruits.jpg", "LadyBird.jpg",
    "orange.jpg", "rocket.jpg", "squirrel_cls.jpg", "TwoWings.jpg", "YellowFlower.jpg",
)

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def split_photos() -> tuple[list[Path], list[Path]]:
    """(training photos, held-out photos); raises when a held-out photo is missing."""
    paths = system_photos()
    held = sorted((p for p in paths if p.name in HELD_OUT_PHOTOS), key=lambda p: p.name)
    missing = sorted(set(HELD_OUT_PHOTOS) - {p.name for p in held})
    if missing:
        raise Sc2edgeError(
            f"held-out photos missing: {', '.join(missing)} "
            "(install the Debian packages opencv-doc and mate-backgrounds, and scikit-image)"
        )
    return [p for p in paths if p.name not in HELD_OUT_PHOTOS], held


def load_rgb(path: str | Path, max_side: int | None = None) -> Image.Image:
    """An RGB image, shrunk so its longer side is at most ``max_side`` (large wallpapers are decoded once)."""
    from sc2edge.runtime.preprocess import load_image  # closes the file; a bad image is a one-line error

    img = load_image(path)
    if max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
    return img


def random_resized_crop(
    img: Image.Image,
    size: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
) -> np.ndarray:
    """A ``size`` square of a random area fraction and aspect (torchvision's RandomResizedCrop), HWC uint8."""
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(*scale)
        aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
        cw, ch = round(np.sqrt(area * aspect)), round(np.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            break
    else:  # fall back to the largest centred square
        cw = ch = min(w, h)
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = img.resize((size, size), Image.BILINEAR, box=(left, top, left + cw, top + ch))
    out = np.asarray(crop)
    if flip and rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def normalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (..., H, W, C) -> float32 (..., C, H, W) scaled to 0..1 and normalised, as the models expect."""
    x = (images.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def evaluation_crops(
    paths: Sequence[Path], per_photo: int, preprocess: Mapping[str, Any], seed: int
) -> np.ndarray:
    """A fixed set of normalised inputs per photo (N*per_photo, C, crop, crop): the model's own centre crop
    (``preprocess_image``), then random crops covering 25-100 % of the photo.

    With a dozen held-out photos, one crop each gives too few trials for an agreement rate; crops of
    different scales and positions give hundreds of distinct inputs while the photos stay unseen.
    """
    from sc2edge.runtime.preprocess import preprocess_image  # the runtime package is heavier than this module

    rng = np.random.default_rng(seed)
    crops = []
    for path in paths:
        crops.append(preprocess_image(path, preprocess))
        img = load_rgb(path, max_side=1024)
        extra = np.stack([random_resized_crop(img, preprocess["crop"], rng, scale=(0.25, 1.0))
                          for _ in range(per_photo - 1)])
        crops.extend(normalize(extra, preprocess["mean"], preprocess["std"]))
    return np.stack(crops)


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (the MNIST format, optionally gzipped) as a uint8 array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise Sc2edgeError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise Sc2edgeError(f"{path} is truncated: {body.size} bytes for shape {shape}")
    return body.reshape(shape).copy()  # writable, so torch.from_numpy can share it


def fashion_mnist(split: str, root: str | Path = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (N, 28, 28) and labels (N,), uint8; ``split`` is "train" (60k) or "test" (10k)."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise Sc2edgeError(f'unknown Fashion-MNIST split "{split}" (available: train, test)')
    root = Path(root)
    images, labels = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    if not images.is_file() or not labels.is_file():
        raise Sc2edgeError(
            f"Fashion-MNIST not found in {root}: install the Debian package dataset-fashion-mnist"
        )
    return read_idx(images), read_idx(labels)


def write_fashion_mnist_images(split: str, out_dir: str | Path, count: int, seed: int = 0) -> Path:
    """``count`` seeded Fashion-MNIST images of ``split`` as PNG files in ``out_dir``, with ``labels.txt``
    ("file label" lines): the form the image tools (calibration, check-quant, bench) take. Returns the list."""
    images, labels = fashion_mnist(split)
    chosen = np.sort(np.random.default_rng(seed).choice(len(images), size=min(count, len(images)), replace=False))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in chosen:
        name = f"{split}-{index:05d}.png"
        Image.fromarray(images[index], mode="L").save(out_dir / name)
        lines.append(f"{name} {int(labels[index])}\n")
    listing = out_dir / "labels.txt"
    listing.write_text("".join(lines))
    return listing
