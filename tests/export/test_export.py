import json

import numpy as np
import onnx
import pytest

from sc2edge.errors import BundleError, Sc2edgeError
from sc2edge.export import ExportConfig, export_bundle
from sc2edge.runtime import Bundle
from sc2edge.runtime.bundle_writer import BundleBuilder
from tests.conftest import DEFAULT_TEST_MODEL, paper_style_checkpoint


def test_bundle_holds_graphs_tables_and_a_complete_manifest(bundle_dir, es_model):
    bundle = Bundle.open(bundle_dir)
    m = bundle.manifest
    assert m["model"]["name"] == DEFAULT_TEST_MODEL and m["model"]["trained"] is False
    assert m["latent"]["shape"] == [24, 55, 55]
    assert {(a.role, a.format, a.precision) for a in bundle.artifacts} >= {("device", "onnx", "fp32"),
                                                                           ("server", "onnx", "fp32")}
    assert set(m["files"]) >= {"tables.npz", "device.fp32.onnx", "server.fp32.onnx"}
    assert all(v["passed"] for v in m["validation"])
    assert m["validation"][0]["streams_identical"] == m["validation"][0]["images"]
    # the tables are the checkpoint's own, not recomputed
    eb = es_model.model.bottleneck_layer.entropy_bottleneck
    np.testing.assert_array_equal(bundle.tables.quantized_cdf, eb._quantized_cdf.numpy())
    np.testing.assert_array_equal(bundle.tables.offset, eb._offset.numpy())


def test_missing_artifact_names_what_the_bundle_has(bundle_dir):
    with pytest.raises(BundleError, match='no device graph in format "trt-engine".*it has: device/onnx/fp32'):
        Bundle.open(bundle_dir).artifact("device", "trt-engine", "int8")


def test_graphs_have_dynamic_batch_and_size_and_integer_symbols(bundle_dir):
    device = onnx.load(str(bundle_dir / "device.fp32.onnx"))
    dims = [d.dim_param or d.dim_value for d in device.graph.input[0].type.tensor_type.shape.dim]
    # uint8 NHWC pixels: the default of every export, INT8 ones (this bundle) included
    assert dims == ["batch", "height", "width", 3]
    assert device.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert device.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    ops = {n.op_type for n in device.graph.node}
    assert {"Round", "Abs", "Conv"} <= ops and "Pow" not in ops  # GDN folded: no reparametrization left
    server = onnx.load(str(bundle_dir / "server.fp32.onnx"), load_external_data=False)
    assert server.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT32


def test_tampered_bundle_is_refused(bundle_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle_dir, copy)
    with open(copy / "device.fp32.onnx", "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BundleError, match="device.fp32.onnx does not match its sha256"):
        Bundle.open(copy)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format version 99"):
        Bundle.open(copy)
    with pytest.raises(BundleError, match="not an sc2edge bundle"):
        Bundle.open(tmp_path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.pop("entropy"), "manifest has no entropy"),
    (lambda m: m["artifacts"].append({"role": "device"}), r"has no artifacts\[\d+\]\.format"),
    (lambda m: m.update(files=["tables.npz"]), "files must be dict, not list"),
])
def test_malformed_manifest_is_a_bundle_error(bundle_dir, tmp_path, edit, message):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    edit(manifest)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        Bundle.open(tmp_path)


