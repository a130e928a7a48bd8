"""OpenVINO INT8 with NNCF: ``nncf.quantize`` (``CalibConfig.nncf_preset``; PERFORMANCE, symmetric int8
activations, suits GDN's signed activations better than MIXED here), or ``quantize_with_accuracy_control``.

Weights follow ``CalibConfig.recipe``: "portable" is ``OverflowFix.ENABLE`` (7-bit weights in every layer: the
CPU plugin's output equals its float simulation on x86 without VNNI too); NNCF's default ``FIRST_LAYER`` fixes
only the first conv, and the latent conv still saturates there. "vnni" is ``OverflowFix.DISABLE`` (8-bit).
Encoders get NNCF's full ``BiasCorrection`` (``full_bias_correction``), not its fast default: on the
EfficientNet student's 12 held-out photos x 16 crops it kept top-1 agreement with FP32 at 96.9 % instead of
94.3 % (symbols changed 2.29 % vs 2.40 %); on Fashion-MNIST (1,000 test images) accuracy 81.3-81.5 vs 81.7 %,
FP32 82.1 %. It runs the model layer by layer, minutes on a deep server graph, which keeps the fast one.

GDN's ``Divide`` (and inverse GDN's ``Multiply``) stay float with unquantized inputs. With both of their
activation inputs quantized (NNCF's default), OpenVINO 2026.4's CPU plugin outputs ~1e-7 instead of x / norm
(x * norm): the encoder emits all-zero symbols (fast, and useless: that is what an INT8 encoder "at 1.0 ms"
was) and the server's logits are noise. ``FLOAT_OP_TYPES`` names what stays float.

A device graph that takes uint8 pixels (``preprocess.graph_input`` "uint8-nhwc") is quantized as its float-input
graph (``float_input_onnx`` cuts the normalization front off the ONNX graph), and the front is put back as
OpenVINO preprocessing (u8 NHWC -> f32, / 255, - mean, / std, NCHW), so the first quantizer reads the normalized
image exactly as in a float-input export. Quantized through the pixel IR instead, where OpenVINO's frontend has
already folded the front into Multiply/Add and 1 / std into the first convolution (the input quantizer ranged
x / 255 - mean, +-0.72), NNCF quantized other weights than for the float graph: on Fashion-MNIST (1,000 test
images, AVX2 without VNNI) accuracy 81.0 % (FP32 82.1 %, over the 1-point budget); this way 82.2 %.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sc2edge._lazy import lazy_import
from sc2edge.calibrate.config import CalibConfig
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.manifest import PIXEL_GRAPH_INPUT, PreprocessSpec
from sc2edge.runtime.preprocess import normalize_pixels

FLOAT_OP_TYPES = ("Divide", "Multiply")
CONV_OP_TYPES = ("Convolution", "GroupConvolution")  # a graph quantized in its convolutions only (ORT's op_types)
# The ONNX ops of the pixel front (zoo.graphs.PixelInput): Transpose, Cast, / 255, - mean, / std.
_FRONT_OPS = ("Transpose", "Cast", "Div", "Sub", "Mul", "Add")

# (compiled model, validation items) -> metric (higher is better), as NNCF's accuracy control expects.
ValidationFn = Callable[[Any, Sequence[Any]], float]


def quantize_openvino(model: str | Path, out_xml: str | Path, feeds: Sequence[dict[str, np.ndarray]],
                      config: CalibConfig, *, max_drop: float | None = None,
                      validation: tuple[Sequence[Any], ValidationFn] | None = None,
                      full_bias_correction: bool = False,
                      preprocess: PreprocessSpec | Mapping[str, Any] | None = None,
                      quantize_types: Sequence[str] | None = None) -> Path:
    """Quantize an OpenVINO model (IR or ONNX) to INT8 and save it as IR.

    Args:
        model (str | Path): the FP32 graph (``.xml`` or ``.onnx``).
        out_xml (str | Path): the ``.xml`` file to write.
        feeds (Sequence[dict]): calibration inputs (input name -> batch of one), the same images ORT uses.
        config (CalibConfig): ``exclude`` names nodes kept in float. ``samples`` caps the subset size.
        max_drop (float | None): largest allowed metric drop; needs ``validation``. Defaults to None.
        validation (tuple | None): (items, fn) for accuracy control: items are (model input, target) pairs,
            fn(compiled_model, items) -> metric, higher is better. Defaults to None.
        full_bias_correction (bool): NNCF's full BiasCorrection instead of FastBiasCorrection (the encoder's
            choice; slow on deep graphs). Defaults to False.
        preprocess (PreprocessSpec | Mapping | None): the bundle's record; where its graph takes uint8 pixels,
            ``model`` must be the ONNX graph and ``feeds`` (and validation inputs) are pixels. Defaults to None.
        quantize_types (Sequence[str] | None): the only OpenVINO op types to quantize (every other type in the
            model goes in the ignored scope), e.g. ``CONV_OP_TYPES`` to keep a detector's anchor decoding and NMS
            in float. Defaults to None: every type NNCF quantizes but ``FLOAT_OP_TYPES``.
    """
    config = config.validate()
    ov, nncf = lazy_import("openvino"), lazy_import("nncf")
    if not feeds:
        raise Sc2edgeError("no calibration data for NNCF: the image set is empty")
    spec = None if preprocess is None else PreprocessSpec.from_json(preprocess) if isinstance(
        preprocess, Mapping) else preprocess
    pixels = spec is not None and spec.graph_input == PIXEL_GRAPH_INPUT and Path(model).suffix == ".onnx"
    with tempfile.TemporaryDirectory(prefix="sc2edge-nncf-") as tmp:
        if pixels:  # NNCF sees the normalized image, as in a float-input export
            model = float_input_onnx(model, Path(tmp) / "float-input.onnx")
            feeds = [{name: normalize_pixels(x, spec) for name, x in feed.items()} for feed in feeds]
            if validation is not None:
                validation = ([(normalize_pixels(x, spec), target) for x, target in validation[0]], validation[1])
        ov_model = ov.Core().read_model(str(model))
    if spec is not None and spec.graph_input == PIXEL_GRAPH_INPUT and not pixels:
        raise Sc2edgeError(f"{Path(model).name}: a uint8-input device graph is quantized from its ONNX graph")
    dataset = nncf.Dataset(list(feeds))
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    overflow_fix = OverflowFix.ENABLE if config.seven_bit_weights else OverflowFix.DISABLE
    advanced = AdvancedQuantizationParameters(overflow_fix=overflow_fix)
    options: dict[str, Any] = {
        "preset": nncf.QuantizationPreset(config.nncf_preset), "subset_size": min(config.samples, len(feeds)),
        "fast_bias_correction": not full_bias_correction,
        "ignored_scope": nncf.IgnoredScope(names=list(config.exclude), types=sorted(
            {*FLOAT_OP_TYPES, *(op.get_type_name() for op in ov_model.get_ordered_ops()
                                if quantize_types is not None and op.get_type_name() not in quantize_types)}),
            validate=False),
    }
    if max_drop is None:
        quantized = nncf.quantize(ov_model, dataset, **options, advanced_parameters=advanced)
    else:
        if validation is None:
            raise Sc2edgeError("accuracy control (max_drop) needs validation images")
        items, fn = validation
        quantized = nncf.quantize_with_accuracy_control(
            ov_model, dataset, nncf.Dataset(list(items), lambda item: item[0]), validation_fn=fn, max_drop=max_drop,
            drop_type=nncf.DropType.ABSOLUTE, advanced_quantization_parameters=advanced, **options)
    if pixels:
        quantized = pixel_front(quantized, spec)
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    return Path(out_xml)


def float_input_onnx(model: str | Path, out: str | Path) -> Path:
    """The pixel graph ``model`` without its normalization front: input "image" is the normalized float32 NCHW
    image (what the front's last node computed), written to ``out``."""
    onnx = lazy_import("onnx")
    graph_model = onnx.load(str(model))
    graph = graph_model.graph
    (pixels,) = graph.input
    constants = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant"
                                                      for o in n.output}
    front, tensor = [], pixels.name
    while True:
        consumers = [n for n in graph.node if tensor in n.input]
        if len(consumers) != 1 or consumers[0].op_type not in _FRONT_OPS or any(
                i != tensor and i not in constants for i in consumers[0].input):
            break
        front.append(consumers[0])
        tensor = consumers[0].output[0]
    if not front or front[0].op_type != "Transpose":
        raise Sc2edgeError(f"{Path(model).name} has no uint8 pixel front (Transpose, Cast, normalize) to cut")
    for node in front:
        graph.node.remove(node)
    for node in graph.node:
        node.input[:] = [pixels.name if i == tensor else i for i in node.input]
    n, h, w, c = pixels.type.tensor_type.shape.dim
    image = onnx.helper.make_tensor_value_info(pixels.name, onnx.TensorProto.FLOAT, [
        d.dim_param or d.dim_value for d in (n, c, h, w)])
    graph.input.remove(pixels)
    graph.input.append(image)
    onnx.save(graph_model, str(out))
    return Path(out)


def pixel_front(model: Any, spec: PreprocessSpec) -> Any:
    """``model`` (float NCHW input) behind OpenVINO preprocessing that takes uint8 NHWC pixels: the host's
    normalization in its order (f32, / 255, - mean, / std)."""
    ov = lazy_import("openvino")
    ppp = ov.preprocess.PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).scale(255.0).mean(list(spec.mean)).scale(
        list(spec.std))
    return ppp.build()
