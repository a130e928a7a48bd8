"""Golden streams: ``.sc2`` files written by an earlier sc2edge must keep decoding to the same predictions, and
today's writer must produce the same rANS payload bytes for the same images.

``tests/golden/`` holds, for the trained Fashion-MNIST student (exported deterministically from its committed
weights): four held-out test images, the manifest of the bundle that encoded them, and for each stream format
version a folder of streams (``v1/`` was written by the format-1 writer, before stream format 2 existed) with
``expected.json`` (each image's top-1 class). Regenerate with ``SC2EDGE_REGEN_GOLDEN=1 pytest
tests/runtime/test_golden.py``: it rewrites the images, the manifest and the folder of the *current* stream
format; older folders are kept, since no writer for them exists any more.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from sc2edge.runtime import Bundle, Decoder, Encoder
from sc2edge.runtime.stream import FORMAT_VERSION, read_header, unpack_stream

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
MODEL = "entropic_student_fashion_mnist_beta0.1"
IMAGES = 4
REGENERATE = os.environ.get("SC2EDGE_REGEN_GOLDEN") == "1"


def _top1(decoder: Decoder, stream: bytes) -> int:
    """The class the server graph ranks first for a stream (its first output, whatever the task names it)."""
    outputs = decoder.runner.infer({"symbols": decoder.decode_symbols(stream)[None]})
    return int(np.argmax(next(iter(outputs.values()))[0]))


def _regenerate(bundle: Path, images: list[Path]) -> None:
    out = GOLDEN / f"v{FORMAT_VERSION}"
    out.mkdir(parents=True, exist_ok=True)
    (GOLDEN / f"manifest.v{FORMAT_VERSION}.json").write_text((bundle / "manifest.json").read_text())
    expected = {}
    with Encoder(bundle) as encoder, Decoder(bundle) as decoder:
        for image in images:
            stream = encoder.encode([image])[0]
            (out / f"{image.stem}.sc2").write_bytes(stream)
            expected[f"{image.stem}.sc2"] = {"image": f"images/{image.name}", "top1": _top1(decoder, stream)}
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


@pytest.fixture(scope="module")
def golden_images() -> list[Path]:
    folder = GOLDEN / "images"
    if REGENERATE:
        from sc2edge.zoo.datasets import write_fashion_mnist_images

        listing = write_fashion_mnist_images("test", folder, IMAGES, seed=8)
        listing.unlink()  # the labels are not what is tested: predictions are
    return sorted(folder.glob("*.png"))


@pytest.fixture(scope="module")
def fashion_bundle(tmp_path_factory, golden_images) -> Path:
    """The Fashion-MNIST student exported now, ONNX FP32 (seconds: the model is tiny)."""
    from sc2edge.export import ExportConfig, export_bundle

    bundle = export_bundle(MODEL, tmp_path_factory.mktemp("golden") / "fmnist",
                           config=ExportConfig(backends=("onnxruntime",), validation_images=GOLDEN / "images"))
    if REGENERATE:
        _regenerate(bundle, golden_images)
    return bundle


def _golden_streams() -> list[tuple[Path, dict]]:
    found = []
    for expected_file in sorted(GOLDEN.glob("v*/expected.json")):
        for name, record in json.loads(expected_file.read_text()).items():
            found.append((expected_file.parent / name, record))
    return found


def test_golden_files_are_present_and_small():
    streams = _golden_streams()
    assert len(streams) >= IMAGES and (GOLDEN / "v1").is_dir() and (GOLDEN / "manifest.v1.json").is_file()
    assert sum(p.stat().st_size for p in GOLDEN.rglob("*") if p.is_file()) < 1 << 20


def test_golden_bundle_is_reproduced_from_the_committed_weights(fashion_bundle):
    """The re-export must be the model that wrote the golden streams: same weights, same entropy tables."""
    golden = json.loads((GOLDEN / "manifest.v1.json").read_text())
    manifest = Bundle.open(fashion_bundle).manifest
    assert manifest["model"]["checkpoint_sha256"] == golden["model"]["checkpoint_sha256"], \
        "the Fashion-MNIST weights changed: regenerate tests/golden with SC2EDGE_REGEN_GOLDEN=1"
    assert Bundle.open(fashion_bundle).tables.hash == golden["entropy"]["hash"]


def test_golden_streams_decode_to_the_same_predictions(fashion_bundle):
    with Decoder(fashion_bundle) as decoder:
        for path, record in _golden_streams():
            assert _top1(decoder, path.read_bytes()) == record["top1"], path.name


def test_writer_payloads_equal_the_golden_payloads(fashion_bundle):
    with Encoder(fashion_bundle) as encoder:
        for path, record in _golden_streams():
            stream = encoder.encode([GOLDEN / record["image"]])[0]
            assert read_header(stream).version == FORMAT_VERSION
            assert unpack_stream(stream)[1] == unpack_stream(path.read_bytes())[1], path.name
