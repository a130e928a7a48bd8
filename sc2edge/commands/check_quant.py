"""sc2edge check-quant BUNDLE --data DIR [--labels FILE] [--backend B] [--max-drop X [--apply]] [--json OUT]"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sc2edge.errors import Sc2edgeError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="a bundle exported with --int8")
    parser.add_argument("--data", required=True, type=Path,
                        help="held-out images: folder, class-folder tree or file list (calibration images are skipped)")
    parser.add_argument("--labels", type=Path, help="integer labels ('path label' lines or JSON); without them, "
                        "INT8 is compared with FP32 (top-1/top-5 agreement)")
    parser.add_argument("--backend", default="onnxruntime", help="onnxruntime | openvino (default: %(default)s)")
    parser.add_argument("--images", type=int, default=100, help="held-out images to use (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image selection (default: %(default)s)")
    parser.add_argument("--max-drop", type=float, help="fail (exit 1) when the accuracy drop (or 1 - top-1 "
                        "agreement) exceeds this fraction, e.g. 0.01")
    parser.add_argument("--apply", action="store_true", help="with --max-drop: keep the most harmful layers in float "
                        "until the drop is within it, and rewrite the bundle's INT8 device graphs (accuracy control)")
    parser.add_argument("--calib", type=Path, help="the calibration images (needed by --apply with --backend openvino)")
    parser.add_argument("--threads", type=int, help="runtime threads (default: the runtime's choice)")
    parser.add_argument("--worst-layers", type=int, default=5, help="layers to list by SQNR (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")


def run(args: argparse.Namespace) -> int:
    from sc2edge.calibrate import check_quant, control_accuracy

    if args.apply:
        if args.max_drop is None:
            raise Sc2edgeError("--apply needs --max-drop X")
        _, kept = control_accuracy(args.bundle, args.data, args.max_drop, labels=args.labels, backend=args.backend,
                                   images=args.images, seed=args.seed, calib=args.calib, threads=args.threads)
        print(f"accuracy control: kept in float: {', '.join(kept) or 'nothing (the drop was already within bounds)'}")
    report = check_quant(args.bundle, args.data, args.labels, backend=args.backend, images=args.images,
                         seed=args.seed, max_drop=args.max_drop, threads=args.threads,
                         worst_layers=args.worst_layers)
    print(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 0 if report else 1
