"""The detection tail end to end: a RetinaNet student saved in the paper's checkpoint layout, exported with a
dynamic padded input for ONNX Runtime and OpenVINO (NMS in both graphs), streams carrying the original and resized
sizes, boxes against PyTorch at two input sizes, COCO results from the CLI, mAP on labelme-examples from decoded
detections, one stream decoded by the classification, segmentation and detection tails of one encoder, and an INT8
encoder on both runtimes (calibrated at the export's size; its streams decoded by the FP32 server; check-quant's box
agreement and mAP).

All slow: one detection export costs about a minute of CPU (several minutes of wall time on the shared 2-core
machine); the task, preprocessing and checkpoint tests in test_detection.py run by default."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sc2edge.calibrate import check_quant
from sc2edge.errors import StreamError
from sc2edge.photos import system_photos
from sc2edge.runtime import Bundle, Decoder, Encoder, pack_stream, unpack_stream
from sc2edge.runtime.tails import TailDecoders, check_shared_encoder
from sc2edge.tasks.detection import coco_evaluate, coco_ground_truth
from tests.tasks._detection import (
    FASTER_RCNN,
    PERSON,
    RETINANET,
    VOC_DETECTION,
    biased_detector,
    save_paper_checkpoint,
)
from tests.tasks._int8 import fake_quantize_readers, quantized_op_types

pytestmark = pytest.mark.slow
RESIZE = 160  # shorter side (the longer bound scales with it: 267); small enough for 2 cores


def voc_images() -> list[Path]:
    images = sorted((VOC_DETECTION / "JPEGImages").glob("*.jpg"))
    if len(images) < 3:
        pytest.fail("labelme-examples' COCO images are missing: run scripts/setup-env.sh")
    return images


@pytest.fixture(scope="module")
def det_model() -> torch.nn.Module:
    return biased_detector(RETINANET)


@pytest.fixture(scope="module")
def det_bundle(tmp_path_factory, det_model) -> Bundle:
    from sc2edge.export import ExportConfig, export_bundle

    folder = tmp_path_factory.mktemp("det")
    checkpoint = save_paper_checkpoint(det_model, folder / "paper-layout.pt")
    images = folder / "validation"
    images.mkdir()
    for path in voc_images()[:2]:
        (images / path.name).symlink_to(path)
    calib = folder / "calib"  # offline photos: the VOC ones stay held out for the INT8 checks
    calib.mkdir()
    for path in system_photos()[::2][:2]:
        (calib / path.name).symlink_to(path)
    out = export_bundle(RETINANET, folder / "bundle", checkpoint=checkpoint,
                        config=ExportConfig(backends=("onnxruntime", "openvino"), resize=RESIZE,
                                            validation_images=images, int8=True, calib=calib, calib_samples=2,
                                            int8_check_count=2, allow_int8_over_budget=True, progress=False))
    return Bundle.open(out)


def pytorch_outputs(model, task, x: np.ndarray, sizes) -> dict[str, np.ndarray]:
    extra = task.server_inputs(sizes)
    with torch.no_grad():
        outputs = model.forward_tail(model.bottleneck_layer.quantized(torch.from_numpy(x[None])),
                                     *(torch.from_numpy(extra[name]) for name in task.extra_inputs))
    return {name: value.numpy() for name, value in zip(task.output_names, outputs, strict=True)}


def test_a_paper_layout_checkpoint_exports_and_validates_on_both_runtimes(det_bundle):
    from sc2edge.jsonschemas import validate

    validate(json.loads((det_bundle.path / "manifest.json").read_text()), "bundle-manifest")
    manifest = det_bundle.manifest
    assert manifest["task"]["kind"] == "detection" and manifest["input"]["dynamic"] is True
    assert manifest["task"]["inputs"] == ["image_size", "resized_size", "original_size"]
    assert manifest["preprocess"] | {"resize": RESIZE, "max_size": 267, "pad_multiple": 32} == manifest["preprocess"]
    assert manifest["model"]["trained"] is True and manifest["model"]["checkpoint_sha256"]
    assert {v["backend"] for v in manifest["validation"]} == {"onnxruntime", "openvino"}
    for record in manifest["validation"]:
        assert record["passed"] and record["streams_identical"] == record["images"] == 2
        assert record["symbols_different"] == 0
        assert record["outputs"]["boxes"]["max_abs_err"] <= 0.1 and record["outputs"]["unmatched"]["max_abs_err"] == 0


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_streams_decode_to_pytorchs_boxes_in_original_pixels_at_two_input_sizes(det_bundle, det_model, backend):
    inputs_seen = set()
    with Encoder(det_bundle, backend) as encoder, Decoder(det_bundle, backend) as decoder:
        task = decoder.task
        for path in voc_images()[:2]:
            stream = encoder.encode([path])[0]
            outputs = decoder.outputs(stream)
            x, sizes = encoder.preprocess_sized(path)
            errors = task.compare(pytorch_outputs(det_model, task, x, sizes), outputs)
            assert all(e.passed for e in errors.values()), errors
            prediction = task.predict(outputs)
            assert len(prediction) > 0 and set(prediction.labels.tolist()) == {PERSON}
            with Image.open(path) as image:
                assert sizes.original == (image.height, image.width)
                assert prediction.boxes[:, 2].max() <= image.width and prediction.boxes[:, 3].max() <= image.height
            assert sizes.input[0] % 32 == sizes.input[1] % 32 == 0 and sizes.resized != sizes.input
            inputs_seen.add(sizes.input)
    assert len(inputs_seen) == 2, "the two photos should give two padded input sizes"


def test_the_stream_carries_the_resized_size_and_a_lying_one_is_refused(det_bundle):
    path = voc_images()[0]
    with Encoder(det_bundle) as encoder, Decoder(det_bundle) as decoder:
        stream = encoder.encode([path])[0]
        assert decoder.decode_sized(stream)[1] == encoder.preprocess_sized(path)[1]
        header, payloads = unpack_stream(stream)
        original = np.frombuffer(payloads["image"], "<u2")
        lying = original.copy()
        lying[2] = header.sections[-1].shape[1] + 1  # a resized height larger than the padded input
        sections = [(s.name, s.table_hash, s.shape, lying.tobytes() if s.name == "image" else payloads[s.name])
                    for s in header.sections]
        with pytest.raises(StreamError, match="puts a"):
            decoder.decode(pack_stream(header.codec, sections))


def test_cli_decode_prints_boxes_and_writes_coco_results(det_bundle, tmp_path):
    cli = [sys.executable, "-m", "sc2edge.cli"]
    streams = []
    with Encoder(det_bundle) as encoder:
        for image_id, path in enumerate(voc_images()):
            streams.append(tmp_path / f"{image_id}.sc2")
            streams[-1].write_bytes(encoder.encode([path])[0])
    out = subprocess.run([*cli, "decode", str(det_bundle.path), *map(str, streams), "--task", "detection", "--json",
                          "--out", str(tmp_path / "out")], check=True, capture_output=True, text=True)
    records = [json.loads(line) for line in out.stdout.splitlines()]
    results = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [r["results"] for r in records] and sum((r["results"] for r in records), []) == results
    assert {r["image_id"] for r in results} == {0, 1, 2}
    assert all(set(r) == {"image_id", "category_id", "bbox", "score"} and r["bbox"][2] >= 0 for r in results)
    with Decoder(det_bundle) as decoder:
        first = decoder.decode(streams[0].read_bytes())
    assert records[0]["results"] == first.coco_results(0)
    text = subprocess.run([*cli, "decode", str(det_bundle.path), str(streams[0])], check=True, capture_output=True,
                          text=True).stdout
    assert f"{len(first)} detections: person" in text and "UNTRAINED" not in text  # a checkpoint was given


def test_map_on_labelme_from_decoded_detections_equals_pytorchs(det_bundle, det_model):
    """Real COCO-format labels; the weights are random (every box says "person"), so the figure is near zero, but
    it is pycocotools' computation on what the runtime decoded, and PyTorch's detections score the same."""
    with Encoder(det_bundle) as encoder, Decoder(det_bundle) as decoder:
        task = decoder.task
        truth = coco_ground_truth(VOC_DETECTION / "annotations.json", task.labels)
        decoded, reference, labels = [], [], []
        for path in voc_images():
            decoded.append(decoder.decode(encoder.encode([path])[0]))
            x, sizes = encoder.preprocess_sized(path)
            reference.append(task.predict(pytorch_outputs(det_model, task, x, sizes)))
            labels.append(truth[path.name])
    ours, theirs = coco_evaluate(decoded, labels), coco_evaluate(reference, labels)
    assert 0.0 <= ours["mAP"] < 0.5
    assert ours == pytest.approx(theirs, abs=1e-3)
    assert task.agreement(reference, decoded) == 1.0


def test_one_stream_decoded_by_the_classification_segmentation_and_detection_tails(det_bundle, tmp_path_factory):
    """Students of one seed share the encoder and its tables: a detection stream (padded input) feeds the
    classifier (any latent size), the segmenter (class map at the padded input) and the detector."""
    from sc2edge.export import ExportConfig, export_bundle
    from tests.conftest import DEFAULT_TEST_MODEL

    images = tmp_path_factory.mktemp("tails-validation")
    (images / voc_images()[0].name).symlink_to(voc_images()[0])
    folder = tmp_path_factory.mktemp("tails")
    classifier = Bundle.open(export_bundle(DEFAULT_TEST_MODEL, folder / "classifier",
                                           config=ExportConfig(validation_images=images)))
    segmenter = Bundle.open(export_bundle("entropic_student_deeplabv3_resnet50_beta0.16", folder / "segmenter",
                                          config=ExportConfig(resize=64, validation_images=images)))
    bundles = [classifier, segmenter, det_bundle]
    check_shared_encoder(bundles)
    with Encoder(det_bundle) as encoder:
        stream = encoder.encode([voc_images()[2]])[0]
    with TailDecoders(bundles) as tails:
        predictions = tails.decode(stream)
    assert set(predictions) == {"classification", "segmentation", "detection"}
    for bundle in bundles:
        with Decoder(bundle) as decoder:
            alone = decoder.decode(stream)
            assert alone.to_json() == predictions[decoder.task.kind].to_json()
            if decoder.task.kind == "segmentation":
                assert alone.mask.shape == decoder.decode_sized(stream)[1].input
    assert len(predictions["detection"]) > 0


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_int8_encoder_streams_decode_to_boxes_and_check_quant_reports_box_agreement_and_map(det_bundle, backend):
    int8 = {(a.role, a.format) for a in det_bundle.artifacts if a.precision == "int8"}
    assert {("device", "onnx"), ("device", "openvino"), ("server", "onnx"), ("server", "openvino")} <= int8
    calibration = det_bundle.manifest["calibration"]
    assert calibration["count"] == 2 and calibration["bias_correction"]
    validation = calibration["int8_validation"]
    assert validation["budgeted_on"] == "the task's agreement with FP32" and validation["images"] == 2
    result = next(r for r in validation["results"] if r["backend"] == backend and r["graph"] == "device")
    assert result["metric"] == "agreement" and 0.0 <= result["int8"] <= 1.0 and result["bytes_int8"] > 0
    assert result["passed"] == (abs(result["drop"]) <= 0.01 + 1e-9 and abs(result["rate_change_pct"]) <= 2.0)

    path = voc_images()[0]
    with Encoder(det_bundle, backend, "int8") as encoder, Decoder(det_bundle, backend) as decoder:
        stream = encoder.encode([path])[0]
        prediction = decoder.decode(stream)
        assert decoder.decode_sized(stream)[1] == encoder.preprocess_sized(path)[1]  # sizes as FP32's streams carry
    assert len(prediction) > 0 and set(prediction.labels.tolist()) == {PERSON}

    report = check_quant(det_bundle, VOC_DETECTION / "JPEGImages", VOC_DETECTION / "annotations.json",
                         backend=backend, images=3, worst_layers=0, max_drop=1.0, progress=False)
    assert report.task == "detection" and report.metric_name == "COCO mAP@[.5:.95]" and report.labelled
    assert report.images == 3 and report.calibration_images_excluded == 0
    assert list(report.agreements) == ["confident_matched", "same_count"]
    assert 0.0 <= report.agreement <= 1.0 and 0.0 <= report.accuracy_int8 < 0.5
    assert report.bytes_fp32 > 0 and 0.0 <= report.symbols_changed_pct < 100.0
    with Encoder(det_bundle, backend) as encoder, Decoder(det_bundle, backend) as decoder:
        task = decoder.task
        fp32 = [decoder.decode(encoder.encode([p])[0]) for p in voc_images()]
    truth = coco_ground_truth(VOC_DETECTION / "annotations.json", task.labels)
    assert report.accuracy_fp32 == pytest.approx(task.metric(fp32, [truth[p.name] for p in voc_images()]))
    text = str(report)
    assert "COCO mAP@[.5:.95] INT8" in text and "agreement with FP32 (confident_matched)" in text


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_int8_server_keeps_nms_in_float_and_decodes_int8_streams_to_boxes(det_bundle, backend):
    """The INT8 server graph quantizes convolutions (ONNX Runtime: their outputs, never the anchor decoding's or
    NMS's; OpenVINO: FakeQuantize feeds convolutions only), was checked at export against FP32 on the held-out
    photos in the one INT8 validation (its server and both rows: confident boxes matched, budgeted; the same
    count beside it), and decodes INT8 streams to boxes in original pixels."""
    if backend == "onnxruntime":
        quantized = quantized_op_types(det_bundle.path / det_bundle.artifact("server", "onnx", "int8").path)
        assert "Conv" in quantized and not quantized & {"Sigmoid", "Exp", "TopK", "NonMaxSuppression"}
    else:
        readers = fake_quantize_readers(det_bundle.path / det_bundle.artifact("server", "openvino", "int8").path)
        assert readers and readers <= {"Convolution", "GroupConvolution"}
    calibration = det_bundle.manifest["calibration"]
    assert "server_int8_validation" not in calibration and calibration["int8_validation"]["images"] == 2
    rows = {r["graph"]: r for r in calibration["int8_validation"]["results"] if r["backend"] == backend}
    assert set(rows) == {"device", "server", "both"}
    for graph, result in rows.items():
        assert result["metric"] == "agreement" and list(result["agreements"]) == ["confident_matched", "same_count"]
        assert result["int8"] == result["agreements"]["confident_matched"] and 0.0 <= result["int8"] <= 1.0
        assert result["passed"] == (abs(result["drop"]) <= 0.01 + 1e-9 and abs(result["rate_change_pct"]) <= 2.0)
        assert (result["kernel_saturation_pct"] is None) == (graph == "server")
    assert rows["server"]["symbols_changed_pct"] == 0.0 and rows["server"]["bytes_int8"] == rows["server"]["bytes_fp32"]
    path = voc_images()[0]
    with Encoder(det_bundle, backend, "int8") as encoder, Decoder(det_bundle, backend, "int8") as decoder:
        prediction = decoder.decode(encoder.encode([path])[0])
    with Image.open(path) as image:
        assert len(prediction) > 0 and set(prediction.labels.tolist()) == {PERSON}
        assert prediction.boxes[:, 2].max() <= image.width and prediction.boxes[:, 3].max() <= image.height


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_one_int8_stream_decoded_by_the_three_int8_tails(det_bundle, bundle_dir, seg_bundle, backend):
    """The INT8 detection encoder's stream, decoded by the INT8 server graphs of the classifier (the session's
    INT8 bundle), the segmenter and the detector, each as it decodes alone."""
    bundles = [Bundle.open(bundle_dir), seg_bundle, det_bundle]
    with Encoder(det_bundle, backend, "int8") as encoder:
        stream = encoder.encode([voc_images()[2]])[0]
    with TailDecoders(bundles, backend=backend, precision="int8") as tails:
        predictions = tails.decode(stream)
        assert {d.precision for d in tails.decoders.values()} == {"int8"}
    assert set(predictions) == {"classification", "segmentation", "detection"}
    for bundle in bundles:
        with Decoder(bundle, backend, "int8") as decoder:
            assert decoder.decode(stream).to_json() == predictions[decoder.task.kind].to_json()
    with Decoder(seg_bundle, backend, "int8") as decoder:
        assert predictions["segmentation"].mask.shape == decoder.decode_sized(stream)[1].input
    assert len(predictions["detection"]) > 0


def test_faster_rcnn_untrained_and_with_boxes_exports_and_decodes_like_pytorch_on_both_runtimes(tmp_path):
    """The registry's random Faster R-CNN scores every class about 1/91, under its 0.05 cut, so no photo gives a
    box to trace NMS with: export traces at a tiny cut and sets 0.05 in the graph, and both runtimes decode to no
    boxes, as PyTorch does (OpenVINO's empty NMS branch included). With "person" made likely, the same model
    decodes on OpenVINO to ONNX Runtime's boxes."""
    import onnx
    from onnx import numpy_helper

    from sc2edge.export import ExportConfig, export_bundle
    from sc2edge.export.pipeline import TRACE_SCORE_CUT
    from sc2edge.zoo import get_model

    images = tmp_path / "validation"
    images.mkdir()
    for path in voc_images()[:2]:
        (images / path.name).symlink_to(path)
    config = ExportConfig(backends=("onnxruntime", "openvino"), resize=96, validation_images=images, progress=False)
    untrained = Bundle.open(export_bundle(FASTER_RCNN, tmp_path / "untrained", config=config))
    assert untrained.manifest["model"]["trained"] is False and untrained.manifest["task"]["score_threshold"] == 0.05
    constants = [numpy_helper.to_array(a.t) for n in onnx.load(str(untrained.path / "server.fp32.onnx")).graph.node
                 if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    assert not any(c.size == 1 and c.dtype == np.float32 and c.item() == np.float32(TRACE_SCORE_CUT)
                   for c in constants)
    assert all(record["passed"] for record in untrained.manifest["validation"])
    for backend in ("onnxruntime", "openvino"):
        with Encoder(untrained, backend) as encoder, Decoder(untrained, backend) as decoder:
            outputs = decoder.outputs(encoder.encode([voc_images()[2]])[0])
        assert outputs["boxes"].shape == (0, 4) and outputs["scores"].shape == outputs["labels"].shape == (0,)

    loaded = get_model(FASTER_RCNN)
    loaded.model.load_state_dict(biased_detector(FASTER_RCNN).state_dict())
    biased = Bundle.open(export_bundle(loaded, tmp_path / "biased", config=config))
    assert all(record["passed"] for record in biased.manifest["validation"])
    predictions = {}
    for backend in ("onnxruntime", "openvino"):
        with Encoder(biased, backend) as encoder, Decoder(biased, backend) as decoder:
            predictions[backend] = decoder.decode(encoder.encode([voc_images()[2]])[0])
    assert len(predictions["openvino"]) > 0 and set(predictions["openvino"].labels.tolist()) == {PERSON}
    with Decoder(biased) as decoder:
        assert decoder.task.agreement_checks(predictions["onnxruntime"], predictions["openvino"]) == {
            "confident_matched": True, "same_count": True}
