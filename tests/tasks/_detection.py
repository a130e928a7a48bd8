"""Detection students for tests: random weights whose class bias is raised for one category, so that the untrained
detector reports boxes (a random one scores about 0.01, under the 0.05 threshold) and NMS has work to do, saved in
the paper's checkpoint key layout (``backbone.body.bottleneck_layer.*``, ``backbone.body.layer2.*``, ...)."""

from __future__ import annotations

from pathlib import Path

import torch

RETINANET = "entropic_student_retinanet_resnet50_fpn_beta0.08"
FASTER_RCNN = "entropic_student_faster_rcnn_resnet50_fpn_beta0.08"
PERSON = 1  # COCO category id
VOC_DETECTION = Path("/usr/share/doc/labelme-examples/examples/instance_segmentation/data_dataset_coco")


def biased_detector(name: str) -> torch.nn.Module:
    """The registry's random weights (seed 0: the classifier's encoder), with "person" made likely."""
    from sc2edge.zoo import get_model

    model = get_model(name).model
    model.make_likely(PERSON)
    return model


def paper_layout_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights keyed as the paper's and sc2bench's detection checkpoints are."""
    return {(f"backbone.body.{key}" if key.startswith("bottleneck_layer.") else key): value
            for key, value in model.state_dict().items()}


def save_paper_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    torch.save({"model": paper_layout_state(model), "best_value": 0.0}, path)
    return path
