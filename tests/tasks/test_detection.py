"""The detection task and models without an export: GeneralizedRCNNTransform's sizes in the torch-free
preprocessing, the image section with a padded input, IoU-matched validation, COCO results and pycocotools' mAP on
labelme-examples' annotations (also as check-quant's labels), calibration inputs at the export's size, and checkpoints
in the paper's detection key layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sc2edge.calibrate.data import at_export_size
from sc2edge.errors import BundleError, Sc2edgeError, StreamError
from sc2edge.runtime.entropy import IMAGE_SECTION_TAG, image_section
from sc2edge.runtime.manifest import PreprocessSpec
from sc2edge.runtime.preprocess import float_input, preprocess_image, resized_size
from sc2edge.tasks import ImageSizes, create_task
from sc2edge.tasks.detection import DetectionTask, box_iou, coco_evaluate, coco_ground_truth, coco_images
from tests.tasks._detection import (
    FASTER_RCNN,
    PERSON,
    RETINANET,
    VOC_DETECTION,
    biased_detector,
    paper_layout_state,
    save_paper_checkpoint,
)

RCNN_PREPROCESS = PreprocessSpec(800, None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), max_size=1333,
                                 pad_multiple=32)


def labelme_truth(task: DetectionTask) -> dict[str, list[dict]]:
    if not (VOC_DETECTION / "annotations.json").is_file():
        pytest.fail("labelme-examples' COCO annotations are missing: run scripts/setup-env.sh")
    return coco_ground_truth(VOC_DETECTION / "annotations.json", task.labels)


@pytest.fixture(scope="module")
def task() -> DetectionTask:
    from sc2edge.zoo import class_names, get_spec

    spec = get_spec(RETINANET)
    return create_task({"kind": "detection", "num_classes": spec.num_classes}, class_names(spec))


@pytest.mark.parametrize("height,width", [(375, 500), (338, 500), (1000, 200), (97, 1500), (800, 1333)])
def test_resized_and_padded_sizes_are_generalized_rcnn_transforms(height, width):
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    transform = GeneralizedRCNNTransform(800, 1333, [0.0] * 3, [1.0] * 3).eval()
    with torch.no_grad():
        images, _ = transform([torch.zeros(3, height, width)])
    assert resized_size((width, height), RCNN_PREPROCESS)[::-1] == images.image_sizes[0]
    from PIL import Image

    x = float_input(Image.new("RGB", (width, height)), RCNN_PREPROCESS)
    assert x.shape[1:] == images.tensors.shape[-2:]  # padded to a multiple of 32, as the transform batches


def test_padded_image_section_carries_the_resized_size_and_others_stay_4_bytes():
    name, tag, shape, payload = image_section(ImageSizes((375, 500), (800, 1088), (800, 1066)))
    assert (name, tag, shape, len(payload)) == ("image", IMAGE_SECTION_TAG, (1, 800, 1088), 8)
    assert len(image_section(ImageSizes((375, 500), (513, 684)))[3]) == 4  # segmentation's streams unchanged
    assert len(image_section(ImageSizes((375, 500), (513, 684), (513, 684)))[3]) == 4
    assert ImageSizes((1, 1), (64, 64)).resized == (64, 64)


def test_a_preprocess_record_pads_only_a_dynamic_input():
    record = RCNN_PREPROCESS.to_json()
    assert PreprocessSpec.from_json(record) == RCNN_PREPROCESS
    with pytest.raises(BundleError, match="dynamic input"):
        PreprocessSpec.from_json({**record, "crop": 224, "resize": 256, "max_size": 400})
    with pytest.raises(BundleError):
        PreprocessSpec.from_json({**record, "max_size": 100})  # shorter than the shorter side


def _outputs(boxes, scores, labels) -> dict[str, np.ndarray]:
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "scores": np.asarray(scores, np.float32),
            "labels": np.asarray(labels, np.int64)}


def test_compare_matches_boxes_by_iou_and_label_not_by_order(task):
    reference = _outputs([[10, 10, 110, 210], [200, 50, 300, 90], [0, 0, 5, 5]], [0.9, 0.6, 0.051], [1, 3, 1])
    shuffled = _outputs([[200.4, 50, 300, 90], [10, 10, 110.3, 210]], [0.601, 0.899], [3, 1])
    errors = task.compare(reference, shuffled)  # the 0.051 box sits at the 0.05 cut: it may go either way
    assert all(e.passed for e in errors.values()), errors
    assert errors["boxes"].max_abs_err < 0.01 and errors["scores"].max_abs_err <= 0.0011
    moved = _outputs([[200, 50, 300, 90], [60, 10, 160, 210]], [0.6, 0.9], [3, 1])
    assert not task.compare(reference, moved)["unmatched"].passed  # IoU 1/3: the confident box has no partner
    relabelled = _outputs([[200, 50, 300, 90], [10, 10, 110, 210]], [0.6, 0.9], [3, 2])
    assert not task.compare(reference, relabelled)["unmatched"].passed
    rescored = _outputs([[200, 50, 300, 90], [10, 10, 110, 210]], [0.6, 0.8], [3, 1])
    assert not task.compare(reference, rescored)["scores"].passed
    assert task.agree(task.predict(reference), task.predict(shuffled))
    assert not task.agree(task.predict(reference), task.predict(moved))


def test_compare_refuses_a_detection_under_the_score_cut(task):
    """Post-processing drops boxes under the threshold: one that comes out (OpenVINO's garbage box for an empty
    NMS scored -2e-29) fails validation, matched or not, while a box at the cut may still fall either way."""
    nothing = _outputs([], [], [])
    garbage = _outputs([[0, 0, 0, 0]], [-2e-29], [0])
    assert task.compare(nothing, _outputs([[0, 0, 5, 5]], [0.051], [1]))["unmatched"].passed
    assert task.compare(nothing, garbage)["unmatched"].max_abs_err == 1
    assert not task.compare(garbage, garbage)["unmatched"].passed
    assert not task.compare(nothing, _outputs([[0, 0, 5, 5]], [0.049], [1]))["unmatched"].passed


def test_prediction_prints_boxes_round_trips_json_and_writes_coco_results(task):
    prediction = task.predict(_outputs([[10, 20, 110, 220]], [0.75], [PERSON]))
    assert "person 0.750 [10, 20, 110, 220]" in str(prediction)
    assert task.parse(json.loads(json.dumps(prediction.to_json()))).to_json() == prediction.to_json()
    assert prediction.coco_results(7) == [{"image_id": 7, "category_id": PERSON, "bbox": [10.0, 20.0, 100.0, 200.0],
                                           "score": 0.75}]
    assert str(task.predict(_outputs([], [], []))) == "0 detections"


def test_map_on_labelme_annotations_is_one_for_the_truth_and_falls_for_shifted_boxes(task):
    truth = labelme_truth(task)
    assert len(truth) == 3 and sum(map(len, truth.values())) >= 3
    names = {task.labels[a["category_id"]] for objects in truth.values() for a in objects}
    assert "person" in names  # VOC names mapped onto COCO's ids

    def predictions(shift: float):
        out = []
        for objects in truth.values():
            boxes = [[x + shift, y, x + w + shift, y + h] for x, y, w, h in (a["bbox"] for a in objects)]
            out.append(task.predict(_outputs(boxes, [0.9] * len(boxes), [a["category_id"] for a in objects])))
        return out

    labels = list(truth.values())
    images = coco_images(VOC_DETECTION / "annotations.json", task.labels)
    assert [path.name for path, _ in images] == list(truth) and all(path.is_file() for path, _ in images)
    assert task.metric(predictions(0.0), labels) == pytest.approx(1.0)
    shifted = coco_evaluate(predictions(25.0), labels)
    assert 0.0 < shifted["mAP"] < 1.0 and shifted["AP50"] >= shifted["AP75"]
    assert task.metric([task.predict(_outputs([], [], []))] * 3, labels) == 0.0


def test_box_iou():
    assert box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30]]).tolist() == [[pytest.approx(1 / 3), 0.0]]


def test_detection_task_section_round_trips_and_refuses_nonsense(task):
    section = task.to_json("labels.json")
    assert section["inputs"] == ["image_size", "resized_size", "original_size"]
    assert create_task(section, task.labels).outputs == task.outputs
    with pytest.raises(BundleError, match="score_threshold"):
        create_task({**section, "score_threshold": 2.0}, task.labels)
    with pytest.raises(BundleError, match="labels name"):
        create_task(section, ["person"])
    with pytest.raises(StreamError, match="carries no image size"):
        task.server_inputs(None)
    sizes = task.server_inputs(ImageSizes((375, 500), (256, 352), (240, 320)))
    assert [v.tolist() for v in sizes.values()] == [[256, 352], [240, 320], [375, 500]]


@pytest.mark.parametrize("name", [RETINANET, pytest.param(FASTER_RCNN, marks=pytest.mark.slow)])
def test_a_checkpoint_in_the_papers_detection_key_layout_loads(tmp_path, name):
    from sc2edge.zoo import get_model

    model = biased_detector(name)
    state = paper_layout_state(model)
    assert any(k.startswith("backbone.body.bottleneck_layer.encoder.") for k in state)
    assert any(k.startswith("backbone.body.layer4.") for k in state)
    assert any(k.startswith("backbone.fpn.") for k in state)
    loaded = get_model(name, checkpoint=save_paper_checkpoint(model, tmp_path / "paper.pt"))
    assert loaded.trained
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    x = torch.from_numpy(float_input(VOC_DETECTION / "JPEGImages" / "2011_000003.jpg",
                                     PreprocessSpec(160, None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                                                    max_size=267, pad_multiple=32)))[None]
    with torch.no_grad():
        boxes, scores, labels = loaded.model(x)
    assert len(boxes) > 0 and set(labels.tolist()) == {PERSON}  # the raised bias came through the checkpoint


def test_calibration_at_the_exports_size_gives_whole_multiples_without_max_size_or_padding():
    record = RCNN_PREPROCESS.to_json()
    for resize, square in ((800, 800), (160, 160), (150, 128)):
        calibration = at_export_size({**record, "resize": resize})
        spec = PreprocessSpec.from_json(calibration)  # a valid fixed-size record: crop, no max_size or pad_multiple
        assert spec.crop == square and spec.max_size is None and spec.pad_multiple is None
    wide = Image.new("RGB", (640, 160), (200, 30, 30))  # max_size would leave its shorter side under the square
    x = preprocess_image(wide, at_export_size({**record, "resize": 160, "max_size": 267}))
    assert x.shape == (3, 160, 160) and np.allclose(x, x[:, :1, :1])  # all photo, no black fill, no padding
    with pytest.raises(Sc2edgeError, match="at least the padding multiple 32, got 16"):
        at_export_size({**record, "resize": 16})


def test_labels_are_a_coco_annotation_file_matched_by_image_name(task, tmp_path):
    images = sorted((VOC_DETECTION / "JPEGImages").glob("*.jpg"))
    labels = task.load_labels(VOC_DETECTION / "annotations.json", images, VOC_DETECTION / "JPEGImages")
    truth = labelme_truth(task)
    assert labels == [truth[image.name] for image in images] and any(labels)
    assert {task.labels[a["category_id"]] for objects in labels for a in objects} >= {"person"}
    with pytest.raises(Sc2edgeError, match="has no entry for photo.jpg"):
        task.load_labels(VOC_DETECTION / "annotations.json", [tmp_path / "photo.jpg"], tmp_path)
    with pytest.raises(Sc2edgeError, match="a COCO-format annotation file"):
        task.load_labels(tmp_path, images, VOC_DETECTION)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(Sc2edgeError, match="is not a COCO-format annotation file"):
        task.load_labels(tmp_path / "bad.json", images, VOC_DETECTION)
    with pytest.raises(Sc2edgeError, match="no class names"):
        DetectionTask(91).load_labels(VOC_DETECTION / "annotations.json", images, VOC_DETECTION)


def test_an_empty_constant_branch_becomes_a_sliced_empty_tensor_on_both_runtimes(tmp_path):
    """torchvision's NMS returns a constant empty tensor when no box passed the cut; rewritten (OpenVINO read the
    constant as one element of garbage), the branch still gives zero elements, and the other branch is untouched."""
    import onnx
    import onnxruntime as ort
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper

    from sc2edge.export.onnx import dynamic_empty_branches

    def branch(name: str, node: onnx.NodeProto) -> onnx.GraphProto:
        return helper.make_graph([node], name, [], [helper.make_tensor_value_info(f"{name}_out", TensorProto.INT64,
                                                                                  [None])])

    empty = helper.make_node("Constant", [], ["then_out"], value=numpy_helper.from_array(np.zeros(0, np.int64)))
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=branch("then", empty),
                          else_branch=branch("else", helper.make_node("Identity", ["x"], ["else_out"])))],
        "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
              helper.make_tensor_value_info("x", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [None])])
    path = tmp_path / "if.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert dynamic_empty_branches(path) == 1 and dynamic_empty_branches(path) == 0
    session = ort.InferenceSession(str(path))
    compiled = ov.Core().compile_model(str(path), "CPU")
    for cond, expected in ((True, []), (False, [3, 1])):
        feed = {"cond": np.array(cond), "x": np.array([3, 1], np.int64)}
        assert session.run(None, feed)[0].tolist() == expected
        assert compiled.create_infer_request().infer(feed)[compiled.outputs[0]].tolist() == expected


def test_replace_scalar_sets_only_the_traced_value(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from sc2edge.export.onnx import replace_scalar

    cut = helper.make_node("Constant", [], ["cut"], value=numpy_helper.from_array(np.array(2.0 ** -17, np.float32)))
    other = helper.make_node("Constant", [], ["other"], value=numpy_helper.from_array(np.array(0.5, np.float32)))
    graph = helper.make_graph([cut, other, helper.make_node("Greater", ["x", "cut"], ["a"]),
                               helper.make_node("Greater", ["x", "other"], ["b"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                              [helper.make_tensor_value_info(n, TensorProto.BOOL, [None]) for n in "ab"])
    path = tmp_path / "cut.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert replace_scalar(path, 2.0 ** -17, 0.05) == 1 and replace_scalar(path, 2.0 ** -17, 0.05) == 0
    values = {n.output[0]: numpy_helper.to_array(n.attribute[0].t).item() for n in onnx.load(str(path)).graph.node
              if n.op_type == "Constant"}
    assert values == {"cut": pytest.approx(0.05), "other": 0.5}
