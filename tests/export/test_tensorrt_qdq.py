"""TensorRT-ready graphs, checked here without TensorRT: Q/DQ conformance to TensorRT's explicit-quantization
rules, and FP16 graphs that run. Engine tests need ``tensorrt`` and an NVIDIA GPU and skip otherwise."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sc2edge.calibrate.trt_onnx import MIN_OPSET, TRT_SUPPORTED_OPS, check_trt_qdq
from sc2edge.runtime import Bundle, create_runner
from sc2edge.runtime.backends.openvino import OpenVinoRunner


@pytest.fixture(scope="module")
def bundle(int8_bundle_dir):
    return Bundle.open(int8_bundle_dir)


@pytest.mark.parametrize("role", ["device", "server"])
def test_trt_qdq_graph_conforms(bundle, role):
    model = onnx.load(str(bundle.path / bundle.artifact(role, "onnx-trt", "int8").path))
    report = check_trt_qdq(model)
    assert report, str(report)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(report.quantized_convs) == len(convs) and not report.float_convs
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= MIN_OPSET
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero_point = inits[node.input[2]]
            assert zero_point.data_type == TensorProto.INT8
            assert not numpy_helper.to_array(zero_point).any()
    for conv in convs:
        weight_dq = next(n for n in model.graph.node if conv.input[1] in n.output)
        assert weight_dq.op_type == "DequantizeLinear"
        axis = next(a.i for a in weight_dq.attribute if a.name == "axis")
        scales = numpy_helper.to_array(inits[weight_dq.input[1]])
        assert axis == 0 and scales.shape == (inits[weight_dq.input[0]].dims[0],)
    assert {n.op_type for n in model.graph.node} <= TRT_SUPPORTED_OPS


@pytest.mark.parametrize("role", ["device", "server"])
def test_convs_kept_float_keep_trt_qdq_rules(bundle, role, tmp_path):
    """Accuracy control's exclusions: every conv of the real graph kept float alone in turn. ORT's quantizer left
    some (e.g. the device's latent conv) with float weights behind a DequantizeLinear input, which the check
    refused; each must now read a float input and the graph conform, the other convs staying INT8."""
    from dataclasses import replace

    from sc2edge.calibrate import CalibConfig
    from sc2edge.calibrate.onnxrt import quantize_onnx

    artifact = bundle.artifact(role, "onnx", "int8")
    config = CalibConfig.from_json(artifact.meta["config"])
    fp32 = bundle.path / bundle.artifact(role, "onnx", "fp32").path
    convs = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"]
    for name in convs[::max(1, len(convs) // 12)]:
        out = quantize_onnx(fp32, tmp_path / "trt.onnx", bundle.path / artifact.meta["ranges"],
                            replace(config, exclude=(name,)), target="tensorrt")
        report = check_trt_qdq(out)
        assert report, f"{name} kept float: {report}"
        assert report.float_convs == [name] and len(report.quantized_convs) == len(convs) - 1
        model = onnx.load(str(out))
        producers = {o: n for n in model.graph.node for o in n.output}
        conv = next(n for n in model.graph.node if n.name == name)
        assert getattr(producers.get(conv.input[0]), "op_type", None) != "DequantizeLinear"
        onnx.checker.check_model(model)


def test_onnxruntime_int8_graph_is_not_trt_conformant(bundle):
    """The check can fail: ORT's U8S8 graph has uint8 activations with non-zero zero points."""
    report = check_trt_qdq(bundle.path / bundle.artifact("device", "onnx", "int8").path)
    assert not report
    assert any("zero point" in v for v in report.violations)


def _small_qdq(weight_axis: int = 0, op: str = "Relu", weight_dq: bool = True) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.int8), "w")
    ws = numpy_helper.from_array(np.full((4,) if weight_axis == 0 else (3,), 0.1, np.float32), "ws")
    wz = numpy_helper.from_array(np.zeros(ws.dims, np.int8), "wz")
    s = numpy_helper.from_array(np.array(0.05, np.float32), "s")
    z = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"])]
    if weight_dq:
        nodes.append(helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=weight_axis))
    nodes += [helper.make_node("Conv", ["xd", "wd" if weight_dq else "wf"], ["y"]),
              helper.make_node(op, ["y"], ["out"])]
    inits = [w, ws, wz, s, z, numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "wf")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_conformance_rules_catch_each_violation():
    assert check_trt_qdq(_small_qdq())
    assert any("axis 0" in v for v in check_trt_qdq(_small_qdq(weight_axis=1)).violations)
    assert any("allow-list" in v for v in check_trt_qdq(_small_qdq(op="NonMaxSuppression")).violations)
    assert any("only its input" in v for v in check_trt_qdq(_small_qdq(weight_dq=False)).violations)
    old = _small_qdq()
    old.opset_import[0].version = 12
    assert any("opset" in v for v in check_trt_qdq(old).violations)


@pytest.mark.parametrize("role", ["device", "server"])
def test_fp16_graph_is_fp16_and_runs(bundle, role, photos):
    path = bundle.path / bundle.artifact(role, "onnx-trt", "fp16").path
    model = onnx.load(str(path))
    assert not [i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT]
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == \
        [i.type.tensor_type.elem_type for i in onnx.load(str(bundle.path / f"{role}.fp32.onnx")).graph.input]
    from sc2edge.runtime.preprocess import preprocess_image

    x = preprocess_image(photos[0], bundle.preprocess)[None]
    with create_runner("onnxruntime", bundle, "device", "fp32") as device:
        symbols = device.infer({"image": x})["symbols"]
    feed = {"image": x} if role == "device" else {"symbols": symbols}
    with create_runner("onnxruntime", bundle, role, "fp32") as reference, OpenVinoRunner(path) as half:
        expected, got = reference.infer(feed), half.infer(feed)
    name = "symbols" if role == "device" else "logits"
    if role == "device":
        assert got[name].dtype == np.int32 and np.mean(got[name] != expected[name]) < 0.01
    else:
        assert np.abs(got[name] - expected[name]).max() < 0.05 * np.abs(expected[name]).max()


def _gpu_and_tensorrt() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (it comes from NVIDIA's index or JetPack)"
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU here"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_and_tensorrt() is not None, reason=_gpu_and_tensorrt() or "")
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_builds_and_matches(int8_bundle_dir, tmp_path, precision, photos):
    from sc2edge.export.tensorrt import EngineConfig, build_engine

    work = tmp_path / "bundle"
    shutil.copytree(int8_bundle_dir, work)
    engine = build_engine(work, EngineConfig(precision=precision))
    bundle = Bundle.open(work)
    artifact = bundle.artifact("device", "trt-engine", precision)
    assert engine.name == artifact.path and artifact.meta["tensorrt"]
    from sc2edge.runtime.preprocess import preprocess_image

    x = preprocess_image(photos[0], bundle.preprocess)[None]
    with create_runner("tensorrt", bundle, "device", precision) as trt, \
            create_runner("onnxruntime", bundle, "device", "fp32") as ref:
        got, expected = trt.infer({"image": x})["symbols"], ref.infer({"image": x})["symbols"]
    assert got.dtype == np.int32 and np.mean(got != expected) < 0.02


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_build_engine_without_tensorrt_is_a_clear_error(int8_bundle_dir):
    from tests.conftest import run_cli

    missing = run_cli("build-engine", int8_bundle_dir, "--precision", "int8")
    assert missing.returncode == 1 and '"tensorrt" is needed here' in missing.stderr
