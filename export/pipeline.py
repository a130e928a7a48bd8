"""``export_bundle``: a registered model (+ checkpoint) -> a validated bundle directory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from sc2edge._files import package_versions
from sc2edge.calibrate.artifacts import add_int8_artifacts
from sc2edge.calibrate.config import CalibConfig
from sc2edge.errors import Sc2edgeError
from sc2edge.export.bundle import BundleBuilder
from sc2edge.export.graphs import DeviceGraph, ServerGraph
from sc2edge.export.onnx import DEFAULT_OPSET, DEVICE_IO, SERVER_IO, export_onnx
from sc2edge.export.openvino import add_openvino_artifacts
from sc2edge.export.validate import Tolerance, ValidationResult, validate_bundle
from sc2edge.photos import list_images, system_photos
from sc2edge.runtime import Bundle
from sc2edge.runtime.backends import canonical_backend
from sc2edge.runtime.bundle import LABELS_FILE
from sc2edge.runtime.entropy import FactorizedCodec
from sc2edge.runtime.rans import PRECISION, EntropyTables, coder_label
from sc2edge.zoo import LoadedModel, class_names, get_model, latent_size

VALIDATION_IMAGES = 4
_VERSIONED_PACKAGES = ("torch", "torchvision", "compressai", "onnx", "onnxruntime", "openvino", "nncf", "numpy")


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how strictly to check it.

    Args:
        backends (tuple[str, ...]): runtimes to export for ("onnxruntime", "openvino"). Defaults to ONNX Runtime.
        int8 (bool): also calibrate INT8 graphs (needs ``calib``). Defaults to False.
        calib (Path | None): calibration images (folder, class-folder tree or file list). Defaults to None.
        calib_samples (int): calibration images to use. Defaults to 300.
        opset (int): ONNX opset. Defaults to 17.
        validation_images (Path | None): images for the PyTorch comparison. Defaults to offline photos.
        tolerance (Tolerance): validation tolerance. Defaults to Tolerance().
        allow_failed_validation (bool): write the bundle even if validation fails. Defaults to False.
        overwrite (bool): replace an existing bundle. Defaults to False.
    """

    backends: tuple[str, ...] = ("onnxruntime",)
    int8: bool = False
    calib: Path | None = None
    calib_samples: int = 300
    opset: int = DEFAULT_OPSET
    validation_images: Path | None = None
    tolerance: Tolerance = field(default_factory=Tolerance)
    allow_failed_validation: bool = False
    overwrite: bool = False

    def validate(self) -> ExportConfig:
        backends = tuple(dict.fromkeys(canonical_backend(b) for b in self.backends))
        if "tensorrt" in backends:
            raise Sc2edgeError("TensorRT engines are built on the target GPU: export with --backend onnxruntime "
                               "(the TensorRT-ready ONNX is written with --int8), then run sc2edge build-engine there")
        if self.int8 and self.calib is None:
            raise Sc2edgeError("--int8 needs calibration images: pass --calib DIR")
        if self.calib is not None and not Path(self.calib).exists():
            raise Sc2edgeError(f"calibration data not found: {self.calib}")
        if self.calib_samples < 1:
            raise Sc2edgeError(f"--calib-samples must be positive, got {self.calib_samples}")
        return ExportConfig(**{**self.__dict__, "backends": backends})


def _manifest(loaded: LoadedModel, tables: EntropyTables, config: ExportConfig) -> dict[str, Any]:
    spec, model = loaded.spec, loaded.model
    size = spec.preprocess.crop
    geometry = model.encoder_geometry()
    channels = 1 if spec.preprocess.grayscale else 3
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": spec.name, "builder": spec.builder, "task": spec.task, "num_classes": spec.num_classes,
                  "beta": spec.beta, "trained": loaded.trained,
                  "checkpoint": str(loaded.checkpoint_path) if loaded.checkpoint_path else None,
                  "checkpoint_sha256": loaded.checkpoint_sha256, "description": spec.description},
        "preprocess": spec.preprocess.to_json(),
        "input": {"channels": channels, "height": size, "width": size},
        "latent": {"channels": model.latent_channels, "geometry": [list(g) for g in geometry],
                   "shape": [model.latent_channels, latent_size(size, geometry), latent_size(size, geometry)]},
        "entropy": {"kind": FactorizedCodec.kind, "coder": coder_label(), "precision": PRECISION,
                    "sections": [{"name": "y", "input": "symbols", "tables": "tables.npz", "hash": tables.hash}]},
        "opset": config.opset,
        "versions": {k: v for k, v in package_versions(_VERSIONED_PACKAGES).items() if v is not None},
    }


