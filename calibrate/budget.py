"""INT8 validation at export: each runtime's INT8 encoder against FP32 on held-out images, within a budget.

Like FP32's validation against PyTorch, this decides whether the INT8 artifacts are fit to ship: the drop in
accuracy (with labels; without them, against the reference model's pseudo-labels when the bundle carries it) or
in top-1 agreement with FP32, the change in rANS bytes per image, the symbols changed, and how many symbols this
CPU's real kernels get wrong against the exact emulation (``check.kernel_saturation_pct``). Agreement with FP32
is recorded beside a budgeted accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sc2edge.calibrate.check import (
    DEFAULT_IMAGES,
    TRUTH_TEACHER,
    TRUTH_TEXT,
    evaluate,
    held_out,
    kernel_saturation_pct,
    truth_source,
)
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle
from sc2edge.runtime.backends import backend_info
from sc2edge.runtime.cpu import this_cpu


@dataclass(frozen=True)
class Int8Budget:
    """How far INT8 may move from FP32: ``max_drop`` of accuracy (or top-1 agreement), as a fraction, and
    ``max_bytes_pct`` percent of rANS bytes per image, either way."""

    max_drop: float = 0.01
    max_bytes_pct: float = 2.0

    def validate(self) -> Int8Budget:
        if not 0.0 <= self.max_drop <= 1.0:
            raise Sc2edgeError(f"the INT8 drop budget is a fraction in [0, 1], got {self.max_drop}")
        if self.max_bytes_pct < 0.0:
            raise Sc2edgeError(f"the INT8 bytes budget is a percentage >= 0, got {self.max_bytes_pct}")
        return self


TEACHER_METRIC = "teacher agreement"


@dataclass
class Int8Check:
    """One runtime's INT8 encoder against its FP32 encoder (both with the FP32 server)."""

    backend: str
    # "accuracy" (labels given), "teacher agreement" (accuracy against the teacher's FP32 top-1, pseudo-labels),
    # or "agreement" (top-1 agreement with FP32)
    metric: str
    fp32: float
    int8: float
    symbols_changed_pct: float
    bytes_fp32: float
    bytes_int8: float
    kernel_saturation_pct: float
    budget: Int8Budget = field(default_factory=Int8Budget)
    agreement_fp32: float | None = None  # top-1 agreement of INT8 with FP32, reported beside an accuracy

    @property
    def drop(self) -> float:
        return self.fp32 - self.int8

    @property
    def rate_change_pct(self) -> float:
        return 100.0 * (self.bytes_int8 / self.bytes_fp32 - 1.0) if self.bytes_fp32 else 0.0

    def __bool__(self) -> bool:
        # a small tolerance: the drop is a difference of two means, the bound a user's decimal
        # either way, like bytes: INT8 far "better" than FP32 on a few hundred inputs is a deviation too
        return abs(self.drop) <= self.budget.max_drop + 1e-9 and abs(self.rate_change_pct) <= self.budget.max_bytes_pct

    def __str__(self) -> str:
        return (f"{'PASS' if self else 'FAIL'} {self.backend}/int8: {self.metric} {100 * self.fp32:.2f} -> "
                f"{100 * self.int8:.2f} % (drop {100 * self.drop:.2f} points, max {100 * self.budget.max_drop:.2f}), "
                f"bytes {self.bytes_fp32:.1f} -> {self.bytes_int8:.1f} ({self.rate_change_pct:+.2f} %, max "
                f"{self.budget.max_bytes_pct:.2f} %), symbols changed {self.symbols_changed_pct:.3f} %, kernel "
                f"saturation on this CPU {self.kernel_saturation_pct:.3f} %" + self._beside())

    def _beside(self) -> str:
        if self.metric == "agreement" or self.agreement_fp32 is None:
            return ""
        truth = f" ({TRUTH_TEXT[TRUTH_TEACHER]})" if self.metric == TEACHER_METRIC else ""
        return f"{truth}; top-1 agreement with FP32 {100 * self.agreement_fp32:.2f} % (not budgeted)"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["budget"]
        return {**data, "drop": self.drop, "rate_change_pct": self.rate_change_pct, "passed": bool(self)}


