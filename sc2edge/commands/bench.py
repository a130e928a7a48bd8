"""sc2edge bench BUNDLE... [--backend onnxruntime,openvino] [--precision fp32,int8] [--threads N] [--images DIR]
[--link PROFILE ...] [--quick] [--out DIR]"""

from __future__ import annotations

import argparse
from pathlib import Path


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _codec(text: str) -> tuple[str, int]:
    name, _, quality = text.partition(":")
    try:
        return name.lower(), int(quality or 75)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"codec must be NAME[:QUALITY], e.g. jpeg:75, got {text!r}") from exc


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundles", nargs="+", type=Path, help="bundle directories (several = a sweep, e.g. all betas)")
    parser.add_argument("--backend", type=_csv, default=["onnxruntime"],
                        help="comma-separated runtimes: onnxruntime,openvino (default: onnxruntime)")
    parser.add_argument("--precision", type=_csv, default=["fp32"],
                        help="comma-separated precisions: fp32,int8 (default: fp32; missing artifacts are skipped)")
    parser.add_argument("--threads", type=int, default=None, help="threads for every runtime (default: all cores)")
    parser.add_argument("--images", nargs="+", type=Path, default=None,
                        help="image files or folders (default: the offline photos installed here)")
    parser.add_argument("--labels", type=Path, default=None,
                        help='class labels for accuracy: JSON {"image": class} or "path class" lines (default: from '
                             "a labelled file list or class-index folder names, else top-1 agreement only)")
    parser.add_argument("--max-images", type=int, default=None, help="use at most N images (default: 8, quick: 2)")
    parser.add_argument("--link", nargs="+", default=None, help="link profiles for end-to-end latency (default: all)")
    parser.add_argument("--links-file", type=Path, default=None, help="link profiles YAML (default: bench/links.yaml)")
    parser.add_argument("--codec", nargs="+", type=_codec, default=None,
                        help="input codecs to compare, NAME:QUALITY: jpeg, webp, avif (default: jpeg:75 webp:80)")
    parser.add_argument("--no-torch-baseline", action="store_true", help="skip the PyTorch eager (paper) baseline")
    parser.add_argument("--quick", action="store_true", help="a few runs per stage and two images (CI smoke test)")
    parser.add_argument("--out", type=Path, default=Path("bench-report"), help="report folder (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from sc2edge.bench import run_bench

    options = {"links_file": args.links_file, "labels_file": args.labels, "max_images": args.max_images,
               "torch_baseline": not args.no_torch_baseline}
    if args.codec:
        options["codecs"] = tuple(args.codec)
    report = run_bench(args.bundles, args.backend, args.precision, threads=args.threads, images=args.images,
                       links=args.link, quick=args.quick, out_dir=args.out, **options)
    from sc2edge.bench.report import headline_markdown

    print(headline_markdown(report))
    for problem in report["warnings"]:
        print(f"warning: {problem}")
    for skipped in report["skipped"]:
        print(f"skipped: {skipped['what']}: {skipped['reason']}")
    print(f"report: {report['files']['html']} (also report.md, report.json, CSV and PNG files in {args.out})")
    return 0
