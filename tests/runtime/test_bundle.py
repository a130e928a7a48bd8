"""The bundle reader (v1 and v2 manifests, paths, bounds, hostile files), the shipped schemas, and safe edits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sc2edge._files import read_regular_file
from sc2edge.errors import BundleError, Sc2edgeError
from sc2edge.jsonschemas import validate
from sc2edge.runtime import Bundle
from sc2edge.runtime.bundle_writer import STAGING_TAG, BundleBuilder, BundleEditor, remove_stale_staging
from sc2edge.runtime.manifest import normalize, parse

GOLDEN = Path(__file__).parents[1] / "golden"
SMALL_MODEL = "entropic_student_fashion_mnist_beta0.1"


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory) -> Path:
    """A freshly exported Fashion-MNIST student bundle (format v2, 4 small files: no reference graph)."""
    from sc2edge.export import ExportConfig, export_bundle

    return export_bundle(SMALL_MODEL, tmp_path_factory.mktemp("small") / "fm", config=ExportConfig(reference=False))


@pytest.fixture()
def work(small_bundle, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(small_bundle, copy)
    return copy


def _edit_manifest(bundle: Path, change) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _as_v1(manifest: dict) -> None:
    """Rewrite a v2 manifest in the v1 layout (what sc2edge wrote before format 2)."""
    task, section = manifest.pop("task"), manifest["entropy"]["sections"][0]
    manifest["model"].update(task=task["kind"], num_classes=task["num_classes"], labels=task["labels"])
    manifest["entropy"] = {"coder": manifest["entropy"]["coder"], "precision": manifest["entropy"]["precision"],
                           "file": section["tables"], "hash": section["hash"]}
    manifest["format_version"] = 1


# ------------------------------------------------------------------------------------------ v1, v2, schemas
def test_golden_v1_manifests_match_the_schema_and_normalize_to_v2():
    goldens = sorted(GOLDEN.glob("manifest*.json"))
    assert goldens
    for path in goldens:
        raw = json.loads(path.read_text())
        validate(raw, "bundle-manifest")
        manifest = normalize(raw, str(path))
        validate(manifest, "bundle-manifest")
        spec = parse(manifest)
        assert manifest["format_version"] == 2 and "num_classes" not in manifest["model"]
        assert spec.task.num_classes == raw["model"]["num_classes"]
        assert spec.entropy.sections[0].hash == raw["entropy"]["hash"]
        assert spec.preprocess.crop == raw["preprocess"]["crop"]


def test_fresh_export_is_v2_and_matches_the_schema(small_bundle):
    raw = json.loads((small_bundle / "manifest.json").read_text())
    validate(raw, "bundle-manifest")
    bundle = Bundle.open(small_bundle)
    assert raw["format_version"] == 2 and bundle.format_version == 2
    assert bundle.spec.task.labels == "labels.json" and len(bundle.labels) == 10
    assert bundle.spec.preprocess.grayscale and bundle.spec.entropy.kind == "factorized"


def test_v1_bundle_opens_with_the_same_spec(work, small_bundle):
    _edit_manifest(work, _as_v1)
    validate(json.loads((work / "manifest.json").read_text()), "bundle-manifest")
    old, new = Bundle.open(work), Bundle.open(small_bundle)
    assert old.format_version == 1 and old.spec == new.spec and old.tables.hash == new.tables.hash


def test_format1_manifest_with_v2_sections_opens(work, small_bundle):
    """Format-1 manifests written during the move to v2 carry both layouts (v1 model keys, v2 task and entropy)."""
    def hybrid(manifest: dict) -> None:
        task = manifest["task"]
        manifest["model"].update(task=task["kind"], num_classes=task["num_classes"], labels=task["labels"])
        manifest["format_version"] = 1

    _edit_manifest(work, hybrid)
    assert Bundle.open(work).spec == Bundle.open(small_bundle).spec


def test_schema_refuses_what_the_reader_refuses(small_bundle):
    raw = json.loads((small_bundle / "manifest.json").read_text())
    for change in (lambda m: m["preprocess"].update(resize=60000),
                   lambda m: m["artifacts"][0].update(path="/etc/passwd"),
                   lambda m: m["artifacts"][0].update(role="cloud")):
        bad = json.loads(json.dumps(raw))
        change(bad)
        with pytest.raises(Sc2edgeError, match="not a valid bundle-manifest"):
            validate(bad, "bundle-manifest")


# ------------------------------------------------------------------------------------------ hostile bundles
@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m["artifacts"][0].update(path="/etc/hostname"), "not a plain relative path"),
    (lambda m: m["artifacts"][0].update(path="../outside.onnx"), "not a plain relative path"),
    (lambda m: m["task"].update(labels="./labels.json"), "not a plain relative path"),
    (lambda m: m["entropy"]["sections"][0].update(tables="sub/../tables.npz"), "not a plain relative path"),
    (lambda m: m.update(files={}), "files is empty"),
    (lambda m: m["files"].pop("device.fp32.onnx"), "does not list it in files|not listed"),
    (lambda m: m["preprocess"].update(resize=60000), r"preprocess.resize = 60000 is outside"),
    (lambda m: m["preprocess"].update(crop=300), r"preprocess.crop = 300 is outside"),
    (lambda m: m["input"].update(height=10**9), "input.height"),
    (lambda m: m["latent"].update(shape=[8, 14, 100000]), "latent.shape"),
    (lambda m: m["task"].update(num_classes="10"), "task.num_classes must be int, not str"),
    (lambda m: m["model"].update(trained="yes"), "model.trained must be bool"),
    (lambda m: m.pop("latent"), "manifest has no latent"),
    (lambda m: m["artifacts"][0].pop("sha256"), "has no artifacts.0..sha256|has no artifacts\\[0\\].sha256"),
    (lambda m: m.update(artifacts={}), "artifacts must be list"),
    (lambda m: m["artifacts"].insert(1, "device.fp32.onnx"), r"artifacts\[1\] must be an object"),
    (lambda m: m["task"]["outputs"].append(["logits"]), r"task.outputs\[1\] must be an object"),
    (lambda m: m["entropy"]["sections"].insert(0, None), r"entropy.sections\[0\] must be an object"),
    (lambda m: m.update(format_version="2"), "format version 2"),
])
def test_hand_edited_manifest_is_a_one_line_bundle_error(work, change, message):
    _edit_manifest(work, change)
    with pytest.raises(BundleError, match=message) as caught:
        Bundle.open(work)
    assert "\n" not in str(caught.value)


def test_deeply_nested_manifest_is_a_bundle_error(work):
    (work / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match="nested too deeply|not an sc2edge bundle manifest"):
        Bundle.open(work)


def test_symlink_out_of_the_bundle_is_refused(work, tmp_path):
    outside = tmp_path / "outside.onnx"
    shutil.copy(work / "device.fp32.onnx", outside)
    (work / "device.fp32.onnx").unlink()
    (work / "device.fp32.onnx").symlink_to(outside)  # same bytes, same sha256: only the link gives it away
    with pytest.raises(BundleError, match="symlink or special file"):
        Bundle.open(work)


def test_unlisted_file_is_refused(work):
    (work / "extra.onnx").write_bytes(b"graph from elsewhere")
    with pytest.raises(BundleError, match="extra.onnx is not listed"):
        Bundle.open(work)


def test_a_graph_hashes_only_the_files_it_reads(work, photos):
    """Encoder/Decoder from a path check the sha256 of their own graph, tables and labels, not the other role's
    graphs (a device starts without hashing the server graph); a changed file they read is still refused."""
    from sc2edge.runtime import Decoder, Encoder

    server = work / "server.fp32.onnx"
    server.write_bytes(server.read_bytes() + b"\0")  # still a loadable protobuf? irrelevant: never read
    with Encoder(work) as encoder:
        stream = encoder.encode(photos[:1])[0]
    with pytest.raises(BundleError, match="server.fp32.onnx does not match its sha256"):
        Decoder(work)
    with pytest.raises(BundleError, match="does not match its sha256"):
        Bundle.open(work)  # a whole-bundle open still hashes everything
    (work / "tables.npz").write_bytes((work / "tables.npz").read_bytes() + b"\0")
    with pytest.raises(BundleError, match="tables.npz does not match its sha256"):
        Encoder(work)
    assert stream


def test_fifo_as_labels_does_not_hang(work, tmp_path):
    (work / "labels.json").unlink()
    os.mkfifo(work / "labels.json")
    outcome: list[BaseException] = []

    def open_it() -> None:
        try:
            Bundle.open(work)
        except BaseException as exc:  # noqa: BLE001  (handed to the test thread)
            outcome.append(exc)

    thread = threading.Thread(target=open_it, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive() and isinstance(outcome[0], BundleError)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(Sc2edgeError, match="not a regular file"):
        read_regular_file(fifo, 1 << 20)


# ------------------------------------------------------------------------------------------ safe edits
def test_editor_swaps_in_a_verified_bundle(work):
    with BundleEditor(work) as edit:
        (edit.staging / "notes.txt").write_text("added after export")
        edit.remove(["server.fp32.onnx"])
        edit.commit()
    bundle = Bundle.open(work)
    assert "notes.txt" in bundle.spec.files and "server.fp32.onnx" not in bundle.spec.files
    assert [a.role for a in bundle.artifacts] == ["device"]
    assert not [p for p in work.parent.iterdir() if STAGING_TAG in p.name]


def test_failed_edit_leaves_the_bundle_as_it_was(work):
    before = {p.name: p.read_bytes() for p in work.iterdir()}
    with pytest.raises(RuntimeError), BundleEditor(work) as edit:
        (edit.staging / "device.fp32.onnx").write_bytes(b"half-written")
        raise RuntimeError("the edit failed here")
    assert {p.name: p.read_bytes() for p in work.iterdir()} == before
    with pytest.raises(BundleError), BundleEditor(work) as edit:  # a manifest that would not open: no commit
        edit.manifest["preprocess"]["resize"] = 60000
        edit.commit()
    assert {p.name: p.read_bytes() for p in work.iterdir()} == before
    Bundle.open(work)


def test_stale_staging_of_killed_writers_is_removed(work):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = os.uname().nodename
    stale = work.parent / f".{work.name}.{STAGING_TAG}.{host}.{dead.pid}.abc123"
    live = work.parent / f".{work.name}.{STAGING_TAG}.{host}.{os.getpid()}.def456"
    foreign = work.parent / f".{work.name}.someone-else"
    parked = work.parent / f".{work.name}.old"  # a commit killed after the new bundle moved in
    for folder in (stale, live, foreign, parked):
        folder.mkdir()
    (parked / "manifest.json").write_text("{}")
    assert remove_stale_staging(work) == [stale, parked]
    assert not stale.exists() and not parked.exists() and live.exists() and foreign.exists()


_KILL_IN_COMMIT = """
import os, shutil, sys
from pathlib import Path
from sc2edge.runtime import bundle_writer
from sc2edge.runtime.bundle_writer import BundleEditor

if sys.argv[2] == "no-exchange":
    bundle_writer._exchange = lambda a, b: False
    renames, rename = [], Path.rename
    def rename_then_die(self, target):
        renames.append(target)
        result = rename(self, target)
        if len(renames) == 1:  # the old bundle is aside, the new one not yet in place
            os._exit(9)
        return result
    Path.rename = rename_then_die
else:
    bundle_writer.shutil.rmtree = lambda *a, **k: os._exit(9)  # right after the swap
with BundleEditor(sys.argv[1]) as edit:
    (edit.staging / "notes.txt").write_text("new")
    edit.commit()
"""


@pytest.mark.parametrize("mode", ["exchange", "no-exchange"])
def test_kill_inside_commit_leaves_a_bundle(work, mode):
    result = subprocess.run([sys.executable, "-c", _KILL_IN_COMMIT, str(work), mode], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 9, result.stderr[-2000:]
    bundle = Bundle.open(work)  # the old one (restored from aside) or the new one, verified
    assert ("notes.txt" in bundle.spec.files) == (mode == "exchange")
    with BundleBuilder(work, overwrite=True) as builder:  # the next writer clears what the kill left
        builder.discard()
    assert not [p for p in work.parent.iterdir() if p.name.startswith(f".{work.name}.")]
