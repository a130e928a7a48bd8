"""The speed and memory targets, measured and printed (no pass/fail: a shared CI machine is no judge).

    python -m sc2edge.bench.bench_targets BUNDLE [--backend onnxruntime,openvino] [--precision fp32,int8]
        [--threads N] [--images DIR] [--quick]

Targets: device image -> bytes at 224x224 input at least 10x faster than the paper's PyTorch eager path
(encoder + EntropyBottleneck.compress); the encoder graph within 1.3x of the roofline (its FLOPs at the peak
FLOP/s the same runtime reaches on a large convolution); the device process under 120 MB peak RSS (the
paper's path needs about 840 MB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image

from sc2edge.bench.core import BenchConfig, Workers, compute_section
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle
from sc2edge.runtime.preprocess import load_image

SPEEDUP_TARGET = 10.0
ROOFLINE_TARGET = 1.3
RSS_TARGET_MB = 120.0
PAPER_RSS_MB = 840.0


def _square_inputs(images: tuple[Path, ...], side: int, folder: Path) -> tuple[Path, ...]:
    """The photos center-cropped and resized to ``side`` x ``side`` (the targets are stated at 224x224)."""
    out = []
    for path in images:
        image = load_image(path)
        short = min(image.size)
        left, top = (image.width - short) // 2, (image.height - short) // 2
        target = folder / f"{path.stem}.png"
        image.crop((left, top, left + short, top + short)).resize((side, side), Image.BILINEAR).save(target)
        out.append(target)
    return tuple(out)


def _encoder_flops(bundle: Bundle) -> int | None:
    """The device graph's FLOPs, from the ONNX count where onnx-tool is installed, else from PyTorch."""
    device = compute_section(bundle, [])["stages"]["device"]
    count = device["onnx"] or device["torch"]
    return count["flops"] if count else None


def _mb(nbytes: int) -> float:
    return nbytes / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--backend", default="onnxruntime", help="comma-separated runtimes")
    parser.add_argument("--precision", default="fp32", help="comma-separated precisions")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--images", type=Path, nargs="+", default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    try:
        return _report(args)
    except Sc2edgeError as exc:  # a bad bundle, image or option: one line, as the CLI does
        print(f"bench_targets: error: {exc}", file=sys.stderr)
        return 1


def _report(args: argparse.Namespace) -> int:
    config = BenchConfig(bundles=(args.bundle,), backends=tuple(args.backend.split(",")),
                         precisions=tuple(args.precision.split(",")), threads=args.threads,
                         images=tuple(args.images or ()), quick=args.quick).validate()
    bundle = Bundle.open(args.bundle)
    side = bundle.manifest["input"]["height"]
    flops = _encoder_flops(bundle)
    print(f"bundle {bundle.name}, {config.threads} threads, {len(config.images)} images at {side}x{side}")
    with tempfile.TemporaryDirectory(prefix="sc2edge-targets-") as tmp:
        images = _square_inputs(config.images, side, Path(tmp))
        workers = Workers(BenchConfig(**{**config.__dict__, "images": images}), Path(tmp))
        common = {"model": bundle.name, "preprocess": bundle.preprocess}
        paper = workers.run("torch-device", **common)
        paper_rss = workers.run("memory", **common, side="device", engine="torch")
        paper_ms = paper["result"]["stages"]["device_total"]["p50"] if paper["ok"] else None
        paper_min = paper["result"]["stages"]["device_total"]["min"] if paper["ok"] else None
        print(f"paper path (PyTorch eager): image -> bytes p50 {paper_ms and f'{paper_ms:.2f} ms'}, "
              f"device peak RSS {_mb(paper_rss['peak_rss_bytes']):.0f} MB" if paper["ok"]
              else f"paper path unavailable: {paper['error']}")
        for backend in config.backends:
            roof = workers.run("roofline", backend=backend)
            peak = roof["result"]["peak_gflops"] if roof["ok"] else None
            for precision in config.precisions:
                label = f"{backend}/{precision}"
                device = workers.run("device", bundle=str(bundle.path), backend=backend, precision=precision)
                if not device["ok"]:
                    print(f"{label}: skipped ({device['error']})")
                    continue
                memory = workers.run("memory", bundle=str(bundle.path), backend=backend, precision=precision,
                                     side="device", engine="runtime")
                stages = device["result"]["stages"]
                ours = stages["device_total"]["p50"]
                speedup = (f"{paper_ms / ours:.1f}x (fastest runs: {paper_min / stages['device_total']['min']:.1f}x)"
                           if paper_ms else "n/a")
                print(f"{label}: image -> bytes p50 {ours:.2f} ms (preprocess {stages['preprocess']['p50']:.2f}, "
                      f"encoder {stages['encoder_graph']['p50']:.2f}, entropy {stages['entropy_encode']['p50']:.2f});"
                      f" paper / ours = {speedup} (target >= {SPEEDUP_TARGET:.0f}x)")
                if peak and flops:
                    roofline_ms = flops / (peak * 1e9) * 1e3
                    encoder_ms = stages["encoder_graph"]["p50"]
                    print(f"{label}: encoder graph {encoder_ms:.2f} ms vs roofline {roofline_ms:.2f} ms "
                          f"({flops / 1e9:.2f} GFLOP at {peak:.0f} GFLOP/s FP32 peak) = "
                          f"{encoder_ms / roofline_ms:.2f}x of roofline (target <= {ROOFLINE_TARGET}x)")
                rss = _mb(memory["peak_rss_bytes"])
                paper_note = f"{_mb(paper_rss['peak_rss_bytes']):.0f} MB" if paper_rss["ok"] else "n/a"
                print(f"{label}: device process peak RSS {rss:.0f} MB, torch imported: "
                      f"{'yes' if memory['torch_imported'] else 'no'} (target < {RSS_TARGET_MB:.0f} MB; "
                      f"paper path here {paper_note}, ~{PAPER_RSS_MB:.0f} MB stated)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
