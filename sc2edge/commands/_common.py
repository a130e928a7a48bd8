"""Arguments shared by several verbs, so each flag has one syntax and one meaning everywhere.

Conventions: the bundle is the first positional argument of every verb that uses one; a flag taking several
values takes one comma-separated list (``--backend onnxruntime,openvino``); ``--json`` prints JSON (one object
per line) on stdout instead of text; counts of images are ``--max-images``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

MAX_THREADS = 4 * (os.cpu_count() or 1)


def comma_list(text: str) -> list[str]:
    """``a,b`` -> ["a", "b"]; an empty list (``,``) is refused."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list such as a,b, got {text!r}")
    return items


def path_list(text: str) -> list[Path]:
    return [Path(item) for item in comma_list(text)]


def int_in(low: int, high: int):
    """An argparse type: an integer in low..high."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from exc
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}")
        return value

    return parse


def add_threads_argument(parser: argparse.ArgumentParser, default_text: str = "the runtime's choice") -> None:
    parser.add_argument("--threads", type=int_in(1, MAX_THREADS), default=None,
                        help=f"threads of the graph runtime, 1..{MAX_THREADS} (default: {default_text})")


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON on stdout (one object per line), not text")


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="onnxruntime",
                        help="onnxruntime | openvino | tensorrt (default: %(default)s)")
    parser.add_argument("--precision", default="fp32", help="fp32 | fp16 | int8, as exported (default: %(default)s)")
    add_threads_argument(parser)
    parser.add_argument("--device", default=None, help="runtime device name, e.g. CPU, GPU, NPU, AUTO (default: CPU)")


def runtime_options(args: argparse.Namespace) -> dict:
    return {"backend": args.backend, "precision": args.precision, "threads": args.threads, "device": args.device}


def show_progress() -> bool:
    """Progress bars only on a terminal, and not with -q (the CLI sets TQDM_DISABLE then)."""
    return sys.stderr.isatty() and not os.environ.get("TQDM_DISABLE")


def print_json(record: Any) -> None:
    print(json.dumps(record, default=str), flush=True)
def validation_summary(record: dict) -> str:
    """One line for a manifest ``validation`` record (split graphs, or the reference graph, which has no symbols):
    verdict, symbols, and each output's worst error (records written before the task seam name only
    ``logits_max_abs_err``)."""
    outputs = record.get("outputs") or {"logits": {"max_abs_err": record.get("logits_max_abs_err", float("nan"))}}
    parts = [f"{record['backend']}/{record['precision']}: {'PASS' if record['passed'] else 'FAIL'}"]
    if "symbols_total" in record:
        parts += [f"{record['symbols_different']}/{record['symbols_total']} symbols differ",
                  f"{record['streams_identical']}/{record['images']} streams identical to CompressAI"]
    if "indexes_total" in record:  # a hyperprior: the deterministic Gaussian indexes against PyTorch's float ones
        parts.append(f"{record['indexes_different']}/{record['indexes_total']} indexes differ from PyTorch's")
    parts += [f"{name} max |err| {e['max_abs_err']:.3g}" for name, e in outputs.items()]
    return ", ".join(parts)


UNTRAINED_MARK = "UNTRAINED (random weights: the output says nothing about the method)"


def print_report_problems(report: dict) -> None:
    """A bench or compare report's warnings and skipped measurements, a line each."""
    for problem in report["warnings"]:
        print(f"warning: {problem}")
    for skipped in report["skipped"]:
        print(f"skipped: {skipped['what']}: {skipped['reason']}")


def untrained_suffix(bundle) -> str:
    """What every line about an untrained bundle's output ends with; empty for a trained one."""
    return "" if bundle.spec.model.trained else f" [{UNTRAINED_MARK}]"
