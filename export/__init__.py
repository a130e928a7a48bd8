"""Trace a trained split model's device and server parts to deployable graphs, validated against PyTorch,
and write them with the entropy tables as a bundle.

The names below load on first use, so ``sc2edge.export.tensorrt`` (``build-engine``, run on a Jetson or a GPU
server) does not pull in torch through this package.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ExportConfig": "sc2edge.export.pipeline",
    "export_bundle": "sc2edge.export.pipeline",
    "SymbolTolerance": "sc2edge.export.validate",
    "ValidationResult": "sc2edge.export.validate",
    "validate_bundle": "sc2edge.export.validate",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'sc2edge.export' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = sorted(_LAZY)
