"""TensorRT-ready ONNX graphs: FP16 (strongly typed) and symmetric INT8 Q/DQ, and the check that a Q/DQ graph
follows TensorRT's explicit-quantization rules.

TensorRT 11 has no weak typing: no FP16/INT8 builder flags and no INT8 calibrators. Precision lives in the
graph: an FP16 graph for FP16, Q/DQ nodes (explicit quantization) for INT8. Written at export (with ``--int8``);
engines are built from them on the target GPU by ``sc2edge.export.tensorrt``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sc2edge._lazy import lazy_import

MIN_OPSET = 13  # per-axis QuantizeLinear/DequantizeLinear

# ONNX ops the TensorRT 10/11 ONNX parser supports that these graphs may contain (a deliberately short list:
# a new op in an export must be checked against TensorRT's operator support matrix before it is added).
TRT_SUPPORTED_OPS = frozenset({
    "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "Conv",
    "ConstantOfShape", "ConvTranspose", "DequantizeLinear", "Div", "Erf", "Exp", "Expand", "Flatten", "Gather", "Gemm",
    "GlobalAveragePool", "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "Log", "MatMul", "Max", "MaxPool",
    "Min", "Mul", "Neg", "Pad", "Pow", "PRelu", "QuantizeLinear", "Reciprocal", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSum", "Relu", "Reshape", "Resize", "Round", "Shape", "Sigmoid", "Slice",
    "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze",
})


# ---------------------------------------------------------------------------------------------- FP16 graph
def to_fp16(model: Any) -> Any:
    """An ONNX model with float32 weights and computation turned into float16, keeping float32 inputs/outputs.

    TensorRT 11 builds strongly typed networks only, so FP16 must be in the graph itself.
    """
    onnx = lazy_import("onnx")
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
            elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
    casts_in, casts_out = [], []
    for value in graph.input:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            half = f"{value.name}_fp16"
            for node in graph.node:
                node.input[:] = [half if name == value.name else name for name in node.input]
            casts_in.append(helper.make_node("Cast", [value.name], [half], to=TensorProto.FLOAT16,
                                             name=f"{value.name}_to_fp16"))
    for value in graph.output:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            half = f"{value.name}_fp16"
            for node in graph.node:  # its producer and any consumer (an output that feeds more nodes) use fp16
                node.output[:] = [half if name == value.name else name for name in node.output]
                node.input[:] = [half if name == value.name else name for name in node.input]
            casts_out.append(helper.make_node("Cast", [half], [value.name], to=TensorProto.FLOAT,
                                              name=f"{value.name}_to_fp32"))
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def write_fp16_onnx(fp32_path: str | Path, out: str | Path) -> Path:
    """The FP16 TensorRT-ready graph of an FP32 ONNX file."""
    onnx = lazy_import("onnx")
    onnx.save(to_fp16(onnx.load(str(fp32_path))), str(out))
    return Path(out)


# ----------------------------------------------------------------------------------------- conformance
@dataclass
class TrtConformance:
    """Whether a Q/DQ ONNX graph follows TensorRT's explicit-quantization rules. Truthy when it does.

    Attributes:
        violations (list[str]): one line per broken rule.
        quantized_convs (list[str]): convs whose input and weights come through DequantizeLinear.
        float_convs (list[str]): convs left in float (excluded on purpose, e.g. by accuracy control).
    """

    violations: list[str] = field(default_factory=list)
    quantized_convs: list[str] = field(default_factory=list)
    float_convs: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.violations

    def __str__(self) -> str:
        head = (f"TensorRT Q/DQ conformance: {'PASS' if self else 'FAIL'} ({len(self.quantized_convs)} INT8 convs, "
                f"{len(self.float_convs)} float convs)")
        return "\n".join([head, *(f"  - {v}" for v in self.violations)])


def check_trt_qdq(model: Any, *, allowed_ops: Iterable[str] = TRT_SUPPORTED_OPS) -> TrtConformance:
    """Check an ONNX model (path or ModelProto) against TensorRT's Q/DQ rules.

    Rules: opset >= 13; every QuantizeLinear/DequantizeLinear is int8 with all zero points 0 and positive
    scales; weight DequantizeLinear is per-channel on axis 0 (one scale per output channel) over an int8
    initializer; each quantized Conv takes both its input and its weights from DequantizeLinear (the pattern
    TensorRT fuses into an INT8 kernel), with a float bias; QuantizeLinear feeds only DequantizeLinear; and
    every op is on ``allowed_ops``.
    """
    onnx = lazy_import("onnx")
    from onnx import TensorProto, numpy_helper

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    report = TrtConformance()
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < MIN_OPSET:
        report.violations.append(f"opset {opset} < {MIN_OPSET}: per-channel Q/DQ needs opset 13")
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    allowed = set(allowed_ops)

    def const(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = producers.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    for node in graph.node:
        label = node.name or f"{node.op_type}->{node.output[0]}"
        if node.domain not in ("", "ai.onnx") or node.op_type not in allowed:
            report.violations.append(f"{label}: op {node.domain + '.' if node.domain else ''}{node.op_type} is not "
                                     "on the TensorRT allow-list")
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale = const(node.input[1])
        if scale is None or not np.all(scale > 0):
            report.violations.append(f"{label}: scale must be a positive constant")
        if len(node.input) < 3 or not node.input[2]:
            report.violations.append(f"{label}: no zero point (defaults to uint8); TensorRT needs an int8 zero point 0")
        else:
            zp_init = inits.get(node.input[2])
            zero_point = const(node.input[2])
            dtype = zp_init.data_type if zp_init is not None else (zero_point.dtype if zero_point is not None else None)
            if dtype not in (TensorProto.INT8, np.dtype(np.int8)):
                report.violations.append(f"{label}: zero point type must be int8 (symmetric), got {dtype}")
            if zero_point is None or np.any(zero_point != 0):
                report.violations.append(f"{label}: zero point must be 0 (TensorRT quantization is symmetric)")
        if node.op_type == "QuantizeLinear":
            users = consumers.get(node.output[0], [])
            if not users or any(u.op_type != "DequantizeLinear" for u in users):
                report.violations.append(f"{label}: QuantizeLinear must feed DequantizeLinear only")
        elif node.input[0] in inits:  # weight DequantizeLinear
            weight = inits[node.input[0]]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if weight.data_type != TensorProto.INT8:
                report.violations.append(f"{label}: quantized weights must be int8")
            if scale is not None and scale.size > 1 and (axis != 0 or scale.size != weight.dims[0]):
                report.violations.append(f"{label}: per-channel weight scales must lie on axis 0 "
                                         f"(axis {axis}, {scale.size} scales for {weight.dims[0]} channels)")

    for node in graph.node:
        if node.op_type != "Conv":
            continue
        label = node.name or node.output[0]
        sources = [producers.get(name) for name in node.input[:2]]
        from_dq = [s is not None and s.op_type == "DequantizeLinear" for s in sources]
        if all(from_dq):
            report.quantized_convs.append(label)
            if len(node.input) > 2 and node.input[2] and producers.get(node.input[2]) is not None \
                    and producers[node.input[2]].op_type == "DequantizeLinear":
                report.violations.append(f"{label}: bias must stay float (TensorRT adds it in float)")
        elif any(from_dq):
            which = "input" if from_dq[0] else "weights"
            report.violations.append(f"{label}: only its {which} come through DequantizeLinear; TensorRT fuses "
                                     "INT8 convs only when both input and weights do")
        else:
            report.float_convs.append(label)
    if not report.quantized_convs:
        report.violations.append("no quantized Conv: this is not an INT8 Q/DQ graph")
    return report
