"""ONNX Runtime static INT8: calibration methods really differ, and the graph form fuses every conv to INT8."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnxruntime.quantization import QuantFormat, quantize_static
from onnxruntime.quantization.calibrate import load_tensors_data

from sc2edge.calibrate import CalibConfig, calibration_set
from sc2edge.calibrate.onnxrt import FeedReader, collect_ranges, quantize_onnx
from sc2edge.runtime import Bundle


@pytest.fixture(scope="module")
def device(bundle_dir, calib_dir):
    bundle = Bundle.open(bundle_dir)
    images = calibration_set(calib_dir, bundle.preprocess, samples=6, progress=False)
    return bundle.path / "device.fp32.onnx", images


@pytest.fixture(scope="module")
def ranges(device, tmp_path_factory):
    model, images = device
    folder = tmp_path_factory.mktemp("ranges")
    found = {}
    for method in ("minmax", "entropy", "percentile"):
        config = CalibConfig(method=method, batch=3)
        cache = collect_ranges(model, ({"image": b} for b in images.batches(3)), config, folder / f"{method}.json")
        found[method] = (config, cache, load_tensors_data(cache))
    return found


def _conv_outputs(model_path):
    return [n.output[0] for n in onnx.load(str(model_path)).graph.node if n.op_type == "Conv"]


def test_methods_give_different_ranges(device, ranges):
    model, _ = device
    tensor = _conv_outputs(model)[1]  # the first GDN's 1x1 conv: a skewed, positive distribution

    def span(method):
        low, high = ranges[method][2][tensor].range_value
        return float(np.asarray(low).min()), float(np.asarray(high).max())

    minmax, entropy, percentile = span("minmax"), span("entropy"), span("percentile")
    assert entropy != minmax and percentile != minmax and entropy != percentile
    assert entropy[1] <= minmax[1] and percentile[1] <= minmax[1]  # both clip the tail MinMax keeps


def _optimized_ops(path, tmp_path):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]


def test_every_conv_fuses_to_qlinearconv(device, ranges, tmp_path):
    """Why our form is faster than FP32: ORT's default int8 activations leave the convs whose output feeds both
    GDN branches (Abs and Div) unfused, running float convs on dequantized weights; uint8 activations fuse all
    but the latent conv, whose output stays float up to the symbol rounding (``_float_symbol_input``)."""
    model, images = device
    config, cache, _ = ranges["minmax"]
    ours = quantize_onnx(model, tmp_path / "ours.onnx", cache, config)
    ops = _optimized_ops(ours, tmp_path)
    assert ops.count("QLinearConv") == len(_conv_outputs(model)) - 1 and ops.count("Conv") == 1

    default = tmp_path / "default.onnx"
    quantize_static(str(model), str(default), FeedReader({"image": b} for b in images.batches(3)),
                    quant_format=QuantFormat.QDQ, per_channel=True, op_types_to_quantize=["Conv"])
    assert "Conv" in _optimized_ops(default, tmp_path)  # the slow form this configuration avoids


def test_int8_symbols_stay_close_to_fp32(device, ranges, tmp_path):
    model, images = device
    fp32 = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for method in ("minmax", "entropy"):
        config, cache, _ = ranges[method]
        int8 = ort.InferenceSession(str(quantize_onnx(model, tmp_path / f"{method}.onnx", cache, config)),
                                    providers=["CPUExecutionProvider"])
        batch = next(images.batches(6))
        a, b = fp32.run(None, {"image": batch})[0], int8.run(None, {"image": batch})[0]
        assert b.dtype == np.int32 and a.shape == b.shape
        assert np.mean(a != b) < 0.02
        assert np.abs(a - b).max() <= 2


def test_conv_clip_is_quantized_on_the_clipped_range(photos, tmp_path):
    """Conv -> Clip(0, 6) (ReLU6, as in the EfficientNet student, with Constant-node bounds): the INT8 graph
    folds the Clip and quantizes the conv's output on 0..6, not on its unclipped range, re-quantized after."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 2, shape).astype(np.float32), name)
               for name, shape in (("w0", (8, 3, 3, 3)), ("w1", (4, 8, 1, 1)))]
    nodes = [helper.make_node("Conv", ["image", "w0"], ["conv0"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Constant", [], ["low"], value=numpy_helper.from_array(np.float32(0), "low")),
             helper.make_node("Constant", [], ["high"], value=numpy_helper.from_array(np.float32(6), "high")),
             helper.make_node("Clip", ["conv0", "low", "high"], ["relu6"], name="relu6"),
             helper.make_node("Conv", ["relu6", "w1"], ["out"], name="conv1")]
    graph = helper.make_graph(nodes, "relu6", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                             ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], weights)
    model = tmp_path / "relu6.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    spec = {"resize": 36, "crop": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    images = calibration_set(photos[0].parent, spec, samples=4, progress=False)
    config = CalibConfig(method="minmax")
    cache = collect_ranges(model, ({"image": b} for b in images.batches(4)), config, tmp_path / "ranges.json")
    int8 = onnx.load(str(quantize_onnx(model, tmp_path / "int8.onnx", cache, config)))
    assert not {"Clip", "Constant"} & {n.op_type for n in int8.graph.node}  # no unused Clip bounds left either
    scales = {i.name: numpy_helper.to_array(i) for i in int8.graph.initializer}
    conv0_output = next(n.output[0] for n in int8.graph.node if n.name == "conv0")
    conv0_q = next(n for n in int8.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == conv0_output)
    assert float(scales[conv0_q.input[1]]) == pytest.approx(6 / 255, rel=1e-3)
