"""The reference role end to end: exported beside the student, validated, and run as a baseline (input codec on
the device, reference graph on the server) through ONNX Runtime and OpenVINO."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sc2edge.errors import BundleError, Sc2edgeError
from sc2edge.runtime import Bundle, CodecDecoder, CodecEncoder, ReferenceGraph, input_codec
from sc2edge.runtime.input_codecs import InputCodecError
from sc2edge.runtime.reference import decode_input, has_reference
from sc2edge.zoo import get_reference
from tests.conftest import FASHION_MODEL, heavy_imports_of

BACKENDS = ("onnxruntime", "openvino")


def test_manifest_records_the_reference_and_its_validation(reference_bundle_dir):
    bundle = Bundle.open(reference_bundle_dir)
    roles = {(a.role, a.format, a.precision) for a in bundle.artifacts}
    assert {("reference", "onnx", "fp32"), ("reference", "openvino", "fp32"),
            ("reference", "openvino", "fp16")} <= roles
    record = bundle.manifest["reference"]
    assert record["name"] == "fashion_mnist_teacher" and record["trained"] is True
    assert record["weights_sha256"] == get_reference(FASHION_MODEL).weights_sha256
    assert [v["backend"] for v in record["validation"]] == list(BACKENDS)
    assert all(v["passed"] and v["outputs"]["logits"]["max_abs_err"] <= v["outputs"]["logits"]["bound"]
               for v in record["validation"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_reference_graph_matches_the_teacher(reference_bundle_dir, photos, backend):
    teacher = get_reference(FASHION_MODEL).module
    with ReferenceGraph(reference_bundle_dir, backend) as graph:
        batch = np.stack([graph.preprocess(p) for p in photos[:4]])
        logits = graph.predict(batch)
        with torch.no_grad():
            expected = teacher(torch.from_numpy(batch)).numpy()
        assert logits.shape == (4, 10)
        np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-3)
        np.testing.assert_array_equal(graph.classify(photos[0]), logits[0])


@pytest.mark.parametrize("codec", ["jpeg:90", "webp:80", "avif:60", "heif:60", "jxl:80"])
def test_codec_baseline_deploys_on_both_backends(reference_bundle_dir, photos, codec):
    streams = CodecEncoder(reference_bundle_dir, codec).encode(photos[:3])
    assert all(0 < len(s) for s in streams)
    results = {}
    for backend in BACKENDS:
        with CodecDecoder(reference_bundle_dir, codec, backend) as server:
            results[backend] = np.stack([server.decode(s) for s in streams])
            # the server's input is exactly the decoded crop, normalized: no second resize
            np.testing.assert_array_equal(results[backend][0], server.predict(server.decode_image(streams[0])[None])[0])
    np.testing.assert_allclose(results["onnxruntime"], results["openvino"], atol=1e-4, rtol=1e-3)


def test_high_quality_codec_keeps_the_reference_prediction(reference_bundle_dir, photos):
    with ReferenceGraph(reference_bundle_dir) as graph, CodecDecoder(reference_bundle_dir, "webp:100") as server:
        direct = np.stack([graph.classify(p) for p in photos])
        sent = np.stack([server.decode(s) for s in CodecEncoder(reference_bundle_dir, "webp:100").encode(photos)])
    assert np.mean(direct.argmax(1) == sent.argmax(1)) >= 0.75
    assert np.abs(direct - sent).max() < np.abs(direct).max()


def test_server_refuses_bytes_of_another_size_or_codec(reference_bundle_dir, photos):
    from PIL import Image

    jpeg = input_codec("jpeg")
    preprocess = Bundle.open(reference_bundle_dir).preprocess
    with pytest.raises(InputCodecError, match="decoded a 64 x 64 image; this model's input is the 28 x 28 crop"):
        decode_input(jpeg, jpeg.encode(Image.new("L", (64, 64))), preprocess)
    webp_bytes = CodecEncoder(reference_bundle_dir, "webp").encode(photos[:1])[0]
    with CodecDecoder(reference_bundle_dir, "jpeg") as server, pytest.raises(InputCodecError, match="not a valid JPEG"):
        server.decode(webp_bytes)


def test_no_reference_export_and_a_bundle_without_one_is_refused_with_the_fix(tmp_path):
    from sc2edge.export import ExportConfig, export_bundle

    out = export_bundle(FASHION_MODEL, tmp_path / "student-only", config=ExportConfig(reference=False))
    bundle = Bundle.open(out)
    assert not has_reference(bundle) and "reference" not in bundle.manifest
    assert {a.role for a in bundle.artifacts} == {"device", "server"}
    with pytest.raises(BundleError, match="no reference model: export it with --reference"):
        ReferenceGraph(bundle)


def test_reference_default_is_on_only_for_trained_weights():
    from sc2edge.export import ExportConfig
    from sc2edge.export.pipeline import _reference

    assert _reference(FASHION_MODEL, ExportConfig(), trust_checkpoint=False).trained
    assert _reference("entropic_student_resnet50_beta0.08", ExportConfig(), trust_checkpoint=False) is None
    forced = _reference("entropic_student_resnet50_beta0.08", ExportConfig(reference=True), trust_checkpoint=False)
    assert forced.name == "resnet50" and not forced.trained
    with pytest.raises(Sc2edgeError, match="--reference-checkpoint needs the reference model"):
        ExportConfig(reference=False, reference_checkpoint=Path("teacher.pt")).validate()


def test_unavailable_precision_and_bad_codec_are_one_line_errors(reference_bundle_dir):
    with pytest.raises(BundleError, match='no reference graph in format "onnx" at precision "int8"'):
        ReferenceGraph(reference_bundle_dir, precision="int8")
    with pytest.raises(Sc2edgeError, match="unknown input codec"):
        CodecDecoder(reference_bundle_dir, "bpg:30")


BASELINE_SCRIPT = """
import sys
from pathlib import Path
from sc2edge.runtime import CodecDecoder, CodecEncoder
data = CodecEncoder(sys.argv[1], "avif:50").encode([sys.argv[2]])
with CodecDecoder(sys.argv[1], "avif:50") as server:
    assert server.decode(data[0]).shape == (10,)
"""


def test_baseline_path_does_not_import_torch(reference_bundle_dir, photos):
    assert heavy_imports_of(BASELINE_SCRIPT, reference_bundle_dir, photos[0]) == []
