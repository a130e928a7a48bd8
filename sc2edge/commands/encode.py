"""sc2edge encode BUNDLE IMAGE... --out STREAM_DIR [--json]"""

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
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--out", required=True, type=Path, help="directory for the <image stem>.sc2 streams")
    add_runtime_arguments(parser)
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    from sc2edge._files import atomic_write_bytes
    from sc2edge.runtime import Encoder

    stems = [p.stem for p in args.images]
    duplicated = sorted({s for s in stems if stems.count(s) > 1})
    if duplicated:
        raise Sc2edgeError(f"several images share the stem {duplicated[0]!r}: their streams would overwrite each other")
    if args.out.exists() and not args.out.is_dir():
        raise Sc2edgeError(f"--out {args.out} is a file; give a directory for the streams")
    with Encoder(args.bundle, **runtime_options(args)) as encoder:
        args.out.mkdir(parents=True, exist_ok=True)
        for image in args.images:
            stream = encoder.encode([image])[0]
            target = args.out / f"{image.stem}.sc2"
            atomic_write_bytes(target, stream)  # a failed write never leaves a truncated stream under this name
            if args.json:
                print_json({"image": str(image), "stream": str(target), "bytes": len(stream),
                            "trained": encoder.bundle.spec.model.trained})
            else:
                print(f"{image} -> {target} ({len(stream)} bytes){untrained_suffix(encoder.bundle)}")
    return 0
