"""Trace the device and server graphs to ONNX with dynamic batch and spatial size."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 20  # per-channel Q/DQ needs 13; torch's TorchScript exporter stops at 20
DEVICE_IO = (["image"], ["symbols"])
SERVER_INPUT = "symbols"
REFERENCE_IO = (["image"], ["logits"])  # the unmodified model: image -> logits, the split's two halves in one
PIXEL_AXES = {0: "batch", 1: "height", 2: "width"}  # a uint8 NHWC image input (zoo.graphs.PixelInput)


def export_onnx(graph: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], path: Path,
                io_names: tuple[list[str], list[str]],
                *, opset: int = DEFAULT_OPSET, spatial_dynamic: bool = True,
                output_axes: Mapping[str, Mapping[int, str]] | None = None,
                input_axes: Mapping[int, str] | None = None) -> Path:
    """Export ``graph`` to ``path``.

    Args:
        graph (nn.Module): a DeviceGraph, ServerGraph or reference model in eval mode.
        example (torch.Tensor | tuple): an input of the intended layout, or one per input (the first is the
            image or latent, with the dynamic spatial axes; the others, e.g. an image size, are fixed-shape).
        path (Path): where to write the .onnx file.
        io_names (tuple): input and output names.
        opset (int): ONNX opset. Defaults to 17.
        spatial_dynamic (bool): let height and width vary. Defaults to True.
        output_axes (Mapping | None): dynamic axes of each output by name (a task's ``OutputSpec.dynamic_axes``).
            Defaults to None: the NCHW axes for a 4-D single output, else the batch axis.
        input_axes (Mapping | None): dynamic axes of the input (``PIXEL_AXES`` for NHWC pixels). Defaults to None:
            NCHW (batch, and height and width when ``spatial_dynamic``).
    """
    inputs, outputs = io_names
    examples = example if isinstance(example, tuple) else (example,)
    axes = {0: "batch", 2: "height", 3: "width"} if spatial_dynamic else {0: "batch"}
    dynamic_axes = {inputs[0]: dict(input_axes) if input_axes is not None else axes}
    if output_axes is not None:
        dynamic_axes.update({name: dict(output_axes[name]) for name in outputs})
    else:
        dynamic_axes[outputs[0]] = axes if graph(*examples).dim() == 4 else {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph.eval(), examples, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    return path


def replace_scalar(path: Path, old: float, new: float) -> int:
    """Set every float32 scalar constant of the ONNX graph at ``path`` that equals ``old`` (initializers and
    Constant nodes) to ``new``; returns how many were set (the file is rewritten only when some were)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    tensors = [*model.graph.initializer, *(a.t for n in model.graph.node if n.op_type == "Constant"
                                           for a in n.attribute if a.name == "value")]
    replaced = 0
    for tensor in tensors:
        value = numpy_helper.to_array(tensor)
        if value.dtype == np.float32 and value.size == 1 and value.item() == np.float32(old):
            tensor.CopyFrom(numpy_helper.from_array(np.full_like(value, new), tensor.name))
            replaced += 1
    if replaced:
        onnx.save(model, str(path))
    return replaced


def dynamic_empty_branches(path: Path) -> int:
    """Rewrite each ``If`` branch that is one zero-size 1-D Constant (torchvision's ``batched_nms`` returns
    ``torch.empty(0)`` when no box passed the score cut) to slice an empty tensor of its type from the ``If``'s
    condition instead; returns how many (the file is rewritten only when some were). OpenVINO 2026.4's CPU plugin
    returns such a branch's constant as one element of uninitialized memory: a detector that found nothing
    reported one box of garbage (shape (1, 4) where ONNX Runtime gives (0, 4)); sliced, both give (0, 4)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    rewritten = 0
    for node in (n for n in model.graph.node if n.op_type == "If"):
        for branch in (a.g for a in node.attribute if a.name in ("then_branch", "else_branch")):
            if len(branch.node) != 1 or branch.node[0].op_type != "Constant" or len(branch.output) != 1:
                continue
            value = numpy_helper.to_array(branch.node[0].attribute[0].t)
            if value.size or value.ndim != 1:
                continue
            out, dtype = branch.output[0].name, branch.output[0].type.tensor_type.elem_type
            branch.node.pop()
            branch.node.extend([
                helper.make_node("Constant", [], [f"{out}_flat_shape"], value=numpy_helper.from_array(
                    np.array([-1], np.int64))),
                helper.make_node("Constant", [], [f"{out}_zero"], value=numpy_helper.from_array(
                    np.array([0], np.int64))),
                helper.make_node("Reshape", [node.input[0], f"{out}_flat_shape"], [f"{out}_flat"]),
                helper.make_node("Cast", [f"{out}_flat"], [f"{out}_cast"], to=dtype),
                helper.make_node("Slice", [f"{out}_cast", f"{out}_zero", f"{out}_zero"], [out])])
            rewritten += 1
    if rewritten:
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return rewritten
