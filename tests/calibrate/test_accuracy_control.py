"""Accuracy control finds the layer whose quantization hurts and keeps it in float."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest

from sc2edge.calibrate import CalibConfig, check_quant, control_accuracy
from sc2edge.calibrate.onnxrt import quantize_onnx
from sc2edge.errors import Sc2edgeError
from sc2edge.export.tensorrt import check_trt_qdq, record_artifact
from sc2edge.runtime import Bundle
from tests.conftest import run_cli


@pytest.fixture()
def damaged(int8_bundle_dir, tmp_path):
    """A copy of the INT8 bundle whose second encoder conv gets a far too narrow input range (saturation)."""
    work = tmp_path / "bundle"
    shutil.copytree(int8_bundle_dir, work)
    artifact = Bundle.open(work).artifact("device", "onnx", "int8")
    fp32 = onnx.load(str(work / "device.fp32.onnx"))
    target = [n for n in fp32.graph.node if n.op_type == "Conv"][2]  # the 5x5 conv after the first GDN
    ranges = json.loads((work / artifact.meta["ranges"]).read_text())
    for key, value in (("lowest", -1e-3), ("highest", 1e-3)):
        ranges["data"][target.input[0]][key] = {"data": value, "dtype": "float32", "CLS": "numpy.array"}
    (work / artifact.meta["ranges"]).write_text(json.dumps(ranges))
    quantize_onnx(work / "device.fp32.onnx", work / artifact.path, work / artifact.meta["ranges"], CalibConfig())
    record_artifact(work, "device", "onnx", "int8", artifact.path, artifact.meta)
    return work, target.name


def test_harmful_conv_is_kept_in_float(damaged, photos):
    work, harmful = damaged
    data = photos[0].parent
    before = check_quant(work, data, images=6, max_drop=0.0, progress=False, worst_layers=0)
    assert not before and before.latent_sqnr_db < 3.0  # saturation wipes the latent out
    report, kept = control_accuracy(work, data, 0.0, images=6, progress=False)
    assert report and kept[0] == harmful
    bundle = Bundle.open(work)  # hashes were updated
    assert bundle.artifact("device", "onnx", "int8").meta["excluded"] == kept
    trt = check_trt_qdq(bundle.path / bundle.artifact("device", "onnx-trt", "int8").path)
    assert trt and harmful in trt.float_convs
    assert check_quant(work, data, images=6, max_drop=0.0, progress=False, worst_layers=0)


def test_cli_apply_needs_max_drop(int8_bundle_dir, photos):
    result = run_cli("check-quant", int8_bundle_dir, "--data", photos[0].parent, "--apply")
    assert result.returncode == 1 and "--apply needs --max-drop" in result.stderr


@pytest.mark.parametrize(("backend", "max_drop", "calib", "message"), [
    ("trt", 0.01, None, 'not "tensorrt"'),
    ("ov", 0.01, None, "pass the calibration images"),
    ("onnxruntime", 1.5, None, "fraction in"),
])
def test_control_rejects_bad_options_before_any_work(tmp_path, backend, max_drop, calib, message):
    with pytest.raises(Sc2edgeError, match=message):  # the bundle does not even exist: nothing ran
        control_accuracy(tmp_path / "no-bundle", tmp_path, max_drop, backend=backend, calib=calib, progress=False)