def validation_images(config: ExportConfig) -> list[Path]:
    images = list_images(config.validation_images) if config.validation_images else system_photos()
    if not images:
        raise Sc2edgeError("no validation images: pass --validation-images DIR")
    step = max(1, len(images) // VALIDATION_IMAGES)
    return images[::step][:VALIDATION_IMAGES]


def export_bundle(model: str, out: str | Path, *, checkpoint: str | Path | None = None,
                  trust_checkpoint: bool = False, config: ExportConfig = ExportConfig()) -> Path:
    """Export ``model`` to a bundle directory at ``out``, validated against PyTorch.

    Args:
        model (str): a registered model name.
        out (str | Path): the bundle directory to write.
        checkpoint (str | Path | None): weights to load instead of the registry's. Defaults to None.
        trust_checkpoint (bool): allow unpickling a checkpoint the safe loader refuses. Defaults to False.
        config (ExportConfig): what to export. Defaults to ExportConfig().

    Returns:
        Path: the bundle directory.
    """
    config = config.validate()
    images = validation_images(config)  # before the slow steps: a wrong --validation-images fails at once
    loaded = get_model(model, checkpoint=checkpoint, trust_checkpoint=trust_checkpoint)
    tables = EntropyTables.from_bottleneck(loaded.model.bottleneck_layer.entropy_bottleneck)
    manifest = _manifest(loaded, tables, config)
    size = manifest["input"]["height"]
    example = torch.zeros(1, manifest["input"]["channels"], size, size)
    with BundleBuilder(out, overwrite=config.overwrite) as builder, torch.no_grad():
        tables.save(builder.staging / "tables.npz")
        labels = class_names(loaded.spec)
        if labels:
            (builder.staging / LABELS_FILE).write_text(json.dumps(labels))
        manifest["model"]["labels"] = LABELS_FILE if labels else None
        device_graph, server_graph = DeviceGraph(loaded.model).eval(), ServerGraph(loaded.model).eval()
        export_onnx(device_graph, example, builder.staging / "device.fp32.onnx", DEVICE_IO, opset=config.opset)
        builder.add_artifact("device", "onnx", "fp32", "device.fp32.onnx")
        export_onnx(server_graph, device_graph(example), builder.staging / "server.fp32.onnx", SERVER_IO,
                    opset=config.opset)
        builder.add_artifact("server", "onnx", "fp32", "server.fp32.onnx")
        if "openvino" in config.backends:
            add_openvino_artifacts(builder)
        if config.int8:
            manifest["calibration"] = add_int8_artifacts(
                builder, manifest["preprocess"], config.calib, config=CalibConfig(samples=config.calib_samples),
                backends=config.backends)

        builder.write_manifest(manifest)
        staged = Bundle.open(builder.staging, verify=False)  # every file was hashed just now
        results = [validate_bundle(loaded.model, staged, images, backend=backend, tolerance=config.tolerance)
                   for backend in config.backends]
        manifest["validation"] = [r.to_json() for r in results]
        _check(results, config)
        builder.write_manifest(manifest)
        return builder.commit()


def _check(results: list[ValidationResult], config: ExportConfig) -> None:
    failed = [r for r in results if not r]
    if failed and not config.allow_failed_validation:
        raise Sc2edgeError("export does not match PyTorch, no bundle written: " + "; ".join(map(str, failed))
                           + " (pass --allow-failed-validation to write it anyway)")
