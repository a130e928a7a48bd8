"""Compute per stage: MACs and parameters counted twice, on the PyTorch modules and on the exported ONNX graph.

The two counts catch different mistakes: the PyTorch count (``torch.utils.flop_counter``) sees what the model
means, the ONNX count (onnx-tool, every node) sees what the runtime will execute. ``FlopCounterMode`` counts
only convolutions and matrix products and silently counts elementwise work as zero (GDN's abs, reciprocal and
multiply, batch norm, ReLU, residual adds); formulas for those are added here with the same per-element costs
as onnx-tool's cost model, so the two totals are comparable and a disagreement means the graphs differ.

MACs here are multiply-accumulates for Conv/Gemm/MatMul (bias adds included, as onnx-tool counts them) plus
elementwise operations weighted by onnx-tool's per-element costs (add/mul/abs/compare 1, divide/reciprocal 4,
pow/exp 32, sqrt 24). FLOPs = 2 x MACs. Batch norm is counted as the one add per element it becomes once the
exporter folds it into the preceding convolution.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sc2edge.errors import Sc2edgeError

DENSE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Per-element costs of onnx-tool's cost model (onnx_tool/node.py: ADD/MUL/CMP 1, DIV 4, EXP/POW 32, SQRT 24).
_ELEMENTWISE_COST = {
    "abs": 1, "add": 1, "add_": 1, "sub": 1, "sub_": 1, "mul": 1, "mul_": 1, "neg": 1, "round": 1,
    "relu": 1, "relu_": 1, "maximum": 1, "minimum": 1, "clamp": 1, "clamp_min": 1, "div": 4, "div_": 4,
    "reciprocal": 4, "pow": 32, "exp": 32, "sqrt": 24, "rsqrt": 28,
}
DISAGREEMENT_TOLERANCE = 0.01  # relative difference above which the report warns


@dataclass
class StageCount:
    """One stage's compute as one counter sees it."""

    macs: int  # dense + elementwise, onnx-tool's cost model
    dense_macs: int  # Conv/Gemm/MatMul multiply-accumulates without bias adds
    params: int
    by_op: dict[str, int] = field(default_factory=dict)
    activation_bytes_total: int | None = None  # every intermediate tensor, summed (ONNX only)
    activation_bytes_peak: int | None = None  # the most alive at once, executing nodes in graph order (ONNX only)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "flops": self.flops}


# ----------------------------------------------------------------------------------------------- ONNX side


def _load_onnx_tool():
    try:
        import onnx_tool
    except ImportError:
        return None
    return onnx_tool


def onnx_available() -> bool:
    return _load_onnx_tool() is not None


def count_onnx(path: str | Path, inputs: dict[str, tuple[tuple[int, ...], np.dtype] | np.ndarray],
               split: tuple[str, str, str] | None = None) -> dict[str, StageCount]:
    """Count every node of an ONNX graph at the given input shapes.

    Args:
        path (str | Path): the ONNX file.
        inputs (dict): input name -> (shape, dtype) of a zero input, or an example value (an input whose values
            fix shapes, such as a segmenter's image size).
        split (tuple[str, str, str] | None): (marker, first, second): divide the graph after the last node whose
            name contains ``marker`` (for example the server graph into "decoder" and "tail"); when no node name
            contains it, only "all" is returned. Defaults to None (only "all").

    Returns:
        dict[str, StageCount]: "all" (whole graph, with its activation memory) and the split stages if any.
    """
    graph = _profiled_graph(path, inputs)
    nodes = list(graph.nodemap.values())
    stage_of = ["all"] * len(nodes)
    if split is not None:
        marker, first, second = split
        marked = [i for i, node in enumerate(nodes) if marker in node.name]
        if marked:
            stage_of = [first if i <= marked[-1] else second for i in range(len(nodes))]
    counts = {s: StageCount(macs=0, dense_macs=0, params=0) for s in dict.fromkeys(stage_of)}
    for node, stage in zip(nodes, stage_of, strict=True):
        count = counts[stage]
        macs = int(node.macs[0])
        count.macs += macs
        count.params += int(node.params)
        count.by_op[node.op_type] = count.by_op.get(node.op_type, 0) + macs
        if node.op_type in DENSE_OPS:
            bias = math.prod(graph.tensormap[node.output[0]].get_shape()) if len(node.input) > 2 else 0
            count.dense_macs += macs - bias
    if "all" in counts:
        total = counts["all"]
    else:
        total = StageCount(macs=sum(c.macs for c in counts.values()),
                           dense_macs=sum(c.dense_macs for c in counts.values()),
                           params=sum(c.params for c in counts.values()))
        for c in counts.values():
            for op, macs in c.by_op.items():
                total.by_op[op] = total.by_op.get(op, 0) + macs
    total.activation_bytes_total, total.activation_bytes_peak = _activation_memory(graph)
    counts["all"] = total
    return counts


