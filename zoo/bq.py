"""CR+BQ, the paper's simplest learned baseline: channel reduction (a narrow bottleneck conv in a teacher's early
layers, trained by head network distillation) + bottleneck quantization (8 bits per tensor after training, no
entropy coding; ``sc2edge.runtime.bq``).

ImageNet (sc2bench ``larger_resnet_bottleneck``, bottleneck index 7, the paper's ``custom_resnet50``): the ResNet
stem, then Conv(64->N, k2, s2, p1): latent N x 29 x 29 at 224 px; the decoder rebuilds ResNet-50's layer2 output
(512 x 28 x 28) and layer3, layer4, avgpool, fc run on the server.
Fashion-MNIST: the teacher's first conv block, then Conv(32->N, k3, s2): latent N x 14 x 14; the decoder rebuilds
the teacher's split features (32 x 14 x 14) and the teacher's tail runs on the server.
EfficientNet-Lite0: the Entropic Student's split and encoder (the teacher's stem and blocks 0-1, BN folded, then
Conv(24->N, k2 s2)): latent N x 28 x 28 at 224 px, N * 784 + 5 bytes (``latent_stride`` 4: k1, N x 56 x 56); its
residual decoder rebuilds the teacher's block-1 output and the teacher's blocks 2-15 run on the server. Only the
rate mechanism differs from the student's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from sc2edge.runtime.bq import dequantize, quantize
from sc2edge.zoo.efficientnet_student import Lite0Split, efficientnet_lite0_reference
from sc2edge.zoo.entropic_student import SplitClassifier, resnet50_reference
from sc2edge.zoo.fashion_mnist import SPLIT_CHANNELS, FashionTail, FashionTeacher, fashion_mnist_reference
from sc2edge.zoo.registry import register_builder, register_reference


class QuantizedBottleneckLayer(nn.Module):
    """Encoder (device) -> 8-bit per-tensor quantization -> decoder (server), named as in sc2bench."""

    def __init__(self, encoder: nn.Sequential, decoder: nn.Sequential):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: Tensor) -> Tensor:
        """Training path: no quantization (it is applied after training, as in the paper)."""
        return self.decoder(self.encoder(x))

    @torch.no_grad()
    def received_latent(self, x: Tensor) -> Tensor:
        """The latent exactly as the receiver reconstructs it: the runtime's quantizer, item by item."""
        z = self.encoder(x).detach().cpu().numpy()
        return torch.from_numpy(np.stack([dequantize(quantize(item)) for item in z])).to(x.device)

    def quantized(self, x: Tensor) -> Tensor:
        return self.decoder(self.received_latent(x))


class BottleneckQuantizedClassifier(SplitClassifier):
    """A classifier split at a narrow, 8-bit quantized bottleneck (no entropy model)."""

    bottleneck_layer: QuantizedBottleneckLayer

    @property
    def latent_channels(self) -> int:
        return [m for m in self.bottleneck_layer.encoder.modules() if isinstance(m, nn.Conv2d)][-1].out_channels

    def encoder_geometry(self) -> list[tuple[int, int, int]]:
        """(kernel, stride, padding) of each encoder conv and pooling layer."""
        geometry = []
        for m in self.bottleneck_layer.encoder.modules():
            if isinstance(m, nn.Conv2d):
                geometry.append((m.kernel_size[0], m.stride[0], m.padding[0]))
            elif isinstance(m, nn.MaxPool2d):
                geometry.append((int(m.kernel_size), int(m.stride), int(m.padding)))
        return geometry


def _bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class CrBqResNet50(BottleneckQuantizedClassifier):
    """ResNet-50 with conv1..layer2 replaced by sc2bench's ``larger_resnet_bottleneck`` (bottleneck index 7)."""

    def __init__(self, num_classes: int = 1000, bottleneck_channels: int = 6):
        super().__init__()
        from torchvision.models import resnet50

        n = bottleneck_channels
        encoder = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), *_bn_relu(64), nn.MaxPool2d(3, 2, 1),
                                *_bn_relu(64), nn.Conv2d(64, n, 2, 2, 1, bias=False))
        decoder = nn.Sequential(*_bn_relu(n), nn.Conv2d(n, 512, 2, 1, 1, bias=False),
                                *_bn_relu(512), nn.Conv2d(512, 512, 2, 1, 1, bias=False),
                                *_bn_relu(512), nn.Conv2d(512, 512, 2, 1, 0, bias=False),
                                *_bn_relu(512), nn.Conv2d(512, 512, 2, 1, 0, bias=False), nn.AvgPool2d(2, 1))
        self.bottleneck_layer = QuantizedBottleneckLayer(encoder, decoder)
        teacher = resnet50(weights=None, num_classes=num_classes)
        self.layer3, self.layer4, self.avgpool, self.fc = teacher.layer3, teacher.layer4, teacher.avgpool, teacher.fc

    def forward_tail(self, z: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.avgpool(self.layer4(self.layer3(z))), 1))


