"""The task metric seam on segmentation: mean IoU and pixel agreement by hand, VOC masks as labels, the INT8
export of the DeepLabv3 student on both runtimes (both graphs, calibrated at the export's size, validated by pixel
agreement in the one INT8 validation: the INT8 device graph, the INT8 server graph and both, each against FP32),
INT8 end to end, accuracy control refused for its dynamic input, and check-quant's task figures on held-out VOC
photos with their masks."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from sc2edge.calibrate import check_quant, control_accuracy
from sc2edge.calibrate.accuracy import control_unsupported
from sc2edge.calibrate.budget import Int8Budget
from sc2edge.calibrate.data import at_export_size
from sc2edge.commands.export import int8_validation_lines
from sc2edge.errors import Sc2edgeError
from sc2edge.export import ExportConfig
from sc2edge.export.pipeline import _validate_int8
from sc2edge.runtime import Bundle, Decoder, Encoder
from sc2edge.runtime.bundle_writer import BundleBuilder
from sc2edge.tasks import create_task
from sc2edge.tasks.segmentation import SegmentationPrediction, load_mask
from tests.conftest import VOC_MASKS, run_cli
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
    assert calibration["count"] == 2 and "server_int8_validation" not in calibration  # one validation, every task
    validation = calibration["int8_validation"]
    assert validation["budgeted_on"] == "the task's agreement with FP32" and validation["images"] == 2
    assert validation["calibration_images_excluded"] == 0
    # a row per INT8 graph as deployed: the device graph, the server graph, both halves; per runtime
    assert sorted((r["backend"], r["graph"]) for r in validation["results"]) == sorted(
        (b, g) for b in ("onnxruntime", "openvino") for g in ("device", "server", "both"))
    for result in validation["results"]:
        assert result["metric"] == "agreement" and 0.0 < result["int8"] <= 1.0
        assert list(result["agreements"]) == ["pixels", "mean IoU"]  # the task's, the first budgeted
        assert result["int8"] == result["agreements"]["pixels"] == result["agreement_fp32"]
        assert result["drop"] == pytest.approx(1.0 - result["int8"])
        assert result["passed"] == (abs(result["drop"]) <= 0.01 + 1e-9 and abs(result["rate_change_pct"]) <= 2.0)
    assert validation["passed"] == all(r["passed"] for r in validation["results"])


def test_int8_server_quantizes_convolutions_only_and_is_validated_against_the_fp32_server(seg_bundle):
    """Convolutions run INT8 (ONNX Runtime quantizes their outputs, OpenVINO their inputs); the resize to the
    input and the argmax stay float; the export's INT8 validation compared the INT8 server's class maps with the
    FP32 server's on the held-out VOC photos, behind the FP32 device graph (its server row) and the INT8 one (its
    both row), budgeted on pixel agreement, mean IoU beside it."""
    server = seg_bundle.path / seg_bundle.artifact("server", "onnx", "int8").path
    quantized = quantized_op_types(server)
    assert "Conv" in quantized and not quantized & {"Resize", "ArgMax"}
    readers = fake_quantize_readers(seg_bundle.path / seg_bundle.artifact("server", "openvino", "int8").path)
    assert readers and readers <= {"Convolution", "GroupConvolution"}
    validation = seg_bundle.manifest["calibration"]["int8_validation"]
    rows = {(r["backend"], r["graph"]): r for r in validation["results"]}
    for backend in ("onnxruntime", "openvino"):
        server, both = rows[backend, "server"], rows[backend, "both"]
        # the server row sends the FP32 device graph's symbols: nothing of the encoder changed
        assert server["symbols_changed_pct"] == 0.0 and server["bytes_int8"] == server["bytes_fp32"]
        assert server["kernel_saturation_pct"] is None and both["kernel_saturation_pct"] is not None
        assert both["symbols_changed_pct"] == rows[backend, "device"]["symbols_changed_pct"]
        assert 0.0 < server["agreements"]["mean IoU"] <= 1.0 and 0.0 < both["agreements"]["mean IoU"] <= 1.0
    lines = int8_validation_lines(validation)  # what ``sc2edge export`` prints: one line per row
    assert len(lines) == 6 and sum("kernel saturation" in line for line in lines) == 4
    assert any(line.startswith("INT8 validation openvino/int8 server: ") for line in lines)


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
    recorded = next(r for r in seg_bundle.manifest["calibration"]["int8_validation"]["results"]
                    if r["backend"] == backend and r["graph"] == "both")
    assert task.agreement_scores(fp32, int8) == pytest.approx(recorded["agreements"])


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


@pytest.mark.parametrize(("backend", "role"), [("onnxruntime", "server"), ("openvino", "device")])
def test_accuracy_control_refuses_a_dynamic_input_in_one_line(seg_bundle, seg_voc_dir, calib_dir, backend, role):
    """Control tunes on random crops of one size and feeds a server graph symbols only: a dynamic input (its size
    follows the image, its server reads the image sizes) is refused before any work, not a traceback."""
    with pytest.raises(Sc2edgeError, match="accuracy control supports fixed-size inputs only") as refused:
        control_accuracy(seg_bundle.path, seg_voc_dir, 0.0, backend=backend, images=2, calib=calib_dir,
                         progress=False, role=role)
    assert "\n" not in str(refused.value)


def test_export_skips_accuracy_control_over_a_dynamic_inputs_rows(seg_bundle, seg_voc_dir, calib_dir, tmp_path):
    """Over budget with accuracy control asked for (--max-drop), a dynamic-input bundle's rows are checked as they
    are: refused in one line saying why control did not run, or (allowed) written as failed, the reason recorded,
    its graphs untouched."""
    config = ExportConfig(backends=("onnxruntime",), int8=True, calib=calib_dir, validation_images=seg_voc_dir,
                          int8_check_count=2, int8_budget=Int8Budget(max_drop=0.0), int8_accuracy_control=True)
    with BundleBuilder(tmp_path / "bundle") as builder:
        shutil.copytree(seg_bundle.path, builder.staging, dirs_exist_ok=True)
        with pytest.raises(Sc2edgeError, match="INT8 over budget .* no bundle written") as refused:
            _validate_int8(builder, config)
        message = str(refused.value)
        assert "\n" not in message and f"(accuracy control skipped: {control_unsupported(seg_bundle)};" in message
        verdict = _validate_int8(builder, replace(config, allow_int8_over_budget=True)).to_json()
        assert not verdict["passed"] and verdict["accuracy_control_skipped"] == control_unsupported(seg_bundle)
        assert "accuracy control skipped" in int8_validation_lines(verdict)[-1]
        staged = Bundle.open(builder.staging)  # every graph still the exported one
        assert staged.spec.files == seg_bundle.spec.files


def test_a_bundle_recorded_with_the_old_server_int8_validation_opens_verifies_and_decodes(seg_bundle, seg_voc_dir,
                                                                                          tmp_path):
    """Bundles written before the one INT8 validation carry ``calibration.server_int8_validation``: an extra key
    that nothing reads any more, so they still open (every file's hash verified), inspect and decode in INT8."""
    work = tmp_path / "old"
    shutil.copytree(seg_bundle.path, work)
    manifest = json.loads((work / "manifest.json").read_text())
    manifest["calibration"]["server_int8_validation"] = {
        "budget": {"max_drop": 0.01}, "budgeted_on": "the task's agreement with the FP32 server", "images": 2,
        "results": [{"backend": "onnxruntime", "metric": "agreement", "server": {"pixels": 0.9, "mean IoU": 0.8},
                     "end_to_end": {"pixels": 0.85, "mean IoU": 0.6}, "drop": 0.1, "passed": False}],
        "passed": False}
    (work / "manifest.json").write_text(json.dumps(manifest))
    bundle = Bundle.open(work)
    assert run_cli("inspect", work).returncode == 0
    path = sorted(seg_voc_dir.iterdir())[0]
    with Encoder(bundle, "onnxruntime", "int8") as encoder, Decoder(bundle, "onnxruntime", "int8") as decoder:
        prediction = decoder.decode(encoder.encode([path])[0])
        assert prediction.mask.shape == encoder.preprocess_sized(path)[1].input