def _profiled_graph(path: str | Path, inputs: dict[str, tuple[tuple[int, ...], np.dtype] | np.ndarray]):
    """onnx-tool's graph of ``path`` with shapes inferred and every node's cost counted at ``inputs``."""
    onnx_tool = _load_onnx_tool()
    if onnx_tool is None:
        raise ImportError("onnx-tool is not installed (pip install sc2edge[bench])")
    with contextlib.redirect_stdout(io.StringIO()):
        graph = onnx_tool.Model(str(path)).graph
        graph.shape_infer({name: value if isinstance(value, np.ndarray) else np.zeros(*value)
                           for name, value in inputs.items()})
        graph.profile()
    return graph


@dataclass(frozen=True)
class DenseLayer:
    """One Conv/Gemm/MatMul node as a per-layer roofline sees it."""

    name: str
    op: str
    flops: int  # 2 x multiply-accumulates, bias adds left out
    bytes: int  # its activation inputs, weights and output, each moved once, at the graph's element sizes


def dense_layers(path: str | Path, inputs: dict[str, tuple[tuple[int, ...], np.dtype] | np.ndarray]
                 ) -> list[DenseLayer]:
    """The graph's dense nodes with their FLOPs and the least memory traffic they need: every input, weight and
    output tensor read or written once (a perfect cache inside the layer) and the element-wise nodes between them
    fused away (they add no traffic). The lower bound a per-layer roofline needs: it can only flatter no one."""
    graph = _profiled_graph(path, inputs)
    layers = []
    for node in graph.nodemap.values():
        if node.op_type not in DENSE_OPS:
            continue
        bias = math.prod(graph.tensormap[node.output[0]].get_shape()) if len(node.input) > 2 else 0
        moved = sum(int(graph.tensormap[name].get_memsize()) for name in [*node.input, *node.output] if name)
        layers.append(DenseLayer(node.name, node.op_type, 2 * (int(node.macs[0]) - bias), moved))
    return layers


def _activation_memory(graph) -> tuple[int, int]:
    """Bytes of all intermediate tensors, and the peak alive at once when nodes run in graph order."""
    nodes = list(graph.nodemap.values())
    constant = set(graph.initials)
    for node in nodes:
        if node.op_type == "Constant":
            constant.update(node.output)
    last_use: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            if name and name not in constant:
                last_use[name] = i
    for name in graph.output:
        last_use[name] = len(nodes)
    size = {name: int(graph.tensormap[name].get_memsize()) for name in graph.tensormap if name not in constant}
    live = {name for name in graph.input if name in size}
    current = peak = sum(size[n] for n in live)
    total = 0
    for i, node in enumerate(nodes):
        for name in node.output:
            if name in size and name not in constant:
                live.add(name)
                current += size[name]
                total += size[name]
        peak = max(peak, current)
        for name in [n for n in live if last_use.get(n, -1) <= i]:
            live.discard(name)
            current -= size[name]
    return total, peak


# -------------------------------------------------------------------------------------------- PyTorch side


