"""sc2edge decode BUNDLE STREAM... [--json]"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sc2edge.commands._common import add_json_argument, add_runtime_arguments, print_json, runtime_options
from sc2edge.errors import Sc2edgeError

TOP_K = 5


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle directory")
    parser.add_argument("streams", nargs="+", type=Path, help=".sc2 stream files")
    add_runtime_arguments(parser)
    add_json_argument(parser)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def run(args: argparse.Namespace) -> int:
    from sc2edge.runtime import Decoder

    with Decoder(args.bundle, **runtime_options(args)) as decoder:
        labels = decoder.bundle.labels
        for path in args.streams:
            if not path.is_file():
                raise Sc2edgeError(f"stream not found: {path}")
            scores = _softmax(decoder.decode(path.read_bytes()).astype(np.float64))
            top = np.argsort(-scores)[:TOP_K]
            if args.json:
                record = {"stream": str(path), "top5": [int(i) for i in top],
                          "scores": [round(float(scores[i]), 6) for i in top]}
                if labels:
                    record["labels"] = [labels[i] for i in top]
                print_json(record)
            else:
                names = [f"{i}{f' ({labels[i]})' if labels else ''}: {scores[i]:.3f}" for i in top]
                print(f"{path}: " + ", ".join(names))
    return 0
