"""The Entropic Student for object detection: torchvision's Faster R-CNN ResNet-50 FPN (sc2bench's COCO student) and
RetinaNet ResNet-50 FPN (the paper's ``shared_entropic_student``) whose first backbone stage is the ImageNet
student's bottleneck (encoder and entropy bottleneck shared with the classifier, frozen when it was fine-tuned).

- Faster R-CNN: FPN on the bottleneck's output (256 channels, stride 4) and layer2..layer4 (sc2bench's
  ``return_layer_dict`` {bottleneck_layer: 1, layer2: 2, layer3: 3, layer4: 4}), max-pool level, RPN + RoI heads.
- RetinaNet: FPN on layer2..layer4 + P6/P7 from P5 (torchvision's v1 RetinaNet), classification and box heads.

Checkpoint layout (both repositories): ``backbone.body.bottleneck_layer.{encoder,decoder,entropy_bottleneck}.*``
(the loader strips ``backbone.body.``), ``backbone.body.layer2.* .. layer4.*``, ``backbone.fpn.*``, then ``rpn.*`` and
``roi_heads.*`` (Faster R-CNN) or ``head.*`` (RetinaNet). The backbone's batch norms are torchvision's
FrozenBatchNorm2d, as in torchvision's detectors (checkpoints with plain BatchNorm2d keys load too).

The image transform (GeneralizedRCNNTransform: resize to min/max side, normalize, pad to a multiple of 32) runs on
the device side, in the torch-free runtime (``PreprocessSpec.max_size`` / ``pad_multiple``); the server tail takes
the padded input's size, the resized image's size inside it and the original size, and ends with torchvision's own
post-processing (anchor decoding, NMS, boxes mapped back to the original image).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import torch
from torch import Tensor, nn

from sc2edge.zoo.entropic_student import BottleneckLayer, SplitClassifier, gdn_encoder, igdn_decoder
from sc2edge.zoo.registry import ModelSpec, ReferenceModel, register_builder, register_reference


class _ResNetLayers(nn.Module):
    """ResNet-50 layer2..layer4 with frozen batch norms; ``forward`` returns each stage's output."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50
        from torchvision.ops.misc import FrozenBatchNorm2d

        resnet = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
        self.layer2, self.layer3, self.layer4 = resnet.layer2, resnet.layer3, resnet.layer4

    def forward(self, z: Tensor) -> list[Tensor]:
        c3 = self.layer2(z)
        c4 = self.layer3(c3)
        return [z, c3, c4, self.layer4(c4)]


class _Backbone(nn.Module):
    """``body`` (layer2..4) + torchvision's FPN, keyed like torchvision's BackboneWithFPN (``backbone.body``,
    ``backbone.fpn``); ``levels`` picks the stages the FPN reads (0 = the bottleneck's output)."""

    def __init__(self, fpn: nn.Module, levels: tuple[int, ...]):
        super().__init__()
        self.body, self.fpn, self.levels = _ResNetLayers(), fpn, levels

    def forward(self, z: Tensor) -> OrderedDict[str, Tensor]:
        stages = self.body(z)
        return self.fpn(OrderedDict((str(i), stages[level]) for i, level in enumerate(self.levels)))


def _image_list(image_size: Tensor, resized_size: Tensor) -> SimpleNamespace:
    """What torchvision's anchor generator and heads read of an ImageList: the padded batch's height and width
    (``tensors.shape[-2:]``) and each image's resized size inside it (one image)."""
    return SimpleNamespace(tensors=SimpleNamespace(shape=(image_size[0], image_size[1])),
                           image_sizes=[(resized_size[0], resized_size[1])])


class EntropicStudentDetector(SplitClassifier):
    """A torchvision detector with conv1..layer1 replaced by the "b24ch_igdn" bottleneck.

    ``forward_tail(z, image_size, resized_size, original_size)`` returns ``boxes`` (float32 [K, 4], x1 y1 x2 y2 in
    the original image's pixels), ``scores`` (float32 [K]) and ``labels`` (int64 [K], COCO category ids) of one
    image; the sizes are int64 [2] (height, width): the padded input, the resized image inside it, the original.
    """

    def __init__(self, latent_channels: int = 24):
        super().__init__()
        # Built first and in the classifier's order, so equal seeds give the classifier's encoder and entropy
        # bottleneck (one stream then decodes with either tail).
        encoder = gdn_encoder([3, 96, 48, latent_channels], kernels=[5, 5, 2], strides=[2, 2, 1])
        decoder = igdn_decoder([latent_channels, 512, 256, 256], kernels=[2, 2, 2], paddings=[1, 0, 1])
        self.bottleneck_layer = BottleneckLayer(encoder, decoder, latent_channels)

    def _attach(self, detector: nn.Module, fpn_levels: tuple[int, ...]) -> None:
        """Take torchvision ``detector``'s FPN and transform (the subclass takes its heads)."""
        self.backbone = _Backbone(detector.backbone.fpn, fpn_levels)
        self.transform = detector.transform  # parameter-free: its postprocess maps boxes to the original size
        self.min_size, self.max_size = int(detector.transform.min_size[-1]), int(detector.transform.max_size)

    @property
    def task_options(self) -> dict[str, float]:
        """The detection task's settings that come from the model (its manifest ``task`` section)."""
        return {"score_threshold": float(self.score_threshold)}

    @contextmanager
    def score_cut(self, value: float) -> Iterator[None]:
        """Run with ``value`` as the score cut instead of ``score_threshold`` (export traces with a tiny one: a
        tracer follows the branch taken, and an untrained model has no box above 0.05 to take NMS's branch)."""
        self._set_score_cut(value)
        try:
            yield
        finally:
            self._set_score_cut(self.score_threshold)

    def _set_score_cut(self, value: float) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def make_likely(self, category: int) -> None:
        """Raise ``category``'s prior so that random weights report boxes of it (an untrained detector scores
        every box under the 0.05 cut): measuring how faithfully runtimes and INT8 reproduce NMS needs boxes."""
        raise NotImplementedError

    def tail_inputs(self, image: Tensor) -> tuple[Tensor, ...]:
        size = torch.tensor(image.shape[-2:], dtype=torch.int64)
        return size, size.clone(), size.clone()

    def forward_tail(self, z: Tensor, image_size: Tensor, resized_size: Tensor, original_size: Tensor
                     ) -> tuple[Tensor, Tensor, Tensor]:
        images = _image_list(image_size, resized_size)
        detections = self.detect(self.backbone(z), images)
        detections = self.transform.postprocess(detections, images.image_sizes,
                                                [(original_size[0], original_size[1])])[0]
        return detections["boxes"], detections["scores"], detections["labels"]

    def detect(self, features: OrderedDict[str, Tensor], images: SimpleNamespace) -> list[dict[str, Tensor]]:
        raise NotImplementedError


