"""sc2edge build-engine BUNDLE --precision fp16|int8 [--role device|server] (on the target GPU)"""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="a bundle exported with --int8 (it holds the TensorRT-ready ONNX)")
    parser.add_argument("--precision", default="fp16", choices=("fp16", "int8"), help="default: %(default)s")
    parser.add_argument("--role", default="device", choices=("device", "server"), help="default: %(default)s")
    parser.add_argument("--max-batch", type=int, default=1, help="largest batch of the engine (default: 1)")
    parser.add_argument("--workspace-mib", type=int, default=1024, help="builder workspace (default: 1024)")


def run(args: argparse.Namespace) -> int:
    from sc2edge.export.tensorrt import EngineConfig, build_engine

    engine = build_engine(args.bundle, EngineConfig(precision=args.precision, role=args.role,
                                                    max_batch=args.max_batch, workspace_mib=args.workspace_mib))
    print(f"wrote {engine} (recorded in {args.bundle / 'manifest.json'})")
    return 0
