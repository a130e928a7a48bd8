"""The bench's encoder figures against OpenVINO's own ``benchmark_app`` on the same IR, threads and hint.

    python -m sc2edge.bench.benchmark_app_check BUNDLE [--precision fp32] [--threads 2] [--time 5] [--rounds 5]

Both sides run the same compiled model with the same properties: the device IR as the runtime's ``OpenVinoRunner``
loads it (PERFORMANCE_HINT LATENCY, INFERENCE_NUM_THREADS N, INFERENCE_PRECISION_HINT f32 for float graphs; the
input's dynamic shape kept) and benchmark_app with ``-hint latency -load_config`` of those properties
(its command line refuses ``-nthreads`` beside a hint), the input as ``-data_shape`` (``-shape`` would reshape
the model to a static shape, a different compiled graph), ``-inference_only`` (its data filled once, as ours),
one synchronous request. Four figures, in rounds that alternate (on a shared CPU the load drifts between
sequential runs; a round of each keeps both under the same load):

- ``bench``: the bench's encoder figure, ``OpenVinoRunner.infer`` timed by ``bench.timing.measure`` on a real
  photo's graph input (dict in, input copied into the request's own tensor, outputs copied to numpy: what a caller
  gets);
- ``request``: the same compiled model's ``InferRequest.infer`` on a tensor set once, in this process (what
  benchmark_app times, without Python's share of the call), so the Python wrapper's cost is shown apart;
  ``request (OV clock)`` is the same calls' ``InferRequest.latency``, the clock benchmark_app reads (its median is
  of ``request.latency``: the C++ call alone, no Python binding), so ``request (OV clock) / benchmark_app`` is the
  same work in two processes and ``bench - request (OV clock)`` is all that Python adds;
- ``benchmark_app``: its median, and its CPU ms per inference as (CPU of a 3x run - CPU of a 1x run) /
  (iterations of the 3x - of the 1x), which cancels its start-up.

The medians of the rounds' medians, the median of the per-round ratios and the ratio of the fastest runs are
printed; they should agree within 10 %. On a loaded machine a ~1 ms graph's median moves with the scheduler from
round to round (the fastest run and the CPU time per run do not): load average and CPU time go beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from sc2edge._lazy import lazy_import
from sc2edge.bench.timing import TimingConfig, measure
from sc2edge.errors import Sc2edgeError
from sc2edge.photos import system_photos
from sc2edge.runtime import Bundle
from sc2edge.runtime.backends import create_runner
from sc2edge.runtime.manifest import PIXEL_GRAPH_INPUT
from sc2edge.runtime.preprocess import preprocess_image

AGREEMENT = 0.10
_MEDIAN = re.compile(r"Median:\s+([0-9.]+)\s*(ms|us)")  # benchmark_app prints us below a millisecond
_MIN = re.compile(r"Min:\s+([0-9.]+)\s*(ms|us)")
_COUNT = re.compile(r"Count:\s+([0-9]+)\s*iterations")


def _timing(seconds: float) -> TimingConfig:
    return TimingConfig(warmup_s=0.5, min_time_s=seconds, min_count=50)


def bench_encoder(runner, x: np.ndarray, seconds: float) -> dict[str, float]:
    """The bench's figure: the device IR through the runtime's runner, on a photo's graph input."""
    stats = measure(runner.infer, [{"image": x}], _timing(seconds))
    return {"median_ms": stats.p50, "min_ms": stats.min, "cpu_ms": stats.cpu or 0.0, "runs": stats.n}


def bare_request(runner, x: np.ndarray, seconds: float) -> tuple[dict[str, float], dict[str, float]]:
    """The runner's compiled model through one InferRequest with its input tensor set once: benchmark_app's loop,
    timed by our clock and by OpenVINO's (``request.latency``, what benchmark_app reports)."""
    ov = lazy_import("openvino")
    request = runner.compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(x))
    latencies: list[float] = []

    def infer(_) -> None:
        request.infer()
        latencies.append(request.latency)

    stats = measure(infer, [None], _timing(seconds))
    ov_clock = np.asarray(latencies[-stats.n:])  # the measured runs (the warm-up ones come first)
    return ({"median_ms": stats.p50, "min_ms": stats.min, "cpu_ms": stats.cpu or 0.0, "runs": stats.n},
            {"median_ms": float(np.median(ov_clock)), "min_ms": float(ov_clock.min()), "cpu_ms": stats.cpu or 0.0,
             "runs": stats.n})


