"""The bench's encoder figures against OpenVINO's own ``benchmark_app`` on the same IR, threads and hint.

    python -m sc2edge.bench.benchmark_app_check BUNDLE [--precision fp32] [--threads 1] [--time 10]

Runs, one after the other, (1) the bench's measurement: ``OpenVinoRunner`` (LATENCY hint, ``--threads``) timed
by ``bench.timing.measure`` on a real photo's graph input, and (2) ``benchmark_app -m IR -d CPU -hint none
-nstreams 1 -nthreads N -nireq 1 -api sync`` with the input shape of one 224x224 image, then prints both medians
and their ratio (they should agree within 10 %), and CPU ms per inference beside them: ours from the measured
loop, benchmark_app's from two runs (``--time`` and 3x that) as (CPU of the long run - CPU of the short run) /
(iterations of the long - of the short), which cancels its start-up. On a shared CPU the medians drift with
the load; the CPU times stay comparable.
benchmark_app refuses ``-nthreads`` beside ``-hint latency`` ("fine tune options ... set -hint option to none",
its UI rule): one stream, one request and N threads is what the latency hint configures.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
from pathlib import Path

from sc2edge.bench.timing import TimingConfig, measure
from sc2edge.errors import Sc2edgeError
from sc2edge.photos import system_photos
from sc2edge.runtime import Bundle
from sc2edge.runtime.backends import create_runner
from sc2edge.runtime.preprocess import preprocess_image

AGREEMENT = 0.10
_MEDIAN = re.compile(r"Median:\s+([0-9.]+)\s*ms")
_MIN = re.compile(r"Min:\s+([0-9.]+)\s*ms")
_COUNT = re.compile(r"Count:\s+([0-9]+)\s*iterations")


def bench_encoder(bundle: Bundle, precision: str, threads: int, seconds: float) -> dict[str, float]:
    """The bench's figure: the device IR through the runtime's runner, on a photo's graph input."""
    x = preprocess_image(system_photos()[0], bundle.preprocess)[None]
    with create_runner("openvino", bundle, "device", precision, threads=threads) as runner:
        stats = measure(runner.infer, [{"image": x}], TimingConfig(warmup_s=1.0, min_time_s=seconds, min_count=50))
    return {"median_ms": stats.p50, "min_ms": stats.min, "cpu_ms": stats.cpu or 0.0, "runs": stats.n}


def _run_benchmark_app(command: list[str], seconds: float) -> tuple[dict[str, float], float]:
    """One benchmark_app run: its figures and the CPU seconds (user + system) its process used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([*command, "-t", str(int(seconds))], capture_output=True, text=True,
                          timeout=seconds * 4 + 120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = [pattern.search(proc.stdout) for pattern in (_MEDIAN, _MIN, _COUNT)]
    if proc.returncode != 0 or not all(found):
        raise Sc2edgeError(f"benchmark_app failed (status {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    median, fastest, count = (float(m.group(1)) for m in found)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"median_ms": median, "min_ms": fastest, "count": count}, cpu


def benchmark_app(bundle: Bundle, precision: str, threads: int, seconds: float) -> dict[str, float]:
    """OpenVINO's ``benchmark_app`` on the same IR (its own process), one stream, one request, synchronous."""
    artifact = bundle.artifact("device", "openvino", precision)
    pre = bundle.spec.preprocess
    side = pre.crop
    shape = (f"[1,{side},{side},{pre.channels}]" if pre.graph_input == "uint8-nhwc"
             else f"[1,{pre.channels},{side},{side}]")
    precision_hint = [] if precision == "int8" else ["-infer_precision", "f32"]
    command = [sys.executable, "-c", "import sys; from openvino.tools.benchmark.main import main; sys.exit(main())",
               "-m", str(bundle.path / artifact.path), "-d", "CPU", "-hint", "none", "-nstreams", "1",
               "-nireq", "1", "-api", "sync", "-nthreads", str(threads), "-shape", f"image{shape}", *precision_hint]
    short, short_cpu = _run_benchmark_app(command, seconds)
    long, long_cpu = _run_benchmark_app(command, 3 * seconds)
    extra = long["count"] - short["count"]
    return {**long, "cpu_ms": (long_cpu - short_cpu) * 1e3 / extra if extra > 0 else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time", type=float, default=10.0, help="seconds each tool measures")
    args = parser.parse_args(argv)
    try:
        bundle = Bundle.open(args.bundle)
        ours = bench_encoder(bundle, args.precision, args.threads, args.time)
        theirs = benchmark_app(bundle, args.precision, args.threads, args.time)
    except Sc2edgeError as exc:
        print(f"benchmark_app_check: error: {exc}", file=sys.stderr)
        return 1
    ratio = ours["median_ms"] / theirs["median_ms"]
    print(f"{bundle.name} device IR {args.precision}, {args.threads} thread(s), latency hint:")
    print(f"  sc2edge bench : median {ours['median_ms']:.3f} ms, min {ours['min_ms']:.3f} ms "
          f"({ours['runs']} runs, CPU {ours['cpu_ms']:.3f} ms/run)")
    print(f"  benchmark_app : median {theirs['median_ms']:.3f} ms, min {theirs['min_ms']:.3f} ms "
          f"({theirs['count']:.0f} runs, CPU {theirs['cpu_ms']:.3f} ms/run)")
    print(f"  bench / benchmark_app: median {ratio:.3f}, min {ours['min_ms'] / theirs['min_ms']:.3f}, CPU "
          f"{ours['cpu_ms'] / theirs['cpu_ms']:.3f} (median {'within' if abs(ratio - 1) <= AGREEMENT else 'outside'} "
          f"{AGREEMENT:.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
