"""ONNX Runtime INT8 bias correction and the float latent, on a small encoder of real photos."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sc2edge.calibrate import CalibConfig, calibration_set
from sc2edge.calibrate.bias_correction import conv_channel_means, correct_biases
from sc2edge.calibrate.onnxrt import collect_ranges, quantize_onnx
from sc2edge.runtime import Bundle

SPEC = {"resize": 36, "crop": 32, "mean": [0.5] * 3, "std": [0.25] * 3}


def _encoder(path):
    """image -> Conv -> Clip(0, 6) -> depthwise Conv -> Clip -> 1x1 Conv (no bias) -> - medians -> Round: the
    default student's encoder in miniature, weights seeded with a per-channel offset (a skew 7-bit rounding
    turns into a mean shift)."""
    rng = np.random.default_rng(0)

    def tensor(name, shape, scale=1.0, offset=0.0):
        return numpy_helper.from_array((rng.normal(offset, scale, shape)).astype(np.float32), name)

    inits = [tensor("w0", (8, 3, 3, 3), 0.5, 0.1), tensor("b0", (8,), 0.1), tensor("w1", (8, 1, 3, 3), 0.4, 0.2),
             tensor("b1", (8,), 0.1), tensor("w2", (4, 8, 1, 1), 0.6, 0.05), tensor("medians", (1, 4, 1, 1), 0.1),
             numpy_helper.from_array(np.float32(0), "low"), numpy_helper.from_array(np.float32(6), "high")]
    nodes = [helper.make_node("Conv", ["image", "w0", "b0"], ["c0"], name="conv0", pads=[1] * 4, strides=[2, 2]),
             helper.make_node("Clip", ["c0", "low", "high"], ["r0"], name="relu0"),
             helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], name="conv1", pads=[1] * 4, group=8),
             helper.make_node("Clip", ["c1", "low", "high"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["latent"], name="conv2"),
             helper.make_node("Sub", ["latent", "medians"], ["centred"], name="centre"),
             helper.make_node("Round", ["centred"], ["rounded"], name="round"),
             helper.make_node("Cast", ["rounded"], ["symbols"], name="cast", to=TensorProto.INT32)]
    graph = helper.make_graph(nodes, "encoder", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                               ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("symbols", TensorProto.INT32, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def encoder(tmp_path_factory, photos):
    folder = tmp_path_factory.mktemp("bias")
    model = _encoder(folder / "encoder.onnx")
    images = calibration_set(photos[0].parent, SPEC, samples=6, progress=False)
    config = CalibConfig(method="minmax")
    cache = collect_ranges(model, ({"image": b} for b in images.batches(3)), config, folder / "ranges.json")
    return model, cache, config, lambda: ({"image": b} for b in images.batches(3)), folder


def _mean_errors(graph, model, feeds):
    want, got = conv_channel_means(model, feeds()), conv_channel_means(graph, feeds())
    return {name: float(np.abs(got[name] - want[name]).max()) for name in want}


def test_corrected_convs_keep_their_fp32_means(encoder):
    model, cache, config, feeds, folder = encoder
    plain = quantize_onnx(model, folder / "plain.onnx", cache, config)
    shifts = correct_biases(model, cache, config, feeds)
    corrected = quantize_onnx(model, folder / "corrected.onnx", cache, config, bias_shift=shifts)
    before, after = _mean_errors(plain, model, feeds), _mean_errors(corrected, model, feeds)
    assert set(shifts) == {"conv0", "conv1", "conv2"}  # conv2 had no bias: it gets one
    assert before["conv2"] > 0.005  # the uncorrected latent is off by a visible fraction of a symbol
    for name in before:  # each conv measured after the ones before it were corrected: its mean matches
        assert after[name] < 0.05 * max(before[name], 1e-3), (name, before[name], after[name])


def test_the_latent_stays_float_up_to_the_rounding(encoder):
    model, cache, config, _, folder = encoder
    graph = onnx.load(str(quantize_onnx(model, folder / "int8.onnx", cache, config)))
    producers = {out: node for node in graph.graph.node for out in node.output}
    centre = next(n for n in graph.graph.node if n.op_type == "Sub")
    assert producers[centre.input[0]].op_type == "Conv"  # no uint8 re-quantization before the symbol rounding
    assert sum(n.op_type == "QuantizeLinear" for n in graph.graph.node) == 3  # image and the two Clip outputs
    trt = onnx.load(str(quantize_onnx(model, folder / "int8.trt.onnx", cache, config, target="tensorrt")))
    assert sum(n.op_type == "QuantizeLinear" for n in trt.graph.node) > 3  # TensorRT's form is left as it was


def test_export_records_and_reapplies_the_correction(int8_bundle_dir, tmp_path):
    bundle = Bundle.open(int8_bundle_dir)
    artifact = bundle.artifact("device", "onnx", "int8")
    shifts = json.loads((bundle.path / artifact.meta["bias_correction"]).read_text())
    assert shifts and "bias_correction" in bundle.manifest["calibration"]
    config = CalibConfig.from_json(artifact.meta["config"])
    plain = quantize_onnx(bundle.path / "device.fp32.onnx", tmp_path / "plain.onnx",
                          bundle.path / artifact.meta["ranges"], config)

    def biases(path):
        graph = onnx.load(str(path)).graph
        return {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.data_type == TensorProto.INT32}

    written, uncorrected = biases(bundle.path / artifact.path), biases(plain)
    assert written.keys() != uncorrected.keys() or any(  # convs without a bias get one
        not np.array_equal(written[k], uncorrected[k]) for k in written)
