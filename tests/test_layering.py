"""One-way layering, read from the source (ast): what each subpackage may import.

zoo -> export -> bundle -> runtime: the runtime (on devices) imports nothing above it and never torch;
calibrate and bench use the runtime but never export; zoo imports nothing that builds on it; the task seam
(tasks/, used by the runtime) is as torch-free as the runtime.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FORBIDDEN = {
    "runtime": ("sc2edge.zoo", "sc2edge.export", "sc2edge.calibrate", "sc2edge.bench", "sc2edge.commands",
                "sc2edge.cli", "sc2edge.demo", "torch", "torchvision", "compressai.entropy_models"),
    "zoo": ("sc2edge.export", "sc2edge.calibrate", "sc2edge.bench", "sc2edge.commands", "sc2edge.cli"),
    "calibrate": ("sc2edge.export", "sc2edge.bench", "sc2edge.commands", "sc2edge.cli"),
    "bench": ("sc2edge.export", "sc2edge.calibrate", "sc2edge.commands", "sc2edge.cli"),
    "export": ("sc2edge.bench", "sc2edge.commands", "sc2edge.cli"),
    # serving runs on servers and devices beside the runtime: never torch or the workstation's packages
    "serve": ("sc2edge.zoo", "sc2edge.export", "sc2edge.calibrate", "sc2edge.bench", "sc2edge.commands",
              "sc2edge.cli", "sc2edge.demo", "torch", "torchvision", "compressai"),
    # the task seam runs on both ends (the runtime's Decoder uses it): as torch-free as the runtime
    "tasks": ("sc2edge.zoo", "sc2edge.export", "sc2edge.calibrate", "sc2edge.bench", "sc2edge.commands",
              "sc2edge.cli", "sc2edge.demo", "torch", "torchvision", "compressai"),
}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in sorted(imported_modules(path)):
            if any(module == bad or module.startswith(f"{bad}.") for bad in FORBIDDEN[package]):
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package):
    assert violations(package) == []


def test_the_check_sees_function_level_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from sc2edge.export.pipeline import export_bundle\n    import torch\n")
    assert imported_modules(sample) >= {"sc2edge.export.pipeline", "torch"}
