"""A labelled check of the method: a small Fashion-MNIST teacher CNN and its Entropic Student.

ImageNet labels are not available offline, so the EfficientNet student can only be measured by agreement
with its teacher; Fashion-MNIST's 10,000 labelled test images measure what compression costs in accuracy.

Teacher (4.7 MMAC): Conv(1->32, k3) BN ReLU, Conv(32->32, k3, s2) BN ReLU -> 32x14x14 (the split, stride 2:
a 28 px image has only two more halvings left) -> Conv(32->64, k3, s2) BN ReLU, Conv(64->64, k3) BN ReLU
-> global average pool -> Linear(64->10).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from compressai.layers import GDN1
from torch import Tensor, nn

from sc2edge.zoo.checkpoint import load_into, read_state_dict
from sc2edge.zoo.entropic_student import BottleneckLayer, SplitClassifier
from sc2edge.zoo.registry import ModelSpec, ReferenceModel, register_builder, register_reference, verify_sha256

SPLIT_CHANNELS = 32


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FashionTail(nn.Module):
    """The teacher after the split (stride 2 to 7x7, then the classifier); the student keeps it unchanged."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stage2 = nn.Sequential(_conv_bn(SPLIT_CHANNELS, 64, 2), _conv_bn(64, 64, 1))
        self.fc = nn.Linear(64, num_classes)

    def features(self, z: Tensor) -> list[Tensor]:
        """The 64x7x7 map (mimicked in stage 1), then the logits."""
        z = self.stage2(z)
        return [z, self.fc(z.mean(dim=(2, 3)))]


class FashionTeacher(nn.Module):
    """The teacher CNN; ``head`` is what the student's bottleneck replaces."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.head = nn.Sequential(_conv_bn(1, 32, 1), _conv_bn(32, SPLIT_CHANNELS, 2))
        self.tail = FashionTail(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.tail.features(self.head(x))[-1]


class EntropicStudentFashionMNIST(SplitClassifier):
    """The teacher with its head replaced by an entropy bottleneck (latent Cx14x14 for a 28x28 image).

    Encoder (0.8 MMAC, vs 2.0 for the teacher head): Conv(1->32, k5, s2) GDN1 Conv(32->C, k3).
    Decoder: Conv(C->64, k3) IGDN1 Conv(64->32, k3), reproducing the teacher's 32x14x14 split features.
    The convs have biases, as in the EfficientNet student (see there why).
    """

    def __init__(self, num_classes: int = 10, latent_channels: int = 8):
        super().__init__()
        encoder = nn.Sequential(nn.Conv2d(1, 32, 5, 2, 2), GDN1(32), nn.Conv2d(32, latent_channels, 3, 1, 1))
        decoder = nn.Sequential(
            nn.Conv2d(latent_channels, 64, 3, 1, 1), GDN1(64, inverse=True), nn.Conv2d(64, SPLIT_CHANNELS, 3, 1, 1)
        )
        self.bottleneck_layer = BottleneckLayer(encoder, decoder, latent_channels)
        self.tail = FashionTail(num_classes)

    def tail_features(self, z: Tensor) -> list[Tensor]:
        return self.tail.features(z)

    def forward_tail(self, z: Tensor) -> Tensor:
        return self.tail_features(z)[-1]


@register_builder("entropic_student_fashion_mnist")
def entropic_student_fashion_mnist(
    *, num_classes: int = 10, latent_channels: int = 8
) -> EntropicStudentFashionMNIST:
    return EntropicStudentFashionMNIST(num_classes=num_classes, latent_channels=latent_channels)


def student_from_teacher(teacher: FashionTeacher, latent_channels: int = 8) -> EntropicStudentFashionMNIST:
    """A fresh student whose tail is a copy of the trained teacher's."""
    num_classes = teacher.tail.fc.out_features
    student = EntropicStudentFashionMNIST(num_classes=num_classes, latent_channels=latent_channels)
    with torch.no_grad():
        student.tail.load_state_dict(teacher.tail.state_dict())
    return student


@register_reference("entropic_student_fashion_mnist")
def fashion_mnist_reference(spec: ModelSpec) -> ReferenceModel:
    """The packaged teacher CNN (``meta.teacher`` in models.yaml), checked against its sha256; random if absent."""
    teacher = FashionTeacher(num_classes=spec.num_classes)
    record = spec.meta.get("teacher") or {}
    path = Path(str(resources.files("sc2edge.zoo").joinpath(record["file"]))) if record.get("file") else None
    digest = None
    if path is not None and path.is_file():
        digest = verify_sha256(path, record.get("sha256"))
        load_into(teacher, read_state_dict(path))
    else:
        path = None
    return ReferenceModel(teacher.eval(), "fashion_mnist_teacher",
                          "the Fashion-MNIST teacher CNN whose first two convs the student replaces",
                          trained=path is not None, weights=path, weights_sha256=digest)
