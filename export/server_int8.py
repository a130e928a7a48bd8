"""The INT8 server graph of a dynamic-input tail (segmentation, detection) against its FP32 server, at export.

The device INT8 check (``calibrate.validate_int8``) runs INT8 streams through the FP32 server. This one holds the
INT8 server: the FP32 encoder's streams of held-out images (never calibration images), at each image's own size,
decoded by the FP32 and the INT8 server graph of each runtime, compared by the task's agreement (pixel agreement
for a class map, confident boxes matched for detections); the budget is on that agreement. Beside it, not
budgeted: the whole INT8 path (INT8 encoder, INT8 server) against the whole FP32 one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sc2edge.calibrate.budget import Int8Budget
from sc2edge.calibrate.check import held_out
from sc2edge.runtime import Bundle, Decoder, Encoder
from sc2edge.runtime.cpu import this_cpu
from sc2edge.tasks import bundle_task


@dataclass
class ServerInt8Check:
    """One runtime's INT8 server graph: agreement scores with FP32 (the first is budgeted), of the server alone
    (FP32 streams) and of the whole INT8 path."""

    backend: str
    server: dict[str, float]
    end_to_end: dict[str, float]
    budget: Int8Budget

    @property
    def drop(self) -> float:
        return 1.0 - next(iter(self.server.values()), 0.0)

    def __bool__(self) -> bool:
        return self.drop <= self.budget.max_drop + 1e-9

    def __str__(self) -> str:
        def scores(named: dict[str, float]) -> str:
            return ", ".join(f"{name} {100 * value:.2f} %" for name, value in named.items())

        return (f"{'PASS' if self else 'FAIL'} {self.backend}/int8 server: agreement with the FP32 server "
                f"{scores(self.server)} (drop {100 * self.drop:.2f} points, max {100 * self.budget.max_drop:.2f}); "
                f"INT8 encoder + INT8 server vs FP32: {scores(self.end_to_end)} (not budgeted)")

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "metric": "agreement", "server": self.server, "end_to_end": self.end_to_end,
                "drop": self.drop, "passed": bool(self)}


@dataclass
class ServerInt8Validation:
    """Every runtime's ``ServerInt8Check`` on the same held-out images. Truthy when all are within budget."""

    budget: Int8Budget
    source: str
    images: int
    calibration_images_excluded: int
    checks: list[ServerInt8Check]

    def __bool__(self) -> bool:
        return all(self.checks)

    def __str__(self) -> str:
        return "; ".join(map(str, self.checks))

    def summary(self) -> str:
        failed = [c for c in self.checks if not c]
        parts = [f"{c.backend} agreement -{100 * c.drop:.2f} points" for c in failed or self.checks]
        return (f"INT8 server {'over' if failed else 'within'} budget (max drop {100 * self.budget.max_drop:.2f} "
                f"points) on {self.images} held-out images: " + "; ".join(parts))

    def to_json(self) -> dict[str, Any]:
        return {"budget": {"max_drop": self.budget.max_drop},
                "budgeted_on": "the task's agreement with the FP32 server", "source": self.source,
                "images": self.images,
                "calibration_images_excluded": self.calibration_images_excluded, "cpu": this_cpu().to_json(),
                "results": [c.to_json() for c in self.checks], "passed": bool(self)}


def validate_server_int8(bundle: Bundle | str | Path, data: str | Path, *, backends: Sequence[str] = ("onnxruntime",),
                         budget: Int8Budget | None = None, images: int = 100, seed: int = 0,
                         progress: bool = True) -> ServerInt8Validation:
    """Check each runtime's INT8 server graph of ``bundle`` against its FP32 one on ``images`` held-out images of
    ``data`` (see the module's docstring)."""
    budget = (budget or Int8Budget()).validate()
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    held, _ = held_out(bundle, data, None, images, seed, progress)
    task = bundle_task(bundle)
    checks = []
    for backend in backends:
        reference, server, end_to_end = [], [], []
        with Encoder(bundle, backend) as fp32_encoder, Encoder(bundle, backend, "int8") as int8_encoder, \
                Decoder(bundle, backend) as fp32_decoder, Decoder(bundle, backend, "int8") as int8_decoder:
            for path in held.paths:
                stream = fp32_encoder.encode([path])[0]
                reference.append(fp32_decoder.decode(stream))
                server.append(int8_decoder.decode(stream))
                end_to_end.append(int8_decoder.decode(int8_encoder.encode([path])[0]))
        checks.append(ServerInt8Check(backend, task.agreement_scores(reference, server),
                                      task.agreement_scores(reference, end_to_end), budget))
    return ServerInt8Validation(budget, str(data), len(held.paths), held.excluded, checks)
