"""Shared fixtures: real photos, a random-weight Entropic Student, and one exported bundle per session."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

DEFAULT_TEST_MODEL = "entropic_student_resnet50_beta0.08"


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    from sc2edge.photos import system_photos

    found = system_photos()
    if len(found) < 4:
        pytest.fail("offline photos are missing: run scripts/setup-env.sh (installs opencv-doc, mate-backgrounds)")
    return found[::max(1, len(found) // 8)][:8]


@pytest.fixture(scope="session")
def es_model():
    from sc2edge.zoo import get_model

    return get_model(DEFAULT_TEST_MODEL)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, photos, calib_dir) -> Path:
    """One export for the whole session, as ``sc2edge export --backend onnx,openvino --int8 --calib`` makes it:
    ONNX and OpenVINO FP32, INT8 for both runtimes, TensorRT-ready Q/DQ and FP16 graphs."""
    from sc2edge.export import ExportConfig, export_bundle
    from sc2edge.photos import system_photos

    images = tmp_path_factory.mktemp("validation")
    for p in photos[:2]:
        (images / p.name).symlink_to(p)
    held_out = tmp_path_factory.mktemp("int8-check")
    for p in system_photos()[1::2][:3]:  # calib_dir takes the even ones
        (held_out / p.name).symlink_to(p)
    # Random weights: the INT8 budget is measured and recorded, but says nothing; the bundle is kept either way.
    return export_bundle(DEFAULT_TEST_MODEL, tmp_path_factory.mktemp("bundles") / "es",
                         config=ExportConfig(backends=("onnxruntime", "openvino"), int8=True, calib=calib_dir,
                                             calib_samples=12, validation_images=images, int8_check_images=held_out,
                                             allow_int8_over_budget=True))


def paper_style_checkpoint(path: Path, seed: int = 1) -> dict:
    """Save a checkpoint the way the paper's repository did (torchdistill dict, argparse args, old names)."""
    import torch

    from sc2edge.zoo import build, get_spec

    torch.manual_seed(seed)
    model = build(get_spec(DEFAULT_TEST_MODEL))
    model.update(force=True)
    state = {}
    for key, value in model.state_dict().items():
        for new, old in (("matrices.", "_matrix"), ("biases.", "_bias"), ("factors.", "_factor")):
            key = key.replace(f"entropy_bottleneck.{new}", f"entropy_bottleneck.{old}")
        state[key if key.startswith("fc.") else f"backbone.{key}"] = value
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "best_value": 59.9,
                "lr_scheduler": None, "args": argparse.Namespace(config="ilsvrc2012-b24ch_igdn.yaml", seed=None)},
               path)
    return model.state_dict()


HEAVY_MODULES = ("torch", "torchvision", "compressai", "sc2edge.zoo", "sc2edge.export")


def heavy_imports_of(script: str, *args: object) -> list[str]:
    """Run ``script`` in a fresh interpreter (it must succeed) and return the heavy modules it imported: what a
    device-side path must leave out."""
    check = f"\nimport sys\nprint('IMPORTED:' + ','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", script + check, *map(str, args)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return [m for m in out.stdout.strip().splitlines()[-1].removeprefix("IMPORTED:").split(",") if m]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "sc2edge.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory) -> Path:
    """Calibration images: every other offline photo (the rest stay held out for check-quant)."""
    from sc2edge.photos import system_photos

    folder = tmp_path_factory.mktemp("calib")
    for p in system_photos()[::2][:12]:
        (folder / p.name).symlink_to(p)
    return folder


@pytest.fixture(scope="session")
def int8_bundle_dir(bundle_dir) -> Path:
    """The session bundle: it already holds OpenVINO IR and the INT8 graphs (see ``bundle_dir``)."""
    return bundle_dir


