"""The task seam: what a server graph outputs, how raw outputs become a prediction, and how predictions are judged.

A ``Task`` is built from the bundle manifest's ``task`` section. It names the server graph's outputs (export
uses them as ONNX output names and dynamic axes), turns one item's raw named outputs into a small typed
``Prediction``, decides when two predictions agree (FP32 vs INT8, one backend vs another), scores predictions
against labels, and says how far each raw output may stray from PyTorch before a bundle fails validation.
Torch-free: the runtime uses it on devices and servers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

Outputs = Mapping[str, np.ndarray]
BATCH_AXIS = "N"


@dataclass(frozen=True)
class OutputSpec:
    """One named output of the server graph. ``shape`` holds ints for fixed sizes and names for dynamic axes;
    a leading ``"N"`` is the batch axis."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    @property
    def batched(self) -> bool:
        return bool(self.shape) and self.shape[0] == BATCH_AXIS

    def dynamic_axes(self) -> dict[int, str]:
        """Axis index -> name for every dynamic axis (``torch.onnx.export``'s ``dynamic_axes`` entry)."""
        return {i: ("batch" if d == BATCH_AXIS else d) for i, d in enumerate(self.shape) if isinstance(d, str)}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutputSpec:
        return cls(str(data["name"]), str(data["dtype"]), tuple(data["shape"]))


@dataclass(frozen=True)
class Tolerance:
    """How far a raw output may be from the reference: ``max|ours - ref| <= atol + rtol * max|ref|``."""

    atol: float
    rtol: float

    def bound(self, reference: np.ndarray) -> float:
        return self.atol + self.rtol * (float(np.abs(reference).max()) if reference.size else 0.0)


@dataclass(frozen=True)
class OutputError:
    """One output of one comparison: the largest absolute error and the bound it had to stay within."""

    name: str
    max_abs_err: float
    bound: float

    @property
    def passed(self) -> bool:
        return self.max_abs_err <= self.bound

    def worse(self, other: OutputError) -> OutputError:
        """The comparison closer to (or further past) its bound: what a multi-image report keeps."""
        return max(self, other, key=lambda e: e.max_abs_err - e.bound)

    def to_json(self) -> dict[str, Any]:
        return {"max_abs_err": self.max_abs_err, "bound": self.bound, "passed": self.passed}

    def __str__(self) -> str:
        return f"{self.name} max |err| {self.max_abs_err:.3g} (bound {self.bound:.3g})"


@dataclass(frozen=True)
class ImageSizes:
    """An image's size as taken (``original``) and as the model saw it after its resize (``input``), each
    (height, width): what a server graph needs to map its output back onto the image (streams of bundles with a
    dynamic input carry both, and the resized image's own size where the input is padded)."""

    original: tuple[int, int]
    input: tuple[int, int]
    content: tuple[int, int] | None = None  # the resized image at the input's top left when the input is padded

    @property
    def resized(self) -> tuple[int, int]:
        """The image's size after the resize, before any padding (detection pads to a multiple of 32)."""
        return self.content or self.input


class Prediction(Protocol):
    """A task's answer for one item: printable for the CLI, JSON for ``--json`` and reports."""

    def to_json(self) -> dict[str, Any]: ...

    def __str__(self) -> str: ...


