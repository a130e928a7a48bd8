"""INT8 validation at export: each runtime's INT8 encoder against FP32 on held-out images, within a budget.

Like FP32's validation against PyTorch, this decides whether the INT8 artifacts are fit to ship: the drop in
accuracy (with labels; without them, against the reference model's pseudo-labels when the bundle carries it) or
in top-1 agreement with FP32, the change in rANS bytes per image, the symbols changed, and how many symbols this
CPU's real kernels get wrong against the exact emulation (``check.kernel_saturation_pct``). Agreement with FP32
is recorded beside a budgeted accuracy. One mechanism for every task: a dynamic-input bundle (segmentation,
detection) runs each held-out image at its own size (``check.evaluate``), its rows budgeted on the task's agreement
(pixels, confident boxes matched) with its other agreement scores beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sc2edge.calibrate.check import (
    DEFAULT_IMAGES,
    TRUTH_TEACHER,
    TRUTH_TEXT,
    evaluate,
    held_out,
    kernel_saturation_pct,
    truth_source,
)
from sc2edge.calibrate.data import ImageSet
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle
from sc2edge.runtime.backends import backend_info, create_runner
from sc2edge.runtime.cpu import this_cpu
from sc2edge.runtime.preprocess import float_item
from sc2edge.runtime.reference import REFERENCE_INPUT, REFERENCE_OUTPUT, REFERENCE_ROLE, has_reference


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
# What each budgeted row runs in INT8 (the rest in FP32): INT8 as deployed is every combination the bundle ships.
DEVICE_ROW, SERVER_ROW, BOTH_ROW, REFERENCE_ROW = "device", "server", "both", "reference"
ROW_TEXT = {DEVICE_ROW: "INT8 device + FP32 server", SERVER_ROW: "FP32 device + INT8 server",
            BOTH_ROW: "INT8 device + INT8 server", REFERENCE_ROW: "INT8 reference (teacher)"}


@dataclass
class Int8Check:
    """One runtime's INT8 graphs (``graph``: which of them, ``ROW_TEXT``) against its FP32 graphs."""

    backend: str
    # "accuracy" (labels given), "teacher agreement" (accuracy against the teacher's FP32 top-1, pseudo-labels),
    # or "agreement" (top-1 agreement with FP32)
    metric: str
    fp32: float
    int8: float
    symbols_changed_pct: float
    bytes_fp32: float
    bytes_int8: float
    kernel_saturation_pct: float | None  # the device graph's (None: a row without the INT8 device graph)
    budget: Int8Budget = field(default_factory=Int8Budget)
    agreement_fp32: float | None = None  # the task's agreement of INT8 with FP32 (the first of ``agreements``)
    graph: str = DEVICE_ROW
    # every agreement score of the task (``Task.agreement_scores``: top1/top5, pixels/mean IoU, confident_matched/
    # same_count), the first budgeted when there are no labels; the others reported beside it, not budgeted
    agreements: dict[str, float] = field(default_factory=dict)

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

    @property
    def label(self) -> str:
        return f"{self.backend}/int8 {self.graph}"

    @property
    def metric_text(self) -> str:
        """The budgeted metric, an agreement named by its task's score ("agreement (pixels)")."""
        if self.metric == "agreement" and self.agreements:
            return f"agreement ({next(iter(self.agreements))})"
        return self.metric

    def __str__(self) -> str:
        text = (f"{'PASS' if self else 'FAIL'} {self.label} ({ROW_TEXT[self.graph]}): {self.metric_text} "
                f"{100 * self.fp32:.2f} -> {100 * self.int8:.2f} % (drop {100 * self.drop:.2f} points, max "
                f"{100 * self.budget.max_drop:.2f})")
        if self.graph != REFERENCE_ROW:  # the reference sends the image, not symbols
            text += (f", bytes {self.bytes_fp32:.1f} -> {self.bytes_int8:.1f} ({self.rate_change_pct:+.2f} %, max "
                     f"{self.budget.max_bytes_pct:.2f} %), symbols changed {self.symbols_changed_pct:.3f} %")
        if self.kernel_saturation_pct is not None:
            text += f", kernel saturation on this CPU {self.kernel_saturation_pct:.3f} %"
        return text + self._beside()

    def _beside(self) -> str:
        truth = f" ({TRUTH_TEXT[TRUTH_TEACHER]})" if self.metric == TEACHER_METRIC else ""
        beside = {name: value for i, (name, value) in enumerate(self.agreements.items())
                  if i or self.metric != "agreement"}
        if not beside:
            return truth
        scores = ", ".join(f"{name} {100 * value:.2f} %" for name, value in beside.items())
        return f"{truth}; agreement with FP32: {scores} (not budgeted)"

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
    control_skipped: str | None = None  # why accuracy control, asked for over budget, did not run

    def __bool__(self) -> bool:
        return all(self.checks)

    def __str__(self) -> str:
        return "; ".join(map(str, self.checks))

    def summary(self) -> str:
        """One line naming what is over budget."""
        failed = [c for c in self.checks if not c]
        parts = [f"{c.label} ({ROW_TEXT[c.graph]}) {c.metric_text} {-100 * c.drop:+.2f} points, bytes "
                 f"{c.rate_change_pct:+.2f} %" for c in failed or self.checks]
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
                "results": [c.to_json() for c in self.checks], "passed": bool(self),
                **({"accuracy_control_skipped": self.control_skipped} if self.control_skipped else {})}


