"""sc2edge bench BUNDLE... [--backend onnxruntime,openvino] [--precision fp32,int8] [--threads N] [--data DIR,...]
[--link PROFILE,...] [--codec jpeg:75,...] [--quick] [--ray [ADDRESS] --ray-workers N] [--out DIR] [--json]"""

from __future__ import annotations

import argparse
from pathlib import Path

from sc2edge.commands._common import (
    add_json_argument,
    add_threads_argument,
    comma_list,
    int_in,
    path_list,
    print_json,
    print_report_problems,
)


def _codecs(text: str) -> list[tuple[str, int]]:
    found = []
    for item in comma_list(text):
        name, _, quality = item.partition(":")
        try:
            found.append((name.lower(), int(quality or 75)))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"codec must be NAME[:QUALITY], e.g. jpeg:75, got {item!r}") from exc
    return found


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundles", nargs="+", type=Path, help="bundle directories (several = a sweep, e.g. all betas)")
    parser.add_argument("--backend", type=comma_list, default=["onnxruntime"],
                        help="comma-separated runtimes: onnxruntime,openvino (default: onnxruntime)")
    parser.add_argument("--precision", type=comma_list, default=["fp32"],
                        help="comma-separated precisions: fp32,int8 (default: fp32; missing artifacts are skipped)")
    add_threads_argument(parser, "all cores")
    parser.add_argument("--data", type=path_list, default=None,
                        help="comma-separated image files or folders (default: the held-out offline photos, never "
                             "training or INT8 calibration images)")
    parser.add_argument("--labels", type=Path, default=None,
                        help='class labels for accuracy: JSON {"image": class} or "path class" lines (default: from '
                             "a labelled file list or class-index folder names, else top-1 agreement only)")
    parser.add_argument("--max-images", type=int_in(1, 1_000_000), default=None,
                        help="use at most N images (default: 8, quick: 2)")
    parser.add_argument("--link", type=comma_list, default=None,
                        help="comma-separated link profiles for end-to-end latency (default: all)")
    parser.add_argument("--links-file", type=Path, default=None, help="link profiles YAML (default: bench/links.yaml)")
    parser.add_argument("--codec", type=_codecs, default=None,
                        help="comma-separated input codecs to compare, NAME:QUALITY: jpeg, webp, avif "
                             "(default: jpeg:75,webp:80)")
    parser.add_argument("--allow-calibration-images", action="store_true",
                        help="measure even if --data holds a bundle's INT8 calibration images (flagged loudly in "
                             "the report) instead of refusing")
    parser.add_argument("--no-torch-baseline", action="store_true", help="skip the PyTorch eager (paper) baseline")
    parser.add_argument("--quick", action="store_true", help="a few runs per stage and two images (CI smoke test)")
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="run the configurations as Ray tasks: a Ray started here on loopback (no ADDRESS) or "
                             "the cluster at ADDRESS; latencies then share the machine (default: one after another)")
    parser.add_argument("--ray-workers", type=int_in(1, 1024), default=2,
                        help="parallel tasks of a local Ray (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("bench-report"), help="report folder (default: %(default)s)")
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    from sc2edge.bench import run_bench

    options = {"links_file": args.links_file, "labels_file": args.labels, "max_images": args.max_images,
               "torch_baseline": not args.no_torch_baseline, "ray": args.ray, "ray_workers": args.ray_workers,
               "allow_calibration_images": args.allow_calibration_images}
    if args.codec:
        options["codecs"] = tuple(args.codec)
    report = run_bench(args.bundles, args.backend, args.precision, threads=args.threads, images=args.data,
                       links=args.link, quick=args.quick, out_dir=args.out, **options)
    if args.json:
        print_json(report)
        return 0
    from sc2edge.bench.report import headline_markdown

    untrained = [b["id"] for b in report["inputs"]["bundles"] if b["trained"] is False]
    if untrained:
        print(f"UNTRAINED: {', '.join(untrained)} (random weights: bytes and predictions say nothing about the "
              "method)")
    print(headline_markdown(report))
    print_report_problems(report)
    print(f"report: {report['files']['html']} (also report.md, report.json, CSV and PNG files in {args.out})")
    return 0
