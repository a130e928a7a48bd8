"""sc2edge export MODEL --out BUNDLE_DIR"""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a registered model name (see: sc2edge models)")
    parser.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    parser.add_argument("--checkpoint", type=Path, help="weights to load instead of the registry's")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow unpickling a checkpoint that the safe loader refuses (it can run code)")
    parser.add_argument("--backend", default="onnxruntime",
                        help="comma-separated runtimes to export for: onnxruntime,openvino (default: %(default)s)")
    parser.add_argument("--int8", action="store_true", help="also write INT8 graphs calibrated on --calib")
    parser.add_argument("--calib", type=Path, help="calibration images: a folder, class-folder tree or file list")
    parser.add_argument("--calib-samples", type=int, default=300, help="calibration images to use (default: 300)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    parser.add_argument("--validation-images", type=Path, help="images for the PyTorch comparison "
                        "(default: offline photos installed on this machine)")
    parser.add_argument("--allow-failed-validation", action="store_true",
                        help="write the bundle even if it does not match PyTorch within tolerance")
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=None,
                        help="also export the unmodified model (the teacher) for the input-codec baselines "
                             "(default: when its weights are trained)")
    parser.add_argument("--reference-checkpoint", type=Path, help="the reference model's weights")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle directory")


def run(args: argparse.Namespace) -> int:
    from sc2edge.commands._common import validation_summary
    from sc2edge.export import ExportConfig, export_bundle
    from sc2edge.runtime import Bundle

    config = ExportConfig(backends=tuple(b.strip() for b in args.backend.split(",") if b.strip()),
                          int8=args.int8, calib=args.calib, calib_samples=args.calib_samples, opset=args.opset,
                          validation_images=args.validation_images,
                          allow_failed_validation=args.allow_failed_validation, overwrite=args.force,
                          reference=args.reference, reference_checkpoint=args.reference_checkpoint)
    out = export_bundle(args.model, args.out, checkpoint=args.checkpoint, trust_checkpoint=args.trust_checkpoint,
                        config=config)
    bundle = Bundle.open(out)
    for result in bundle.manifest.get("validation", []):
        print(f"validation {validation_summary(result)}")
    reference = bundle.manifest.get("reference")
    if reference:
        for result in reference["validation"]:
            print(f"validation reference {reference['name']} {validation_summary(result)}"
                  + ("" if reference["trained"] else " (UNTRAINED reference: random weights)"))
    if not bundle.manifest["model"]["trained"]:
        print("note: UNTRAINED model (deterministic random weights): bytes and predictions are meaningless")
    print(f"wrote {out} ({', '.join(f'{a.role}/{a.format}/{a.precision}' for a in bundle.artifacts)})")
    return 0
