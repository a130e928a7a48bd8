"""Calibration and held-out images: where they come from, which ones (seeded), and how they are fed.

Sources: a folder of images, an ImageNet-style class-folder tree (both searched recursively), or a file list
(one path per line, optionally followed by an integer label; relative paths are relative to the list's folder).
Images go through the bundle's own preprocessing (``sc2edge.runtime.preprocess_image``), so calibration sees
exactly the tensors the device will.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sc2edge._files import sha256_file
from sc2edge.errors import Sc2edgeError
from sc2edge.photos import IMAGE_SUFFIXES, list_images
from sc2edge.runtime.preprocess import preprocess_image


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
        entries = {str(k): int(v) for k, v in raw.items()}
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


def select_images(images: Sequence[Path], count: int, seed: int = 0,
                  exclude_sha256: Iterable[str] = ()) -> tuple[list[Path], int]:
    """A seeded, order-independent choice of ``count`` images, skipping files whose sha256 is excluded;
    returns the choice and how many images were skipped."""
    excluded = set(exclude_sha256)
    pool = sorted(images)
    random.Random(seed).shuffle(pool)
    kept = [p for p in pool if sha256_file(p) not in excluded] if excluded else pool
    return kept[:count], len(pool) - len(kept)


@dataclass
class ImageSet:
    """Chosen images and the preprocessing that turns them into model inputs (computed once, on first use).

    Args:
        paths (list[Path]): the images.
        preprocess (Mapping): the bundle's ``preprocess`` record.
        progress (bool): show a progress bar while preprocessing. Defaults to True.
    """

    paths: list[Path]
    preprocess: Mapping[str, Any]
    progress: bool = True
    excluded: int = 0  # images of the source skipped because they were used for calibration
    _arrays: list[np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    def arrays(self) -> list[np.ndarray]:
        """float32 CHW input per image, in order."""
        if self._arrays is None:
            self._arrays = [preprocess_image(p, self.preprocess)
                            for p in tqdm(self.paths, desc="preprocessing images", unit="img",
                                          disable=not self.progress, leave=False)]
        return self._arrays

    def batches(self, size: int) -> Iterator[np.ndarray]:
        arrays = self.arrays()
        for start in range(0, len(arrays), size):
            yield np.stack(arrays[start:start + size])

    def sha256(self) -> list[str]:
        return [sha256_file(p) for p in self.paths]

    def describe(self, source: str | Path, seed: int) -> dict[str, Any]:
        """What a bundle records about its calibration, so check-quant can hold these images out."""
        return {"source": str(source), "seed": seed, "count": len(self), "sha256": self.sha256()}


def calibration_set(source: str | Path, preprocess: Mapping[str, Any], samples: int, seed: int = 0,
                    progress: bool = True) -> ImageSet:
    """``samples`` seeded images from ``source``; fewer (with a warning on stderr) when the source is smaller."""
    chosen, _ = select_images(find_images(source), samples, seed)
    if len(chosen) < samples:
        tqdm.write(f"note: {source} has {len(chosen)} images, fewer than the {samples} calibration samples asked for")
    return ImageSet(chosen, preprocess, progress)


def held_out_set(source: str | Path, preprocess: Mapping[str, Any], count: int, seed: int,
                 calibration_sha256: Iterable[str], progress: bool = True) -> ImageSet:
    """``count`` images from ``source`` that were not used for calibration (compared by content hash)."""
    chosen, excluded = select_images(find_images(source), count, seed, exclude_sha256=calibration_sha256)
    if not chosen:
        raise Sc2edgeError(f"every image under {source} was used for calibration: give held-out images")
    return ImageSet(chosen, preprocess, progress, excluded=excluded)
