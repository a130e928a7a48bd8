"""The portable INT8 recipe on the Fashion-MNIST student: the real kernels give the exact integers on this CPU,
the weights cannot saturate VPMADDUBSW anywhere, labelled accuracy stays within budget, and an export whose
INT8 is over budget is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import pytest
from PIL import Image

from sc2edge.calibrate import CalibConfig, held_out_set
from sc2edge.calibrate.check import kernel_layer_errors, kernel_saturation_pct
from sc2edge.calibrate.nncf_int8 import float_input_onnx
from sc2edge.calibrate.onnxrt import quantize_onnx
from sc2edge.errors import Sc2edgeError
from sc2edge.export import ExportConfig, export_bundle
from sc2edge.runtime import Bundle
from sc2edge.runtime.backends import backend_info
from sc2edge.runtime.backends.onnxrt import OnnxRuntimeRunner
from sc2edge.runtime.cpu import SATURATING_PATH, this_cpu
from sc2edge.runtime.preprocess import normalize_pixels

MODEL = "entropic_student_fashion_mnist_beta0.1"
BACKENDS = ("onnxruntime", "openvino")
TEST_IMAGES = 1000  # the demo's labelled check; 300 leave the budget at the mercy of 3 images
INT16_MAX = 32767


@pytest.fixture(scope="module")
def fm_data(tmp_path_factory):
    from sc2edge.zoo.datasets import write_fashion_mnist_images

    root = tmp_path_factory.mktemp("fashion-mnist")
    calibration = write_fashion_mnist_images("train", root / "calibration", 300)
    test = write_fashion_mnist_images("test", root / "test", TEST_IMAGES)
    return calibration.parent, test


@pytest.fixture(scope="module")
def fm_bundle(tmp_path_factory, fm_data):
    """The default (portable) INT8 export for both runtimes, its budget checked on labelled test images (written
    over budget too: OpenVINO's server rows are, see ``test_fashion_mnist_int8_within_budget``)."""
    calibration, test = fm_data
    return export_bundle(MODEL, tmp_path_factory.mktemp("bundles") / "fm", config=ExportConfig(
        backends=BACKENDS, int8=True, calib=calibration, calib_samples=300, validation_images=test.parent,
        int8_check_labels=test, int8_check_count=TEST_IMAGES, allow_int8_over_budget=True))


@pytest.fixture(scope="module")
def held(fm_bundle, fm_data):
    return held_out_set(fm_data[1].parent, Bundle.open(fm_bundle).preprocess, TEST_IMAGES, 0, (), progress=False)


# NNCF's server INT8 (FP32 device + INT8 server, and both halves INT8) measured over budget on AVX2 without VNNI
# (Fashion-MNIST: -1.40 and -1.20 points; the default student's server row +1.56): docs/results/int8-as-deployed.md
OPENVINO_SERVER = pytest.mark.xfail(reason="OpenVINO server INT8 over budget (issue 9)", strict=False)


@pytest.mark.parametrize(("backend", "graph"), [
    ("onnxruntime", "device"), ("onnxruntime", "server"), ("onnxruntime", "both"), ("openvino", "device"),
    pytest.param("openvino", "server", marks=OPENVINO_SERVER), pytest.param("openvino", "both", marks=OPENVINO_SERVER)])
def test_fashion_mnist_int8_within_budget(fm_bundle, backend, graph):
    calibration = Bundle.open(fm_bundle).manifest["calibration"]
    assert calibration["recipe"] == "portable" and calibration["validated_on"] == this_cpu().to_json()
    validation = calibration["int8_validation"]
    assert validation["images"] == TEST_IMAGES
    assert validation["budgeted_on"] == "labels"  # real labels win over the teacher's pseudo-labels
    (result,) = [r for r in validation["results"] if (r["backend"], r["graph"]) == (backend, graph)]
    assert result["metric"] == "accuracy" and result["fp32"] > 0.75  # a trained model, labelled images
    assert result["passed"] and abs(result["drop"]) <= 0.01 + 1e-9 and abs(result["rate_change_pct"]) <= 2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_portable_int8_equals_exact_emulation(fm_bundle, held, backend):
    bundle = Bundle.open(fm_bundle)
    graph = bundle.path / bundle.artifact("device", backend_info(backend).artifact_format, "int8").path
    saturated = kernel_saturation_pct(backend, graph, held)
    if backend == "onnxruntime":
        assert saturated == 0.0  # x64 high-precision mode: the same integer sums, without int16 saturation
    else:
        assert saturated < 0.01  # OpenVINO's emulation runs in float: a rare .5 rounding, never saturation


def test_int8_device_graphs_take_pixels_and_quantize_the_normalized_image(fm_bundle, held, tmp_path):
    """Both INT8 device graphs take uint8 NHWC pixels like the FP32 one; OpenVINO's first quantizer is ranged on
    the normalized image (NNCF ran on the float part): with the front in place it saw x / 255 - mean only (1 / std
    folded into the conv), +-0.72 instead of -2.04..2.02. The cut float graph gives the pixel graph's symbols."""
    bundle = Bundle.open(fm_bundle)
    pre = bundle.spec.preprocess
    assert pre.graph_input == "uint8-nhwc"
    for fmt in ("onnx", "openvino"):
        graph = ov.Core().read_model(str(bundle.path / bundle.artifact("device", fmt, "int8").path))
        assert graph.input(0).get_element_type() == ov.Type.u8 and graph.input(0).get_partial_shape()[3] == 1
    xml = bundle.path / bundle.artifact("device", "openvino", "int8").path
    first = next(op for op in ov.Core().read_model(str(xml)).get_ordered_ops() if op.get_type_name() == "FakeQuantize")
    high = float(first.input_value(2).get_node().get_data().max())
    assert high >= 0.95 * (1 - pre.mean[0]) / pre.std[0]
    cut = float_input_onnx(bundle.path / "device.fp32.onnx", tmp_path / "float.onnx")
    with OnnxRuntimeRunner(bundle.path / "device.fp32.onnx") as pixels, OnnxRuntimeRunner(cut) as floats:
        for x in held.arrays()[:16]:
            expected = pixels.infer({"image": x[None]})["symbols"]
            assert np.array_equal(floats.infer({"image": normalize_pixels(x[None], pre)})["symbols"], expected)


def _vnni_onnx(bundle: Bundle, out) -> Path:
    """The device graph quantized from the bundle's own ranges with full 8-bit weights (the "vnni" recipe)."""
    artifact = bundle.artifact("device", "onnx", "int8")
    config = CalibConfig.from_json({**artifact.meta["config"], "recipe": "vnni"})
    return quantize_onnx(bundle.path / "device.fp32.onnx", out, bundle.path / artifact.meta["ranges"], config)


def test_full_8bit_weights_saturate_on_this_cpu(fm_bundle, held, tmp_path):
    """The per-layer diagnosis runs the real kernels, so the quantized convs it lists show their saturation (the
    latent conv runs in float now, ``onnxrt._float_symbol_input``, so it is not among them)."""
    if this_cpu().kernel_path != SATURATING_PATH:
        pytest.skip(f"this CPU's INT8 kernels ({this_cpu().kernel_path}) are exact: saturation cannot show here")
    bundle = Bundle.open(fm_bundle)
    graph = _vnni_onnx(bundle, tmp_path / "vnni.onnx")
    assert kernel_saturation_pct("onnxruntime", graph, held) > 1.0
    fp32 = bundle.path / "device.fp32.onnx"
    inputs = [{"image": x[None]} for x in held.arrays()[:8]]
    layers = kernel_layer_errors(fp32, graph, inputs, worst=10)
    assert layers and all(layer.kernel_mismatch_pct > 10.0 for layer in layers)
    portable = kernel_layer_errors(fp32, bundle.path / "device.int8.onnx", inputs, worst=10)
    assert portable and all(layer.kernel_mismatch_pct == 0.0 for layer in portable)


def _onnx_conv_weights(path) -> list[np.ndarray]:
    """The int8 weights of every quantized conv (initializer -> DequantizeLinear -> Conv input 1)."""
    graph = onnx.load(str(path)).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    dequantized = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return [inits[dequantized[n.input[1]]] for n in graph.node if n.op_type == "Conv" and n.input[1] in dequantized]


def _openvino_int8_weights(path) -> list[np.ndarray]:
    model = ov.Core().read_model(str(path))
    return [np.array(op.get_data()) for op in model.get_ordered_ops()
            if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]


def _largest_pair_sum(weights: list[np.ndarray]) -> int:
    """VPMADDUBSW's worst int16 intermediate: two uint8 activations of 255 times the largest weight magnitude."""
    return 2 * 255 * max(int(np.abs(w.astype(np.int32)).max()) for w in weights)


def test_portable_weights_cannot_saturate_int16(fm_bundle, tmp_path):
    """Static check, true on any CPU: 7-bit weights keep every pairwise sum within int16; 8-bit ones do not."""
    bundle = Bundle.open(fm_bundle)
    for role in ("device", "server"):
        for weights in (_onnx_conv_weights(bundle.path / bundle.artifact(role, "onnx", "int8").path),
                        _openvino_int8_weights(bundle.path / bundle.artifact(role, "openvino", "int8").path)):
            assert weights and all(w.dtype == np.int8 and -64 <= w.min() and w.max() <= 64 for w in weights)
            assert _largest_pair_sum(weights) <= INT16_MAX
    full = _onnx_conv_weights(_vnni_onnx(bundle, tmp_path / "vnni.onnx"))
    assert _largest_pair_sum(full) > INT16_MAX


@pytest.fixture()
def blank_calibration(tmp_path):
    """A deliberately damaged calibration: black images, so every activation range collapses."""
    folder = tmp_path / "blank"
    folder.mkdir()
    for i in range(8):
        Image.new("L", (28, 28)).save(folder / f"blank{i}.png")
    return folder


def _refused_export(fm_bundle: Path, tmp_path: Path, config: ExportConfig) -> str:
    """Export over a copy of ``fm_bundle`` in ``tmp_path``, which must be refused in one line ("INT8 over budget
    ... no bundle written"), leaving the old bundle intact and no staging behind; the refusal's message."""
    out = tmp_path / "bundle"
    shutil.copytree(fm_bundle, out)
    before = (out / "manifest.json").read_bytes()
    entries = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(Sc2edgeError, match="INT8 over budget .* no bundle written") as refused:
        export_bundle(MODEL, out, config=config)
    message = str(refused.value)
    assert "\n" not in message
    assert (out / "manifest.json").read_bytes() == before and Bundle.open(out)  # the old bundle, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == entries  # no staging left behind
    return message


def test_export_refuses_int8_over_budget(fm_bundle, fm_data, blank_calibration, tmp_path):
    _, test = fm_data
    message = _refused_export(fm_bundle, tmp_path, ExportConfig(
        int8=True, calib=blank_calibration, validation_images=test.parent, int8_check_labels=test,
        int8_check_count=100, overwrite=True))
    assert "onnxruntime/int8 device (INT8 device + FP32 server) accuracy" in message


def test_export_refuses_server_int8_over_budget(fm_bundle, fm_data, tmp_path, monkeypatch):
    """Budgeted as deployed: a server graph whose ranges are damaged (every activation range squeezed to +-1e-3)
    fails its own rows while the device row passes, and the export is refused in one line naming the server."""
    from sc2edge.calibrate import artifacts

    collect = artifacts.collect_ranges

    def damaged_server(model, feeds, config, cache, **kwargs):
        out = collect(model, feeds, config, cache, **kwargs)
        if Path(cache).name.startswith("server."):
            ranges = json.loads(Path(out).read_text())
            for value in ranges["data"].values():
                for key, bound in (("lowest", -1e-3), ("highest", 1e-3)):
                    value[key] = {"data": bound, "dtype": "float32", "CLS": "numpy.array"}
            Path(out).write_text(json.dumps(ranges))
        return out

    monkeypatch.setattr(artifacts, "collect_ranges", damaged_server)
    calibration, test = fm_data
    message = _refused_export(fm_bundle, tmp_path, ExportConfig(
        int8=True, calib=calibration, calib_samples=100, validation_images=test.parent, int8_check_labels=test,
        int8_check_count=200, overwrite=True))
    assert "onnxruntime/int8 server (FP32 device + INT8 server) accuracy" in message
    assert "onnxruntime/int8 device " not in message  # the device graph is within budget


def test_budget_rows_cover_int8_as_deployed(fm_bundle):
    """Every INT8 combination the bundle ships has its own budgeted row, on both runtimes."""
    validation = Bundle.open(fm_bundle).manifest["calibration"]["int8_validation"]
    rows = {(r["backend"], r["graph"]): r for r in validation["results"]}
    assert set(rows) == {(b, g) for b in BACKENDS for g in ("device", "server", "both")}  # no INT8 reference
    for backend in BACKENDS:
        server = rows[backend, "server"]
        assert server["symbols_changed_pct"] == 0.0 and server["bytes_int8"] == server["bytes_fp32"]
        assert server["kernel_saturation_pct"] is None and server["passed"] == (abs(server["drop"]) <= 0.01 + 1e-9)
        assert rows[backend, "both"]["bytes_int8"] == rows[backend, "device"]["bytes_int8"]
    assert validation["passed"] == all(r["passed"] for r in rows.values())


def test_allowed_over_budget_is_recorded_as_failed(fm_data, blank_calibration, tmp_path):
    _, test = fm_data
    out = export_bundle(MODEL, tmp_path / "bundle", config=ExportConfig(
        int8=True, calib=blank_calibration, validation_images=test.parent, int8_check_labels=test,
        int8_check_count=100, allow_int8_over_budget=True))
    validation = Bundle.open(out).manifest["calibration"]["int8_validation"]
    assert not validation["passed"] and validation["results"][0]["drop"] > 0.01
    assert json.loads(json.dumps(validation)) == validation


def test_pseudo_label_budget_refuses_damaged_calibration(fm_bundle, fm_data, blank_calibration, tmp_path):
    """Without labels, the budget is on accuracy against the teacher's FP32 top-1 (the bundle's reference graph),
    with agreement with FP32 beside it; a damaged calibration fails it."""
    _, test = fm_data
    assert Bundle.open(fm_bundle).manifest.get("reference")  # the trained teacher travels in the bundle
    out = export_bundle(MODEL, tmp_path / "bundle", config=ExportConfig(
        int8=True, calib=blank_calibration, int8_check_images=test.parent, int8_check_count=100,
        allow_int8_over_budget=True))
    validation = Bundle.open(out).manifest["calibration"]["int8_validation"]
    result = validation["results"][0]
    assert validation["budgeted_on"].startswith("pseudo-labels") and result["metric"] == "teacher agreement"
    assert not validation["passed"] and result["drop"] > 0.01 and 0.0 <= result["agreement_fp32"] < 0.99


def test_bad_recipe_and_budget_are_refused_before_any_work(tmp_path):
    with pytest.raises(Sc2edgeError, match='unknown INT8 recipe "fast"'):
        export_bundle(MODEL, tmp_path / "b", config=ExportConfig(int8_recipe="fast"))
    from sc2edge.calibrate.budget import Int8Budget

    with pytest.raises(Sc2edgeError, match="INT8 drop budget"):
        export_bundle(MODEL, tmp_path / "b", config=ExportConfig(int8_budget=Int8Budget(max_drop=2.0)))
    assert not (tmp_path / "b").exists()

