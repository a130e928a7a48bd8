"""sc2edge build-engine BUNDLE --precision fp16|int8 [--role device|server] (on the target GPU)"""

from __future__ import annotations

import argparse
from pathlib import Path

from sc2edge.commands._common import int_in


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="a bundle exported with --int8 (it holds the TensorRT-ready ONNX)")
    parser.add_argument("--precision", default="fp16", choices=("fp16", "int8"), help="default: %(default)s")
    parser.add_argument("--role", default="device", choices=("device", "server"), help="default: %(default)s")
    parser.add_argument("--max-batch", type=int_in(1, 4096), default=1, help="largest batch of the engine (default: 1)")
    parser.add_argument("--workspace-mib", type=int_in(16, 1 << 20), default=1024,
                        help="builder workspace (default: 1024)")


def run(args: argparse.Namespace) -> int:
    from sc2edge.export.tensorrt import EngineConfig, build_engine

    engine = build_engine(args.bundle, EngineConfig(precision=args.precision, role=args.role,
                                                    max_batch=args.max_batch, workspace_mib=args.workspace_mib))
    print(f"wrote {engine} (recorded in {args.bundle / 'manifest.json'})")
    return 0
