"""The hyperprior's side network h_s and Gaussian tables, from a PyTorch model into the runtime's arrays."""

from __future__ import annotations

import numpy as np
from torch import nn

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.hyperprior import IndexPath, SideLayer
from sc2edge.runtime.rans import EntropyTables


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
