"""The task metric seam on segmentation: mean IoU and pixel agreement by hand, VOC masks as labels, the INT8
export of the DeepLabv3 student on both runtimes (both graphs, calibrated at the export's size, validated by pixel
agreement: the encoder with the FP32 server, the server against the FP32 server), INT8 end to end, and
check-quant's task figures on held-out VOC photos with their masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sc2edge.calibrate import check_quant
from sc2edge.calibrate.data import at_export_size
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Decoder, Encoder
from sc2edge.tasks import create_task
from sc2edge.tasks.segmentation import SegmentationPrediction, load_mask
from tests.conftest import VOC_MASKS
from tests.tasks._int8 import fake_quantize_readers, quantized_op_types

TASK = create_task({"kind": "segmentation", "num_classes": 3})


def test_agreement_scores_by_hand_pool_pixels_and_score_mean_iou_against_the_reference():
    reference = [SegmentationPrediction(np.array([[0, 0], [1, 2]], np.uint8)),
                 SegmentationPrediction(np.array([[2, 2, 2, 2]], np.uint8))]
    test = [SegmentationPrediction(np.array([[0, 1], [1, 2]], np.uint8)),
            SegmentationPrediction(np.array([[2, 2, 2, 2]], np.uint8))]
    scores = TASK.agreement_scores(reference, test)
    assert list(scores) == ["pixels", "mean IoU"] and scores["pixels"] == pytest.approx(7 / 8)
    # class 0: TP 1, FN 1 -> 1/2; class 1: TP 1, FP 1 -> 1/2; class 2: TP 5 -> 1
    assert scores["mean IoU"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert TASK.agreement(reference, test) == scores["pixels"]
    other_size = [SegmentationPrediction(np.zeros((2, 3), np.uint8)), test[1]]
    assert TASK.agreement_scores(reference, other_size)["pixels"] == pytest.approx(4 / 8)
    with pytest.raises(ValueError, match="1 reference predictions vs 2"):
        TASK.agreement_scores(reference[:1], test)


def test_metric_resizes_each_label_to_its_class_map_nearest_and_ignores_255():
    label = np.array([[0, 1], [2, 255]])  # 2 x 2 label for a 4 x 4 class map: each label pixel covers 2 x 2
    mask = np.kron(np.array([[0, 1], [2, 0]]), np.ones((2, 2), int)).astype(np.uint8)
    assert TASK.metric([SegmentationPrediction(mask)], [label]) == pytest.approx(1.0)
    mask[0, 0] = 1  # one of class 0's four pixels now says 1: class 0 IoU 3/4, class 1 IoU 4/5
    assert TASK.metric([SegmentationPrediction(mask)], [label]) == pytest.approx((3 / 4 + 4 / 5 + 1) / 3)


def test_labels_are_masks_named_like_the_images_png_or_npy(tmp_path):
    Image.fromarray(np.array([[0, 1], [2, 255]], np.uint8), mode="L").save(tmp_path / "a.png")
    np.save(tmp_path / "b.npy", np.array([[2, -1]]))
    images = [tmp_path / "photos" / "a.jpg", tmp_path / "photos" / "b.jpg"]
    masks = TASK.load_labels(tmp_path, images, tmp_path / "photos")
    assert masks[0].tolist() == [[0, 1], [2, 255]] and masks[1].tolist() == [[2, -1]]
    with pytest.raises(Sc2edgeError, match="no mask for c.jpg"):
        TASK.load_labels(tmp_path, [tmp_path / "c.jpg"], tmp_path)
    with pytest.raises(Sc2edgeError, match="a folder of masks"):
        TASK.load_labels(tmp_path / "a.png", images, tmp_path)
    Image.new("RGB", (2, 2)).save(tmp_path / "rgb.png")
    with pytest.raises(Sc2edgeError, match="index PNG"):
        load_mask(tmp_path / "rgb.png")
    # labelme's VOC export: palette PNGs whose indexes are the 21 VOC classes (255 on object borders)
    voc = load_mask(next(VOC_MASKS.glob("*.png")))
    assert voc.ndim == 2 and set(np.unique(voc)) <= set(range(21)) | {255}


def test_calibration_of_a_dynamic_input_is_at_the_exports_size():
    dynamic = {"resize": 96, "crop": None, "mean": [0.5] * 3, "std": [0.5] * 3}
    assert at_export_size(dynamic)["crop"] == 96 and dynamic["crop"] is None
    cropped = {**dynamic, "crop": 80}
    assert at_export_size(cropped) is cropped


def test_int8_export_quantizes_both_graphs_for_both_runtimes_and_budgets_pixel_agreement(seg_bundle):
    manifest = seg_bundle.manifest
    int8 = {(a.role, a.format) for a in seg_bundle.artifacts if a.precision == "int8"}
    assert {("device", "onnx"), ("device", "openvino"), ("server", "onnx"), ("server", "openvino")} <= int8
    calibration = manifest["calibration"]
    assert calibration["count"] == 2
    validation = calibration["int8_validation"]
    assert validation["budgeted_on"] == "the task's agreement with FP32" and validation["images"] == 2
    assert {r["backend"] for r in validation["results"]} == {"onnxruntime", "openvino"}
    for result in validation["results"]:
        assert result["metric"] == "agreement" and 0.0 < result["int8"] <= 1.0
        assert result["drop"] == pytest.approx(1.0 - result["int8"])
        assert result["passed"] == (result["drop"] <= 0.01 + 1e-9 and abs(result["rate_change_pct"]) <= 2.0)


def test_int8_server_quantizes_convolutions_only_and_is_validated_against_the_fp32_server(seg_bundle):
    """Convolutions run INT8 (ONNX Runtime quantizes their outputs, OpenVINO their inputs); the resize to the
    input and the argmax stay float; the export compared the INT8 server's class maps with the FP32 server's on
    the held-out VOC photos (pixel agreement, budgeted) and the whole INT8 path (recorded)."""
    server = seg_bundle.path / seg_bundle.artifact("server", "onnx", "int8").path
    quantized = quantized_op_types(server)
    assert "Conv" in quantized and not quantized & {"Resize", "ArgMax"}
    readers = fake_quantize_readers(seg_bundle.path / seg_bundle.artifact("server", "openvino", "int8").path)
    assert readers and readers <= {"Convolution", "GroupConvolution"}
    validation = seg_bundle.manifest["calibration"]["server_int8_validation"]
    assert validation["images"] == 2 and validation["calibration_images_excluded"] == 0
    assert validation["budgeted_on"] == "the task's agreement with the FP32 server"
    assert {r["backend"] for r in validation["results"]} == {"onnxruntime", "openvino"}
    for result in validation["results"]:
        assert list(result["server"]) == list(result["end_to_end"]) == ["pixels", "mean IoU"]
        assert 0.0 < result["server"]["pixels"] <= 1.0 and 0.0 < result["end_to_end"]["pixels"] <= 1.0
        assert result["drop"] == pytest.approx(1.0 - result["server"]["pixels"])
        assert result["passed"] == (result["drop"] <= 0.01 + 1e-9)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_int8_server_decodes_streams_at_the_images_own_sizes(seg_bundle, seg_voc_dir, backend):
    """INT8 end to end (INT8 encoder, INT8 server) at each photo's size: class maps at the input size, agreeing
    with the FP32 path's on most pixels (random weights: the figure is the agreement, not an accuracy)."""
    task = create_task(seg_bundle.manifest["task"], seg_bundle.labels)
    paths = sorted(seg_voc_dir.iterdir())
    with Encoder(seg_bundle, backend) as encoder, Decoder(seg_bundle, backend) as decoder, \
            Encoder(seg_bundle, backend, "int8") as int8_encoder, Decoder(seg_bundle, backend, "int8") as int8_decoder:
        fp32 = [decoder.decode(encoder.encode([p])[0]) for p in paths]
        int8 = [int8_decoder.decode(int8_encoder.encode([p])[0]) for p in paths]
        sizes = [encoder.preprocess_sized(p)[1].input for p in paths]
    assert [p.mask.shape for p in int8] == sizes and len(set(sizes)) == 2
    assert task.agreement(fp32, int8) > 0.5
    recorded = next(r for r in seg_bundle.manifest["calibration"]["server_int8_validation"]["results"]
                    if r["backend"] == backend)
    assert task.agreement_scores(fp32, int8) == pytest.approx(recorded["end_to_end"])


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_check_quant_reports_mean_iou_on_voc_masks_and_pixel_agreement(seg_bundle, seg_voc_dir, backend):
    report = check_quant(seg_bundle, seg_voc_dir, VOC_MASKS, backend=backend, images=2, worst_layers=2,
                         progress=False)
    assert report.task == "segmentation" and report.metric_name == "mean IoU" and report.labelled
    assert list(report.agreements) == ["pixels", "mean IoU"] and report.agreement == report.agreements["pixels"]
    assert 0.0 < report.agreement <= 1.0 and report.bytes_fp32 > 0 and report.images == 2
    # the FP32 figure is the mean IoU of the FP32 encoder's streams through the server, against the masks
    task = create_task(seg_bundle.manifest["task"], seg_bundle.labels)
    paths = sorted(seg_voc_dir.iterdir())
    with Encoder(seg_bundle, backend) as encoder, Decoder(seg_bundle, backend) as decoder:
        predictions = [decoder.decode(stream) for stream in encoder.encode(paths)]
    masks = task.load_labels(VOC_MASKS, paths, seg_voc_dir)
    assert report.accuracy_fp32 == pytest.approx(task.metric(predictions, masks))
    text = str(report)
    assert "mean IoU FP32" in text and "mean IoU INT8" in text and "agreement with FP32 (pixels)" in text
    assert json.loads(json.dumps(report.to_json()))["agreements"]["pixels"] == report.agreement
    if backend == "onnxruntime":
        assert len(report.worst_layers) == 2  # the real kernels' conv outputs, images of different sizes


def test_check_quant_refuses_crops_of_a_dynamic_input(seg_bundle, seg_voc_dir):
    with pytest.raises(Sc2edgeError, match="crops are for a cropped"):
        check_quant(seg_bundle, seg_voc_dir, images=2, crops=2, progress=False)


def test_cli_check_quant_prints_the_task_metric(seg_bundle, seg_voc_dir, capsys):
    from sc2edge.cli import main

    status = main(["check-quant", str(seg_bundle.path), "--data", str(seg_voc_dir), "--labels", str(VOC_MASKS),
                   "--max-images", "2", "--worst-layers", "0", "--max-drop", "1"])
    out = capsys.readouterr().out
    assert status == 0 and "mean IoU FP32" in out and "drop / max drop (mean IoU)" in out and "PASS" in out
