"""Mean-scale-hyperprior Entropic Students (sc2bench's "mshp" ``MSHPBasedResNetBottleneck``).

The latent y = g_a(x) is coded with a Gaussian per symbol whose scale and mean come from a side network
h_s applied to a second, factorized-prior latent z = h_a(y) (Minnen et al., NeurIPS 2018). Attribute names
follow sc2bench (``bottleneck_layer.{g_a,h_a,h_s,g_s,entropy_bottleneck,gaussian_conditional}``), so its
checkpoints load without renaming; the table buffers of both entropy models have data-dependent sizes and
are resized by ``CompressionModel.load_state_dict``.
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor, nn

from sc2edge.zoo.entropic_student import EntropicStudentResNet50, gdn_encoder, igdn_decoder, resnet50_reference
from sc2edge.zoo.registry import register_builder, register_reference


def mshp_side_networks(bottleneck_channels: int, latent_channels: int) -> tuple[nn.Sequential, nn.Sequential]:
    """sc2bench's h_a (y -> z) and h_s (z_hat -> scales ++ means), no biases."""
    hidden = latent_channels * 3 // 2
    h_a = nn.Sequential(
        nn.Conv2d(bottleneck_channels, latent_channels, 5, 2, 1, bias=False),
        nn.LeakyReLU(inplace=True),
        nn.Conv2d(latent_channels, latent_channels, 5, 2, 2, bias=False),
    )
    h_s = nn.Sequential(
        nn.ConvTranspose2d(latent_channels, latent_channels, 5, 2, 1, bias=False),
        nn.LeakyReLU(inplace=True),
        nn.ConvTranspose2d(latent_channels, hidden, 5, 2, 1, bias=False),
        nn.LeakyReLU(inplace=True),
        nn.Conv2d(hidden, bottleneck_channels * 2, 5, 1, 0, bias=False),
    )
    return h_a, h_s


def shp_side_networks(bottleneck_channels: int, latent_channels: int) -> tuple[nn.Sequential, nn.Sequential]:
    """sc2bench's scale-hyperprior h_a (|y| -> z, ReLU) and h_s (z_hat -> scales), no biases."""
    h_a = nn.Sequential(
        nn.Conv2d(bottleneck_channels, latent_channels, 5, 2, 1, bias=False),
        nn.ReLU(inplace=True),
        nn.Conv2d(latent_channels, latent_channels, 5, 2, 2, bias=False),
    )
    h_s = nn.Sequential(
        nn.ConvTranspose2d(latent_channels, latent_channels, 5, 2, 1, bias=False),
        nn.LeakyReLU(inplace=True),
        nn.ConvTranspose2d(latent_channels, latent_channels, 5, 2, 1, bias=False),
        nn.LeakyReLU(inplace=True),
        nn.Conv2d(latent_channels, bottleneck_channels, 5, 1, 0, bias=False),
    )
    return h_a, h_s


