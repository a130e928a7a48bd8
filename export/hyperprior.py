"""The hyperprior's side network h_s and Gaussian tables, from a PyTorch model into the runtime's arrays."""

from __future__ import annotations

import numpy as np
from torch import nn

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.hyperprior import IndexPath, SideLayer


def side_layers(h_s: nn.Sequential) -> tuple[SideLayer, ...]:
    """h_s's Conv2d / ConvTranspose2d / (Leaky)ReLU layers as runtime ``SideLayer``s (float32 copies)."""
    layers = []
    for i, module in enumerate(h_s):
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            square = module.kernel_size[0] == module.kernel_size[1]
            same = all(len(set(v)) == 1 for v in (module.stride, module.padding, module.dilation))
            if not square or not same or module.dilation[0] != 1 or module.groups != 1 or module.padding_mode != "zeros":
                raise Sc2edgeError(f"h_s layer {i} ({module}) is not a plain square convolution")
            transposed = isinstance(module, nn.ConvTranspose2d)
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
