"""The TensorRT engine builder (``sc2edge build-engine``), run on the target GPU without torch.

Engines are built from the bundle's TensorRT-ready ONNX (``sc2edge.calibrate.trt_onnx``): TensorRT 10 and 11
build them as strongly typed networks, so one set of files serves both. An engine only runs on the GPU model
and TensorRT version that built it, hence on the target.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sc2edge._lazy import lazy_import
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.bundle import Bundle
from sc2edge.runtime.bundle_writer import BundleEditor
from sc2edge.runtime.manifest import ENGINE_FORMAT, TRT_ONNX_FORMAT


def gpu_description() -> dict[str, str]:
    """What an engine is tied to: GPU name, compute capability and driver (or the Jetson board model)."""
    found: dict[str, str] = {"host": platform.node(), "machine": platform.machine()}
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, check=False).stdout.strip().splitlines()
        if out:
            name, cap, driver = (part.strip() for part in (out[0].split(",") + ["", ""])[:3])
            found.update(gpu=name, compute_capability=cap, driver=driver)
    board = Path("/proc/device-tree/model")
    if board.is_file():
        found["board"] = board.read_text(errors="replace").strip("\x00\n ")
    return found


@dataclass(frozen=True)
class EngineConfig:
    """How to build an engine.

    Args:
        precision (str): "fp16" or "int8" (the bundle's TensorRT-ready graph of that precision). Defaults to "fp16".
        role (str): "device" or "server". Defaults to "device".
        min_batch (int): smallest batch of the optimization profile. Defaults to 1.
        opt_batch (int): batch the kernels are tuned for. Defaults to 1.
        max_batch (int): largest batch. Defaults to 1.
        workspace_mib (int): builder workspace limit. Defaults to 1024.
    """

    precision: str = "fp16"
    role: str = "device"
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    workspace_mib: int = 1024

    def validate(self) -> EngineConfig:
        if self.precision not in ("fp16", "int8"):
            raise Sc2edgeError(f'engine precision "{self.precision}" is not available (choose fp16 or int8)')
        if self.role not in ("device", "server"):
            raise Sc2edgeError(f'role "{self.role}" is not available (choose device or server)')
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise Sc2edgeError(f"need 1 <= min_batch <= opt_batch <= max_batch, got "
                               f"{self.min_batch}, {self.opt_batch}, {self.max_batch}")
        if self.workspace_mib < 16:
            raise Sc2edgeError(f"workspace_mib must be at least 16, got {self.workspace_mib}")
        return self


def _input_shape(manifest: dict[str, Any], role: str, batch: int) -> tuple[str, tuple[int, ...]]:
    if role == "device":
        spec = manifest["input"]
        return "image", (batch, spec["channels"], spec["height"], spec["width"])
    return "symbols", (batch, *manifest["latent"]["shape"])


def build_engine(bundle_path: str | Path, config: EngineConfig = EngineConfig()) -> Path:
    """Build a TensorRT engine from a bundle's TensorRT-ready ONNX and record it in the bundle.

    Runs on the target GPU (TensorRT 10 or 11). The engine is written into the bundle as
    ``<role>.<precision>.engine`` with the GPU, compute capability, driver and TensorRT version it was
    built with; the bundle is edited atomically (``BundleEditor``).

    Args:
        bundle_path (str | Path): the bundle directory (written in place).
        config (EngineConfig): precision, role, batch range and workspace. Defaults to EngineConfig().
    """
    config = config.validate()
    bundle = Bundle.open(bundle_path)
    source = bundle.artifact(config.role, TRT_ONNX_FORMAT, config.precision)
    trt = lazy_import("tensorrt")
    major = int(trt.__version__.split(".")[0])
    if major < 10:
        raise Sc2edgeError(f"TensorRT {trt.__version__} is too old: sc2edge builds with the TensorRT 10/11 API")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Strong typing: precision comes from the graph (FP16 tensors, Q/DQ). Required in 11 (where the flag is
    # accepted and ignored), opt-in in 10.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(bundle.path / source.path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise Sc2edgeError(f"TensorRT cannot parse {source.path}: {errors}")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mib << 20)
    profile = builder.create_optimization_profile()
    name, _ = _input_shape(bundle.manifest, config.role, 1)
    profile.set_shape(name, *(_input_shape(bundle.manifest, config.role, b)[1]
                              for b in (config.min_batch, config.opt_batch, config.max_batch)))
    builder_config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise Sc2edgeError(f"TensorRT failed to build an engine from {source.path} (see the log above)")
    engine_name = f"{config.role}.{config.precision}.engine"
    meta = {"tensorrt": trt.__version__, "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": source.path, "batch": [config.min_batch, config.opt_batch, config.max_batch],
            **gpu_description()}
    with BundleEditor(bundle) as edit:
        (edit.staging / engine_name).write_bytes(bytes(serialized))
        edit.add_artifact(config.role, ENGINE_FORMAT, config.precision, engine_name, meta)
        edit.commit()
    return bundle.path / engine_name
