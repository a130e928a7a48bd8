"""Trace the device and server graphs to ONNX with dynamic batch and spatial size."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

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
