"""Hyperprior students for deployment: device and server graphs, the side network h_s and the Gaussian tables.

The device graph stops at y and the z symbols; h_s and the index selection never enter a graph runtime: both
ends run the runtime's deterministic ``IndexPath`` instead (see ``sc2edge.runtime.hyperprior``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from sc2edge.errors import Sc2edgeError
from sc2edge.export.onnx import DEFAULT_OPSET
from sc2edge.runtime.hyperprior import IndexPath, SideLayer
from sc2edge.runtime.rans import EntropyTables
from sc2edge.zoo.graphs import fold_gdn


def side_layers(h_s: nn.Sequential) -> tuple[SideLayer, ...]:
    """h_s's Conv2d / ConvTranspose2d / (Leaky)ReLU layers as runtime ``SideLayer``s (float32 copies)."""
    layers = []
    for i, module in enumerate(h_s):
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            transposed = isinstance(module, nn.ConvTranspose2d)
            pairs = (module.kernel_size, module.stride, module.padding, module.dilation,
                     module.output_padding if transposed else (0, 0))
            plain = module.dilation[0] == 1 and module.groups == 1 and module.padding_mode == "zeros"
            if not plain or any(a != b for a, b in pairs):
                raise Sc2edgeError(f"h_s layer {i} ({module}) is not a plain square convolution")
            layers.append(SideLayer(
                kind="conv_transpose2d" if transposed else "conv2d",
                weight=module.weight.detach().cpu().numpy().astype(np.float32),
                bias=None if module.bias is None else module.bias.detach().cpu().numpy().astype(np.float32),
                stride=module.stride[0], padding=module.padding[0],
                output_padding=module.output_padding[0] if transposed else 0))
        elif isinstance(module, nn.LeakyReLU):
            layers.append(SideLayer(kind="leaky_relu", slope=float(module.negative_slope)))
        elif isinstance(module, nn.ReLU):
            layers.append(SideLayer(kind="leaky_relu", slope=0.0))
        else:
            raise Sc2edgeError(f"h_s layer {i} ({type(module).__name__}) has no deterministic implementation")
    return tuple(layers)


def index_path_of(bottleneck: nn.Module, *, means: bool = True) -> IndexPath:
    """The deterministic index path of a hyperprior bottleneck (h_s, z medians, scale table and bound)."""
    conditional = bottleneck.gaussian_conditional
    if conditional.scale_table.numel() == 0:
        raise Sc2edgeError("the Gaussian conditional has no scale table yet: run update() first")
    return IndexPath(
        layers=side_layers(bottleneck.h_s),
        z_medians=bottleneck.entropy_bottleneck._get_medians().detach().cpu().numpy().reshape(-1).astype(np.float32),
        scale_table=conditional.scale_table.detach().cpu().numpy().astype(np.float32),
        scale_bound=float(conditional.lower_bound_scale.bound.item()),
        means=means)


def gaussian_tables(conditional: nn.Module) -> EntropyTables:
    """A GaussianConditional's quantized CDFs, one row per scale-table entry, exactly as the model holds them
    (a checkpoint's tables are final; medians are unused by a conditional model and stored as zeros)."""
    if conditional._offset.numel() == 0:
        raise Sc2edgeError("the Gaussian conditional has no CDF tables yet: run update() first")
    offset = conditional._offset.detach().cpu().numpy().astype(np.int32).reshape(-1)
    return EntropyTables(
        quantized_cdf=conditional._quantized_cdf.detach().cpu().numpy().astype(np.int32),
        cdf_length=conditional._cdf_length.detach().cpu().numpy().astype(np.int32).reshape(-1),
        offset=offset, medians=np.zeros(offset.shape, np.float32))


DEVICE_OUTPUTS = ("y", "z_symbols")
SERVER_INPUT = "y_hat"


class HyperpriorDeviceGraph(nn.Module):
    """Image -> (y float32, z symbols int32 ``round(h_a(y) - median)``): what EntropyBottleneck.compress codes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        bottleneck = model.bottleneck_layer
        self.g_a = fold_gdn(bottleneck.g_a)
        self.h_a = bottleneck.h_a
        medians = bottleneck.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1).clone()
        self.register_buffer("z_medians", medians)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        y = self.g_a(image)
        return y, torch.round(self.h_a(y) - self.z_medians).to(torch.int32)


class HyperpriorServerGraph(nn.Module):
    """y_hat (y symbols + means, from the index path) -> g_s -> the task tail."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.g_s = fold_gdn(model.bottleneck_layer.g_s)
        self.tail = fold_gdn(model)  # forward_tail only reads the tail modules
        self.tail.bottleneck_layer = nn.Module()  # drop the duplicated bottleneck weights from the export

    def forward(self, y_hat: Tensor) -> Tensor:
        return self.tail.forward_tail(self.g_s(y_hat))


def export_hyperprior_graphs(model: nn.Module, out_dir: Path, size: int, *, opset: int = DEFAULT_OPSET
                             ) -> dict[str, Path]:
    """Write device.fp32.onnx, server.fp32.onnx and side.npz (the IndexPath) for a hyperprior student."""
    out_dir = Path(out_dir)
    device, server = HyperpriorDeviceGraph(model).eval(), HyperpriorServerGraph(model).eval()
    image = torch.zeros(1, 3, size, size)
    axes = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        y, _ = device(image)
        torch.onnx.export(device, (image,), str(out_dir / "device.fp32.onnx"), input_names=["image"],
                          output_names=list(DEVICE_OUTPUTS), dynamic_axes={n: axes for n in ("image",
                                                                                             *DEVICE_OUTPUTS)},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
        torch.onnx.export(server, (y,), str(out_dir / "server.fp32.onnx"), input_names=[SERVER_INPUT],
                          output_names=["logits"], dynamic_axes={SERVER_INPUT: axes, "logits": axes},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    np.savez(out_dir / "side.npz", **index_path_of(model.bottleneck_layer).to_arrays())
    return {"device": out_dir / "device.fp32.onnx", "server": out_dir / "server.fp32.onnx",
            "side": out_dir / "side.npz"}
