"""Object detection: the server graph outputs one image's ``boxes`` (x1, y1, x2, y2 in the original image's pixels),
``scores`` and ``labels`` (COCO category ids) after anchor decoding and NMS. Outputs are sets, so validation matches
boxes by IoU and label before comparing them (``compare``); agreement is "every confident detection has a partner";
the metric is COCO mAP@[.5:.95] by pycocotools (the ``bench`` and ``full`` extras), on COCO-format ground truth."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sc2edge._lazy import lazy_import
from sc2edge.errors import BundleError, Sc2edgeError, StreamError
from sc2edge.tasks.base import ImageSizes, OutputError, Outputs, OutputSpec, Task, Tolerance

BOXES, SCORES, LABELS = "boxes", "scores", "labels"
IMAGE_SIZE, RESIZED_SIZE, ORIGINAL_SIZE = "image_size", "resized_size", "original_size"
DETECTIONS = "detections"  # the dynamic axis: how many boxes survived NMS
MIN_IOU = 0.9  # validation: a box matches PyTorch's when their IoU is at least this (same label)
SCORE_ATOL = 0.01  # validation: a matched box's score may differ this much; unmatched boxes this close to the cut pass
AGREEMENT_SCORE = 0.5  # agreement: detections at least this confident must have a partner (same label, IoU >= 0.5)
AGREEMENT_IOU = 0.5
DEFAULT_SCORE_THRESHOLD = 0.05  # torchvision's box_score_thresh / score_thresh
# PASCAL VOC names (labelme-examples' COCO file) -> COCO's, where they differ.
VOC_TO_COCO = {"aeroplane": "airplane", "diningtable": "dining table", "motorbike": "motorcycle",
               "pottedplant": "potted plant", "sofa": "couch", "tvmonitor": "tv"}


@dataclass(frozen=True)
class DetectionPrediction:
    """One image's detections, best first: boxes (K x 4, x1 y1 x2 y2, original pixels), scores, labels (category
    ids) and the category names, if known."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def _name(self, label: int) -> str:
        return self.names[label] if self.names and 0 <= label < len(self.names) else str(label)

    def coco_results(self, image_id: int) -> list[dict[str, Any]]:
        """COCO result format: one record per box, bbox as x, y, width, height."""
        return [{"image_id": int(image_id), "category_id": int(label),
                 "bbox": [round(float(x1), 3), round(float(y1), 3), round(float(x2 - x1), 3), round(float(y2 - y1), 3)],
                 "score": round(float(score), 6)}
                for (x1, y1, x2, y2), score, label in zip(self.boxes, self.scores, self.labels, strict=True)]

    def to_json(self) -> dict[str, Any]:
        return {DETECTIONS: [{"label": int(label), "name": self._name(int(label)), "score": round(float(score), 6),
                              "box": [round(float(v), 3) for v in box]}
                             for box, score, label in zip(self.boxes, self.scores, self.labels, strict=True)]}

    def __str__(self) -> str:
        top = "; ".join(f"{self._name(int(label))} {float(score):.3f} [{', '.join(f'{v:.0f}' for v in box)}]"
                        for box, score, label in list(zip(self.boxes, self.scores, self.labels, strict=True))[:5])
        more = f" (+{len(self) - 5} more)" if len(self) > 5 else ""
        return f"{len(self)} detections" + (f": {top}{more}" if len(self) else "")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N x 4) with every box of ``b`` (M x 4), x1 y1 x2 y2."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_detections(reference: DetectionPrediction, test: DetectionPrediction, min_iou: float
                     ) -> list[tuple[int, int, float]]:
    """Greedy matching, most confident reference box first: (reference index, test index, IoU) per pair of the same
    label whose IoU is at least ``min_iou``."""
    iou = box_iou(reference.boxes, test.boxes)
    taken: set[int] = set()
    pairs = []
    for i in np.argsort(-np.asarray(reference.scores), kind="stable"):
        candidates = [(iou[i, j], j) for j in range(len(test))
                      if j not in taken and test.labels[j] == reference.labels[i] and iou[i, j] >= min_iou]
        if candidates:
            best, j = max(candidates)
            taken.add(j)
            pairs.append((int(i), int(j), float(best)))
    return pairs


