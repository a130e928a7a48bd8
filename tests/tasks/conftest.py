"""The segmentation bundle the task tests share (one export per session: it is the slow part)."""

from __future__ import annotations

import pytest

from sc2edge.runtime import Bundle
from tests.tasks._voc import RESIZE, SEG_MODEL, voc_images


@pytest.fixture(scope="session")
def seg_voc_dir(tmp_path_factory):
    """Two VOC photos (held out: the INT8 calibration uses offline photos)."""
    images = tmp_path_factory.mktemp("voc")
    for path in voc_images()[:2]:
        (images / path.name).symlink_to(path)
    return images


@pytest.fixture(scope="session")
def seg_bundle(tmp_path_factory, seg_voc_dir, calib_dir) -> Bundle:
    """The DeepLabv3 student at a 64 px shorter side on ONNX Runtime and OpenVINO, FP32 and INT8 (its device graph
    calibrated on two offline photos at the export's size, validated on the two VOC photos)."""
    from sc2edge.export import ExportConfig, export_bundle

    out = export_bundle(SEG_MODEL, tmp_path_factory.mktemp("bundles") / "seg",
                        config=ExportConfig(backends=("onnxruntime", "openvino"), resize=RESIZE,
                                            validation_images=seg_voc_dir, int8=True, calib=calib_dir,
                                            calib_samples=2, int8_check_count=2, allow_int8_over_budget=True,
                                            progress=False))
    return Bundle.open(out)
