"""The Entropic Student for semantic segmentation: DeepLabv3 ResNet-50 whose first backbone stage is the ImageNet
student's bottleneck (encoder and entropy bottleneck shared with the classifier, frozen when it was fine-tuned),
layer3/layer4 dilated (output stride 8), DeepLabHead(2048, classes) and the optional auxiliary FCNHead(1024) of
training (kept for checkpoints, never exported).

Checkpoint layout (sc2bench's ``deeplabv3_model`` with a ``splittable_resnet`` backbone):
``backbone.bottleneck_layer.{encoder,decoder,entropy_bottleneck}.*``, ``backbone.layer2.* .. backbone.layer4.*``,
``classifier.*``, ``aux_classifier.*``; the loader strips the ``backbone.`` wrapper of the bottleneck.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sc2edge.zoo.entropic_student import BottleneckLayer, SplitClassifier, gdn_encoder, igdn_decoder
from sc2edge.zoo.registry import ModelSpec, ReferenceModel, register_builder, register_reference


class DilatedResNetTail(nn.Module):
    """ResNet-50 layer2..layer4 with layer3/layer4 dilated instead of strided (DeepLabv3's output stride 8)."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        resnet = resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
        self.layer2, self.layer3, self.layer4 = resnet.layer2, resnet.layer3, resnet.layer4

    def forward(self, z: Tensor) -> Tensor:
        return self.layer4(self.layer3(self.layer2(z)))


class EntropicStudentDeepLabV3(SplitClassifier):
    """DeepLabv3 ResNet-50 with conv1..layer1 replaced by the "b24ch_igdn" bottleneck.

    ``forward_tail(z, image_size)`` returns the class map (int64, N x H x W) at ``image_size`` (the input's
    height and width, an int64 tensor: the latent alone does not fix them), as torchvision's DeepLabV3 upsamples
    its logits to the input (bilinear, align_corners=False) before the argmax.
    """

    def __init__(self, num_classes: int = 21, latent_channels: int = 24, aux_classifier: bool = True):
        super().__init__()
        from torchvision.models.segmentation.deeplabv3 import DeepLabHead
        from torchvision.models.segmentation.fcn import FCNHead

        # Built in the classifier's order, so equal seeds give the classifier's encoder and entropy bottleneck.
        encoder = gdn_encoder([3, 96, 48, latent_channels], kernels=[5, 5, 2], strides=[2, 2, 1])
        decoder = igdn_decoder([latent_channels, 512, 256, 256], kernels=[2, 2, 2], paddings=[1, 0, 1])
        self.bottleneck_layer = BottleneckLayer(encoder, decoder, latent_channels)
        self.backbone = DilatedResNetTail()
        self.classifier = DeepLabHead(2048, num_classes)
        self.aux_classifier = FCNHead(1024, num_classes) if aux_classifier else None

    def forward_tail(self, z: Tensor, image_size: Tensor) -> Tensor:
        logits = self.classifier(self.backbone(z))
        logits = F.interpolate(logits, size=(image_size[0], image_size[1]), mode="bilinear", align_corners=False)
        return logits.argmax(1)

    def tail_inputs(self, image: Tensor) -> tuple[Tensor, ...]:
        return (torch.tensor(image.shape[-2:], dtype=torch.int64),)


@register_builder("entropic_student_deeplabv3_resnet50")
def entropic_student_deeplabv3_resnet50(*, num_classes: int = 21, aux_classifier: bool = True
                                        ) -> EntropicStudentDeepLabV3:
    return EntropicStudentDeepLabV3(num_classes=num_classes, aux_classifier=aux_classifier)


class _ClassMap(nn.Module):
    """torchvision's DeepLabV3 as image -> class map (the task's one output), its state-dict keys unchanged."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.backbone, self.classifier, self.aux_classifier = model.backbone, model.classifier, model.aux_classifier

    def forward(self, image: Tensor) -> Tensor:
        logits = self.classifier(self.backbone(image)["out"])
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False).argmax(1)


@register_reference("entropic_student_deeplabv3_resnet50")
def deeplabv3_reference(spec: ModelSpec) -> ReferenceModel:
    """torchvision's DeepLabv3 ResNet-50 (the teacher). No weights ship here: random, marked untrained, unless a
    checkpoint is given to ``get_reference``."""
    from torchvision.models.segmentation import deeplabv3_resnet50

    module = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=spec.num_classes, aux_loss=True)
    return ReferenceModel(_ClassMap(module).eval(), "deeplabv3_resnet50",
                          "torchvision DeepLabv3 ResNet-50 (the teacher the student replaces)", trained=False)
