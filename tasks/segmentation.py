"""Semantic segmentation: the server graph outputs a class map at the model's input size (the image after its
resize); agreement and validation are pixel agreement, the metric mean IoU (classes absent from both the
labels and the predictions are left out of the mean; label 255, or any negative label, is ignored, as in VOC).
Labels are VOC-style masks, one per image, found by the image's name: index PNGs (``SegmentationClass``, or
labelme's ``SegmentationClassPNG``) or ``.npy`` arrays; the metric resizes them (nearest) to the class map's size,
like the VOC evaluation's resize of image and target."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sc2edge.errors import BundleError, Sc2edgeError, StreamError
from sc2edge.tasks.base import BATCH_AXIS, ImageSizes, OutputError, Outputs, OutputSpec, Task, Tolerance

CLASSES = "classes"
IMAGE_SIZE = "image_size"
IGNORE_LABEL = 255
MASK_SUFFIXES = (".png", ".npy")
MAX_PIXEL_DISAGREEMENT = 1e-3  # validation: share of pixels whose class may differ from PyTorch's (float ties)
AGREEMENT = 0.99  # two class maps agree when at least this share of their pixels has the same class


@dataclass(frozen=True)
class SegmentationPrediction:
    """A class map (uint8, height x width, at the model's input size) and the class names, if known."""

    mask: np.ndarray
    labels: tuple[str, ...] | None = None

    def shares(self) -> dict[int, float]:
        """Class -> share of the pixels, for the classes present, largest first."""
        classes, counts = np.unique(self.mask, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return {int(classes[i]): float(counts[i]) / self.mask.size for i in order}

    def png(self) -> bytes:
        """The class map as an 8-bit greyscale PNG (pixel value = class index)."""
        buffer = io.BytesIO()
        Image.fromarray(self.mask, mode="L").save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()

    def save_png(self, path: str | Path) -> Path:
        Path(path).write_bytes(self.png())
        return Path(path)

    def _name(self, cls: int) -> str:
        return self.labels[cls] if self.labels and cls < len(self.labels) else str(cls)

    def to_json(self) -> dict[str, Any]:
        return {"height": int(self.mask.shape[0]), "width": int(self.mask.shape[1]),
                "classes": {self._name(c): round(s, 6) for c, s in self.shares().items()},
                "mask_png": base64.b64encode(self.png()).decode("ascii")}

    def __str__(self) -> str:
        top = ", ".join(f"{self._name(c)} {100 * s:.1f} %" for c, s in list(self.shares().items())[:5])
        return f"{self.mask.shape[1]}x{self.mask.shape[0]} class map: {top}"


def pixel_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels with the same class (0 when the maps differ in size)."""
    return float(np.mean(a == b)) if a.shape == b.shape and a.size else 0.0


def confusion(predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """num_classes x num_classes counts (row: label, column: prediction) over every non-ignored pixel."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for prediction, label in zip(predictions, labels, strict=True):
        label = np.asarray(label).astype(np.int64)
        if label.shape != prediction.shape:
            raise ValueError(f"label of {label.shape} for a class map of {prediction.shape}: resize the labels to "
                             "the model's input size (nearest) first")
        keep = (label >= 0) & (label < num_classes)
        matrix += np.bincount(num_classes * label[keep] + prediction[keep].astype(np.int64),
                              minlength=num_classes ** 2).reshape(num_classes, num_classes)
    return matrix


def load_mask(path: Path) -> np.ndarray:
    """A label mask: an index (palette or greyscale) PNG, or a 2-D integer ``.npy`` (never unpickled)."""
    try:
        if path.suffix.lower() == ".npy":
            mask = np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as image:
                if image.mode not in ("P", "L", "I", "I;16"):
                    raise Sc2edgeError(f"{path}: a label mask is an index PNG (palette or greyscale), not {image.mode}")
                mask = np.asarray(image)
    except (OSError, ValueError) as exc:
        raise Sc2edgeError(f"{path}: not a readable label mask ({exc})") from exc
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise Sc2edgeError(f"{path}: a label mask is a 2-D integer array, got {mask.dtype} {mask.shape}")
    return mask.astype(np.int64)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A label mask resized (nearest, so classes stay classes) to ``shape`` (height, width)."""
    if mask.shape == shape:
        return mask
    resized = Image.fromarray(mask.astype(np.int32)).resize((shape[1], shape[0]), Image.NEAREST)
    return np.asarray(resized).astype(np.int64)


def mean_iou(matrix: np.ndarray) -> float:
    """Mean over classes of TP / (TP + FP + FN), over the classes seen in labels or predictions."""
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - tp
    seen = union > 0
    return float(np.mean(tp[seen] / union[seen])) if seen.any() else 0.0


class SegmentationTask(Task):
    """One ``classes`` output [N, height, width] (int64 class indexes at the model's input size); the server graph
    also takes ``image_size`` (int64 [2]: the input's height and width, which the latent alone does not fix)."""

    kind = "segmentation"
    metric_name = "mean IoU"
    extra_inputs = (IMAGE_SIZE,)

    def __init__(self, num_classes: int, labels: Sequence[str] | None = None):
        if not isinstance(num_classes, int) or not 1 <= num_classes <= 256:
            raise BundleError(f"a segmentation task needs 1 to 256 classes (a PNG mask), got {num_classes!r}")
        if labels is not None and len(labels) != num_classes:
            raise BundleError(f"the task's labels name {len(labels)} classes, its model has {num_classes}")
        super().__init__([OutputSpec(CLASSES, "int64", (BATCH_AXIS, "height", "width"))], labels)
        self.num_classes = num_classes

    @classmethod
    def from_json(cls, section: Mapping[str, Any], labels: Sequence[str] | None = None) -> SegmentationTask:
        task = cls(section.get("num_classes"), labels)
        declared = [OutputSpec.from_json(o) for o in section.get("outputs", [o.to_json() for o in task.outputs])]
        if declared != list(task.outputs):
            raise BundleError(f"a segmentation task has one output {task.outputs[0].to_json()}, "
                              f"the manifest declares {[o.to_json() for o in declared]}")
        return task

    def to_json(self, labels_file: str | None) -> dict[str, Any]:
        return {"kind": self.kind, "num_classes": self.num_classes, "labels": labels_file,
                "outputs": [o.to_json() for o in self.outputs], "inputs": list(self.extra_inputs)}

    def server_inputs(self, sizes: ImageSizes | None) -> dict[str, np.ndarray]:
        if sizes is None:
            raise StreamError("the stream carries no image size, which the segmentation server graph needs: "
                              "encode it with a bundle whose input is dynamic (a segmentation or detection bundle)")
        return {IMAGE_SIZE: np.asarray(sizes.input, dtype=np.int64)}

    def tolerances(self) -> dict[str, Tolerance]:
        return {CLASSES: Tolerance(atol=0.0, rtol=0.0)}  # compared by pixel agreement (``compare``)

    def compare(self, reference: Outputs, test: Outputs) -> dict[str, OutputError]:
        """The share of pixels whose class differs from the reference (bound ``MAX_PIXEL_DISAGREEMENT``)."""
        ref, ours = np.asarray(reference[CLASSES]), np.asarray(test[CLASSES])
        differing = 1.0 - pixel_agreement(ref, ours) if ref.shape == ours.shape else float("inf")
        return {CLASSES: OutputError(f"{CLASSES} (share of pixels differing)", differing, MAX_PIXEL_DISAGREEMENT)}

    def predict(self, outputs: Outputs) -> SegmentationPrediction:
        classes = np.asarray(outputs[CLASSES])
        if classes.ndim != 2:
            raise ValueError(f"expected a height x width class map, got shape {classes.shape}")
        return SegmentationPrediction(classes.astype(np.uint8), tuple(self.labels) if self.labels else None)

    def parse(self, data: Mapping[str, Any]) -> SegmentationPrediction:
        with Image.open(io.BytesIO(base64.b64decode(data["mask_png"]))) as image:
            mask = np.asarray(image.convert("L"), dtype=np.uint8)
        return SegmentationPrediction(mask, tuple(self.labels) if self.labels else None)

    def agreement_checks(self, reference: SegmentationPrediction, test: SegmentationPrediction) -> dict[str, bool]:
        share = pixel_agreement(reference.mask, test.mask)
        return {"pixels99": share >= AGREEMENT, "pixels90": share >= 0.9}

    def agreement_scores(self, reference: Sequence[SegmentationPrediction],
                         test: Sequence[SegmentationPrediction]) -> dict[str, float]:
        """"pixels": the share of all pixels whose class is the reference's (a map of another size counts as
        all different); "mean IoU": the test maps' mean IoU with the reference maps as labels."""
        if len(reference) != len(test):
            raise ValueError(f"{len(reference)} reference predictions vs {len(test)} to compare")
        same = sum(int(np.count_nonzero(r.mask == t.mask)) if r.mask.shape == t.mask.shape else 0
                   for r, t in zip(reference, test, strict=True))
        total = sum(r.mask.size for r in reference)
        sized = [(r.mask, t.mask) for r, t in zip(reference, test, strict=True) if r.mask.shape == t.mask.shape]
        matrix = confusion([t for _, t in sized], [r for r, _ in sized], self.num_classes)
        return {"pixels": same / total if total else 0.0, "mean IoU": mean_iou(matrix)}

    def load_labels(self, source: str | Path, images: Sequence[Path], root: str | Path) -> list[np.ndarray]:
        """Each image's mask in the folder ``source``: the file of the image's name with a ``MASK_SUFFIXES``
        suffix (PNG first)."""
        folder = Path(source)
        if not folder.is_dir():
            raise Sc2edgeError(f"segmentation labels are a folder of masks named like the images, got {folder}")
        masks = []
        for image in images:
            found = next((folder / f"{image.stem}{suffix}" for suffix in MASK_SUFFIXES
                          if (folder / f"{image.stem}{suffix}").is_file()), None)
            if found is None:
                raise Sc2edgeError(f"no mask for {image.name} in {folder} (expected {image.stem}.png or .npy)")
            masks.append(load_mask(found))
        return masks

    def metric(self, predictions: Sequence[SegmentationPrediction], labels: Sequence[Any]) -> float:
        """Mean IoU over all pixels of all items, each label resized (nearest) to its class map's size."""
        if len(predictions) != len(labels):
            raise ValueError(f"{len(predictions)} predictions vs {len(labels)} labels")
        masks = [p.mask for p in predictions]
        resized = [resize_mask(np.asarray(t), m.shape) for t, m in zip(labels, masks, strict=True)]
        return mean_iou(confusion(masks, resized, self.num_classes))
