"""ONNX Runtime static INT8 (QDQ): collect activation ranges once, then write Q/DQ graphs from them.

One calibration serves two graph forms: ``target="onnxruntime"`` (uint8 activations, int8 per-channel weights:
what x86 and ARM CPUs run fastest) and ``target="tensorrt"`` (int8 activations and weights, all zero points 0:
TensorRT's explicit-quantization form). The ranges are kept in ORT's calibration cache (JSON).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    create_calibrator,
    quantize_static,
)
from onnxruntime.quantization.calibrate import save_tensors_data
from tqdm import tqdm

from sc2edge.calibrate.bias_correction import BiasShift, with_bias_shift
from sc2edge.calibrate.config import TARGETS, CalibConfig
from sc2edge.errors import Sc2edgeError

# Activations that ONNX Runtime's QDQ quantizer folds into the conv before them, giving the conv's output their
# range (``adjust_tensor_ranges``) and removing them, but only when they are among the quantized op types. Left
# out, the conv's output is quantized on its own unclipped range: on the EfficientNet student, Conv -> Clip(0, 6)
# was re-quantized from steps of 0.63 (range +-80), 10 levels for 0..6, which changed 53 % of the symbols (22 %
# with the Clips folded; 12 held-out photos x 16 crops). TensorRT's symmetric graphs keep Conv only.
FOLDED_ACTIVATIONS = ("Clip", "Relu")

_METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}

Feeds = Callable[[], Iterable[dict[str, np.ndarray]]]


class FeedReader(CalibrationDataReader):
    """ORT's one-method calibration protocol over any iterable of input dicts."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]):
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ORT's quantizer logs "consider pre-processing" on the root logger and its histogram calibrators print to
    stdout for every graph; keep the CLI's own output readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def collect_ranges(model: str | Path, feeds: Iterable[dict[str, np.ndarray]], config: CalibConfig,
                   cache: str | Path, *, total: int | None = None) -> Path:
    """Run the calibrator over ``feeds`` (input dicts, e.g. batches of images) and save the ranges to ``cache``.

    Feeding in batches keeps memory bounded: ORT's calibrators hold every collected tensor until the end of
    ``collect_data``, so each batch is collected separately (MinMax merges ranges, histograms accumulate).
    """
    config = config.validate()
    with tempfile.TemporaryDirectory(prefix="sc2edge-calib-") as tmp, _quiet_quantizer():
        calibrator = create_calibrator(Path(model), [*config.op_types, *FOLDED_ACTIVATIONS],
                                       augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=_METHODS[config.method],
                                       extra_options=config.calibrator_options())
        seen = 0
        for feed in tqdm(feeds, desc=f"calibrating {Path(model).name} ({config.method})", unit="batch",
                         total=total, leave=False, disable=None):  # None: no bar where stderr is no terminal
            calibrator.collect_data(FeedReader([feed]))
            seen += 1
        if not seen:
            raise Sc2edgeError("no calibration data: the image set is empty")
        ranges = calibrator.compute_data()
    save_tensors_data(ranges, cache)
    return Path(cache)


def quantize_onnx(model: str | Path, out: str | Path, cache: str | Path, config: CalibConfig,
                  target: str = "onnxruntime", *, bias_shift: BiasShift | None = None) -> Path:
    """Write the QDQ INT8 graph of ``model`` to ``out`` from the ranges in ``cache``.

    Args:
        model (str | Path): the FP32 ONNX graph that was calibrated.
        out (str | Path): where to write the INT8 graph.
        cache (str | Path): ranges from ``collect_ranges`` on ``model``.
        config (CalibConfig): the same settings the ranges were collected with.
        target (str): "onnxruntime" (U8S8) or "tensorrt" (S8S8, symmetric). Defaults to "onnxruntime".
        bias_shift (BiasShift | None): per-channel shifts added to the named convs' biases before quantizing
            (``bias_correction.correct_biases``). Defaults to None.
    """
    config = config.validate()
    if target not in TARGETS:
        raise Sc2edgeError(f'unknown INT8 target "{target}" (available: {", ".join(TARGETS)})')
    trt = target == "tensorrt"
    with tempfile.TemporaryDirectory(prefix="sc2edge-quantize-") as tmp:
        source = with_bias_shift(model, bias_shift, Path(tmp) / "corrected.onnx") if bias_shift else model
        _quantize_static(source, out, cache, config, trt)
    _drop_unused_constants(Path(out))
    if trt:
        _float_inputs_of_float_convs(Path(out))
    else:
        _float_symbol_input(Path(out))
    return Path(out)


