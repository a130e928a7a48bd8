"""CR+BQ end to end: the 8-bit per-tensor quantizer, its stream section (no rANS), and a trained Fashion-MNIST
CR+BQ bundle round-tripping through the runtime on ONNX Runtime and OpenVINO."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from sc2edge.errors import BundleError, Sc2edgeError, StreamError
from sc2edge.runtime import Bundle, Decoder, Encoder, open_codec, pack_stream, read_header, unpack_stream
from sc2edge.runtime.bq import BqCodec, QuantizedLatent, dequantize, pack, quantize, unpack
from sc2edge.zoo import get_model
from tests.conftest import heavy_imports_of

BQ_MODEL = "cr_bq_fashion_mnist_b2ch"
BACKENDS = ("onnxruntime", "openvino")


@pytest.fixture(scope="module")
def bq_bundle_dir(tmp_path_factory, photos):
    from sc2edge.export import ExportConfig, export_bundle

    images = tmp_path_factory.mktemp("validation-bq")
    for p in photos[:2]:
        (images / p.name).symlink_to(p)
    return export_bundle(BQ_MODEL, tmp_path_factory.mktemp("bundles") / "bq",
                         config=ExportConfig(backends=BACKENDS, validation_images=images))


def test_quantizer_maps_the_range_onto_8_bits():
    z = np.random.default_rng(0).normal(2.0, 3.0, (4, 7, 9)).astype(np.float32)
    q = quantize(z)
    assert q.values.dtype == np.uint8 and q.values.shape == z.shape
    assert q.values.min() == 0 and q.values.max() == 255 and 0 <= q.zero_point <= 255
    assert np.isclose(q.scale, (z.max() - z.min()) / 255)
    assert np.abs(dequantize(q) - z).max() <= q.scale  # half a step of rounding, half of the zero point's
    constant = quantize(np.full((2, 3, 3), 0.5, np.float32))
    assert constant.scale == 1 and np.all(dequantize(constant) == dequantize(constant).flat[0])
    with pytest.raises(Sc2edgeError, match="NaN or infinite"):
        quantize(np.array([[[1.0, np.nan]]], np.float32))


def test_payload_is_scale_zero_point_and_values_and_bad_ones_are_refused():
    q = quantize(np.linspace(-1, 3, 2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4))
    payload = pack(q)
    assert len(payload) == 5 + 24 and struct.unpack_from("<fB", payload) == (q.scale, q.zero_point)
    back = unpack(payload, (2, 3, 4))
    np.testing.assert_array_equal(back.values, q.values)
    assert (back.scale, back.zero_point) == (q.scale, q.zero_point)
    with pytest.raises(StreamError, match="holds 28 bytes, a \\(2, 3, 4\\) latent needs 29"):
        unpack(payload[:-1], (2, 3, 4))
    for scale in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(StreamError, match="positive finite"):
            unpack(pack(QuantizedLatent(q.values, np.float32(scale), 3)), (2, 3, 4))


def test_model_receives_what_the_runtime_reconstructs():
    model = get_model(BQ_MODEL).model
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        z = model.bottleneck_layer.encoder(x).numpy()
        received = model.bottleneck_layer.received_latent(x).numpy()
    assert z.shape == (3, 2, 14, 14)
    for item in range(3):
        np.testing.assert_array_equal(received[item], dequantize(quantize(z[item])))


def test_manifest_and_stream_of_a_bq_bundle(bq_bundle_dir, photos):
    bundle = Bundle.open(bq_bundle_dir)
    entropy = bundle.manifest["entropy"]
    assert (entropy["kind"], entropy["coder"], entropy["precision"], entropy["server_input"]) == ("bq", "none", 8,
                                                                                                 "z_hat")
    assert bundle.tables is None and "quantizer.json" in bundle.manifest["files"]
    record = json.loads((bq_bundle_dir / "quantizer.json").read_text())
    assert record["model"] == BQ_MODEL and record["checkpoint_sha256"] == bundle.manifest["model"]["checkpoint_sha256"]
    # the uint8 values match PyTorch's; the float32 scale may differ in its last bit (min/max of float latents),
    # so payloads are byte-identical to PyTorch's only where the runtime's latent range is bit-exact
    assert all(v["passed"] and v["symbols_total"] == 2 * 2 * 14 * 14 for v in bundle.manifest["validation"])
    with Encoder(bundle) as encoder:
        stream = encoder.encode(photos[:1])[0]
        assert encoder.codec.latent_section == "z"  # its one section is the latent
    header = read_header(stream)
    assert header.codec == "bq" and [(s.name, s.shape, s.length) for s in header.sections] == [
        ("z", (2, 14, 14), 5 + 2 * 14 * 14)]
    assert header.sections[0].table_hash == entropy["sections"][0]["hash"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bq_bundle_round_trips_on_both_runtimes(bq_bundle_dir, photos, backend):
    model = get_model(BQ_MODEL).model
    with Encoder(bq_bundle_dir, backend) as encoder:
        streams = encoder.encode(photos[:3])
        batch = np.stack([encoder.preprocess(p) for p in photos[:3]])
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()  # the receiver's path in PyTorch
    for other in BACKENDS:  # a stream from one runtime decodes on the other
        with Decoder(bq_bundle_dir, other) as decoder:
            assert isinstance(decoder.codec, BqCodec)
            logits = np.stack([decoder.outputs(s)["logits"] for s in streams])
            np.testing.assert_allclose(logits, expected, atol=1e-3, rtol=1e-3)
            assert [decoder.decode(s).classes[0] for s in streams] == list(expected.argmax(1))


def test_streams_of_another_codec_or_model_are_refused(bq_bundle_dir, reference_bundle_dir, photos):
    with Encoder(bq_bundle_dir) as encoder:
        bq_stream = encoder.encode(photos[:1])[0]
    with Encoder(reference_bundle_dir) as encoder:
        factorized_stream = encoder.encode(photos[:1])[0]
    with Decoder(reference_bundle_dir) as decoder, pytest.raises(StreamError, match='coded by the "bq" entropy'):
        decoder.decode(bq_stream)
    with Decoder(bq_bundle_dir) as decoder:
        with pytest.raises(StreamError, match='coded by the "factorized" entropy model, this bundle uses "bq"'):
            decoder.decode(factorized_stream)
        codec = decoder.codec
        other_model = pack_stream("bq", [("z", "0123456789abcdef", (2, 14, 14), bq_stream[-(5 + 392):])])
        with pytest.raises(StreamError, match="was made for entropy tables 0123456789abcdef"):
            decoder.decode(other_model)
        too_big = pack_stream("bq", [("z", codec.table_hashes["z"], (2, 400, 400), bytes(5 + 2 * 400 * 400))])
        with pytest.raises(StreamError, match="outside what this bundle's model takes"):
            decoder.decode(too_big)


def test_a_quantizer_record_of_another_scheme_is_refused(bq_bundle_dir, tmp_path):
    import shutil

    copy = tmp_path / "bq"
    shutil.copytree(bq_bundle_dir, copy)
    (copy / "quantizer.json").write_text(json.dumps({"scheme": "affine-per-channel", "bits": 4}))
    with pytest.raises(BundleError, match="does not match its sha256"):
        Bundle.open(copy)
    with pytest.raises(BundleError, match="not the 8-bit affine-per-tensor quantization"):
        open_codec(Bundle.open(copy, verify=False))


def test_int8_bq_bundle_round_trips_with_its_int8_teacher(tmp_path, calib_dir, photos):
    """CR+BQ exports INT8 graphs (the server calibrated on the device graph's latent) and an INT8 reference
    (the teacher the input-codec baselines run); the INT8 stream keeps the 8-bit payload's size."""
    from sc2edge.export import ExportConfig, export_bundle
    from sc2edge.runtime.reference import ReferenceGraph, has_reference

    bundle = Bundle.open(export_bundle(BQ_MODEL, tmp_path / "b", config=ExportConfig(
        int8=True, calib=calib_dir, calib_samples=4, int8_check_count=2, allow_int8_over_budget=True,
        int8_reference=True, progress=False)))
    assert {a.role for a in bundle.artifacts if a.precision == "int8" and a.format == "onnx"} == {
        "device", "server", "reference"}
    assert has_reference(bundle, "onnxruntime", "int8")
    with Encoder(bundle, "onnxruntime", "int8") as encoder, Decoder(bundle, "onnxruntime", "int8") as decoder:
        stream = encoder.encode(photos[:1])[0]
        assert sum(len(p) for p in unpack_stream(stream)[1].values()) == 5 + 2 * 14 * 14
        logits = decoder.outputs(stream)["logits"]
    with ReferenceGraph(bundle, "onnxruntime", "int8") as teacher:
        reference = teacher.classify(photos[0])
    assert logits.shape == reference.shape == (10,)
    assert np.isfinite(logits).all() and np.isfinite(reference).all()


def test_bq_device_side_needs_no_torch(bq_bundle_dir, photos):
    script = ("import sys\nfrom sc2edge.runtime import Encoder, Decoder\n"
              "with Encoder(sys.argv[1]) as e, Decoder(sys.argv[1]) as d:\n"
              "    print(d.decode(e.encode([sys.argv[2]])[0]))\n")
    assert heavy_imports_of(script, bq_bundle_dir, photos[0]) == []


def test_inspect_describes_a_bq_bundle_and_its_stream(bq_bundle_dir, photos, tmp_path):
    from tests.conftest import run_cli

    with Encoder(bq_bundle_dir) as encoder:
        (tmp_path / "a.sc2").write_bytes(encoder.encode(photos[:1])[0])
    out = run_cli("inspect", bq_bundle_dir, tmp_path / "a.sc2")
    assert out.returncode == 0, out.stderr
    assert "bq (none), 8-bit values, no entropy coding, section z tables" in out.stdout
    assert f"section z: latent (2, 14, 14), payload {5 + 2 * 14 * 14} bytes" in out.stdout and "CRC ok" in out.stdout
