"""Calibration and held-out images: where they come from, which ones (seeded), and how they are fed.

Sources: a folder of images, an ImageNet-style class-folder tree (both searched recursively), or a file list
(one path per line, optionally followed by an integer label; relative paths are relative to the list's folder).
Images go through the bundle's own preprocessing (``sc2edge.runtime.preprocess_image``), so calibration sees
exactly the tensors the device will.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sc2edge._files import sha256_file
from sc2edge.errors import Sc2edgeError
from sc2edge.photos import find_images
from sc2edge.runtime.preprocess import preprocess_image


def select_images(images: Sequence[Path], count: int, seed: int = 0,
                  exclude_sha256: Iterable[str] = ()) -> tuple[list[Path], int]:
    """A seeded, order-independent choice of ``count`` images, skipping files whose sha256 is excluded;
    returns the choice and how many images were skipped.

    The pool is sorted by path from the file name up (name, then its folders), not by absolute path: where the
    same photos are installed (a virtual environment's ``skimage/data`` under /work or /tmp) must not change the
    order, which decides each image's random crops (``ImageSet``). Sorted by absolute path, two installs gave the
    default model's FP32 accuracy against the teacher as 78.12 and 76.04 % on the "same" 12 photos x 16 crops.
    """
    excluded = set(exclude_sha256)
    pool = sorted(images, key=lambda p: Path(p).parts[::-1])
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
    crops: int = 1  # inputs per image: the model's centre crop, then seeded random crops (``evaluation_crops``)
    crop_seed: int = 0
    centre_crop: bool = True  # False: random crops only (accuracy control: never the input calibration saw)
    _arrays: list[np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        """Model inputs: images x crops."""
        return len(self.paths) * self.crops

    def arrays(self) -> list[np.ndarray]:
        """The device graph's input per image (``crops`` consecutive ones per image), in order."""
        if self._arrays is None and (self.crops > 1 or not self.centre_crop):
            # a dozen held-out photos cannot resolve a 1-point budget (one flip is 8 points); crops of several
            # scales and positions can. The zoo's protocol (the models' published figures) draws them.
            from sc2edge.zoo.datasets import evaluation_crops

            per_image = self.crops + (not self.centre_crop)
            drawn = evaluation_crops(self.paths, per_image, self.preprocess, self.crop_seed)
            self._arrays = [x for i, x in enumerate(drawn) if self.centre_crop or i % per_image]
        if self._arrays is None:
            self._arrays = [preprocess_image(p, self.preprocess)
                            for p in tqdm(self.paths, desc="preprocessing images", unit="img",
                                          disable=None if self.progress else True, leave=False)]
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


def at_export_size(preprocess: Mapping[str, Any]) -> Mapping[str, Any]:
    """The preprocessing of calibration inputs. A dynamic input (no crop: its size follows the image) is calibrated
    at the export's size, on the centre square of the resized image: calibration batches need one size, and that
    is the size the graphs were traced and validated at.

    A padded input (detection: ``pad_multiple``) gets the largest square of whole multiples inside the resized
    image instead, so every calibration input is a valid one without padding: the shorter side resized alone (no
    ``max_size``, which could leave it shorter than the square, filled with black), cropped to a multiple of
    ``pad_multiple`` (the export's size itself when it is one, as the default 800 and the tests' 160 are)."""
    if preprocess.get("crop") is not None:
        return preprocess
    resize, multiple = preprocess["resize"], preprocess.get("pad_multiple") or 1
    if resize < multiple:
        raise Sc2edgeError(f"calibration at the export's size needs a shorter side of at least the padding multiple "
                           f"{multiple}, got {resize}: export at a larger --resize")
    square = {key: value for key, value in preprocess.items() if key not in ("max_size", "pad_multiple")}
    return {**square, "crop": resize - resize % multiple}


def calibration_set(source: str | Path, preprocess: Mapping[str, Any], samples: int, seed: int = 0,
                    progress: bool = True) -> ImageSet:
    """``samples`` seeded images from ``source``; fewer (with a warning on stderr) when the source is smaller."""
    chosen, _ = select_images(find_images(source), samples, seed)
    if len(chosen) < samples:
        tqdm.write(f"note: {source} has {len(chosen)} images, fewer than the {samples} calibration samples asked for")
    return ImageSet(chosen, preprocess, progress)


CONTROL_SEED = 1009  # offsets the calibration seed: the control's crops are not the calibration inputs


def control_set(source: str | Path, preprocess: Mapping[str, Any], samples: int, seed: int, inputs: int,
                evaluation_sha256: Iterable[str], progress: bool = True) -> ImageSet:
    """Accuracy control's own images: the calibration images of ``source`` (the same seeded choice as
    ``calibration_set``) minus any image of the evaluation set (by content hash), giving about ``inputs``
    random crops in all (seeded; never the centre crop that calibration saw).

    Control tunes which layers stay in float; tuned on the held-out images, the check on them would pass by
    construction, so the two sets never share an image.
    """
    chosen = calibration_set(source, preprocess, samples, seed, progress).paths
    evaluation = set(evaluation_sha256)
    kept = [p for p in chosen if sha256_file(p) not in evaluation]
    if not kept:
        raise Sc2edgeError(f"every calibration image under {source} is also an evaluation image: accuracy control "
                           "needs images disjoint from the held-out ones")
    crops = max(1, -(-inputs // len(kept)))
    return ImageSet(kept, preprocess, progress, excluded=len(chosen) - len(kept), crops=crops,
                    crop_seed=seed + CONTROL_SEED, centre_crop=False)


def held_out_set(source: str | Path, preprocess: Mapping[str, Any], count: int, seed: int,
                 calibration_sha256: Iterable[str], progress: bool = True, crops: int = 1) -> ImageSet:
    """``count`` images from ``source`` that were not used for calibration (compared by content hash), each
    giving ``crops`` inputs (the centre crop, then random crops of 25-100 % of the image, seeded by ``seed``)."""
    if count < 1:
        raise Sc2edgeError(f"the number of held-out images must be positive, got {count}")
    if crops < 1:
        raise Sc2edgeError(f"the number of crops per held-out image must be positive, got {crops}")
    chosen, excluded = select_images(find_images(source), count, seed, exclude_sha256=calibration_sha256)
    if not chosen:
        raise Sc2edgeError(f"every image under {source} was used for calibration: give held-out images")
    return ImageSet(chosen, preprocess, progress, excluded=excluded, crops=crops, crop_seed=seed)