def _run_benchmark_app(command: list[str], seconds: float) -> tuple[dict[str, float], float]:
    """One benchmark_app run: its figures and the CPU seconds (user + system) its process used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([*command, "-t", str(max(1, round(seconds)))], capture_output=True, text=True,
                          timeout=seconds * 4 + 120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = [pattern.search(proc.stdout) for pattern in (_MEDIAN, _MIN, _COUNT)]
    if proc.returncode != 0 or not all(found):
        raise Sc2edgeError(f"benchmark_app failed (status {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    median, fastest = (float(m.group(1)) / (1000 if m.group(2) == "us" else 1) for m in found[:2])
    count = float(found[2].group(1))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"median_ms": median, "min_ms": fastest, "count": count}, cpu


def benchmark_app_command(bundle: Bundle, precision: str, threads: int, config_file: Path) -> list[str]:
    """benchmark_app on the bundle's device IR with the runner's properties (written to ``config_file``)."""
    artifact = bundle.artifact("device", "openvino", precision)
    pre = bundle.spec.preprocess
    side = pre.crop
    shape = (f"[1,{side},{side},{pre.channels}]" if pre.graph_input == PIXEL_GRAPH_INPUT
             else f"[1,{pre.channels},{side},{side}]")
    properties = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads)}
    if precision != "int8":
        properties["INFERENCE_PRECISION_HINT"] = "f32"  # the runner's default precision_hint
    config_file.write_text(json.dumps({"CPU": properties}))
    return [sys.executable, "-c", "import sys; from openvino.tools.benchmark.main import main; sys.exit(main())",
            "-m", str(bundle.path / artifact.path), "-d", "CPU", "-hint", "latency", "-load_config", str(config_file),
            "-nireq", "1", "-api", "sync", "-data_shape", f"image{shape}", "-inference_only", "true"]


def benchmark_app(command: list[str], seconds: float) -> dict[str, float]:
    """OpenVINO's ``benchmark_app`` (its own process): a run of ``seconds`` and one of 3x that, for its CPU ms."""
    short, short_cpu = _run_benchmark_app(command, seconds)
    long, long_cpu = _run_benchmark_app(command, 3 * seconds)
    extra = long["count"] - short["count"]
    return {**long, "cpu_ms": (long_cpu - short_cpu) * 1e3 / extra if extra > 0 else float("nan")}


def compare(bundle: Bundle, precision: str, threads: int, seconds: float, rounds: int) -> dict[str, list[dict]]:
    """``rounds`` rounds of the three measurements, alternating, on the same graph input."""
    x = preprocess_image(system_photos()[0], bundle.preprocess)[None]
    figures: dict[str, list[dict]] = {"bench": [], "request": [], "request (OV clock)": [], "benchmark_app": [],
                                      "load": []}
    with tempfile.TemporaryDirectory(prefix="sc2edge-benchmark-app-") as tmp, \
            create_runner("openvino", bundle, "device", precision, threads=threads) as runner:
        command = benchmark_app_command(bundle, precision, threads, Path(tmp) / "config.json")
        for _ in range(rounds):
            figures["load"].append({"load1": os.getloadavg()[0]})
            figures["bench"].append(bench_encoder(runner, x, seconds))
            wall, ov_clock = bare_request(runner, x, seconds)
            figures["request"].append(wall)
            figures["request (OV clock)"].append(ov_clock)
            figures["benchmark_app"].append(benchmark_app(command, seconds))
    return figures


def _median(rows: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in rows]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--time", type=float, default=5.0, help="seconds each measurement of a round takes")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        bundle = Bundle.open(args.bundle)
        figures = compare(bundle, args.precision, args.threads, args.time, args.rounds)
    except Sc2edgeError as exc:
        print(f"benchmark_app_check: error: {exc}", file=sys.stderr)
        return 1
    loads = [r["load1"] for r in figures["load"]]
    print(f"{bundle.name} device IR {args.precision}, {args.threads} thread(s), latency hint, {args.rounds} rounds "
          f"(load average {min(loads):.1f}-{max(loads):.1f}):")
    for name in ("bench", "request", "request (OV clock)", "benchmark_app"):
        rows = figures[name]
        print(f"  {name:18s}: median {_median(rows, 'median_ms'):.3f} ms, min {min(r['min_ms'] for r in rows):.3f} ms, "
              f"CPU {_median(rows, 'cpu_ms'):.3f} ms/run (medians of the rounds)")
    app = figures["benchmark_app"]
    for name in ("bench", "request", "request (OV clock)"):
        ratios = [a["median_ms"] / b["median_ms"] for a, b in zip(figures[name], app, strict=True)]
        ratio = float(np.median(ratios))
        fastest = min(r["min_ms"] for r in figures[name]) / min(r["min_ms"] for r in app)
        cpu = _median(figures[name], "cpu_ms") / _median(app, "cpu_ms")
        print(f"  {name} / benchmark_app: median of round ratios {ratio:.3f} (rounds {min(ratios):.2f}-"
              f"{max(ratios):.2f}; {'within' if abs(ratio - 1) <= AGREEMENT else 'outside'} {AGREEMENT:.0%}), "
              f"fastest runs {fastest:.3f}, CPU {cpu:.3f}")
    python = [a["median_ms"] - b["median_ms"] for a, b in zip(figures["bench"], figures["request (OV clock)"],
                                                               strict=True)]
    print(f"  bench - request (OV clock), what Python adds per call: median {float(np.median(python)) * 1e3:.0f} us "
          f"(rounds {min(python) * 1e3:.0f}-{max(python) * 1e3:.0f} us)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