class DetectionTask(Task):
    """Outputs ``boxes`` float32 [K, 4], ``scores`` float32 [K], ``labels`` int64 [K] of one image (no batch axis:
    the server graph decodes one stream at a time). Server inputs beside the latent, int64 [2] (height, width): the
    padded input (``image_size``), the resized image inside it (``resized_size``) and the original image
    (``original_size``), from the stream's image section.

    Args:
        num_classes (int): the model's classes (COCO: 91 ids, background and unused ids included).
        labels (Sequence[str] | None): a name per class id. Defaults to None.
        score_threshold (float): the model's score cut, below which it drops boxes. Defaults to 0.05.
    """

    kind = "detection"
    metric_name = "COCO mAP@[.5:.95]"
    extra_inputs = (IMAGE_SIZE, RESIZED_SIZE, ORIGINAL_SIZE)

    def __init__(self, num_classes: int, labels: Sequence[str] | None = None,
                 score_threshold: float = DEFAULT_SCORE_THRESHOLD):
        if not isinstance(num_classes, int) or not 1 <= num_classes <= 100_000:
            raise BundleError(f"a detection task needs 1 to 100,000 classes, got {num_classes!r}")
        if labels is not None and len(labels) != num_classes:
            raise BundleError(f"the task's labels name {len(labels)} classes, its model has {num_classes}")
        if not isinstance(score_threshold, int | float) or not 0.0 <= score_threshold < 1.0:
            raise BundleError(f"a detection task's score_threshold is in [0, 1), got {score_threshold!r}")
        super().__init__([OutputSpec(BOXES, "float32", (DETECTIONS, 4)), OutputSpec(SCORES, "float32", (DETECTIONS,)),
                          OutputSpec(LABELS, "int64", (DETECTIONS,))], labels)
        self.num_classes, self.score_threshold = num_classes, float(score_threshold)

    @classmethod
    def from_json(cls, section: Mapping[str, Any], labels: Sequence[str] | None = None) -> DetectionTask:
        task = cls(section.get("num_classes"), labels, section.get("score_threshold", DEFAULT_SCORE_THRESHOLD))
        declared = [OutputSpec.from_json(o) for o in section.get("outputs", [o.to_json() for o in task.outputs])]
        if declared != list(task.outputs):
            raise BundleError(f"a detection task has outputs {[o.to_json() for o in task.outputs]}, "
                              f"the manifest declares {[o.to_json() for o in declared]}")
        return task

    def to_json(self, labels_file: str | None) -> dict[str, Any]:
        return {"kind": self.kind, "num_classes": self.num_classes, "labels": labels_file,
                "score_threshold": self.score_threshold, "outputs": [o.to_json() for o in self.outputs],
                "inputs": list(self.extra_inputs)}

    def server_inputs(self, sizes: ImageSizes | None) -> dict[str, np.ndarray]:
        if sizes is None:
            raise StreamError("the stream carries no image size, which the detection server graph needs: encode it "
                              "with a bundle whose input is dynamic (a detection or segmentation bundle)")
        return {IMAGE_SIZE: np.asarray(sizes.input, np.int64), RESIZED_SIZE: np.asarray(sizes.resized, np.int64),
                ORIGINAL_SIZE: np.asarray(sizes.original, np.int64)}

    def tolerances(self) -> dict[str, Tolerance]:
        return {BOXES: Tolerance(1.0 - MIN_IOU, 0.0), SCORES: Tolerance(SCORE_ATOL, 0.0)}  # see ``compare``

    def compare(self, reference: Outputs, test: Outputs) -> dict[str, OutputError]:
        """Boxes matched by label and IoU >= ``MIN_IOU``: the worst matched pair's 1 - IoU and score difference, and
        the unmatched detections that are not at the cut (a box scoring within ``SCORE_ATOL`` of the smallest score
        the other side kept, or of the threshold, may fall on either side of it), plus every detection under the
        threshold: post-processing drops those, so one is a broken graph (OpenVINO once returned a garbage box
        for an empty NMS), never rounding."""
        ref, ours = self.predict(reference), self.predict(test)
        pairs = match_detections(ref, ours, MIN_IOU)
        worst_iou = max((1.0 - iou for _, _, iou in pairs), default=0.0)
        worst_score = max((abs(float(ref.scores[i]) - float(ours.scores[j])) for i, j, _ in pairs), default=0.0)
        unmatched = (self._off_cut(ref, ours, {i for i, _, _ in pairs})
                     + self._off_cut(ours, ref, {j for _, j, _ in pairs}))
        return {BOXES: OutputError(f"{BOXES} (1 - IoU of matched pairs)", worst_iou, 1.0 - MIN_IOU),
                SCORES: OutputError(f"{SCORES} (matched pairs)", worst_score, SCORE_ATOL),
                "unmatched": OutputError("unmatched detections off the cut, or under it", float(unmatched), 0.0)}

    def _off_cut(self, side: DetectionPrediction, other: DetectionPrediction, matched: set[int]) -> int:
        cut = max(self.score_threshold, float(np.min(other.scores))) if len(other) else self.score_threshold
        above = sum(1 for k in range(len(side)) if k not in matched and float(side.scores[k]) > cut + SCORE_ATOL)
        return above + int(np.count_nonzero(side.scores < np.float32(self.score_threshold)))

    def predict(self, outputs: Outputs) -> DetectionPrediction:
        boxes = np.asarray(outputs[BOXES], np.float32).reshape(-1, 4)
        scores = np.asarray(outputs[SCORES], np.float32).reshape(-1)
        labels = np.asarray(outputs[LABELS], np.int64).reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(f"{len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels")
        return DetectionPrediction(boxes, scores, labels, tuple(self.labels) if self.labels else None)

    def parse(self, data: Mapping[str, Any]) -> DetectionPrediction:
        items = data[DETECTIONS]
        return self.predict({BOXES: np.asarray([d["box"] for d in items], np.float32),
                             SCORES: np.asarray([d["score"] for d in items], np.float32),
                             LABELS: np.asarray([d["label"] for d in items], np.int64)})

    def agreement_checks(self, reference: DetectionPrediction, test: DetectionPrediction) -> dict[str, bool]:
        pairs = match_detections(reference, test, AGREEMENT_IOU)
        matched_ref, matched_test = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
        confident = all(i in matched_ref for i in np.flatnonzero(reference.scores >= AGREEMENT_SCORE)) and all(
            j in matched_test for j in np.flatnonzero(test.scores >= AGREEMENT_SCORE))
        return {"confident_matched": confident, "same_count": len(reference) == len(test)}

    def load_labels(self, source: str | Path, images: Sequence[Path], root: str | Path) -> list[list[dict[str, Any]]]:
        """Each image's boxes from the COCO-format annotation file ``source`` (by file name, categories translated
        into this task's ids by name: ``coco_ground_truth``), as ``metric`` takes them."""
        if not Path(source).is_file():
            raise Sc2edgeError(f"detection labels are a COCO-format annotation file (JSON), got {source}")
        if not self.labels:
            raise Sc2edgeError("this detection bundle has no class names, so COCO annotations cannot be matched to "
                               "its category ids")
        try:
            truth = coco_ground_truth(source, self.labels)
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
            raise Sc2edgeError(f"{source} is not a COCO-format annotation file ({exc!r})") from exc
        missing = [image.name for image in images if image.name not in truth]
        if missing:
            raise Sc2edgeError(f"{source} has no entry for {missing[0]}" + (f" (and {len(missing) - 1} more images)"
                                                                              if len(missing) > 1 else ""))
        return [truth[image.name] for image in images]

    def metric(self, predictions: Sequence[DetectionPrediction], labels: Sequence[Any]) -> float:
        """COCO mAP@[.5:.95]; ``labels``: per image, a list of COCO annotations (``bbox`` x y w h, ``category_id``,
        optional ``iscrowd``, ``area``) with category ids in the model's label space (``coco_ground_truth``)."""
        return coco_evaluate(predictions, labels)["mAP"]