class CrBqFashionMNIST(BottleneckQuantizedClassifier):
    """The Fashion-MNIST teacher with its head replaced by a CR+BQ bottleneck (latent N x 14 x 14).

    Encoder: the teacher's first conv block (copied from it before training), then Conv(32->N, k3, s2).
    Decoder: BN ReLU Conv(N->64, k3) BN ReLU Conv(64->32, k3) BN ReLU, reproducing the split features.
    """

    def __init__(self, num_classes: int = 10, bottleneck_channels: int = 2):
        super().__init__()
        n = bottleneck_channels
        encoder = nn.Sequential(nn.Conv2d(1, 32, 3, 1, 1, bias=False), *_bn_relu(32),
                                nn.Conv2d(32, n, 3, 2, 1, bias=False))
        decoder = nn.Sequential(*_bn_relu(n), nn.Conv2d(n, 64, 3, 1, 1, bias=False), *_bn_relu(64),
                                nn.Conv2d(64, SPLIT_CHANNELS, 3, 1, 1, bias=False), *_bn_relu(SPLIT_CHANNELS))
        self.bottleneck_layer = QuantizedBottleneckLayer(encoder, decoder)
        self.tail = FashionTail(num_classes)

    def tail_features(self, z: Tensor) -> list[Tensor]:
        return self.tail.features(z)

    def forward_tail(self, z: Tensor) -> Tensor:
        return self.tail_features(z)[-1]


def cr_bq_from_teacher(teacher: FashionTeacher, bottleneck_channels: int) -> CrBqFashionMNIST:
    """A fresh CR+BQ student with the teacher's first conv block and its tail (frozen in training)."""
    student = CrBqFashionMNIST(num_classes=teacher.tail.fc.out_features, bottleneck_channels=bottleneck_channels)
    with torch.no_grad():
        first = teacher.head[0]  # Conv, BN, ReLU
        student.bottleneck_layer.encoder[0].load_state_dict(first[0].state_dict())
        student.bottleneck_layer.encoder[1].load_state_dict(first[1].state_dict())
        student.tail.load_state_dict(teacher.tail.state_dict())
    return student


@register_builder("cr_bq_resnet50")
def cr_bq_resnet50(*, num_classes: int = 1000, bottleneck_channels: int = 6) -> CrBqResNet50:
    return CrBqResNet50(num_classes=num_classes, bottleneck_channels=bottleneck_channels)


@register_builder("cr_bq_efficientnet_lite0")
def cr_bq_efficientnet_lite0(
    *, num_classes: int = 1000, bottleneck_channels: int = 2, latent_stride: int = 8
) -> CrBqEfficientNetLite0:
    return CrBqEfficientNetLite0(num_classes=num_classes, bottleneck_channels=bottleneck_channels,
                                 latent_stride=latent_stride)


@register_builder("cr_bq_fashion_mnist")
def cr_bq_fashion_mnist(*, num_classes: int = 10, bottleneck_channels: int = 2) -> CrBqFashionMNIST:
    return CrBqFashionMNIST(num_classes=num_classes, bottleneck_channels=bottleneck_channels)


class CrBqEfficientNetLite0(Lite0Split, BottleneckQuantizedClassifier):
    """EfficientNet-Lite0 split where its Entropic Student splits, behind an N-channel 8-bit bottleneck.

    ``Lite0Split`` as the student (same encoder, decoder, principal-component start and wheel tail), so the
    comparison isolates the rate mechanism: a narrow 8-bit tensor instead of an entropy-coded latent.
    """

    def __init__(self, num_classes: int = 1000, bottleneck_channels: int = 2, latent_stride: int = 8,
                 teacher: nn.Module | None = None):
        super().__init__(num_classes=num_classes, latent_channels=bottleneck_channels, latent_stride=latent_stride,
                         teacher=teacher)

    def make_bottleneck(self, encoder: nn.Sequential, decoder: nn.Module,
                        latent_channels: int) -> QuantizedBottleneckLayer:
        return QuantizedBottleneckLayer(encoder, decoder)


register_reference("cr_bq_resnet50")(resnet50_reference)
register_reference("cr_bq_fashion_mnist")(fashion_mnist_reference)
register_reference("cr_bq_efficientnet_lite0")(efficientnet_lite0_reference)
