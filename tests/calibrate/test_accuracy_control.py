"""Accuracy control finds the layer whose quantization hurts and keeps it in float."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from sc2edge.calibrate import CalibConfig, check_quant, control_accuracy, control_set, held_out_set
from sc2edge.calibrate.onnxrt import quantize_onnx
from sc2edge.calibrate.trt_onnx import check_trt_qdq
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle
from sc2edge.runtime.bundle_writer import BundleEditor
from tests.conftest import run_cli


def _damage(int8_bundle_dir, tmp_path, *, float_others: bool = False):
    """A copy of the INT8 bundle whose second encoder conv gets a far too narrow input range (saturation);
    with ``float_others``, every other conv is already kept in float."""
    work = tmp_path / "bundle"
    shutil.copytree(int8_bundle_dir, work)
    artifact = Bundle.open(work).artifact("device", "onnx", "int8")
    convs = [n for n in onnx.load(str(work / "device.fp32.onnx")).graph.node if n.op_type == "Conv"]
    target = convs[2]  # the 5x5 conv after the first GDN
    config = CalibConfig(exclude=tuple(n.name for n in convs if n is not target) if float_others else ())
    with BundleEditor(work) as edit:
        ranges = json.loads((edit.staging / artifact.meta["ranges"]).read_text())
        for key, value in (("lowest", -1e-3), ("highest", 1e-3)):
            ranges["data"][target.input[0]][key] = {"data": value, "dtype": "float32", "CLS": "numpy.array"}
        (edit.staging / artifact.meta["ranges"]).write_text(json.dumps(ranges))
        quantize_onnx(edit.staging / "device.fp32.onnx", edit.staging / artifact.path,
                      edit.staging / artifact.meta["ranges"], config)
        edit.add_artifact("device", "onnx", "int8", artifact.path,
                          {**artifact.meta, "config": config.to_json(), "excluded": list(config.exclude)})
        edit.commit()
    return work, target.name


@pytest.fixture()
def damaged(int8_bundle_dir, tmp_path):
    return _damage(int8_bundle_dir, tmp_path)


def test_control_set_shares_no_image_with_the_evaluation_set(int8_bundle_dir, photos):
    """Tuned on the held-out images, the check on them passes by construction. Here the calibration source is the
    evaluation folder itself: control must still drop every evaluation image, and never feed calibration's
    centre crop."""
    from sc2edge.runtime.preprocess import preprocess_image

    preprocess = Bundle.open(int8_bundle_dir).preprocess
    folder = photos[0].parent
    held = held_out_set(folder, preprocess, 3, 0, [], progress=False)
    control = control_set(folder, preprocess, 300, 0, 6, held.sha256(), progress=False)
    assert control.excluded == 3 and len(control) >= 6
    assert not set(control.sha256()) & set(held.sha256())
    first = preprocess_image(control.paths[0], preprocess)
    assert not any(np.array_equal(first, x) for x in control.arrays()[:control.crops])


def test_control_that_floats_every_conv_leaves_the_bundle_valid(int8_bundle_dir, calib_dir, tmp_path, photos):
    """Excluding the last quantized conv leaves a TensorRT graph with no INT8 conv, which its Q/DQ check refuses.
    Before the bundle editor, the ONNX INT8 graph was already rewritten in place and the bundle failed its sha256
    check; now the edit is dropped whole."""
    work, _ = _damage(int8_bundle_dir, tmp_path, float_others=True)
    before = {p.name: p.read_bytes() for p in work.iterdir()}
    with pytest.raises(Sc2edgeError, match="no quantized Conv"):
        control_accuracy(work, photos[0].parent, 0.0, images=6, calib=calib_dir, progress=False)
    Bundle.open(work)
    assert {p.name: p.read_bytes() for p in work.iterdir()} == before


def test_harmful_conv_is_kept_in_float(damaged, calib_dir, photos):
    work, harmful = damaged
    data = photos[0].parent
    before = check_quant(work, data, images=6, max_drop=0.0, progress=False, worst_layers=0)
    assert not before and before.latent_sqnr_db < 3.0  # saturation wipes the latent out
    report, kept = control_accuracy(work, data, 0.0, images=6, calib=calib_dir, progress=False)
    assert report and kept[0] == harmful
    bundle = Bundle.open(work)  # hashes were updated
    meta = bundle.artifact("device", "onnx", "int8").meta
    assert meta["excluded"] == kept
    held = held_out_set(data, bundle.preprocess, 6, 0, bundle.manifest["calibration"]["sha256"], progress=False)
    assert meta["control"]["inputs"] == report.images >= 6
    assert not set(meta["control"]["sha256"]) & set(held.sha256())
    trt = check_trt_qdq(bundle.path / bundle.artifact("device", "onnx-trt", "int8").path)
    assert trt and harmful in trt.float_convs
    assert check_quant(work, data, images=6, max_drop=0.0, progress=False, worst_layers=0)


def test_cli_apply_needs_max_drop(int8_bundle_dir, photos):
    result = run_cli("check-quant", int8_bundle_dir, "--data", photos[0].parent, "--apply")
    assert result.returncode == 1 and "--apply needs --max-drop" in result.stderr


@pytest.mark.parametrize(("backend", "max_drop", "calib", "message"), [
    ("trt", 0.01, None, 'not "tensorrt"'),
    ("ov", 0.01, None, "pass the calibration images"),
    ("onnxruntime", 0.01, None, "never the held-out ones"),
    ("onnxruntime", 1.5, None, "fraction in"),
])
def test_control_rejects_bad_options_before_any_work(tmp_path, backend, max_drop, calib, message):
    with pytest.raises(Sc2edgeError, match=message):  # the bundle does not even exist: nothing ran
        control_accuracy(tmp_path / "no-bundle", tmp_path, max_drop, backend=backend, calib=calib, progress=False)


def test_control_check_is_two_sided():
    """INT8 far "better" than FP32 on a few hundred inputs is a deviation like a drop: the control's check (the
    report's truth) holds it to ``max_drop`` either way, as the export's budget does."""
    from sc2edge.calibrate.check import QuantReport

    def report(fp32: float, int8: float) -> QuantReport:
        return QuantReport("b", "onnxruntime", 192, 0, True, fp32, int8, {"top-1": 0.9}, 10.0, 1.0, 100.0, 100.0,
                           max_drop=0.01)

    assert report(0.80, 0.795) and report(0.80, 0.805) and report(0.80, 0.81)
    assert not report(0.80, 0.78) and not report(0.80, 0.82)