def coco_evaluate(predictions: Sequence[DetectionPrediction], labels: Sequence[Sequence[Mapping[str, Any]]]
                  ) -> dict[str, float]:
    """pycocotools' bbox evaluation: mAP@[.5:.95], AP50 and AP75 over the images given (image i = index i)."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions vs {len(labels)} labelled images")
    coco_module = lazy_import("pycocotools.coco")
    cocoeval = lazy_import("pycocotools.cocoeval")
    annotations, categories = [], set()
    for image_id, objects in enumerate(labels):
        for obj in objects:
            x, y, w, h = (float(v) for v in obj["bbox"])
            categories.add(int(obj["category_id"]))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(obj["category_id"]), "bbox": [x, y, w, h],
                                "area": float(obj.get("area", w * h)), "iscrowd": int(obj.get("iscrowd", 0))})
    results = [r for i, p in enumerate(predictions) for r in p.coco_results(i)]
    if not annotations:
        raise Sc2edgeError("no ground-truth boxes to evaluate detections against")
    if not results:
        return {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and tables
        truth = coco_module.COCO()
        truth.dataset = {"images": [{"id": i} for i in range(len(labels))], "annotations": annotations,
                         "categories": [{"id": c} for c in sorted(categories | {r["category_id"] for r in results})]}
        truth.createIndex()
        evaluation = cocoeval.COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = [max(float(s), 0.0) for s in evaluation.stats[:3]]  # -1 = no ground truth for a category: 0
    return {"mAP": stats[0], "AP50": stats[1], "AP75": stats[2]}


def coco_images(annotations_file: str | Path, labels: Sequence[str]) -> list[tuple[Path, list[dict[str, Any]]]]:
    """A COCO-format annotation file -> (image path, its annotations in ``labels``' ids) per image, in file order,
    paths relative to the file's folder (e.g. labelme-examples' ``instance_segmentation/data_dataset_coco``): the
    images and labels for ``DetectionTask.metric``."""
    folder = Path(annotations_file).parent
    files = [image["file_name"] for image in json.loads(Path(annotations_file).read_text())["images"]]
    truth = coco_ground_truth(annotations_file, labels)
    return [(folder / name, truth[Path(name).name]) for name in files]


def coco_ground_truth(annotations_file: str | Path, labels: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """A COCO-format annotation file -> per image file name, its annotations with category ids translated by name
    into ``labels``' ids (PASCAL VOC names mapped to COCO's, ``VOC_TO_COCO``); categories the model lacks are
    dropped (and so are the images' boxes of them)."""
    data = json.loads(Path(annotations_file).read_text())
    ids = {name: i for i, name in enumerate(labels)}
    translate = {}
    for category in data.get("categories", []):
        name = VOC_TO_COCO.get(category["name"], category["name"])
        if name in ids:
            translate[category["id"]] = ids[name]
    by_image: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in data["images"]}
    for annotation in data.get("annotations", []):
        if annotation["category_id"] in translate:
            by_image[annotation["image_id"]].append({**annotation, "category_id": translate[annotation["category_id"]]})
    return {Path(image["file_name"]).name: by_image[image["id"]] for image in data["images"]}
