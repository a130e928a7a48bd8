"""Trace the device and server graphs to ONNX with dynamic batch and spatial size."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 20  # per-channel Q/DQ needs 13; torch's TorchScript exporter stops at 20
DEVICE_IO = (["image"], ["symbols"])
SERVER_IO = (["symbols"], ["logits"])


def export_onnx(graph: nn.Module, example: torch.Tensor, path: Path, io_names: tuple[list[str], list[str]],
                *, opset: int = DEFAULT_OPSET, spatial_dynamic: bool = True) -> Path:
    """Export ``graph`` to ``path``.

    Args:
        graph (nn.Module): a DeviceGraph or ServerGraph in eval mode.
        example (torch.Tensor): an input of the intended layout.
        path (Path): where to write the .onnx file.
        io_names (tuple): input and output names.
        opset (int): ONNX opset. Defaults to 17.
        spatial_dynamic (bool): let height and width vary. Defaults to True.
    """
    inputs, outputs = io_names
    axes = {0: "batch", 2: "height", 3: "width"} if spatial_dynamic else {0: "batch"}
    dynamic_axes = {inputs[0]: axes}
    out_rank = graph(example).dim()
    dynamic_axes[outputs[0]] = axes if out_rank == 4 else {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph.eval(), (example,), str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    return path