def test_force_replaces_bundles_only(tmp_path, fp32_bundle_dir):
    import shutil

    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    with pytest.raises(BundleError, match="not an sc2edge bundle"):
        BundleBuilder(tmp_path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    for _ in range(2):  # an empty folder, then the bundle written there, are both replaced
        source = Bundle.open(fp32_bundle_dir)
        with BundleBuilder(empty, overwrite=True) as builder:
            for name in source.spec.files:
                shutil.copy(source.path / name, builder.staging / name)
            builder.artifacts = list(source.artifacts)
            builder.write_manifest({k: v for k, v in source.manifest.items() if k not in ("artifacts", "files")})
            builder.commit()
    assert sorted(p.name for p in empty.iterdir()) == sorted([*source.spec.files, "manifest.json"])


def test_existing_bundle_is_not_overwritten_without_force(bundle_dir):
    with pytest.raises(BundleError, match="exists"):
        export_bundle(DEFAULT_TEST_MODEL, bundle_dir)


def test_failed_export_leaves_nothing_behind(tmp_path):
    out = tmp_path / "b"
    with pytest.raises(Sc2edgeError):
        export_bundle(DEFAULT_TEST_MODEL, out, config=ExportConfig(validation_images=tmp_path / "missing"))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_checkpoint_export_carries_its_weights_and_hash(tmp_path, photos):
    ckpt = tmp_path / "ckpt.pt"
    paper_style_checkpoint(ckpt, seed=3)
    images = tmp_path / "images"
    images.mkdir()
    (images / photos[0].name).symlink_to(photos[0])
    out = export_bundle(DEFAULT_TEST_MODEL, tmp_path / "b", checkpoint=ckpt,
                        config=ExportConfig(validation_images=images))
    bundle = Bundle.open(out)
    assert bundle.manifest["model"]["trained"] is True
    assert len(bundle.manifest["model"]["checkpoint_sha256"]) == 64
    assert all(v["passed"] and v["streams_identical"] == v["images"] for v in bundle.manifest["validation"])


def test_validation_fails_when_an_output_exceeds_the_task_tolerance(fp32_bundle_dir, es_model, photos):
    import copy

    import torch

    from sc2edge.export import validate_bundle

    assert validate_bundle(es_model.model, fp32_bundle_dir, photos[:1])  # the bundle's own model passes
    shifted = copy.deepcopy(es_model.model)
    with torch.no_grad():
        shifted.fc.bias += 1.0  # every logit moves by 1: far past 1e-4 + 0.1 % of the largest, same top-1
    result = validate_bundle(shifted, fp32_bundle_dir, photos[:1])
    assert not result and not result.outputs["logits"].passed
    assert result.outputs["logits"].max_abs_err == pytest.approx(1.0, abs=1e-3)
    assert result.symbols_different == 0 and result.predictions_agree == 1  # only the raw output is off
    assert str(result).startswith("FAIL") and "logits max |err| 1 (bound" in str(result)
    assert result.to_json()["outputs"]["logits"]["passed"] is False and result.to_json()["passed"] is False


def test_the_input_size_probe_logs_nothing_and_says_in_one_line_why_a_size_fails(fp32_bundle_dir, capfd):
    """ONNX Runtime logs a failing run as an error of its own; the probe expects failures below the smallest input,
    so its sessions are quiet and the reason comes back in one line (what an unquiet session logs)."""
    from sc2edge.export.limits import _failure
    from sc2edge.runtime import Encoder
    from sc2edge.runtime.preprocess import graph_input_spec

    bundle = Bundle.open(fp32_bundle_dir, verify=False)
    capfd.readouterr()
    reason = _failure(bundle, "onnxruntime", 1)  # a 1 px image: the encoder's strided convolutions refuse it
    assert reason is not None and "Invalid input shape" in reason and "\n" not in reason
    assert _failure(bundle, "onnxruntime", bundle.manifest["input"]["height"]) is None  # the exported size
    assert capfd.readouterr().err == ""
    with Encoder(bundle) as encoder, pytest.raises(Exception, match="Invalid input shape"):
        encoder.symbols(np.zeros(*graph_input_spec(bundle.preprocess, 1, 1)))
    assert "Invalid input shape" in capfd.readouterr().err


def test_max_input_declares_the_largest_latent_a_stream_may_carry(fp32_bundle_dir):
    """A classifier that decodes its encoder's detection streams (800 x 1088 and up) needs more than 4x its 224 px
    crop: ``max_input`` (``--max-input``) declares it; by default such a latent is refused in one line, and no
    value under the exported side or over 4096 is taken."""
    from sc2edge.errors import StreamError
    from sc2edge.export.limits import measure_input_limits
    from sc2edge.runtime.entropy import LatentLimits, latent_size

    default = measure_input_limits(fp32_bundle_dir, ["onnxruntime"])
    wide = measure_input_limits(fp32_bundle_dir, ["onnxruntime"], 1344)
    assert (default.max_side, wide.max_side, wide.min_side) == (4 * 224, 1344, default.min_side)
    manifest = json.loads((fp32_bundle_dir / "manifest.json").read_text())
    detection_latent = (default.channels, *(latent_size(side, default.geometry) for side in (800, 1088)))
    default.apply(manifest)
    with pytest.raises(StreamError, match="outside what this bundle's model takes"):
        LatentLimits(manifest).check(detection_latent)
    wide.apply(manifest)
    LatentLimits(manifest).check(detection_latent)
    for side in (100, 5000):
        with pytest.raises(Sc2edgeError, match="--max-input"):
            measure_input_limits(fp32_bundle_dir, ["onnxruntime"], side)
    with pytest.raises(Sc2edgeError, match="--max-input"):
        ExportConfig(max_input=0).validate()


def test_max_input_under_the_exported_side_is_refused_before_any_work(tmp_path):
    with pytest.raises(Sc2edgeError, match="--max-input 100 is under the exported input side 224"):
        export_bundle(DEFAULT_TEST_MODEL, tmp_path / "b", config=ExportConfig(max_input=100))
    assert not (tmp_path / "b").exists()
