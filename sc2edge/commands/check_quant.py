"""sc2edge check-quant BUNDLE --data DIR [--labels FILE] [--backend B] [--max-images N] [--max-drop X [--apply]]
[--crops N] [--json]"""

from __future__ import annotations

import argparse
from pathlib import Path

from sc2edge.commands._common import add_json_argument, add_threads_argument, int_in, print_json, show_progress
from sc2edge.errors import Sc2edgeError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="a bundle exported with --int8")
    parser.add_argument("--data", required=True, type=Path,
                        help="held-out images: folder, class-folder tree or file list (calibration images are skipped)")
    parser.add_argument("--labels", type=Path, help="the task's labels: integer labels ('path label' lines or JSON) "
                        "for classification, a folder of masks named like the images (index PNG or .npy) for "
                        "segmentation, a COCO-format annotation file for detection (mAP); without them, accuracy is "
                        "against the teacher's FP32 top-1 (pseudo-labels) when the bundle carries the reference "
                        "model, and INT8 is compared with FP32 (the task's agreement: top-1/top-5, pixels/mean IoU, "
                        "confident boxes matched) in any case")
    parser.add_argument("--backend", default="onnxruntime", help="onnxruntime | openvino (default: %(default)s)")
    parser.add_argument("--max-images", type=int_in(1, 1_000_000), default=100,
                        help="held-out images to use at most (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image selection (default: %(default)s)")
    parser.add_argument("--crops", type=int_in(1, 1000), default=1,
                        help="inputs per image: its centre crop, then seeded random crops of 25-100 %% of it "
                        "(default: %(default)s)")
    parser.add_argument("--max-drop", type=float, help="fail (exit 1) when the drop of the task's metric (against "
                        "labels or the teacher's pseudo-labels; else 1 - the task's agreement with FP32) exceeds this "
                        "fraction, e.g. 0.01")
    parser.add_argument("--apply", action="store_true", help="with --max-drop: keep the most harmful layers in float "
                        "until the drop is within it, and rewrite the bundle's INT8 device graphs (accuracy control)")
    parser.add_argument("--calib", type=Path, help="the calibration images (needed by --apply: accuracy control "
                        "tunes on crops of them, never on the held-out --data images)")
    add_threads_argument(parser)
    parser.add_argument("--worst-layers", type=int, default=5, help="layers to list by SQNR (default: %(default)s)")
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    from sc2edge.calibrate import check_quant, control_accuracy

    if args.apply:
        if args.max_drop is None:
            raise Sc2edgeError("--apply needs --max-drop X")
        control, kept = control_accuracy(args.bundle, args.data, args.max_drop, labels=args.labels,
                                         backend=args.backend, images=args.max_images, seed=args.seed, calib=args.calib,
                                         threads=args.threads, progress=show_progress(), crops=args.crops)
        if not args.json:
            kept_text = ", ".join(kept) or "nothing (the drop was already within bounds)"
            print(f"accuracy control (tuned on {control.images} crops of the calibration images {args.calib}, none of "
                  f"them held out; drop there {100 * control.drop:.2f} points): kept in float: {kept_text}")
    report = check_quant(args.bundle, args.data, args.labels, backend=args.backend, images=args.max_images,
                         seed=args.seed, max_drop=args.max_drop, threads=args.threads,
                         worst_layers=args.worst_layers, progress=show_progress(), crops=args.crops)
    if args.json:
        print_json({**report.to_json(), **({"kept_in_float": kept} if args.apply else {})})
    else:
        print(report)
    return 0 if report else 1
