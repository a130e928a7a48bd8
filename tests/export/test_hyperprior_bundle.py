"""Hyperprior bundles end to end: export_bundle, Encoder/Decoder on every backend and precision, check-quant.

The models are CompressAI's learned image codecs at quality 1 coding a 64 x 64 crop in front of a two-layer
classifier (``tests._hyperprior.tiny_learned_codec``): the same export, index path and runtime as the mshp
ResNet-50 student, at a size the suite can afford. The INT8 bundle (two runtimes, calibration, NNCF) takes a
minute or two on 2 shared cores: its tests are marked slow; the FP32 exports run in the default suite.
"""

import json

import numpy as np
import pytest

from sc2edge.bench.size import image_size
from sc2edge.runtime import Bundle, Decoder, Encoder
from sc2edge.runtime.hyperprior import available_implementations
from sc2edge.runtime.stream import read_header
from tests._hyperprior import tiny_learned_codec

pytestmark = pytest.mark.skipif("native" not in available_implementations(),
                                reason="sc2edge.runtime._hyperprior is not built")


@pytest.fixture(scope="module")
def mbt_bundle(tmp_path_factory, calib_dir, photos):
    """mbt2018-mean (mean-scale hyperprior): ONNX Runtime + OpenVINO, FP32 + INT8 of the device graph."""
    from sc2edge.export import ExportConfig, export_bundle

    folder = tmp_path_factory.mktemp("mbt")
    held = folder / "held"  # calib_dir holds photos[::2]
    held.mkdir()
    for p in photos[1::2][:2]:
        (held / p.name).symlink_to(p)
    config = ExportConfig(backends=("onnxruntime", "openvino"), int8=True, calib=calib_dir, calib_samples=4,
                          validation_images=held, int8_check_count=2, allow_int8_over_budget=True, reference=False,
                          progress=False)
    return export_bundle(tiny_learned_codec("mbt2018-mean"), folder / "bundle", config=config)


@pytest.mark.slow
def test_hyperprior_bundle_manifest_validation_and_int8_of_the_device_graph_only(mbt_bundle):
    import onnx

    bundle = Bundle.open(mbt_bundle)
    entropy = bundle.manifest["entropy"]
    assert entropy["kind"] == "hyperprior" and [s["name"] for s in entropy["sections"]] == ["z", "y"]
    assert entropy["side_network"]["file"] in bundle.manifest["files"]
    for record in bundle.manifest["validation"]:  # against CompressAI's compress(), per backend
        assert record["passed"] and record["streams_identical"] == record["images"] > 0, record
        assert record["indexes_total"] > 0 and record["indexes_different"] <= 1e-3 * record["indexes_total"]
    roles = {(a.role, a.format, a.precision) for a in bundle.artifacts}
    assert {("device", "onnx", "int8"), ("device", "openvino", "int8")} <= roles
    assert not any(role == "server" and precision == "int8" for role, _, precision in roles)
    graph = onnx.load(str(bundle.path / bundle.artifact("device", "onnx", "int8").path)).graph
    quantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    assert quantized & {i for n in graph.node if n.op_type == "Conv" and n.name.startswith("/g_a/") for i in n.input}
    assert [o.name for o in graph.output] == ["y", "z_symbols"]
    assert bundle.manifest["calibration"]["int8_validation"]["results"]


