"""sc2edge infer BUNDLE IMAGE... --url URL [--model NAME] [--protocol http|grpc] [--json]"""

from __future__ import annotations

import argparse
from pathlib import Path

from sc2edge.commands._common import add_json_argument, add_runtime_arguments, print_json, runtime_options
from sc2edge.errors import Sc2edgeError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle directory (its device graph encodes here)")
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--url", required=True,
                        help="the v2 server: http://host:port or grpc://host:port (host:port: --protocol)")
    parser.add_argument("--protocol", choices=("http", "grpc"), default=None, help="when the URL has no scheme")
    parser.add_argument("--model", default="sc2edge_onnxruntime",
                        help="the served model taking STREAM, e.g. an ensemble of `sc2edge triton-repo` "
                             "(default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: %(default)s)")
    add_runtime_arguments(parser)
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    from sc2edge.runtime import Encoder
    from sc2edge.serve.client import InferenceClient
    from sc2edge.tasks import bundle_task

    missing = [p for p in args.images if not p.is_file()]
    if missing:
        raise Sc2edgeError(f"image not found: {missing[0]}")
    with Encoder(args.bundle, **runtime_options(args)) as encoder:
        task = bundle_task(encoder.bundle)
        with InferenceClient(args.url, args.model, task.output_names, protocol=args.protocol,
                             timeout=args.timeout) as client:
            for image in args.images:
                stream = encoder.encode([image])[0]
                prediction = task.predict(client.infer([stream])[0])
                if args.json:
                    print_json({"image": str(image), "bytes": len(stream), "task": task.kind,
                                **prediction.to_json()})
                else:
                    print(f"{image} ({len(stream)} bytes sent): {prediction}")
    return 0
