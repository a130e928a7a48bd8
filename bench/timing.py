"""Latency measurement: warm up, then repeat until both a minimum time and a minimum count are reached.

One ``time.time()`` pair per image (CompressAI's habit) hides warm-up, caches and the spread; the figures
here follow trtexec/MLPerf practice instead: a warm-up, many runs, and percentiles of the distribution.

Beside wall time, the CPU time (user + system, every thread of the process) per run: the energy proxy a battery
device cares about. It is taken over the whole measured loop and divided by the runs, so threads that keep a core
busy between calls (ONNX Runtime's spinning workers) are counted too.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

UNSTABLE_SPREAD = 1.5  # p90 / p50 of a stage's repeated runs above this: the figure is flagged unstable


@dataclass(frozen=True)
class TimingConfig:
    """How long to measure each stage.

    Args:
        warmup_s (float): warm-up time before measuring. Defaults to 0.3.
        warmup_count (int): at least this many warm-up runs. Defaults to 3.
        min_time_s (float): measure for at least this long. Defaults to 1.0.
        min_count (int): and at least this many runs. Defaults to 20.
    """

    warmup_s: float = 0.3
    warmup_count: int = 3
    min_time_s: float = 1.0
    min_count: int = 20

    @classmethod
    def quick(cls) -> TimingConfig:
        """A smoke-test setting for CI: a few runs, no minimum time."""
        return cls(warmup_s=0.0, warmup_count=1, min_time_s=0.0, min_count=3)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Stats:
    """Latency distribution of one stage, in milliseconds."""

    n: int
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    cpu_user: float | None = None  # CPU ms per run in user mode (all threads), None where not measured
    cpu_system: float | None = None  # and in the kernel

    @property
    def cpu(self) -> float | None:
        """CPU ms per run, user + system (can exceed the wall time with several threads)."""
        return None if self.cpu_user is None or self.cpu_system is None else self.cpu_user + self.cpu_system

    @classmethod
    def from_samples(cls, seconds: Sequence[float], cpu_user_s: float | None = None,
                     cpu_system_s: float | None = None) -> Stats:
        """Wall-time samples (s) and, optionally, the user and system CPU seconds the whole loop took."""
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])

        def per_run(total: float | None) -> float | None:
            return None if total is None else total * 1e3 / ms.size

        return cls(n=int(ms.size), mean=float(ms.mean()), std=float(ms.std()), min=float(ms.min()),
                   p50=float(p50), p90=float(p90), p99=float(p99), cpu_user=per_run(cpu_user_s),
                   cpu_system=per_run(cpu_system_s))

    def to_json(self) -> dict[str, float | None]:
        return {**asdict(self), "cpu": self.cpu}


def measure(fn: Callable[[Any], Any], inputs: Sequence[Any], config: TimingConfig) -> Stats:
    """Time ``fn(x)`` cycling over ``inputs`` (so every image counts), after a warm-up."""
    cycle = itertools.cycle(inputs)
    start = time.perf_counter()
    runs = 0
    while runs < config.warmup_count or time.perf_counter() - start < config.warmup_s:
        fn(next(cycle))
        runs += 1
    samples: list[float] = []
    cpu_start = os.times()
    start = time.perf_counter()
    while len(samples) < config.min_count or time.perf_counter() - start < config.min_time_s:
        x = next(cycle)
        t0 = time.perf_counter()
        fn(x)
        samples.append(time.perf_counter() - t0)
    cpu_end = os.times()
    return Stats.from_samples(samples, cpu_end.user - cpu_start.user, cpu_end.system - cpu_start.system)
