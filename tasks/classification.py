"""Image classification: logits -> top-k classes with softmax probabilities; agreement is top-1 equality,
the metric top-1 accuracy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sc2edge.errors import BundleError
from sc2edge.tasks.base import BATCH_AXIS, Outputs, OutputSpec, Task, Tolerance

LOGITS = "logits"
TOP_K = 5


@dataclass(frozen=True)
class ClassPrediction:
    """The ``k`` most probable classes, best first, with their softmax probabilities (and names, if known)."""

    classes: tuple[int, ...]
    scores: tuple[float, ...]
    labels: tuple[str, ...] | None = None

    @property
    def top1(self) -> int:
        return self.classes[0]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"classes": list(self.classes), "scores": [round(s, 6) for s in self.scores]}
        if self.labels is not None:
            data["labels"] = list(self.labels)
        return data

    def __str__(self) -> str:
        names = self.labels or (None,) * len(self.classes)
        return ", ".join(f"{c}{f' ({n})' if n else ''}: {s:.3f}" for c, s, n in zip(self.classes, self.scores, names,
                                                                                     strict=True))


class ClassificationTask(Task):
    """One ``logits`` output [N, K]. A prediction keeps the 5 most probable classes (all K if fewer)."""

    kind = "classification"
    metric_name = "top-1 accuracy"

    def __init__(self, num_classes: int, labels: Sequence[str] | None = None):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise BundleError(f"a classification task needs a positive number of classes, got {num_classes!r}")
        if labels is not None and len(labels) != num_classes:
            raise BundleError(f"the task's labels name {len(labels)} classes, its model has {num_classes}")
        super().__init__([OutputSpec(LOGITS, "float32", (BATCH_AXIS, num_classes))], labels)
        self.num_classes = num_classes

    @classmethod
    def from_json(cls, section: Mapping[str, Any], labels: Sequence[str] | None = None) -> ClassificationTask:
        task = cls(section.get("num_classes"), labels)
        declared = [OutputSpec.from_json(o) for o in section.get("outputs", [o.to_json() for o in task.outputs])]
        if declared != list(task.outputs):
            raise BundleError(f"a classification task has one output {task.outputs[0].to_json()}, "
                              f"the manifest declares {[o.to_json() for o in declared]}")
        return task

    def to_json(self, labels_file: str | None) -> dict[str, Any]:
        return {"kind": self.kind, "num_classes": self.num_classes, "labels": labels_file,
                "outputs": [o.to_json() for o in self.outputs]}

    def tolerances(self) -> dict[str, Tolerance]:
        # Float32 graphs reorder sums: 1e-4 absolute plus 0.1 % of the largest logit.
        return {LOGITS: Tolerance(atol=1e-4, rtol=1e-3)}

    def predict(self, outputs: Outputs) -> ClassPrediction:
        logits = np.asarray(outputs[LOGITS], dtype=np.float64).reshape(-1)
        if logits.size != self.num_classes:
            raise ValueError(f"expected {self.num_classes} logits, got shape {np.shape(outputs[LOGITS])}")
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        top = np.argsort(-logits, kind="stable")[:TOP_K]
        return ClassPrediction(tuple(int(i) for i in top), tuple(float(probabilities[i]) for i in top),
                               tuple(self.labels[i] for i in top) if self.labels else None)

    def parse(self, data: Mapping[str, Any]) -> ClassPrediction:
        labels = data.get("labels")
        return ClassPrediction(tuple(int(c) for c in data["classes"]), tuple(float(s) for s in data["scores"]),
                               tuple(labels) if labels is not None else None)

    def agreement_checks(self, reference: ClassPrediction, test: ClassPrediction) -> dict[str, bool]:
        return {"top1": reference.top1 == test.top1, f"top{TOP_K}": reference.top1 in test.classes}

    def metric(self, predictions: Sequence[ClassPrediction], labels: Sequence[Any]) -> float:
        if len(predictions) != len(labels):
            raise ValueError(f"{len(predictions)} predictions vs {len(labels)} labels")
        hits = [p.top1 == int(t) for p, t in zip(predictions, labels, strict=True)]
        return float(np.mean(hits)) if hits else 0.0
