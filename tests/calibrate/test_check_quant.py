"""check-quant on a real INT8 bundle and real photos: the figures, the held-out rule, labels, JSON and CLI."""

from __future__ import annotations

import json
import math

import pytest

from sc2edge.calibrate import QuantReport, check_quant
from sc2edge.errors import Sc2edgeError
from sc2edge.photos import system_photos
from sc2edge.runtime.cpu import this_cpu
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def data(tmp_path_factory, calib_dir):
    """Calibration images mixed with others: check-quant must skip the calibration ones."""
    folder = tmp_path_factory.mktemp("data")
    for p in system_photos()[:14]:
        (folder / p.name).symlink_to(p)
    overlap = {p.name for p in calib_dir.iterdir()} & {p.name for p in folder.iterdir()}
    assert overlap
    return folder, overlap


@pytest.fixture(scope="module")
def report(int8_bundle_dir, data) -> QuantReport:
    return check_quant(int8_bundle_dir, data[0], images=6, progress=False, worst_layers=3)


def test_report_figures(report, data):
    folder, overlap = data
    assert report.images == 6 and report.calibration_images_excluded == len(overlap)
    assert list(report.agreements) == ["top1", "top5"] and report.task == "classification"
    assert 0.0 <= report.agreement == report.agreements["top1"] <= report.agreements["top5"] <= 1.0
    assert 0.0 < report.symbols_changed_pct < 5.0  # INT8 changes some symbols, not most
    assert 0.0 < report.latent_sqnr_db < math.inf
    assert report.bytes_fp32 > 0 and report.bytes_int8 > 0
    assert len(report.worst_layers) == 3
    assert report.worst_layers[0].sqnr_db <= report.worst_layers[-1].sqnr_db
    assert report and report.max_drop is None
    assert report.kernel_saturation_pct == 0.0 and report.recipe == "portable"  # exact sums on this CPU too
    assert report.cpu["kernel_path"] == this_cpu().kernel_path
    assert all(layer.kernel_mismatch_pct == 0.0 for layer in report.worst_layers)
    text = str(report)
    assert "symbols changed" in text and "worst layers" in text and "UNTRAINED" in text
    assert "\nkernel saturation on this CPU: 0.000 % of symbols\n" in text and this_cpu().kernel_path in text


def test_labels_give_accuracy(int8_bundle_dir, data, tmp_path):
    folder, _ = data
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"{p.name} 3" for p in folder.iterdir()))
    labelled = check_quant(int8_bundle_dir, folder, labels, images=4, progress=False, worst_layers=0,
                           backend="openvino", max_drop=1.0)
    assert labelled.labelled and labelled.backend == "openvino"
    assert 0.0 <= labelled.accuracy_fp32 <= 1.0 and 0.0 <= labelled.accuracy_int8 <= 1.0
    assert labelled.drop == pytest.approx(labelled.accuracy_fp32 - labelled.accuracy_int8)
    assert labelled and "top-1 accuracy INT8" in str(labelled)


def test_max_drop_decides_truth(report):
    agreements = {"top1": 0.9, "top5": 1.0}
    strict = QuantReport(**{**report.__dict__, "max_drop": 0.0, "agreements": agreements})
    assert not strict and "FAIL" in str(strict) and "agreement with FP32 (top1)" in str(strict)
    assert QuantReport(**{**report.__dict__, "max_drop": 0.2, "agreements": agreements})


def test_bundle_without_int8_is_a_clear_error(fp32_bundle_dir, data):
    with pytest.raises(Sc2edgeError, match='no device graph in format "onnx" at precision "int8"'):
        check_quant(fp32_bundle_dir, data[0], progress=False)


def test_cli_prints_table_or_json(int8_bundle_dir, data, tmp_path):
    args = ["check-quant", int8_bundle_dir, "--data", data[0], "--max-images", "3", "--worst-layers", "2",
            "--max-drop", "1.0"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "symbols changed" in result.stdout
    as_json = run_cli(*args, "--json")
    assert as_json.returncode == 0, as_json.stderr
    saved = json.loads(as_json.stdout)
    assert saved["images"] == 3 and saved["passed"] is True and len(saved["worst_layers"]) == 2
    missing = run_cli("check-quant", int8_bundle_dir, "--data", tmp_path / "nowhere")
    assert missing.returncode == 1 and "image source not found" in missing.stderr
