"""sc2edge triton-repo BUNDLE[,BUNDLE...] --out REPO [--name sc2edge] [--precision fp32] [--tensorrt] [--force]

Several bundles (comma-separated) are tails of one encoder (e.g. a classifier and a segmenter): one entropy-decode
model feeds each task's server models, and each task gets its own ensembles (``NAME_<task>_<variant>``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sc2edge.commands._common import add_json_argument, int_in, path_list, print_json


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=path_list,
                        help="bundle directory, or several (comma-separated) whose models share the encoder")
    parser.add_argument("--out", required=True, type=Path, help="the Triton model repository to write")
    parser.add_argument("--name", default="sc2edge", help="model name prefix (default: %(default)s)")
    parser.add_argument("--precision", default="fp32", help="server graph precision, as exported (default: fp32)")
    parser.add_argument("--max-batch", type=int_in(1, 4096), default=64,
                        help="largest dynamic batch (default: %(default)s)")
    parser.add_argument("--tensorrt", action="store_true",
                        help="also write a TensorRT model (its plan is built on the GPU server; see README)")
    parser.add_argument("--force", action="store_true", help="replace a repository sc2edge wrote at --out")
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    from sc2edge.serve import write_triton_repository

    repo = write_triton_repository(args.bundle, args.out, name=args.name, precision=args.precision,
                                   max_batch_size=args.max_batch, tensorrt=args.tensorrt, force=args.force)
    if args.json:
        print_json({"repository": str(repo.path), "models": repo.models, "tails": repo.tails,
                    "skipped": repo.skipped, "configs_parsed_with": repo.parsed_with})
        return 0
    print(f"wrote {repo.path}: {len(repo.models)} models")
    for model, backend in repo.models.items():
        print(f"  {model:<40} {backend}")
    for model, reason in repo.skipped.items():
        print(f"  {model:<40} not written: {reason}")
    print(f"configs: {'parsed with ' + repo.parsed_with if repo.parsed_with else 'not parsed (no tritonclient)'}")
    for task, ensembles in repo.tails.items():
        print(f"a device sends STREAM for {task} to one of: {', '.join(ensembles.values())}")
    return 0