class MeanScaleHyperpriorBottleneck(nn.Module):
    """g_a (device) -> y; h_a -> z (EntropyBottleneck); h_s(z_hat) -> Gaussian scales and means of y; g_s (server).

    The GaussianConditional starts without a scale table, as in sc2bench; ``update()`` (CompressionModel) sets
    CompressAI's default ``get_scale_table()`` and computes its CDFs, or a checkpoint brings them.
    """

    predicts_means = True  # h_s gives scales and means (export and the index path read this)

    def __init__(self, bottleneck_channels: int = 24, latent_channels: int = 16, target_channels: int = 256):
        super().__init__()
        self.g_a = gdn_encoder([3, bottleneck_channels * 4, bottleneck_channels * 2, bottleneck_channels],
                               kernels=[5, 5, 2], strides=[2, 2, 1])
        self.g_s = igdn_decoder([bottleneck_channels, target_channels * 2, target_channels, target_channels],
                                kernels=[2, 2, 2], paddings=[1, 0, 1])
        self.h_a, self.h_s = mshp_side_networks(bottleneck_channels, latent_channels)
        self.entropy_bottleneck = EntropyBottleneck(latent_channels)
        self.gaussian_conditional = GaussianConditional(None)

    def gaussian_params(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """(scales, means) of y from the received side latent."""
        scales, means = self.h_s(z_hat).chunk(2, 1)
        return scales, means

    def received_side_latent(self, y: Tensor) -> Tensor:
        """z_hat exactly as the receiver gets it: round(h_a(y) - median) + median."""
        z = self.h_a(y if self.predicts_means else torch.abs(y))
        medians = self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
        return torch.round(z - medians) + medians

    def received_latent(self, x: Tensor) -> Tensor:
        """y_hat = round(y - means) + means with the means of h_s(z_hat): sc2bench's encode + decode, in float."""
        y = self.g_a(x)
        _, means = self.gaussian_params(self.received_side_latent(y))
        return torch.round(y - means) + means

    def quantized(self, x: Tensor) -> Tensor:
        return self.g_s(self.received_latent(x))

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Training path: noisy latents, and the likelihoods of y and z for the rate term."""
        y = self.g_a(x)
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(y))
        scales, means = self.gaussian_params(z_hat)
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
        return self.g_s(y_hat), {"y": y_likelihoods, "z": z_likelihoods}


class ScaleHyperpriorBottleneck(MeanScaleHyperpriorBottleneck):
    """sc2bench's ``SHPBasedResNetBottleneck``: z = h_a(|y|), h_s(z_hat) gives the scales only, y symbols round(y)."""

    predicts_means = False

    def __init__(self, bottleneck_channels: int = 24, latent_channels: int = 16, target_channels: int = 256):
        super().__init__(bottleneck_channels, latent_channels, target_channels)
        self.h_a, self.h_s = shp_side_networks(bottleneck_channels, latent_channels)

    def gaussian_params(self, z_hat: Tensor) -> tuple[Tensor, None]:
        return self.h_s(z_hat), None

    def received_latent(self, x: Tensor) -> Tensor:
        return torch.round(self.g_a(x))

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        y = self.g_a(x)
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(torch.abs(y)))
        y_hat, y_likelihoods = self.gaussian_conditional(y, self.h_s(z_hat))
        return self.g_s(y_hat), {"y": y_likelihoods, "z": z_likelihoods}


class MeanScaleHyperpriorResNet50(EntropicStudentResNet50):
    """ResNet-50 with conv1..layer1 replaced by sc2bench's mshp bottleneck (24 bottleneck, 16 latent channels), or
    with ``means=False`` its shp (scale-hyperprior) one."""

    def __init__(self, num_classes: int = 1000, bottleneck_channels: int = 24, latent_channels: int = 16,
                 means: bool = True):
        super().__init__(num_classes=num_classes)
        bottleneck = MeanScaleHyperpriorBottleneck if means else ScaleHyperpriorBottleneck
        self.bottleneck_layer = bottleneck(bottleneck_channels, latent_channels)

    @property
    def latent_channels(self) -> int:
        """Channels of y, the latent the server's decoder reads (z has ``side_channels``)."""
        return self.bottleneck_layer.g_a[-1].out_channels

    @property
    def side_channels(self) -> int:
        return self.bottleneck_layer.entropy_bottleneck.channels

    def encoder_geometry(self) -> list[tuple[int, int, int]]:
        return [(m.kernel_size[0], m.stride[0], m.padding[0])
                for m in self.bottleneck_layer.g_a.modules() if isinstance(m, nn.Conv2d)]


@register_builder("mshp_student_resnet50")
def mshp_student_resnet50(*, num_classes: int = 1000) -> MeanScaleHyperpriorResNet50:
    return MeanScaleHyperpriorResNet50(num_classes=num_classes)


@register_builder("shp_student_resnet50")
def shp_student_resnet50(*, num_classes: int = 1000) -> MeanScaleHyperpriorResNet50:
    return MeanScaleHyperpriorResNet50(num_classes=num_classes, means=False)


register_reference("mshp_student_resnet50")(resnet50_reference)  # the same teacher: torchvision's ResNet-50
register_reference("shp_student_resnet50")(resnet50_reference)
