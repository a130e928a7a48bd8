"""bench on a segmentation bundle end to end: every stage timed at the images' own sizes (the streams carry
them), bytes per image, compute counts of the server graph with its image-size input, and the task's agreement
(pixels) of INT8 with FP32 in the rate-accuracy points."""

from __future__ import annotations

import pytest

from sc2edge.bench import run_bench

STAGES = ("preprocess", "encoder_graph", "entropy_encode", "device_total", "entropy_decode", "server_graph",
          "server_total")


@pytest.fixture(scope="module")
def seg_report(seg_bundle, seg_voc_dir, tmp_path_factory):
    return run_bench([seg_bundle.path], ["onnxruntime"], ["fp32", "int8"], threads=1, images=[seg_voc_dir],
                     links=["lte"], quick=True, out_dir=tmp_path_factory.mktemp("seg-bench"), max_images=1,
                     torch_baseline=False, codecs=(("jpeg", 75),))


def test_every_stage_is_timed_for_fp32_and_int8_with_nothing_skipped(seg_report, seg_bundle):
    assert seg_report["skipped"] == []
    name = seg_bundle.path.name
    for precision in ("fp32", "int8"):
        latency = seg_report["latency"][f"{name}/onnxruntime/{precision}"]
        assert latency["server_precision"] == precision  # the INT8 configuration runs both INT8 graphs
        for stage in STAGES:
            assert latency["stages"][stage]["n"] >= 1 and latency["stages"][stage]["p50"] > 0, stage
    rows = {row["config"] for row in seg_report["headline"]}
    assert rows == {f"{name}/onnxruntime/fp32", f"{name}/onnxruntime/int8"}


def test_bytes_per_image_and_agreement_per_configuration(seg_report, seg_bundle):
    name = seg_bundle.path.name
    size = seg_report["size"][f"{name}/onnxruntime/fp32"]
    assert len(size["per_image"]) == 1 and all(image["stream_bytes"] > image["payload_bytes"] > 0
                                               for image in size["per_image"])
    points = {p["config"]: p for p in seg_report["rate_accuracy"]["points"] if p["path"] == "split"}
    assert points[f"{name}/onnxruntime/fp32"]["agreement"] == 1.0  # the reference configuration
    assert 0.0 < points[f"{name}/onnxruntime/int8"]["agreement"] <= 1.0  # share of pixels, not of images
    # the alternatives: the whole student in one process, and a JPEG of the resized image sent to the server
    alternative = seg_report["alternatives"][f"{name}/onnxruntime/fp32"]
    assert alternative["model"] == "student" and len(alternative["predictions"]) == 1
    jpeg = next(iter(alternative["codecs"].values()))
    assert all(b > 0 for b in jpeg["bytes"]) and jpeg["server_total"]["p50"] > 0 and len(jpeg["predictions"]) == 1


def test_compute_counts_the_server_graph_at_the_exports_size(seg_report, seg_bundle):
    stages = seg_report["compute"][seg_bundle.path.name]["stages"]
    for stage in ("device", "server", "tail"):
        assert stages[stage]["onnx"] is not None and stages[stage]["torch"] is not None, stage
        assert stages[stage]["warning"] is None, stages[stage]["warning"]
    assert stages["tail"]["onnx"]["macs"] > 10 * stages["device"]["onnx"]["macs"]  # the dilated ResNet-50 tail
