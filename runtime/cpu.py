"""Which integer kernels INT8 graphs run on this CPU, and a once-per-process warning when a bundle's INT8 was
validated on a different kernel path.

x86 CPUs without VNNI multiply uint8 x int8 with VPMADDUBSW, which adds each pair of products into an int16
that saturates at 32,767: full 8-bit weights (2 x 255 x 127 = 64,770) overflow, 7-bit weights (2 x 255 x 64 =
32,640) do not. AVX-512 VNNI, AVX-VNNI, AMX and ARM's dot-product instructions accumulate in int32 and are exact
either way. A "portable" INT8 recipe (7-bit weights) gives the same integers on every path; a full 8-bit one is
only right where its kernel path matches the machine it was validated on. Torch-free: the runtime uses it.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
# Flags that decide the INT8 kernel path, as /proc/cpuinfo names them (x86 "flags", ARM "Features").
RELEVANT_FLAGS = ("sse4_1", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile",
                  "asimd", "asimddp", "i8mm", "sve")
SATURATING_PATH = "u8s8-vpmaddubsw (saturating int16)"
PORTABLE_RECIPE = "portable"

log = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class CpuInfo:
    """The CPU model, its INT8-relevant ISA flags and the integer kernel path they select."""

    model: str
    isa: tuple[str, ...]
    kernel_path: str

    def to_json(self) -> dict[str, Any]:
        return {"cpu": self.model, "isa": list(self.isa), "kernel_path": self.kernel_path}

    def __str__(self) -> str:
        return f"{self.model}; ISA {' '.join(self.isa) or 'unknown'}; INT8 kernel path {self.kernel_path}"


def kernel_path(isa: set[str] | tuple[str, ...], machine: str | None = None) -> str:
    """The INT8 matrix-multiply path ONNX Runtime and OpenVINO take for these flags (best first)."""
    flags = set(isa)
    machine = (machine or platform.machine()).lower()
    if machine in ("aarch64", "arm64") or "asimd" in flags:
        if "i8mm" in flags:
            return "arm-i8mm"
        return "arm-dotprod" if "asimddp" in flags else "arm-neon (int16 widening, exact)"
    if {"amx_int8", "amx_tile"} <= flags:
        return "amx"
    if "avx512_vnni" in flags:
        return "avx512-vnni"
    if "avx_vnni" in flags:
        return "avx-vnni"
    if "avx2" in flags or "avx512bw" in flags:
        return SATURATING_PATH
    return "unknown"


def read_cpu(cpuinfo: str | Path = CPUINFO) -> CpuInfo:
    """This machine's CPU model, relevant flags and kernel path (``/proc/cpuinfo``; "unknown" elsewhere)."""
    model, flags = platform.processor() or platform.machine() or "unknown", set()
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    isa = tuple(flag for flag in RELEVANT_FLAGS if flag in flags)
    return CpuInfo(model, isa, kernel_path(flags) if flags else "unknown")


_this_cpu: CpuInfo | None = None


def this_cpu() -> CpuInfo:
    """``read_cpu()``, read once per process."""
    global _this_cpu
    if _this_cpu is None:
        _this_cpu = read_cpu()
    return _this_cpu


def check_int8_kernel_path(manifest: dict[str, Any], cpu: CpuInfo | None = None) -> str | None:
    """Warn (once per bundle and process, on the ``sc2edge.runtime.cpu`` logger) when an INT8 bundle that is not
    portable runs on a CPU whose kernel path differs from the validating machine's; returns the warning text."""
    calibration = manifest.get("calibration") or {}
    recipe = calibration.get("recipe")
    validated = (calibration.get("validated_on") or {}).get("kernel_path")
    cpu = cpu or this_cpu()
    if recipe == PORTABLE_RECIPE or validated == cpu.kernel_path or (
            validated is None and cpu.kernel_path != SATURATING_PATH):  # older bundles: full 8-bit weights
        return None
    name = (manifest.get("model") or {}).get("name", "?")
    if validated is None:
        message = (f"INT8 of bundle {name} predates recipe records (full 8-bit weights): on this CPU's kernel path "
                   f"({cpu.kernel_path}) its output saturates; re-export it (the default recipe is portable)")
    else:
        message = (f"INT8 of bundle {name} uses the {recipe!r} recipe validated on {validated}; this CPU takes "
                   f"{cpu.kernel_path}, where its output may differ: run sc2edge check-quant here, or re-export "
                   "with --int8-recipe portable")
    if (name, message) not in _warned:
        _warned.add((name, message))
        log.warning(message)
    return message
