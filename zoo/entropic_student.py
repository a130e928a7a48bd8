"""The Entropic Student (Matsubara et al., "Supervised Compression for Resource-Constrained Edge Computing
Systems", WACV 2022): a light encoder with a learned entropy bottleneck in place of a teacher's first
layers, a decoder that reconstructs the teacher's features, and the teacher's remaining layers as the tail.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN1
from compressai.models import CompressionModel
from torch import Tensor, nn

from sc2edge.zoo.registry import ModelSpec, ReferenceModel, register_builder, register_reference


class BottleneckLayer(nn.Module):
    """Encoder g_a (device) -> entropy bottleneck -> decoder g_s (server), named as in sc2bench."""

    def __init__(self, encoder: nn.Sequential, decoder: nn.Sequential, latent_channels: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.entropy_bottleneck = EntropyBottleneck(latent_channels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Training path: noisy latent through the decoder, and the latent's likelihoods for the rate term."""
        y_hat, likelihoods = self.entropy_bottleneck(self.encoder(x))
        return self.decoder(y_hat), likelihoods

    def received_latent(self, x: Tensor) -> Tensor:
        """The latent exactly as a receiver reconstructs it from the stream: round(y - median) + median."""
        y = self.encoder(x)
        medians = self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
        return torch.round(y - medians) + medians

    def quantized(self, x: Tensor) -> Tensor:
        """Inference path: the decoder runs on the received latent."""
        return self.decoder(self.received_latent(x))


class SplitClassifier(CompressionModel):
    """A classifier split after an entropy bottleneck. Subclasses define the tail (server-side task layers).

    Inheriting CompressionModel gives ``load_state_dict`` that resizes the entropy tables (their size
    depends on the trained density) and maps CompressAI <= 1.2.5 parameter names to the current ones.
    """

    bottleneck_layer: BottleneckLayer

    def forward_tail(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def tail_inputs(self, image: Tensor) -> tuple[Tensor, ...]:
        """What ``forward_tail`` takes after the latent for an input ``image`` (e.g. a segmenter's image size):
        the server graph's inputs beside the symbols, in the task's ``extra_inputs`` order."""
        return ()

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_tail(self.bottleneck_layer.quantized(x), *self.tail_inputs(x))

    @property
    def latent_channels(self) -> int:
        return self.bottleneck_layer.entropy_bottleneck.channels

    def encoder_geometry(self) -> list[tuple[int, int, int]]:
        """(kernel, stride, padding) of each encoder conv: the latent's spatial size follows from these."""
        return [
            (m.kernel_size[0], m.stride[0], m.padding[0])
            for m in self.bottleneck_layer.encoder.modules()
            if isinstance(m, nn.Conv2d)
        ]


def gdn_encoder(channels: Sequence[int], kernels: Sequence[int], strides: Sequence[int]) -> nn.Sequential:
    """Conv (no bias) + GDN1 blocks; the last conv has no GDN (it emits the latent)."""
    layers: list[nn.Module] = []
    for i, (k, s) in enumerate(zip(kernels, strides, strict=True)):
        padding = (k - 1) // 2 if s > 1 else 0
        layers.append(nn.Conv2d(channels[i], channels[i + 1], k, s, padding, bias=False))
        if i < len(kernels) - 1:
            layers.append(GDN1(channels[i + 1]))
    return nn.Sequential(*layers)


def igdn_decoder(channels: Sequence[int], kernels: Sequence[int], paddings: Sequence[int]) -> nn.Sequential:
    """Conv (no bias) + inverse GDN1 blocks; the last conv has none (it emits the teacher's features)."""
    layers: list[nn.Module] = []
    for i, (k, p) in enumerate(zip(kernels, paddings, strict=True)):
        layers.append(nn.Conv2d(channels[i], channels[i + 1], k, 1, p, bias=False))
        if i < len(kernels) - 1:
            layers.append(GDN1(channels[i + 1], inverse=True))
    return nn.Sequential(*layers)


class EntropicStudentResNet50(SplitClassifier):
    """ResNet-50 with conv1..layer1 replaced by the "b24ch_igdn" bottleneck (the paper's main model).

    Attribute names follow sc2bench (``bottleneck_layer``, ``layer2``..``layer4``, ``fc``), so its
    checkpoints load without renaming.
    """

    def __init__(self, num_classes: int = 1000, latent_channels: int = 24):
        super().__init__()
        from torchvision.models import resnet50

        encoder = gdn_encoder([3, 96, 48, latent_channels], kernels=[5, 5, 2], strides=[2, 2, 1])
        decoder = igdn_decoder([latent_channels, 512, 256, 256], kernels=[2, 2, 2], paddings=[1, 0, 1])
        self.bottleneck_layer = BottleneckLayer(encoder, decoder, latent_channels)
        teacher = resnet50(weights=None, num_classes=num_classes)
        self.layer2, self.layer3, self.layer4 = teacher.layer2, teacher.layer3, teacher.layer4
        self.avgpool, self.fc = teacher.avgpool, teacher.fc

    def forward_tail(self, z: Tensor) -> Tensor:
        z = self.layer4(self.layer3(self.layer2(z)))
        return self.fc(torch.flatten(self.avgpool(z), 1))


@register_builder("entropic_student_resnet50")
def entropic_student_resnet50(*, num_classes: int = 1000) -> EntropicStudentResNet50:
    return EntropicStudentResNet50(num_classes=num_classes)


@register_reference("entropic_student_resnet50")
def resnet50_reference(spec: ModelSpec) -> ReferenceModel:
    """torchvision's ResNet-50 (the paper's teacher). No weights ship or download here: random weights, marked
    untrained, unless a checkpoint is given to ``get_reference``."""
    from torchvision.models import resnet50

    module = resnet50(weights=None, num_classes=spec.num_classes)
    return ReferenceModel(module.eval(), "resnet50", "torchvision ResNet-50 (the teacher the student replaces)",
                          trained=False)
