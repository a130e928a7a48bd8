"""The input and latent sizes a bundle's graphs take, measured at export on every exported runtime.

The smallest input is found by running the FP32 device graph and then the server graph on a blank image of a
given side, each probe in fresh sessions (a graph runtime that fails on a too-small input can fail for every
later request in the same session): from the smallest side that gives a one-row latent up to the exported side,
by bisection where the smallest fails. The largest is declared (``MAX_INPUT_SCALE`` times the exported side),
not measured: a probe there would cost minutes for the segmentation and detection models.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle, Decoder, Encoder
from sc2edge.runtime.entropy import MAX_INPUT_SCALE, latent_size, smallest_input_side
from sc2edge.runtime.manifest import MAX_IMAGE_SIDE
from sc2edge.runtime.preprocess import graph_input_spec
from sc2edge.tasks import ImageSizes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputLimits:
    """Smallest and largest input side, square (the same for height and width), and the latents they give."""

    min_side: int
    max_side: int
    channels: int
    geometry: tuple[tuple[int, int, int], ...]

    def latent(self, side: int) -> list[int]:
        return [self.channels, latent_size(side, self.geometry), latent_size(side, self.geometry)]

    def apply(self, manifest: dict[str, Any]) -> None:
        """Record the limits in the manifest's ``latent`` (min_shape, max_shape) and, for a dynamic input,
        ``input`` (min, max) sections."""
        manifest["latent"]["min_shape"] = self.latent(self.min_side)
        manifest["latent"]["max_shape"] = self.latent(self.max_side)
        if manifest["input"].get("dynamic"):
            manifest["input"]["min"] = [self.min_side, self.min_side]
            manifest["input"]["max"] = [self.max_side, self.max_side]


def _failure(bundle: Bundle, backend: str, side: int) -> str | None:
    """Why the FP32 graphs of ``backend`` do not take a blank ``side`` x ``side`` image and give finite outputs,
    in one line; None when they do. The sessions are quiet: a probe below the smallest input is expected to fail,
    and the runtime's message is returned here instead of printed as an error log."""
    shape, dtype = graph_input_spec(bundle.preprocess, side, side)  # uint8 pixels or the float image
    try:
        with Encoder(bundle, backend, quiet=True) as encoder, Decoder(bundle, backend, quiet=True) as decoder:
            symbols = encoder.symbols(np.zeros(shape, dtype))
            outputs = decoder.predict_outputs(symbols, ImageSizes((side, side), (side, side)))
    except Exception as exc:  # noqa: BLE001  (any runtime failure means "not this size"; logged, then searched on)
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
        log.debug("%s: a %d px input fails (%s)", backend, side, reason)
        return reason
    if all(np.isfinite(v).all() for v in outputs.values() if np.issubdtype(v.dtype, np.floating)):
        return None
    return "the outputs are not finite"


def measure_input_limits(bundle_dir: Path, backends: Sequence[str], largest: int | None = None
                         ) -> InputLimits | None:
    """The smallest square input every backend's FP32 graphs run on, and the declared largest (``largest``, else
    ``MAX_INPUT_SCALE`` times the exported side, at most ``MAX_IMAGE_SIDE``); None for an entropy model whose server
    input is not the device's symbols (hyperprior, CR+BQ: their exported latent stays the bound)."""
    bundle = Bundle.open(bundle_dir, verify=False)
    if bundle.spec.entropy.kind != "factorized":
        return None
    latent, image = bundle.manifest["latent"], bundle.manifest["input"]
    geometry = tuple(tuple(int(v) for v in g) for g in latent["geometry"])
    exported = min(int(image["height"]), int(image["width"]))
    low = smallest_input_side(geometry)
    for backend in backends:
        if _failure(bundle, backend, low) is None:
            continue
        reason = _failure(bundle, backend, exported)
        if reason is not None:
            raise Sc2edgeError(f"{backend} does not run the exported graphs at their own input size {exported}: "
                               f"{reason}")
        failing, working = low, exported
        while working - failing > 1:
            middle = (failing + working) // 2
            failing, working = (failing, middle) if _failure(bundle, backend, middle) is None else (middle, working)
        low = working
    largest = declared_largest_side(max(int(image["height"]), int(image["width"])), largest)
    return InputLimits(low, largest, int(latent["channels"]), geometry)


def declared_largest_side(side: int, largest: int | None) -> int:
    """The largest input side a stream may come from, for graphs exported at ``side``: ``largest`` (``--max-input``),
    refused in one line under ``side`` or over ``MAX_IMAGE_SIDE``; else ``MAX_INPUT_SCALE`` times ``side``, capped."""
    if largest is None:
        return min(MAX_INPUT_SCALE * side, MAX_IMAGE_SIDE)
    if largest < side:
        raise Sc2edgeError(f"--max-input {largest} is under the exported input side {side}")
    if largest > MAX_IMAGE_SIDE:
        raise Sc2edgeError(f"--max-input {largest} is over the largest image side {MAX_IMAGE_SIDE}")
    return largest