def _quantize_static(model: str | Path, out: str | Path, cache: str | Path, config: CalibConfig, trt: bool) -> None:
    with _quiet_quantizer():
        quantize_static(
            str(model), str(out), calibration_data_reader=None, calibration_cache_path=str(cache),
            calibrate_method=_METHODS[config.method], quant_format=QuantFormat.QDQ,
            op_types_to_quantize=[*config.op_types, *([] if trt else FOLDED_ACTIVATIONS)],
            nodes_to_exclude=list(config.exclude),
            per_channel=config.per_channel, reduce_range=config.seven_bit_weights and not trt,
            activation_type=QuantType.QInt8 if trt else QuantType.QUInt8, weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": trt, "WeightSymmetric": True,
                           # TensorRT computes conv bias in float; ORT CPU wants int32 bias.
                           "QuantizeBias": not trt},
        )


def _drop_unused_constants(path: Path) -> None:
    """Remove Constant nodes nothing reads (the bounds of folded Clips), which ONNX Runtime warns about on every
    session it opens."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    unused = [n for n in graph.node if n.op_type == "Constant" and not set(n.output) & used]
    if unused:
        for node in unused:
            graph.node.remove(node)
        onnx.save(model, str(path))


def _float_inputs_of_float_convs(path: Path) -> None:
    """Give each conv kept in float (``CalibConfig.exclude``) its float input in a TensorRT Q/DQ graph.

    ORT's quantizer still quantizes an excluded conv's input where the tensor is quantized for another reader or
    as a quantized node's output: a float weight behind a DequantizeLinear input, which TensorRT's Q/DQ rules do
    not fuse (``check_trt_qdq``), and a rounding the float conv was excluded to avoid. The conv reads the tensor
    before its QuantizeLinear instead; a Q/DQ pair nothing else reads is removed."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    changed = False
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        dequantize, weights = (producers.get(name) for name in conv.input[:2])
        if dequantize is None or dequantize.op_type != "DequantizeLinear" or (
                weights is not None and weights.op_type == "DequantizeLinear"):
            continue
        quantize = producers.get(dequantize.input[0])
        if quantize is None or quantize.op_type != "QuantizeLinear":
            continue
        conv.input[0] = quantize.input[0]
        changed = True
    if not changed:
        return
    while True:  # Q/DQ pairs left without a reader (graph outputs count as readers)
        read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        unread = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                  and not set(n.output) & read]
        if not unread:
            break
        for node in unread:
            graph.node.remove(node)
    _drop_unread_initializers(graph)
    onnx.save(model, str(path))


def _drop_unread_initializers(graph) -> None:
    """Remove the initializers no node reads any more (the scales and zero points of removed Q/DQ pairs)."""
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


# Element-wise ops between the latent conv and the symbol rounding (the entropy model's medians are subtracted).
_SYMBOL_PATH_OPS = ("Sub", "Add")


def _float_symbol_input(path: Path) -> None:
    """Keep the latent in float up to the rounding that makes the symbols: drop the Q/DQ pair on a tensor that
    only reaches ``Round`` (through Sub/Add). Re-quantizing it to uint8 first (steps of 0.1 on the EfficientNet
    student's latent) is a second, coarser rounding before the real one, which NNCF does not do either; the
    conv that makes it then runs in float, on dequantized INT8 weights and input (one small 1x1 conv)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    def reaches_round(tensor: str) -> bool:
        nodes = readers.get(tensor, [])
        return bool(nodes) and tensor not in graph_outputs and all(
            n.op_type == "Round" or (n.op_type in _SYMBOL_PATH_OPS and reaches_round(n.output[0])) for n in nodes)

    removed = []
    for quantize in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        dequantizers = readers.get(quantize.output[0], [])
        if not dequantizers or any(d.op_type != "DequantizeLinear" or not reaches_round(d.output[0])
                                   for d in dequantizers):
            continue
        for dequantize in dequantizers:
            for reader in readers[dequantize.output[0]]:
                reader.input[:] = [quantize.input[0] if name == dequantize.output[0] else name
                                   for name in reader.input]
        removed += [quantize, *dequantizers]
    if removed:
        for node in removed:
            graph.node.remove(node)
        _drop_unread_initializers(graph)
        onnx.save(model, str(path))
