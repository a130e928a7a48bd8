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


def validation_summary(record: dict) -> str:
    """One line for a manifest ``validation`` record (split graphs, or the reference graph, which has no symbols):
    verdict, symbols, and each output's worst error (records written before the task seam name only
    ``logits_max_abs_err``)."""
    outputs = record.get("outputs") or {"logits": {"max_abs_err": record.get("logits_max_abs_err", float("nan"))}}
    parts = [f"{record['backend']}/{record['precision']}: {'PASS' if record['passed'] else 'FAIL'}"]
    if "symbols_total" in record:
        parts += [f"{record['symbols_different']}/{record['symbols_total']} symbols differ",
                  f"{record['streams_identical']}/{record['images']} streams identical to CompressAI"]
    parts += [f"{name} max |err| {e['max_abs_err']:.3g}" for name, e in outputs.items()]
    return ", ".join(parts)
