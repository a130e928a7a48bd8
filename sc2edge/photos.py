"""Real photos that can be had offline (Debian opencv-doc and mate-backgrounds, scikit-image's bundled
images), and image listing for user folders. Torch-free: calibration and bench use it on devices too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