@dataclass
class Int8Validation:
    """Every runtime's ``Int8Check`` on the same held-out images. Truthy when all are within budget."""

    budget: Int8Budget
    source: str
    images: int
    calibration_images_excluded: int
    checks: list[Int8Check]
    crops: int = 1  # inputs per held-out image (``images`` counts inputs)

    def __bool__(self) -> bool:
        return all(self.checks)

    def __str__(self) -> str:
        return "; ".join(map(str, self.checks))

    def summary(self) -> str:
        """One line naming what is over budget."""
        failed = [c for c in self.checks if not c]
        parts = [f"{c.backend} {c.metric} -{100 * c.drop:.2f} points, bytes {c.rate_change_pct:+.2f} %"
                 for c in failed or self.checks]
        return (f"INT8 {'over' if failed else 'within'} budget (max drop {100 * self.budget.max_drop:.2f} points, "
                f"bytes +-{self.budget.max_bytes_pct:.2f} %) on {self.describe_inputs()}: " + "; ".join(parts))

    def describe_inputs(self) -> str:
        if self.crops == 1:
            return f"{self.images} held-out images"
        return f"{self.images} held-out inputs ({self.images // self.crops} images x {self.crops} crops)"

    def to_json(self) -> dict[str, Any]:
        metrics = {c.metric for c in self.checks}
        truth = TRUTH_TEXT[TRUTH_TEACHER] if TEACHER_METRIC in metrics else ("labels" if "accuracy" in metrics else
                                                                           "the task's agreement with FP32")
        return {"budget": asdict(self.budget), "budgeted_on": truth, "source": self.source, "images": self.images,
                "crops": self.crops,
                "calibration_images_excluded": self.calibration_images_excluded, "cpu": this_cpu().to_json(),
                "results": [c.to_json() for c in self.checks], "passed": bool(self)}


def validate_int8(bundle: Bundle | str | Path, data: str | Path, labels: str | Path | None = None, *,
                  backends: Sequence[str] = ("onnxruntime",), budget: Int8Budget = Int8Budget(),
                  images: int = DEFAULT_IMAGES, seed: int = 0, threads: int | None = None,
                  progress: bool = True, crops: int = 1) -> Int8Validation:
    """Check the bundle's INT8 device graph of each of ``backends`` against FP32 on held-out images of ``data``
    (never its calibration images; ``crops`` inputs each, see ``check_quant``), with accuracy when ``labels``
    are given, else accuracy against the reference model's pseudo-labels (its FP32 top-1) when the bundle carries
    one, else top-1 agreement with FP32."""
    budget = budget.validate()
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    held, truth = held_out(bundle, data, labels, images, seed, progress, crops)
    source = truth_source(bundle, labels)
    checks = []
    for backend in backends:
        graph = bundle.path / bundle.artifact("device", backend_info(backend).artifact_format, "int8").path
        report = evaluate(bundle, held, truth, backend, graph, threads=threads, progress=progress,
                          truth_source=source)
        labelled = report.accuracy_fp32 is not None and report.accuracy_int8 is not None
        metric = ("accuracy" if source != TRUTH_TEACHER else TEACHER_METRIC) if labelled else "agreement"
        checks.append(Int8Check(
            backend, metric,
            report.accuracy_fp32 if labelled else 1.0, report.accuracy_int8 if labelled else report.agreement,
            report.symbols_changed_pct, report.bytes_fp32, report.bytes_int8,
            kernel_saturation_pct(backend, graph, held, threads), budget, report.agreement))
    return Int8Validation(budget, str(data), len(held), held.excluded, checks, held.crops)
