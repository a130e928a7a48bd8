"""sc2edge decode BUNDLE STREAM... [--json]"""

from __future__ import annotations

import argparse
from pathlib import Path

from sc2edge.commands._common import (
    add_json_argument,
    add_runtime_arguments,
    print_json,
    runtime_options,
    untrained_suffix,
)
from sc2edge.errors import Sc2edgeError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle directory")
    parser.add_argument("streams", nargs="+", type=Path, help=".sc2 stream files")
    add_runtime_arguments(parser)
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    from sc2edge.runtime import Decoder

    with Decoder(args.bundle, **runtime_options(args)) as decoder:
        for path in args.streams:
            if not path.is_file():
                raise Sc2edgeError(f"stream not found: {path}")
            prediction = decoder.decode(path.read_bytes())
            if args.json:
                print_json({"stream": str(path), "task": decoder.task.kind,
                            "trained": decoder.bundle.spec.model.trained, **prediction.to_json()})
            else:
                print(f"{path}: {prediction}{untrained_suffix(decoder.bundle)}")
    return 0
