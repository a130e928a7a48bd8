"""Backends by name. Each is imported only when asked for, so a device needs only the runtime it uses."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.backends.base import BaseRunner
from sc2edge.runtime.cpu import check_int8_kernel_path


@dataclass(frozen=True)
class BackendInfo:
    module: str
    runner: str
    artifact_format: str  # the bundle artifact format this backend runs
    install_hint: str  # how to get the runtime


_BACKENDS: dict[str, BackendInfo] = {
    "onnxruntime": BackendInfo("sc2edge.runtime.backends.onnxrt", "OnnxRuntimeRunner", "onnx",
                               'pip install "sc2edge[runtime]"'),
    "openvino": BackendInfo("sc2edge.runtime.backends.openvino", "OpenVinoRunner", "openvino",
                            'pip install "sc2edge[openvino]"'),
    "tensorrt": BackendInfo("sc2edge.runtime.backends.tensorrt", "TensorRTRunner", "trt-engine",
                            "TensorRT comes from NVIDIA's package index or with JetPack on Jetson"),
}
_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "ov": "openvino", "trt": "tensorrt"}


def canonical_backend(name: str) -> str:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _BACKENDS:
        raise Sc2edgeError(f'unknown backend "{name}" (available: {", ".join(_BACKENDS)})')
    return key


def backend_info(name: str) -> BackendInfo:
    return _BACKENDS[canonical_backend(name)]


def available_backends() -> list[str]:
    """Backends whose runtime imports here."""
    found = []
    for name, info in _BACKENDS.items():
        try:
            importlib.import_module(info.module)
        except ImportError:
            continue
        found.append(name)
    return found


def runner_class(name: str) -> type[BaseRunner]:
    info = backend_info(name)
    try:
        module = importlib.import_module(info.module)
    except ImportError as exc:
        backend = canonical_backend(name)
        raise Sc2edgeError(f'backend "{backend}" is not installed ({exc}): {info.install_hint}') from exc
    return getattr(module, info.runner)


def create_runner(backend: str, bundle, role: str, precision: str = "fp32", *, threads: int | None = None,
                  device: str | None = None, spin: bool = False, cache_dir: str | Path | None = None,
                  quiet: bool = False) -> BaseRunner:
    """A runner for the bundle's ``role`` graph ("device" or "server") at ``precision`` on ``backend``; an INT8
    CPU graph that is not portable warns once when this CPU's kernel path differs from where it was validated.
    ``spin``, ``cache_dir`` and ``quiet``: see ``BaseRunner``."""
    artifact = bundle.artifact(role, backend_info(backend).artifact_format, precision)
    if precision == "int8" and canonical_backend(backend) in ("onnxruntime", "openvino"):
        check_int8_kernel_path(bundle.manifest)
    return runner_class(backend)(bundle.path / artifact.path, threads=threads, device=device, spin=spin,
                                 cache_dir=cache_dir, quiet=quiet)


__all__ = ["BackendInfo", "BaseRunner", "available_backends", "backend_info", "canonical_backend", "create_runner",
           "runner_class"]
