"""sc2edge encode --bundle BUNDLE_DIR IMAGE... --out STREAM_DIR"""

from __future__ import annotations

import argparse
from pathlib import Path

from sc2edge.commands._common import add_runtime_arguments, runtime_options
from sc2edge.errors import Sc2edgeError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--bundle", required=True, type=Path, help="bundle directory")
    parser.add_argument("--out", required=True, type=Path, help="directory for the <image stem>.sc2 streams")
    add_runtime_arguments(parser)


def run(args: argparse.Namespace) -> int:
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
            target.write_bytes(stream)
            print(f"{image} -> {target} ({len(stream)} bytes)")
    return 0
