"""sc2edge infer BUNDLE[,BUNDLE...] IMAGE... --url URL [--task KIND[,KIND]] [--model NAME | --name N --variant V]
[--protocol http|grpc] [--json]

The device encodes each image once and sends the stream to the server's ensemble of each task. Several bundles
(comma-separated) are tails of one encoder served by one repository (``sc2edge triton-repo B1,B2``): the device then
encodes with the first bundle whose input is dynamic when a chosen task needs the image sizes (segmentation), else
with the first bundle, and asks ``NAME_<task>_<variant>`` for each task.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sc2edge.commands._common import (
    add_json_argument,
    add_runtime_arguments,
    comma_list,
    path_list,
    print_json,
    runtime_options,
)
from sc2edge.errors import Sc2edgeError

if TYPE_CHECKING:
    from sc2edge.runtime import Bundle
    from sc2edge.tasks import Task


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=path_list,
                        help="bundle directory (its device graph encodes here), or several (comma-separated) whose "
                             "models share the encoder, one per task the server serves")
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--url", required=True,
                        help="the v2 server: http://host:port or grpc://host:port (host:port: --protocol)")
    parser.add_argument("--protocol", choices=("http", "grpc"), default=None, help="when the URL has no scheme")
    parser.add_argument("--task", type=comma_list, default=None,
                        help="the task(s) to ask for (classification, segmentation); default: every bundle's")
    parser.add_argument("--model", default=None,
                        help="the served model taking STREAM, for one task (default: the ensemble that "
                             "`sc2edge triton-repo` names from --name, the task and --variant)")
    parser.add_argument("--name", default="sc2edge", help="the repository's model name prefix (default: %(default)s)")
    parser.add_argument("--variant", default="onnxruntime",
                        help="the server-graph variant: python, onnxruntime, openvino, tensorrt (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: %(default)s)")
    add_runtime_arguments(parser)
    add_json_argument(parser)


def encoder_bundle(bundles: Sequence[Bundle], tasks: Sequence[Task]) -> Bundle:
    """The bundle the device encodes with: a dynamic-input one when a task needs the image sizes, else the first."""
    needs_sizes = any(task.extra_inputs for task in tasks)
    dynamic = [b for b in bundles if b.manifest["input"].get("dynamic")]
    return dynamic[0] if needs_sizes and dynamic else bundles[0]


def run(args: argparse.Namespace) -> int:
    from sc2edge.runtime import Bundle, Encoder
    from sc2edge.runtime.tails import tail_kinds
    from sc2edge.serve.client import InferenceClient
    from sc2edge.serve.repository import tail_prefix
    from sc2edge.tasks import bundle_task

    missing = [p for p in args.images if not p.is_file()]
    if missing:
        raise Sc2edgeError(f"image not found: {missing[0]}")
    bundles = [Bundle.open(path) for path in args.bundle]
    kinds = tail_kinds(bundles, args.task)
    chosen = [kind for kind in kinds if args.task is None or kind in args.task]
    if args.model and len(chosen) > 1:
        raise Sc2edgeError(f"--model names one model, {len(chosen)} tasks are asked for: use --task or --name")
    tasks = {kind: bundle_task(bundle) for kind, bundle in zip(kinds, bundles, strict=True)}
    models = {kind: args.model or f"{tail_prefix(args.name, kind, len(bundles) > 1)}_{args.variant}"
              for kind in chosen}
    clients: dict = {}
    try:
        for kind in chosen:
            clients[kind] = InferenceClient(args.url, models[kind], tasks[kind].output_names,
                                            protocol=args.protocol, timeout=args.timeout)
        with Encoder(encoder_bundle(bundles, [tasks[k] for k in chosen]), **runtime_options(args)) as encoder:
            for image in args.images:
                stream = encoder.encode([image])[0]
                for kind in chosen:
                    prediction = tasks[kind].predict(clients[kind].infer([stream])[0])
                    if args.json:
                        print_json({"image": str(image), "bytes": len(stream), "task": kind,
                                    **prediction.to_json()})
                    else:
                        label = f" [{kind}]" if len(chosen) > 1 else ""
                        print(f"{image}{label} ({len(stream)} bytes sent): {prediction}")
    finally:
        for client in clients.values():
            client.close()
    return 0
