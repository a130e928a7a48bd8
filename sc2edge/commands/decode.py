"""sc2edge decode BUNDLE[,BUNDLE...] STREAM... [--task KIND[,KIND]] [--out DIR] [--json]

Several bundles (comma-separated) are tails of one encoder (e.g. a classifier, a detector and a segmenter sharing
the student's encoder): each stream is decoded by each of them, or by those of ``--task``. Segmentation writes its
class maps as PNG masks (pixel value = class) to ``--out``. Detection prints boxes; with ``--json`` each record
carries ``results`` in COCO's result format (image_id, category_id, bbox x y width height, score), and ``--out``
gets all streams' results in one ``detections.json`` (what pycocotools' ``loadRes`` reads). A stream's image_id is
its file stem when that is an integer, else its position on the command line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sc2edge.commands._common import (
    add_json_argument,
    add_runtime_arguments,
    comma_list,
    path_list,
    print_json,
    runtime_options,
    untrained_suffix,
)
from sc2edge.errors import Sc2edgeError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=path_list,
                        help="bundle directory, or several (comma-separated) whose models share the encoder")
    parser.add_argument("streams", nargs="+", type=Path, help=".sc2 stream files")
    parser.add_argument("--task", type=comma_list, default=None,
                        help="the task(s) to decode (classification, detection, segmentation); default: every "
                        "bundle's")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for segmentation masks (<stream stem>.png, 8-bit, pixel value = class) and "
                        "detections (detections.json, COCO result format)")
    add_runtime_arguments(parser)
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    from sc2edge._files import atomic_write_bytes
    from sc2edge.runtime.tails import TailDecoders

    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise Sc2edgeError(f"--out {args.out} is a file; give a directory for the masks")
    coco_results: list[dict] = []
    with TailDecoders(args.bundle, args.task, **runtime_options(args)) as tails:
        several = len(tails.decoders) > 1
        for position, path in enumerate(args.streams):
            if not path.is_file():
                raise Sc2edgeError(f"stream not found: {path}")
            for kind, prediction in tails.decode(path.read_bytes()).items():
                bundle = tails.decoders[kind].bundle
                record = {"stream": str(path), "task": kind, "trained": bundle.spec.model.trained,
                          **prediction.to_json()}
                if hasattr(prediction, "coco_results"):
                    record["results"] = prediction.coco_results(int(path.stem) if path.stem.isdigit() else position)
                    coco_results.extend(record["results"])
                if args.out is not None and hasattr(prediction, "png"):
                    args.out.mkdir(parents=True, exist_ok=True)
                    target = args.out / f"{path.stem}.png"
                    atomic_write_bytes(target, prediction.png())
                    record.pop("mask_png", None)
                    record["mask"] = str(target)
                if args.json:
                    print_json(record)
                else:
                    print(f"{path}{f' [{kind}]' if several else ''}: {prediction}"
                          + (f" -> {record['mask']}" if "mask" in record else "") + untrained_suffix(bundle))
    if args.out is not None and "detection" in tails.decoders:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.out / "detections.json", json.dumps(coco_results).encode())
    return 0
