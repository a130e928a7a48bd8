"""Benchmarks people can trust: compute, memory, latency per stage, compressed size, end-to-end split latency.

``run_bench`` measures one or more bundles (a sweep, e.g. every beta) on the chosen backends and precisions,
each configuration in its own process, and writes JSON, CSV, Markdown, PNG plots and one HTML page.
Importing this package is light: the worker processes that measure the device side import it too.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_bench"]


def __getattr__(name: str) -> Any:
    if name == "run_bench":
        from sc2edge.bench.core import run_bench

        return run_bench
    raise AttributeError(f"module 'sc2edge.bench' has no attribute {name!r}")
