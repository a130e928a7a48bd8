"""labelme-examples' PASCAL VOC images and masks, and the segmentation student the task tests export."""

from __future__ import annotations

from pathlib import Path

import pytest

SEG_MODEL = "entropic_student_deeplabv3_resnet50_beta0.16"
VOC = Path("/usr/share/doc/labelme-examples/examples/semantic_segmentation/data_dataset_voc")
VOC_MASKS = VOC / "SegmentationClassPNG"  # index PNGs, 255 = ignore
RESIZE = 64  # shorter side: small enough for 2 cores (the dilated tail still sees 8 x 8+ features)


def voc_images() -> list[Path]:
    images = sorted((VOC / "JPEGImages").glob("*.jpg"))
    if len(images) < 2:
        pytest.fail("labelme-examples' VOC images are missing: run scripts/setup-env.sh")
    return images
