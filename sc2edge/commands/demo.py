"""sc2edge demo: the whole pipeline on the default model and the offline photos."""

from __future__ import annotations

import argparse
from pathlib import Path

from sc2edge.commands._common import add_threads_argument


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default: %(default)s)")
    parser.add_argument("--model", help="a registered model (default: the registry's default)")
    add_threads_argument(parser, "all cores")
    parser.add_argument("--quick", action="store_true", help="fewer timing repeats")


def run(args: argparse.Namespace) -> int:
    from sc2edge.demo import run_demo

    summary = run_demo(args.out, model=args.model, quick=args.quick, threads=args.threads)
    print(summary)
    return 0 if summary.passed else 1  # an INT8 artifact over its budget is a failure, not a footnote