@pytest.mark.slow
def test_every_encoder_decodes_exactly_on_every_decoder(mbt_bundle, photos):
    """ORT/OpenVINO x FP32/INT8 x 1/2 threads encode; every server graph (ORT FP32, OpenVINO FP32/FP16; a
    hyperprior has no INT8 server graph) decodes: y_hat equals the encoder's symbols + means bit for bit."""
    images = photos[1:3]
    configs = [(b, p, t) for b in ("onnxruntime", "openvino") for p in ("fp32", "int8") for t in (1, 2)]
    encoded = []
    for backend, precision, threads in configs:
        with Encoder(mbt_bundle, backend, precision, threads=threads) as encoder:
            for image in images:
                item = encoder.item_outputs(encoder.preprocess(image)[None])[0]
                symbols = encoder.codec.section_symbols(item)
                _, means = encoder.codec.index_path(item)
                stream = encoder.compress_outputs(item)
                assert stream == encoder.encode([image])[0]
                encoded.append((f"{backend}/{precision}/{threads}t", stream, symbols["y"] + means))
    assert {read_header(s).codec for _, s, _ in encoded} == {"hyperprior"}
    for backend, precision in (("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "fp16")):
        with Decoder(mbt_bundle, backend, precision) as decoder:
            for name, stream, expected in encoded:
                y_hat = decoder.decode_symbols(stream)
                assert y_hat.dtype == np.float32 and np.array_equal(y_hat, expected), (name, backend, precision)
                assert len(decoder.outputs(stream)["logits"]) == 10


@pytest.mark.parametrize("architecture", ["bmshj2018-factorized", "bmshj2018-hyperprior"])
def test_other_learned_codecs_export_and_match_compressai(architecture, tmp_path, photos):
    """The factorized prior (an Entropic-Student-style bundle) and the scale hyperprior (h_a on |y|, no means)."""
    from sc2edge.export import ExportConfig, export_bundle

    out = export_bundle(tiny_learned_codec(architecture), tmp_path / "b",
                        config=ExportConfig(reference=False, progress=False))
    bundle = Bundle.open(out)
    assert bundle.manifest["entropy"]["kind"] == ("factorized" if "factorized" in architecture else "hyperprior")
    record = bundle.manifest["validation"][0]
    assert record["passed"] and record["streams_identical"] == record["images"], record
    with Encoder(bundle) as encoder, Decoder(bundle) as decoder:
        stream = encoder.encode([photos[0]])[0]
        assert len(decoder.outputs(stream)["logits"]) == 10
        item = encoder.item_outputs(encoder.preprocess(photos[0])[None])[0]
        symbols = encoder.codec.section_symbols(item)
    size = image_size(photos[0].name, stream, symbols["y"], bundle.tables, (64, 64), codec=encoder.codec)
    assert set(size.section_bytes) == set(symbols) and sum(size.section_bytes.values()) == size.payload_bytes
    assert size.information_bits > 0 and -0.05 < size.coder_overhead < 0.5  # the bench's bits per section


def test_compressai_codec_checkpoint_loads_and_exports(tmp_path):
    """A checkpoint holding CompressAI's own state dict (``g_a.0.weight``, ...) loads into the learned-codec
    model (the classifier keeps its weights) and exports."""
    import torch
    from compressai.zoo import mbt2018_mean

    from sc2edge.export import ExportConfig, export_bundle
    from sc2edge.zoo import load_into

    torch.manual_seed(5)
    codec = mbt2018_mean(quality=1, pretrained=False)
    codec.update(force=True)
    path = tmp_path / "mbt2018-mean-1.pth.tar"
    torch.save(codec.state_dict(), path)
    loaded = tiny_learned_codec("mbt2018-mean", spread=False)
    teacher = {k: v.clone() for k, v in loaded.model.teacher.state_dict().items()}
    load_into(loaded.model, torch.load(path, weights_only=True))
    assert torch.equal(loaded.model.bottleneck_layer.g_a[1][0].weight, codec.g_a[0].weight)
    assert torch.equal(loaded.model.bottleneck_layer.h_s[0].weight, codec.h_s[0].weight)
    assert all(torch.equal(v, loaded.model.teacher.state_dict()[k]) for k, v in teacher.items())
    out = export_bundle(loaded, tmp_path / "b", config=ExportConfig(reference=False, progress=False))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["validation"][0]["passed"]


@pytest.mark.slow
def test_check_quant_reports_a_hyperprior_bundle(mbt_bundle, photos, tmp_path):
    """check-quant on a hyperprior bundle: z and y symbols changed, bytes of both sections, on both runtimes."""
    from sc2edge.calibrate import check_quant

    data = tmp_path / "held.txt"
    data.write_text("".join(f"{p}\n" for p in photos[1::2][:3]))
    for backend in ("onnxruntime", "openvino"):
        report = check_quant(mbt_bundle, data, backend=backend, images=3, progress=False, worst_layers=0)
        assert report.images == 3 and 0 <= report.symbols_changed_pct < 100
        assert report.bytes_fp32 > 0 and report.bytes_int8 > 0


@pytest.mark.slow
def test_sc2bench_style_mshp_checkpoint_exports(tmp_path):
    """The ResNet-50 mshp student from a checkpoint saved the way sc2bench saves it (torchdistill dict, a
    40-level scale table) exports a bundle whose streams match CompressAI's."""
    import argparse

    import torch

    from sc2edge.export import ExportConfig, export_bundle
    from sc2edge.zoo import build, get_spec
    from tests._hyperprior import MODEL

    torch.manual_seed(3)
    source = build(get_spec(MODEL))
    source.update(scale_table=torch.exp(torch.linspace(-2.0, 4.0, 40)).tolist(), force=True)
    path = tmp_path / "ilsvrc2012-splittable_resnet50-mshp-beta0.08_from_resnet50.pt"
    torch.save({"model": source.state_dict(), "optimizer": {}, "best_value": 0.7,
                "args": argparse.Namespace(config="mshp.yaml")}, path)
    out = export_bundle(MODEL, tmp_path / "b", checkpoint=path, config=ExportConfig(reference=False, progress=False))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["trained"] and manifest["entropy"]["kind"] == "hyperprior"
    record = manifest["validation"][0]
    assert record["passed"] and record["streams_identical"] == record["images"], record
