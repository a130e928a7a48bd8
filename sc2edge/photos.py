"""Images a user names (a folder, a class-folder tree or a file list, with labels) and real photos that can be
had offline (Debian opencv-doc and mate-backgrounds, scikit-image's bundled images). Torch- and ONNX-free:
calibration, check-quant and bench read their images through it, on devices too.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from sc2edge.errors import Sc2edgeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
SYSTEM_PHOTO_DIRS = (Path("/usr/share/doc/opencv-doc/examples/data"), Path("/usr/share/backgrounds/mate/nature"))
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                  "hubble_deep_field.jpg", "retina.jpg")


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under ``folder``, sorted, so every machine sees the same order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise Sc2edgeError(f"image folder not found: {folder}")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _skimage_data_dir() -> Path | None:
    spec = importlib.util.find_spec("skimage")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def system_photos(min_side: int = 224) -> list[Path]:
    """Colour photos at least ``min_side`` pixels on the short side, from the offline sources installed here."""
    candidates = [p for d in SYSTEM_PHOTO_DIRS if d.is_dir() for p in list_images(d, recursive=False)]
    skimage_dir = _skimage_data_dir()
    if skimage_dir is not None:
        candidates += [skimage_dir / name for name in SKIMAGE_PHOTOS if (skimage_dir / name).is_file()]
    photos = []
    for path in candidates:
        try:
            with Image.open(path) as image:
                if image.mode in ("RGB", "RGBA", "P") and min(image.size) >= min_side:
                    photos.append(path)
        except OSError:
            continue
    return photos


def read_file_list(path: Path) -> tuple[list[Path], dict[Path, int]]:
    """Paths (and labels, where a line has one) from a file list."""
    paths: list[Path] = []
    labels: dict[Path, int] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(" ") if " " in line else line.partition("\t")
        image = (path.parent / name).absolute() if not Path(name).is_absolute() else Path(name)
        if not image.is_file():
            raise Sc2edgeError(f"{path}:{number}: image not found: {image}")
        paths.append(image)
        if rest.strip():
            try:
                labels[image] = int(rest.split()[0])
            except ValueError as exc:
                raise Sc2edgeError(f"{path}:{number}: label must be an integer class index, got {rest!r}") from exc
    return paths, labels


def find_images(source: str | Path) -> list[Path]:
    """Every image a source names, sorted and de-duplicated (folder, class-folder tree or file list)."""
    source = Path(source)
    if source.is_dir():
        images = list_images(source, recursive=True)
    elif source.is_file() and source.suffix.lower() not in IMAGE_SUFFIXES:
        images = read_file_list(source)[0]
    elif source.is_file():
        images = [source]
    else:
        raise Sc2edgeError(f"image source not found: {source} (give a folder, a class-folder tree or a file list)")
    images = sorted({p.absolute() for p in images})  # symlinks kept: their names may carry the class
    if not images:
        raise Sc2edgeError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {source}")
    return images


def load_labels(labels: str | Path, images: Sequence[Path], root: str | Path) -> dict[Path, int]:
    """Integer class labels for ``images`` from a JSON object or a "path label" list (paths relative to ``root``
    or bare file names)."""
    labels = Path(labels)
    if not labels.is_file():
        raise Sc2edgeError(f"labels file not found: {labels}")
    if labels.suffix.lower() == ".json":
        try:
            raw: Mapping[str, Any] = json.loads(labels.read_text())
        except json.JSONDecodeError as exc:
            raise Sc2edgeError(f"{labels} is not valid JSON: {exc}") from exc
        try:
            entries = {str(k): int(v) for k, v in raw.items()}
        except (AttributeError, TypeError, ValueError) as exc:  # a list, or a label that is no integer
            raise Sc2edgeError(f'{labels} must be a JSON object {{"image": class index}} ({exc})') from exc
    else:
        entries = {}
        for number, raw_line in enumerate(labels.read_text().splitlines(), 1):
            parts = raw_line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) < 2 or not parts[-1].lstrip("-").isdigit():
                raise Sc2edgeError(f"{labels}:{number}: expected 'path label', got {raw_line!r}")
            entries[" ".join(parts[:-1])] = int(parts[-1])
    root = Path(root).absolute()
    root = root if root.is_dir() else root.parent
    found: dict[Path, int] = {}
    for image in images:
        for key in (image.relative_to(root).as_posix() if image.is_relative_to(root) else None, image.name,
                    str(image)):
            if key is not None and key in entries:
                found[image] = entries[key]
                break
    missing = [p.name for p in images if p not in found]
    if missing:
        raise Sc2edgeError(f"{labels} has no label for {len(missing)} image(s), e.g. {missing[:3]}")
    return found
