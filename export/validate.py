"""Check an exported bundle against the PyTorch model it came from, through the deployable runtime.

The reference is the paper's own path: eager encoder -> ``EntropyBottleneck.compress`` -> ``decompress`` ->
decoder -> tail. The bundle passes when its symbols and streams match and every server output is within the
tolerance its task sets for it (``Task.tolerances``, compared by ``Task.compare``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sc2edge.runtime import Bundle, Decoder, Encoder
from sc2edge.runtime.entropy import IMAGE_SECTION
from sc2edge.runtime.preprocess import float_input
from sc2edge.runtime.reference import REFERENCE_OUTPUT, ReferenceGraph
from sc2edge.runtime.stream import unpack_stream
from sc2edge.tasks import ImageSizes, OutputError, Task, bundle_task
from sc2edge.zoo import SplitClassifier


@dataclass(frozen=True)
class SymbolTolerance:
    """Symbols may differ in at most ``symbol_fraction`` of positions (float summation order can move a value
    across a .5 rounding boundary). The server outputs' tolerances are the task's."""

    symbol_fraction: float = 1e-4


@dataclass
class ValidationResult:
    """Truthy when the bundle matches PyTorch; ``str()`` gives the figures. ``outputs`` keeps, per server output,
    the image that came closest to (or went furthest past) its bound."""

    backend: str
    precision: str
    images: int
    task: str = ""
    symbols_total: int = 0
    symbols_different: int = 0
    streams_identical: int = 0
    outputs: dict[str, OutputError] = field(default_factory=dict)
    predictions_agree: int = 0
    tolerance: SymbolTolerance = field(default_factory=SymbolTolerance)

    def __bool__(self) -> bool:
        return (self.symbols_different <= self.tolerance.symbol_fraction * self.symbols_total
                and bool(self.outputs) and all(e.passed for e in self.outputs.values()))

    def __str__(self) -> str:
        verdict = "PASS" if self else "FAIL"
        return (f"{verdict} {self.backend}/{self.precision} on {self.images} images: "
                f"{self.symbols_different}/{self.symbols_total} symbols differ, "
                f"{self.streams_identical}/{self.images} streams byte-identical to CompressAI, "
                + ", ".join(map(str, self.outputs.values()))
                + f", {self.task} predictions agree {self.predictions_agree}/{self.images}")

    def add(self, errors: dict[str, OutputError]) -> None:
        for name, error in errors.items():
            self.outputs[name] = self.outputs[name].worse(error) if name in self.outputs else error

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "outputs": {name: e.to_json() for name, e in self.outputs.items()},
                "passed": bool(self)}


def named_outputs(task: Task, output: torch.Tensor | tuple | list | dict) -> dict[str, np.ndarray]:
    """The PyTorch tail's output(s), named like the server graph's (outputs are exported in the task's order)."""
    if isinstance(output, dict):
        return {name: output[name].numpy() for name in task.output_names}
    values = output if isinstance(output, tuple | list) else (output,)
    return {name: value.numpy() for name, value in zip(task.output_names, values, strict=True)}


@torch.no_grad()
def validate_bundle(model: SplitClassifier, bundle: Bundle | str | Path, images: list[Path], *,
                    backend: str = "onnxruntime", precision: str = "fp32",
                    tolerance: SymbolTolerance = SymbolTolerance()) -> ValidationResult:
    """Compare the bundle run by ``backend`` with the PyTorch model on ``images`` (paths)."""
    eb = model.bottleneck_layer.entropy_bottleneck
    result = ValidationResult(backend, precision, len(images), tolerance=tolerance)
    with Encoder(bundle, backend, precision) as encoder, Decoder(encoder.bundle, backend, precision) as decoder:
        task = decoder.task
        result.task = task.kind
        for path in images:
            x = encoder.preprocess(path, fast=False)[None]  # the graph's input: uint8 pixels or the float image
            # PyTorch's input: the same pixels, normalized
            image = torch.from_numpy(float_input(path, encoder.bundle.preprocess, fast=False))[None]
            sizes = (encoder.preprocess_sized(path, fast=False)[1] if encoder.codec.limits.dynamic
                     else ImageSizes((image.shape[2], image.shape[3]), (image.shape[2], image.shape[3])))
            extra = task.server_inputs(sizes)  # the image sizes a dynamic input's tail takes, as the server gets them
            y = model.bottleneck_layer.encoder(image)
            reference_stream = eb.compress(y)[0]
            reference = task.items(named_outputs(task, model.forward_tail(model.bottleneck_layer.decoder(
                eb.decompress([reference_stream], y.shape[-2:])), *(torch.from_numpy(extra[name])
                                                                    for name in task.extra_inputs))))[0]
            reference_symbols = torch.round(y - eb._get_medians().reshape(1, -1, 1, 1)).int().numpy()

            symbols = encoder.symbols(x)
            stream = encoder.compress_symbols(symbols[0], sizes)
            # Same input as the reference: isolates the server graph.
            outputs = task.items(decoder.predict_outputs(reference_symbols, sizes))[0]

            result.symbols_total += symbols.size
            result.symbols_different += int(np.count_nonzero(symbols != reference_symbols))
            payloads = unpack_stream(stream)[1]
            payloads.pop(IMAGE_SECTION, None)  # the image sizes, not entropy coded
            result.streams_identical += int(list(payloads.values()) == [reference_stream])
            result.add(task.compare(reference, outputs))
            result.predictions_agree += int(task.agree(task.predict(reference), task.predict(outputs)))
    return result


@dataclass
class ReferenceValidationResult:
    """The reference graph (image -> the task's outputs) against its PyTorch module; truthy when every output is
    within the task's tolerance."""

    backend: str
    precision: str
    images: int
    task: str = ""
    outputs: dict[str, OutputError] = field(default_factory=dict)
    predictions_agree: int = 0

    def __bool__(self) -> bool:
        return bool(self.outputs) and all(e.passed for e in self.outputs.values())

    def __str__(self) -> str:
        return (f"{'PASS' if self else 'FAIL'} reference {self.backend}/{self.precision} on {self.images} images: "
                + ", ".join(map(str, self.outputs.values()))
                + f", {self.task} predictions agree {self.predictions_agree}/{self.images}")

    add = ValidationResult.add
    to_json = ValidationResult.to_json


@torch.no_grad()
def validate_reference(module: torch.nn.Module, bundle: Bundle | str | Path, images: list[Path], *,
                       backend: str = "onnxruntime", precision: str = "fp32") -> ReferenceValidationResult:
    """Compare the bundle's reference graph run by ``backend`` with the PyTorch ``module`` on ``images``."""
    result = ReferenceValidationResult(backend, precision, len(images))
    with ReferenceGraph(bundle, backend, precision) as runner:
        task = bundle_task(runner.bundle)
        result.task = task.kind
        for path in images:
            x = runner.preprocess(path)[None]
            expected = task.items(named_outputs(task, module(torch.from_numpy(x))))[0]
            outputs = task.items({REFERENCE_OUTPUT: runner.predict(x)})[0]
            result.add(task.compare(expected, outputs))
            result.predictions_agree += int(task.agree(task.predict(expected), task.predict(outputs)))
    return result
