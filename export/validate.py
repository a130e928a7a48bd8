"""Check an exported bundle against the PyTorch model it came from, through the deployable runtime.

The reference is the paper's own path: eager encoder -> ``EntropyBottleneck.compress`` -> ``decompress`` ->
decoder -> tail. The bundle passes when its symbols and streams match and its logits agree within tolerance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from sc2edge.runtime import Bundle, Decoder, Encoder
from sc2edge.runtime.stream import unpack_stream
from sc2edge.zoo import SplitClassifier


@dataclass(frozen=True)
class Tolerance:
    """Logits must satisfy |ours - torch| <= atol + rtol * max|torch|; symbols may differ in at most
    ``symbol_fraction`` of positions (float summation order can move a value across a .5 rounding boundary)."""

    atol: float = 1e-4
    rtol: float = 1e-3
    symbol_fraction: float = 1e-4


@dataclass
class ValidationResult:
    """Truthy when the bundle matches PyTorch; ``str()`` gives the figures."""

    backend: str
    precision: str
    images: int
    symbols_total: int = 0
    symbols_different: int = 0
    streams_identical: int = 0
    logits_max_abs_err: float = 0.0
    logits_bound: float = 0.0
    top1_equal: int = 0
    tolerance: Tolerance = field(default_factory=Tolerance)

    def __bool__(self) -> bool:
        return (self.symbols_different <= self.tolerance.symbol_fraction * self.symbols_total
                and self.logits_max_abs_err <= self.logits_bound)

    def __str__(self) -> str:
        verdict = "PASS" if self else "FAIL"
        return (f"{verdict} {self.backend}/{self.precision} on {self.images} images: "
                f"{self.symbols_different}/{self.symbols_total} symbols differ, "
                f"{self.streams_identical}/{self.images} streams byte-identical to CompressAI, "
                f"logits max |err| {self.logits_max_abs_err:.3g} (bound {self.logits_bound:.3g}), "
                f"top-1 equal {self.top1_equal}/{self.images}")

    def to_json(self) -> dict:
        return {**asdict(self), "passed": bool(self)}


@torch.no_grad()
def validate_bundle(model: SplitClassifier, bundle: Bundle | str | Path, images: list[Path], *,
                    backend: str = "onnxruntime", precision: str = "fp32",
                    tolerance: Tolerance = Tolerance()) -> ValidationResult:
    """Compare the bundle run by ``backend`` with the PyTorch model on ``images`` (paths)."""
    eb = model.bottleneck_layer.entropy_bottleneck
    result = ValidationResult(backend, precision, len(images), tolerance=tolerance)
    with Encoder(bundle, backend, precision) as encoder, Decoder(encoder.bundle, backend, precision) as decoder:
        for path in images:
            x = encoder.preprocess(path)[None]
            y = model.bottleneck_layer.encoder(torch.from_numpy(x))
            reference_stream = eb.compress(y)[0]
            reference_logits = model.forward_tail(model.bottleneck_layer.decoder(
                eb.decompress([reference_stream], y.shape[-2:]))).numpy()[0]
            reference_symbols = torch.round(y - eb._get_medians().reshape(1, -1, 1, 1)).int().numpy()

            symbols = encoder.symbols(x)
            stream = encoder.compress_symbols(symbols[0])
            logits = decoder.predict(reference_symbols)[0]  # same input as the reference: isolates the server graph

            result.symbols_total += symbols.size
            result.symbols_different += int(np.count_nonzero(symbols != reference_symbols))
            result.streams_identical += int(list(unpack_stream(stream)[1].values()) == [reference_stream])
            result.logits_max_abs_err = max(result.logits_max_abs_err,
                                            float(np.abs(logits - reference_logits).max()))
            result.logits_bound = max(result.logits_bound,
                                      tolerance.atol + tolerance.rtol * float(np.abs(reference_logits).max()))
            result.top1_equal += int(logits.argmax() == reference_logits.argmax())
    return result
