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
def bundle_dir(tmp_path_factory, photos) -> Path:
    from sc2edge.export import ExportConfig, export_bundle

    images = tmp_path_factory.mktemp("validation")
    for p in photos[:2]:
        (images / p.name).symlink_to(p)
    return export_bundle(DEFAULT_TEST_MODEL, tmp_path_factory.mktemp("bundles") / "es",
                         config=ExportConfig(validation_images=images))


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
def int8_bundle_dir(tmp_path_factory, bundle_dir, calib_dir) -> Path:
    """The session bundle plus OpenVINO IR (FP32/FP16), INT8 graphs for ONNX Runtime, OpenVINO and TensorRT, and
    TensorRT FP16 graphs, calibrated on ``calib_dir``: the artifacts ``export --backend onnx,openvino --int8`` adds.
    """
    import json
    import shutil

    from sc2edge.calibrate.artifacts import add_int8_artifacts
    from sc2edge.calibrate.config import CalibConfig
    from sc2edge.export.bundle import BundleBuilder
    from sc2edge.export.openvino import add_openvino_artifacts
    from sc2edge.runtime import Bundle

    source = Bundle.open(bundle_dir)
    manifest = {k: v for k, v in source.manifest.items() if k not in ("format", "format_version", "artifacts", "files")}
    out = tmp_path_factory.mktemp("bundles") / "es-int8"
    with BundleBuilder(out) as builder:
        for name in source.manifest["files"]:
            shutil.copy(source.path / name, builder.staging / name)
        builder.artifacts = list(source.artifacts)
        add_openvino_artifacts(builder)
        manifest["calibration"] = add_int8_artifacts(builder, source.preprocess, calib_dir,
                                                     config=CalibConfig(samples=12),
                                                     backends=("onnxruntime", "openvino"), progress=False)
        builder.write_manifest(json.loads(json.dumps(manifest)))
        return builder.commit()