@pytest.fixture(scope="session")
def fp32_bundle_dir(tmp_path_factory, bundle_dir) -> Path:
    """The session bundle reduced to what a plain ``sc2edge export`` writes: ONNX FP32 graphs only."""
    import json
    import shutil

    from sc2edge.runtime import Bundle
    from sc2edge.runtime.bundle_writer import BundleBuilder

    source = Bundle.open(bundle_dir)
    kept = [a for a in source.artifacts if a.format == "onnx" and a.precision == "fp32"]
    manifest = {k: v for k, v in source.manifest.items()
                if k not in ("format", "format_version", "artifacts", "files", "calibration")}
    with BundleBuilder(tmp_path_factory.mktemp("bundles") / "es-fp32") as builder:
        tables = [s.tables for s in source.spec.entropy.sections]
        for name in [a.path for a in kept] + tables + [source.spec.task.labels]:
            if name:
                shutil.copy(source.path / name, builder.staging / name)
        for a in kept:
            builder.add_artifact(a.role, a.format, a.precision, a.path, a.meta)
        builder.write_manifest(json.loads(json.dumps(manifest)))
        return builder.commit()


FASHION_MODEL = "entropic_student_fashion_mnist_beta0.1"


@pytest.fixture(scope="session")
def reference_bundle_dir(tmp_path_factory, photos) -> Path:
    """The Fashion-MNIST student (small and fast) with its reference role (the teacher CNN), for ONNX Runtime
    and OpenVINO: what ``sc2edge export --backend onnx,openvino`` writes for a model whose teacher is trained."""
    from sc2edge.export import ExportConfig, export_bundle

    images = tmp_path_factory.mktemp("validation-fashion")
    for p in photos[:2]:
        (images / p.name).symlink_to(p)
    return export_bundle(FASHION_MODEL, tmp_path_factory.mktemp("bundles") / "fashion",
                         config=ExportConfig(backends=("onnxruntime", "openvino"), validation_images=images))


SEGMENTATION_MODEL = "entropic_student_deeplabv3_resnet50_beta0.16"
VOC = Path("/usr/share/doc/labelme-examples/examples/semantic_segmentation/data_dataset_voc")
VOC_IMAGES = VOC / "JPEGImages"
VOC_MASKS = VOC / "SegmentationClassPNG"  # index PNGs, 255 = ignore
SEGMENTATION_RESIZE = 64  # shorter side: small enough for 2 cores (the dilated tail still sees 8 x 8+ features)


def voc_images() -> list[Path]:
    """labelme-examples' VOC photos (their masks sit beside them), sorted."""
    images = sorted(VOC_IMAGES.glob("*.jpg"))
    if len(images) < 2:
        pytest.fail("labelme-examples' VOC images are missing: run scripts/setup-env.sh")
    return images


@pytest.fixture(scope="session")
def seg_voc_dir(tmp_path_factory) -> Path:
    """Two VOC photos (held out: the INT8 calibration uses offline photos)."""
    images = tmp_path_factory.mktemp("voc")
    for path in voc_images()[:2]:
        (images / path.name).symlink_to(path)
    return images


@pytest.fixture(scope="session")
def segmentation_bundle_dir(tmp_path_factory, seg_voc_dir, calib_dir) -> Path:
    """The DeepLabv3 student (random weights, the ImageNet student's encoder and tables), dynamic input, shorter
    side 64, ONNX Runtime and OpenVINO, FP32 and INT8 (encoder and server, calibrated on two offline photos at the
    export's size, validated on the two VOC photos): a second tail of ``fp32_bundle_dir``'s encoder."""
    from sc2edge.export import ExportConfig, export_bundle

    return export_bundle(SEGMENTATION_MODEL, tmp_path_factory.mktemp("bundles") / "seg",
                         config=ExportConfig(backends=("onnxruntime", "openvino"), resize=SEGMENTATION_RESIZE,
                                             validation_images=seg_voc_dir, int8=True, calib=calib_dir,
                                             calib_samples=2, int8_check_count=2, allow_int8_over_budget=True,
                                             progress=False))
