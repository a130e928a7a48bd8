"""Offline data for training and evaluation: the held-out split of the packaged photos, crops, Fashion-MNIST.

Torch-free on purpose (numpy + PIL): calibration and benchmarks can draw the same crops and the same
held-out split without a training stack. The torch side (batches, augmentation tensors) is in
``sc2edge.zoo.training``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from collections.abc import Iterator, Mapping, Sequence
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


OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
# Extra training photos beyond ``system_photos``: (source, folder or file, glob). The folders' other images
# (drawings, charts, masks, annotation overlays) fail the colour/size test or are listed out by the glob.
EXTRA_PHOTO_SOURCES = (
    ("labelme-examples", Path("/usr/share/doc/labelme-examples/examples"), "*/data_annotated/*.jpg"),
    ("mate-backgrounds", Path("/usr/share/backgrounds/mate/abstract"), "Elephants.jpg"),
    ("scikit-learn", "sklearn", "datasets/images/*.jpg"),
    ("matplotlib", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("scikit-image", "skimage", "data/motorcycle_right.png"),
)
# opencv-doc's videos (real scenes) as frame sources; Megamind_bugy.avi is a damaged copy of Megamind.avi.
TRAINING_VIDEOS = ("vtest.avi", "Megamind.avi", "tree.avi")
# Debian packages whose images are reserved for independent evaluation: never training or calibration data.
RESERVED_SOURCES = ("darknet", "libjxl")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def content_hash(img: Image.Image) -> str:
    """sha256 of an image's decoded RGB pixels: the same photo under another name or container matches."""
    rgb = img.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


def _shrunk(img: Image.Image, max_side: int | None) -> Image.Image:
    if max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
    return img


def _extra_photos() -> Iterator[tuple[str, Path]]:
    for source, where, pattern in EXTRA_PHOTO_SOURCES:
        root = where if isinstance(where, Path) else _package_dir(where)
        if root is not None and root.is_dir():
            for path in sorted(root.glob(pattern)):
                yield source, path


def video_frames(path: Path, count: int) -> list[Image.Image]:
    """About ``count`` frames spread evenly over a video (decoded with PyAV, which bundles FFmpeg)."""
    import av  # only training reads videos

    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    return [frames[i].to_image() for i in picks]


def training_images(
    max_side: int = 640, frames_per_video: int = 40, min_side: int = 224
) -> list[tuple[str, Image.Image]]:
    """Every offline training photo, as (source, RGB image shrunk to ``max_side``): ``split_photos``'s
    training photos, the extra sources above and frames of opencv-doc's videos. An image whose pixels equal
    a held-out photo's (by ``content_hash``) or another training image's is skipped, and reserved sources
    (``RESERVED_SOURCES``) are refused."""
    train_paths, held_paths = split_photos()
    seen = {content_hash(load_rgb(p)) for p in held_paths}
    photos = [("opencv-doc" if OPENCV_DATA in p.parents else "mate-backgrounds" if "backgrounds" in p.parts
               else "scikit-image", p) for p in train_paths]
    photos += list(_extra_photos())
    out: list[tuple[str, Image.Image]] = []

    def add(source: str, img: Image.Image, origin: Path) -> None:
        if any(r in str(origin).lower() for r in RESERVED_SOURCES):
            raise Sc2edgeError(f"{origin} belongs to a source reserved for independent evaluation")
        img = img.convert("RGB")
        digest = content_hash(img)
        if min(img.size) >= min_side and digest not in seen:
            seen.add(digest)
            out.append((source, _shrunk(img, max_side)))

    for source, path in photos:
        add(source, load_rgb(path), path)
    for name in TRAINING_VIDEOS:
        if (OPENCV_DATA / name).is_file():
            for frame in video_frames(OPENCV_DATA / name, frames_per_video):
                add(f"opencv-doc {name}", frame, OPENCV_DATA / name)
    return out


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

    return _shrunk(load_image(path), max_side)


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
    """A fixed set of inputs per photo (N*per_photo, C, crop, crop normalised; N*per_photo, crop, crop, C uint8 for a
    pixel-input graph): the model's own centre crop (``preprocess_image``), then random crops covering 25-100 % of
    the photo.

    With a dozen held-out photos, one crop each gives too few trials for an agreement rate; crops of
    different scales and positions give hundreds of distinct inputs while the photos stay unseen.
    """
    from sc2edge.runtime.manifest import PIXEL_GRAPH_INPUT  # the runtime package is heavier than this module
    from sc2edge.runtime.preprocess import preprocess_image

    pixels = preprocess.get("graph_input") == PIXEL_GRAPH_INPUT  # uint8 H x W x C, as the device graph reads them
    rng = np.random.default_rng(seed)
    crops = []
    for path in paths:
        crops.append(preprocess_image(path, preprocess))
        if per_photo == 1:
            continue
        img = load_rgb(path, max_side=1024)
        if preprocess.get("grayscale"):  # the random crops in the model's own colour mode, like the centre crop
            img = img.convert("L")
        extra = np.stack([random_resized_crop(img, preprocess["crop"], rng, scale=(0.25, 1.0))
                          for _ in range(per_photo - 1)])
        if extra.ndim == 3:  # N x H x W from mode L: one channel, as preprocess_image gives it
            extra = extra[..., None]
        crops.extend(extra if pixels else normalize(extra, preprocess["mean"], preprocess["std"]))
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