class EntropicStudentFasterRCNN(EntropicStudentDetector):
    """sc2bench's Faster R-CNN ResNet-50 FPN student (``rpn.*``, ``roi_heads.*``)."""

    def __init__(self, num_classes: int = 91, latent_channels: int = 24, **detector_options):
        from torchvision.models.detection import fasterrcnn_resnet50_fpn

        super().__init__(latent_channels)
        detector = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes,
                                           **detector_options)
        self._attach(detector, (0, 1, 2, 3))
        self.rpn, self.roi_heads = detector.rpn, detector.roi_heads
        self.score_threshold = detector.roi_heads.score_thresh

    def _set_score_cut(self, value: float) -> None:
        self.roi_heads.score_thresh = value

    @torch.no_grad()
    def make_likely(self, category: int) -> None:
        self.roi_heads.box_predictor.cls_score.bias[category] = 5.0  # softmax over the classes

    def detect(self, features: OrderedDict[str, Tensor], images: SimpleNamespace) -> list[dict[str, Tensor]]:
        proposals, _ = self.rpn(images, features)
        return self.roi_heads(features, proposals, images.image_sizes)[0]


class EntropicStudentRetinaNet(EntropicStudentDetector):
    """The paper's RetinaNet ResNet-50 FPN student (``head.*``); post-processing is torchvision's RetinaNet's."""

    def __init__(self, num_classes: int = 91, latent_channels: int = 24, **detector_options):
        from torchvision.models.detection import retinanet_resnet50_fpn

        super().__init__(latent_channels)
        detector = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes,
                                          **detector_options)
        self._attach(detector, (1, 2, 3))
        self.head, self.anchor_generator = detector.head, detector.anchor_generator
        self._postprocess = (detector,)  # its thresholds and box coder; a tuple keeps it out of the state dict
        self.score_threshold = detector.score_thresh

    def _set_score_cut(self, value: float) -> None:
        self._postprocess[0].score_thresh = value

    @torch.no_grad()
    def make_likely(self, category: int) -> None:
        head = self.head.classification_head  # logits laid out anchor-major, num_classes per anchor
        head.cls_logits.bias[category::head.num_classes] = -1.0

    def detect(self, features: OrderedDict[str, Tensor], images: SimpleNamespace) -> list[dict[str, Tensor]]:
        maps = list(features.values())
        head_outputs = self.head(maps)
        anchors = self.anchor_generator(images, maps)
        per_level = [m.size(2) * m.size(3) for m in maps]
        anchors_per_location = head_outputs["cls_logits"].size(1) // sum(per_level)
        per_level = [n * anchors_per_location for n in per_level]
        split_outputs = {k: list(v.split(per_level, dim=1)) for k, v in head_outputs.items()}
        split_anchors = [list(a.split(per_level)) for a in anchors]
        return self._postprocess[0].postprocess_detections(split_outputs, split_anchors, images.image_sizes)


@register_builder("entropic_student_faster_rcnn_resnet50_fpn")
def entropic_student_faster_rcnn_resnet50_fpn(*, num_classes: int = 91, **detector_options
                                             ) -> EntropicStudentFasterRCNN:
    return EntropicStudentFasterRCNN(num_classes=num_classes, **detector_options)


@register_builder("entropic_student_retinanet_resnet50_fpn")
def entropic_student_retinanet_resnet50_fpn(*, num_classes: int = 91, **detector_options
                                           ) -> EntropicStudentRetinaNet:
    return EntropicStudentRetinaNet(num_classes=num_classes, **detector_options)


def _reference(spec: ModelSpec, name: str) -> ReferenceModel:
    from torchvision.models import detection

    module = getattr(detection, name)(weights=None, weights_backbone=None, num_classes=spec.num_classes)
    return ReferenceModel(module.eval(), name, f"torchvision {name} (the teacher the student replaces; its own "
                          "transform, list of images in, detections out)", trained=False)


@register_reference("entropic_student_faster_rcnn_resnet50_fpn")
def faster_rcnn_reference(spec: ModelSpec) -> ReferenceModel:
    """torchvision's Faster R-CNN ResNet-50 FPN, random weights (COCO weights are not available offline here)."""
    return _reference(spec, "fasterrcnn_resnet50_fpn")


@register_reference("entropic_student_retinanet_resnet50_fpn")
def retinanet_reference(spec: ModelSpec) -> ReferenceModel:
    """torchvision's RetinaNet ResNet-50 FPN, random weights (COCO weights are not available offline here)."""
    return _reference(spec, "retinanet_resnet50_fpn")
