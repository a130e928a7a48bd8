"""The two deployable halves of a split model, in the form that exports cleanly.

GDN's reparametrization (pedestal, lower bound) is folded into constants first, leaving the plain
Abs -> Conv1x1 -> Reciprocal/Mul pattern that ONNX Runtime, OpenVINO, INT8 tools and TensorRT handle best.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from compressai.layers import GDN
from torch import Tensor, nn

from sc2edge.zoo import SplitClassifier


class FoldedGDN(nn.Module):
    """GDN with beta and gamma as constants. GDN1 (Johnston et al., 2019): y = x / (beta + gamma * |x|) (inverse:
    x * (...)); GDN (Balle et al., 2016, CompressAI's image codecs): y = x * rsqrt(beta + gamma * x^2) (inverse:
    x * sqrt(...))."""

    def __init__(self, gdn: GDN):
        super().__init__()
        channels = gdn.beta.shape[0]
        with torch.no_grad():
            self.register_buffer("beta", gdn.beta_reparam(gdn.beta).detach().clone())
            gamma = gdn.gamma_reparam(gdn.gamma).detach().clone()
            self.register_buffer("gamma", gamma.reshape(channels, channels, 1, 1))
        self.inverse = gdn.inverse
        self.squared = type(gdn).__name__ == "GDN"

    def forward(self, x: Tensor) -> Tensor:
        if self.squared:
            norm = F.conv2d(x * x, self.gamma, self.beta)
            return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)
        norm = F.conv2d(torch.abs(x), self.gamma, self.beta)
        return x * norm if self.inverse else x / norm


def fold_gdn(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every GDN1 and GDN replaced by its constant-folded equivalent."""
    module = copy.deepcopy(module)
    for name, child in list(module.named_children()):
        if isinstance(child, GDN):
            if type(child).__name__ not in ("GDN", "GDN1"):
                raise NotImplementedError(f"only GDN and GDN1 are folded; {name} is {type(child).__name__}")
            setattr(module, name, FoldedGDN(child))
        else:
            setattr(module, name, fold_gdn(child))
    return module


def _medians(model: SplitClassifier) -> Tensor:
    return model.bottleneck_layer.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1).clone()


class DeviceGraph(nn.Module):
    """Image -> int32 symbols ``round(y - median)``: exactly what EntropyBottleneck.compress codes."""

    def __init__(self, model: SplitClassifier):
        super().__init__()
        self.encoder = fold_gdn(model.bottleneck_layer.encoder)
        self.register_buffer("medians", _medians(model))

    def forward(self, image: Tensor) -> Tensor:
        return torch.round(self.encoder(image) - self.medians).to(torch.int32)


class PixelInput(nn.Module):
    """uint8 NHWC pixels (as decoded: a camera frame, PIL's array) -> ``graph`` on the normalized float32 NCHW
    image, inside the graph: Transpose on bytes, Cast, then the host path's own ops in its order (/ 255, - mean,
    / std), so ONNX Runtime feeds the first conv the same float32 values the float input did and no float image
    is built on the device. NHWC because that is how pixels arrive: the device copies nothing to feed it."""

    def __init__(self, graph: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.graph = graph
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, pixels: Tensor) -> Tensor:
        image = pixels.permute(0, 3, 1, 2).to(torch.float32)
        return self.graph((image / 255.0 - self.mean) / self.std)


class LatentServerGraph(nn.Module):
    """A float latent (CR+BQ's dequantized z_hat, a hyperprior's y_hat) (+ the tail's other inputs) -> ``decoder``
    -> task tail, GDN folded."""

    def __init__(self, model: SplitClassifier, decoder: nn.Module):
        super().__init__()
        self.decoder = fold_gdn(decoder)
        self.tail = fold_gdn(model)  # forward_tail only reads the tail modules
        self.tail.bottleneck_layer = nn.Module()  # drop the duplicated bottleneck weights from the export

    def forward(self, latent: Tensor, *tail_inputs: Tensor) -> Tensor:
        return self.tail.forward_tail(self.decoder(latent), *tail_inputs)


class ServerGraph(LatentServerGraph):
    """int32 symbols (+ the tail's other inputs, e.g. the image size) -> ``symbols + median`` -> decoder -> task
    tail: what EntropyBottleneck.decompress feeds on."""

    def __init__(self, model: SplitClassifier):
        super().__init__(model, model.bottleneck_layer.decoder)
        self.register_buffer("medians", _medians(model))

    def forward(self, symbols: Tensor, *tail_inputs: Tensor) -> Tensor:
        return super().forward(symbols.to(torch.float32) + self.medians, *tail_inputs)