def _torch_formulas() -> dict[Any, Any]:
    """FlopCounterMode formulas (in FLOPs = 2 x MACs) for what it counts as zero, plus bias adds."""
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten

    def numel(shape) -> int:
        while isinstance(shape, (tuple, list)) and shape and isinstance(shape[0], (tuple, list, torch.Size)):
            shape = shape[0]  # ops returning several tensors: the first is the result
        return math.prod(shape)

    def elementwise(cost: int):
        return lambda *args, out_shape=None, **kwargs: 2 * cost * numel(out_shape)

    def conv(x_shape, w_shape, bias, stride, padding, dilation, transposed, *args, out_shape=None, **kwargs):
        dense = flop_counter.conv_flop_count(x_shape, w_shape, out_shape, transposed=transposed)
        return dense + (2 * numel(out_shape) if bias is not None else 0)

    def addmm(bias_shape, a_shape, b_shape, *args, out_shape=None, **kwargs):
        return flop_counter.mm_flop(a_shape, b_shape) + 2 * numel(out_shape)

    def adaptive_avg_pool(x_shape, *args, out_shape=None, **kwargs):
        return 2 * (math.prod(x_shape) + 4 * numel(out_shape))

    def max_pool(x_shape, kernel, *args, out_shape=None, **kwargs):
        return 2 * numel(out_shape) * math.prod(kernel)

    mapping: dict[Any, Any] = {
        getattr(aten, name): elementwise(cost) for name, cost in _ELEMENTWISE_COST.items() if hasattr(aten, name)
    }
    for name in ("_native_batch_norm_legit_no_training", "native_batch_norm", "batch_norm"):
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = elementwise(1)
    mapping[aten.convolution] = conv
    mapping[aten.addmm] = addmm
    mapping[aten._adaptive_avg_pool2d] = adaptive_avg_pool
    mapping[aten.mean] = adaptive_avg_pool  # AdaptiveAvgPool2d(1) runs as a mean over H, W
    mapping[aten.max_pool2d_with_indices] = max_pool
    return mapping


def _count_module(fn, *inputs) -> tuple[int, int]:
    """(MACs with the formulas above, dense Conv/mm MACs) of one call of ``fn``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    dense_ops = {torch.ops.aten.convolution, torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_torch_formulas()) as counter:
        fn(*inputs)
    total = counter.get_total_flops()
    with torch.no_grad(), FlopCounterMode(display=False) as plain:
        fn(*inputs)
    dense = sum(v for op, v in plain.get_flop_counts()["Global"].items() if op in dense_ops)
    return total // 2, dense // 2


def count_torch(model_name: str, channels: int, height: int, width: int) -> dict[str, StageCount]:
    """Count the registered model's device, decoder and tail stages at one input size.

    The stages are the exported modules (GDN folded, median and rounding included) so the count lines up with
    the ONNX graphs node for node; the parameter counts are the zoo model's learned weights per stage.
    """
    import torch

    from sc2edge.zoo import get_model
    from sc2edge.zoo.graphs import DeviceGraph, ServerGraph

    model = get_model(model_name).model
    if hasattr(model.bottleneck_layer, "gaussian_conditional"):
        raise Sc2edgeError("PyTorch-side counts cover factorized-prior students; a hyperprior is counted on ONNX")
    device, server = DeviceGraph(model).eval(), ServerGraph(model).eval()
    image = torch.zeros(1, channels, height, width)
    with torch.no_grad():
        symbols = device(image)
        features = server.decoder(symbols.to(torch.float32) + server.medians)
    bottleneck = model.bottleneck_layer
    tail_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("bottleneck_layer."))
    stages = {
        "device": (device, (image,), sum(p.numel() for p in bottleneck.encoder.parameters())),
        "decoder": (lambda s: server.decoder(s.to(torch.float32) + server.medians), (symbols,),
                    sum(p.numel() for p in bottleneck.decoder.parameters())),
        "tail": (server.tail.forward_tail, (features, *model.tail_inputs(image)), tail_params),
    }
    counts = {}
    for stage, (fn, inputs, params) in stages.items():
        macs, dense = _count_module(fn, *inputs)
        counts[stage] = StageCount(macs=macs, dense_macs=dense, params=int(params))
    return counts


def compare(torch_count: StageCount | None, onnx_count: StageCount | None,
            tolerance: float = DISAGREEMENT_TOLERANCE) -> str | None:
    """A warning when the two counters disagree by more than ``tolerance`` (relative), else None."""
    if torch_count is None or onnx_count is None:
        return None
    problems = []
    for key in ("dense_macs", "macs"):
        a, b = getattr(torch_count, key), getattr(onnx_count, key)
        if abs(a - b) > tolerance * max(a, b, 1):
            problems.append(f"{key}: PyTorch {a:,} vs ONNX {b:,} ({(b - a) / max(a, 1):+.1%})")
    return "; ".join(problems) or None


def kmac_per_pixel(macs: int, height: int, width: int) -> float:
    """MACs per input pixel in thousands: the unit of MPEG's feature coding work and CompressAI-Vision, which lets
    models of different input sizes be compared."""
    return macs / (height * width) / 1e3