def validate_int8(bundle: Bundle | str | Path, data: str | Path, labels: str | Path | None = None, *,
                  backends: Sequence[str] = ("onnxruntime",), budget: Int8Budget = Int8Budget(),
                  images: int = DEFAULT_IMAGES, seed: int = 0, threads: int | None = None,
                  progress: bool = True, crops: int = 1) -> Int8Validation:
    """Check the bundle's INT8 graphs of each of ``backends`` as deployed against FP32 on held-out images of
    ``data`` (never its calibration images; ``crops`` inputs each, see ``check_quant``): the INT8 device graph
    with the FP32 server, and where the bundle has an INT8 server graph, that behind the FP32 device graph and
    both halves INT8; an INT8 reference graph against its FP32 graph. Accuracy when ``labels`` are given, else
    accuracy against the reference model's pseudo-labels (its FP32 top-1) when the bundle carries one, else top-1
    agreement with FP32."""
    budget = budget.validate()
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    held, truth = held_out(bundle, data, labels, images, seed, progress, crops)
    source = truth_source(bundle, labels)
    checks = []
    for backend in backends:
        fmt = backend_info(backend).artifact_format
        device = bundle.path / bundle.artifact("device", fmt, "int8").path
        saturation = kernel_saturation_pct(backend, device, held, threads)
        rows = [(DEVICE_ROW, device, None, saturation)]
        if any(a.role == "server" and a.format == fmt and a.precision == "int8" for a in bundle.artifacts):
            server = bundle.path / bundle.artifact("server", fmt, "int8").path
            rows += [(SERVER_ROW, bundle.path / bundle.artifact("device", fmt, "fp32").path, server, None),
                     (BOTH_ROW, device, server, saturation)]
        for graph, device_graph, server_graph, kernels in rows:
            report = evaluate(bundle, held, truth, backend, device_graph, threads=threads, progress=progress,
                              truth_source=source, server_graph=server_graph)
            labelled = report.accuracy_fp32 is not None and report.accuracy_int8 is not None
            metric = ("accuracy" if source != TRUTH_TEACHER else TEACHER_METRIC) if labelled else "agreement"
            checks.append(Int8Check(
                backend, metric,
                report.accuracy_fp32 if labelled else 1.0, report.accuracy_int8 if labelled else report.agreement,
                report.symbols_changed_pct, report.bytes_fp32, report.bytes_int8, kernels, budget, report.agreement,
                graph, report.agreements))
        if has_reference(bundle, backend, "int8"):
            metric = TEACHER_METRIC if source == TRUTH_TEACHER else "accuracy"
            checks.append(reference_check(bundle, held, truth, metric, backend, budget, threads))
    return Int8Validation(budget, str(data), len(held), held.excluded, checks, held.crops)


def reference_check(bundle: Bundle, held: ImageSet, truth: Sequence[int] | np.ndarray | None, metric: str,
                    backend: str, budget: Int8Budget, threads: int | None = None) -> Int8Check:
    """The INT8 reference graph (the teacher the input-codec baselines run) against its FP32 graph on ``held``:
    accuracy against ``truth`` (labels, or the teacher's pseudo-labels: then FP32 scores 100 %), else top-1
    agreement with FP32."""
    predictions = {}
    for precision in ("fp32", "int8"):
        with create_runner(backend, bundle, REFERENCE_ROLE, precision, threads=threads) as runner:
            predictions[precision] = np.array([int(np.argmax(runner.infer({REFERENCE_INPUT: float_item(
                x[None], bundle.preprocess)})[REFERENCE_OUTPUT][0])) for x in held.arrays()])
    agreement = float(np.mean(predictions["fp32"] == predictions["int8"]))
    if truth is None:
        metric, fp32, int8 = "agreement", 1.0, agreement
    else:
        fp32, int8 = (float(np.mean(predictions[p] == np.asarray(truth))) for p in ("fp32", "int8"))
    return Int8Check(backend, metric, fp32, int8, 0.0, 0.0, 0.0, None, budget, agreement, REFERENCE_ROW,
                     {"top1": agreement})
