"""Arguments shared by several verbs."""

from __future__ import annotations

import argparse


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="onnxruntime",
                        help="onnxruntime | openvino | tensorrt (default: %(default)s)")
    parser.add_argument("--precision", default="fp32", help="fp32 | fp16 | int8, as exported (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the runtime's choice)")
    parser.add_argument("--device", default=None, help="runtime device name, e.g. CPU, GPU, NPU, AUTO (default: CPU)")


def runtime_options(args: argparse.Namespace) -> dict:
    return {"backend": args.backend, "precision": args.precision, "threads": args.threads, "device": args.device}
