"""A record of everything on this machine that changes the figures: CPU, cores, threads, versions, inputs."""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sc2edge._files import package_versions, sha256_file

PACKAGES = ("numpy", "pillow", "onnxruntime", "openvino", "torch", "torchvision", "compressai", "onnx",
            "onnx-tool", "nncf", "matplotlib")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "flags", "vendor_id") and key not in info:
            info[key] = value.strip()
    return info


def proc_kib_field(path: str, field: str) -> int | None:
    """A ``Field:  N kB`` line of a Linux /proc file, in bytes; None where there is no such file or field."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine_record(threads: int) -> dict[str, Any]:
    """CPU model and flags, cores, memory, OS, the thread count used and package versions."""
    cpu = _cpuinfo()
    return {
        "cpu_model": cpu.get("model name") or platform.processor(),
        "cpu_vendor": cpu.get("vendor_id"),
        "cpu_flags": sorted(cpu.get("flags", "").split()),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": proc_kib_field("/proc/meminfo", "MemTotal"),
        "machine": platform.machine(),
        "os": platform.platform(),
        "threads": threads,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": package_versions(PACKAGES),
    }


def files_hash(paths: Iterable[Path]) -> str:
    """sha256 over each file's name and bytes, in the given order: identifies an image set (first 16 hex)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode() + b"\0")
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def bundle_hash(bundle_dir: Path) -> str:
    """sha256 of the manifest, which itself holds the sha256 of every file of the bundle (first 16 hex)."""
    return sha256_file(Path(bundle_dir) / "manifest.json")[:16]