class Task(ABC):
    """One kind of server task. Subclasses set ``kind`` and ``metric_name`` and are listed in ``tasks/registry.py``.

    Args:
        outputs (Sequence[OutputSpec]): the server graph's outputs, in graph order.
        labels (Sequence[str] | None): names of the task's classes, when the bundle carries them.
    """

    kind: ClassVar[str]
    metric_name: ClassVar[str]
    extra_inputs: ClassVar[tuple[str, ...]] = ()  # server graph inputs beside the latent, from ``server_inputs``

    def __init__(self, outputs: Sequence[OutputSpec], labels: Sequence[str] | None = None):
        self.outputs = tuple(outputs)
        self.labels = list(labels) if labels else None

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    @classmethod
    @abstractmethod
    def from_json(cls, section: Mapping[str, Any], labels: Sequence[str] | None = None) -> Task:
        """The task of a manifest ``task`` section (``labels``: the class names its labels file holds)."""

    @abstractmethod
    def to_json(self, labels_file: str | None) -> dict[str, Any]:
        """The manifest ``task`` section; ``labels_file`` is the bundle's labels file name, if any."""

    @abstractmethod
    def tolerances(self) -> dict[str, Tolerance]:
        """Per output name: how far it may be from PyTorch in a validated bundle."""

    @abstractmethod
    def predict(self, outputs: Outputs) -> Prediction:
        """One item's raw named outputs (batch axis removed) -> its prediction."""

    @abstractmethod
    def parse(self, data: Mapping[str, Any]) -> Prediction:
        """A prediction back from its ``to_json()`` (bench workers send predictions as JSON)."""

    @abstractmethod
    def agreement_checks(self, reference: Prediction, test: Prediction) -> dict[str, bool]:
        """Named agreement criteria between two predictions of one item; the first is the task's agreement."""

    @abstractmethod
    def metric(self, predictions: Sequence[Prediction], labels: Sequence[Any]) -> float:
        """The task's score (``metric_name``) of ``predictions`` against ground-truth ``labels``."""

    def load_labels(self, source: str | Path, images: Sequence[Path], root: str | Path) -> list[Any]:
        """Ground truth for ``images`` (found under ``root``) from ``source``, one item each, as ``metric`` takes it.
        Default: integer class labels ("path label" lines or a JSON object, ``sc2edge.photos.load_labels``)."""
        from sc2edge.photos import load_labels

        found = load_labels(source, images, root)
        return [found[image] for image in images]

    def agreement_scores(self, reference: Sequence[Prediction], test: Sequence[Prediction]) -> dict[str, float]:
        """How close ``test`` predictions are to ``reference`` ones of the same items (INT8 vs FP32, a runtime vs
        PyTorch), as named fractions (1: identical); the first is the task's agreement (``agreement``), which an
        INT8 budget without labels holds. Default: the share of items passing each of ``agreement_checks``."""
        if len(reference) != len(test):
            raise ValueError(f"{len(reference)} reference predictions vs {len(test)} to compare")
        checks = [self.agreement_checks(r, t) for r, t in zip(reference, test, strict=True)]
        return {name: float(np.mean([c[name] for c in checks])) for name in (checks[0] if checks else {})}

    def server_inputs(self, sizes: ImageSizes | None) -> dict[str, np.ndarray]:
        """The server graph's inputs beside the latent (``extra_inputs``), from the image sizes a stream carries."""
        return {}

    def agree(self, reference: Prediction, test: Prediction) -> bool:
        return next(iter(self.agreement_checks(reference, test).values()))

    def agreement(self, reference: Sequence[Prediction], test: Sequence[Prediction]) -> float:
        """The task's agreement of ``test`` with ``reference`` (the first of ``agreement_scores``; 0 for none)."""
        return next(iter(self.agreement_scores(reference, test).values()), 0.0)

    def items(self, outputs: Outputs) -> list[dict[str, np.ndarray]]:
        """A batch's raw outputs -> one dict per item (batched outputs indexed, the others shared)."""
        batched = [o.name for o in self.outputs if o.batched]
        size = len(outputs[batched[0]]) if batched else 1
        return [{o.name: outputs[o.name][i] if o.batched else outputs[o.name] for o in self.outputs}
                for i in range(size)]

    def predictions(self, outputs: Outputs) -> list[Prediction]:
        """A batch's raw outputs -> one prediction per item."""
        return [self.predict(item) for item in self.items(outputs)]

    def compare(self, reference: Outputs, test: Outputs) -> dict[str, OutputError]:
        """Each output of ``test`` against ``reference`` under ``tolerances()`` (elementwise; a task whose outputs
        are sets, such as detected boxes, overrides this to match them first)."""
        errors = {}
        for name, tolerance in self.tolerances().items():
            ref, ours = np.asarray(reference[name], np.float64), np.asarray(test[name], np.float64)
            if ref.shape != ours.shape:
                errors[name] = OutputError(name, float("inf"), tolerance.bound(ref))
                continue
            err = float(np.abs(ours - ref).max()) if ref.size else 0.0
            errors[name] = OutputError(name, err, tolerance.bound(ref))
        return errors
