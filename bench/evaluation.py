"""Which images a measurement may be judged on: held out by default, never a bundle's INT8 calibration images.

A figure measured on the images INT8 was calibrated on flatters INT8 (the ranges were fitted to those very
tensors). Bundles record the sha256 of their calibration images (``calibration.sha256``); every accuracy or
agreement figure the bench and the sweep report is checked against them here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from sc2edge._files import sha256_file
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle


class CalibrationImagesError(Sc2edgeError):
    """Evaluation images include a bundle's INT8 calibration images."""


def calibration_hashes(bundles: Iterable[Bundle]) -> set[str]:
    """sha256 of every image any of ``bundles`` was INT8-calibrated on."""
    return {h for b in bundles for h in (b.manifest.get("calibration") or {}).get("sha256", [])}


def calibration_images_among(paths: Sequence[Path], bundles: Iterable[Bundle]) -> list[Path]:
    """The evaluation images that some bundle was calibrated on (compared by file content)."""
    hashes = calibration_hashes(bundles)
    return [p for p in paths if sha256_file(p) in hashes] if hashes else []


def check_held_out(paths: Sequence[Path], bundles: Iterable[Bundle], allow: bool = False) -> str | None:
    """Refuse evaluation images that are calibration images, or (``allow``) return the loud warning to print and
    record instead. None when every image is held out."""
    used = calibration_images_among(paths, bundles)
    if not used:
        return None
    message = (f"{len(used)} of the {len(paths)} evaluation images are INT8 calibration images of the bundle "
               f"(e.g. {used[0].name}): INT8 figures on them are flattered")
    if not allow:
        raise CalibrationImagesError(f"{message}; pass held-out images (or --allow-calibration-images to measure "
                                     "anyway, flagged)")
    return f"CALIBRATION IMAGES USED FOR EVALUATION: {message}"


def held_out_photos() -> list[Path]:
    """The default evaluation images: the offline photos held out from training and calibration
    (``sc2edge.zoo.datasets.HELD_OUT_PHOTOS``)."""
    from sc2edge.zoo.datasets import split_photos

    return split_photos()[1]
