"""sc2edge export MODEL --out BUNDLE_DIR [--backend onnxruntime,openvino] [--int8 --calib DIR] [--json]"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sc2edge.commands._common import add_json_argument, comma_list, print_json, show_progress


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a registered model name (see: sc2edge models)")
    parser.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    parser.add_argument("--checkpoint", type=Path, help="weights to load instead of the registry's")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow unpickling a checkpoint that the safe loader refuses (it can run code)")
    parser.add_argument("--backend", type=comma_list, default=["onnxruntime"],
                        help="comma-separated runtimes to export for: onnxruntime,openvino (default: onnxruntime)")
    parser.add_argument("--int8", action="store_true", help="also write INT8 graphs calibrated on --calib")
    parser.add_argument("--calib", type=Path, help="calibration images: a folder, class-folder tree or file list")
    parser.add_argument("--calib-samples", type=int, default=300, help="calibration images to use (default: 300)")
    parser.add_argument("--calib-method", default="percentile", choices=("percentile", "entropy", "minmax"),
                        help="ONNX Runtime's activation ranges (OpenVINO's NNCF has its own; default: %(default)s)")
    parser.add_argument("--int8-recipe", default="portable", choices=("portable", "vnni"),
                        help="INT8 weights: portable (7-bit, the same integers on every CPU) or vnni (full 8-bit, "
                        "only for a known VNNI/AMX/ARM-dot-product target; saturates on x86 without VNNI) "
                        "(default: %(default)s)")
    parser.add_argument("--int8-check-images", type=Path, help="held-out images for the INT8 validation "
                        "(calibration images are skipped; default: --validation-images, else the offline photos)")
    parser.add_argument("--int8-check-labels", type=Path,
                        help="their integer labels: the INT8 budget is then on accuracy; without them, on accuracy "
                        "against the teacher's FP32 top-1 (pseudo-labels) when the bundle carries the reference "
                        "model, else on top-1 agreement with FP32")
    parser.add_argument("--int8-check-count", type=int, default=100,
                        help="held-out images for the INT8 validation (default: %(default)s)")
    parser.add_argument("--int8-check-crops", type=int, default=1,
                        help="inputs per held-out image for the INT8 validation: the centre crop, then seeded "
                        "random crops of 25-100 %% of the image (default: %(default)s)")
    parser.add_argument("--int8-max-drop", type=float, default=0.01,
                        help="INT8 budget: largest accuracy/agreement change, either way, a fraction "
                        "(default: %(default)s)")
    parser.add_argument("--int8-max-bytes", type=float, default=2.0,
                        help="INT8 budget: largest change of rANS bytes per image, in %% (default: %(default)s)")
    parser.add_argument("--max-drop", type=float, help="over the INT8 budget, keep the most harmful layers in float "
                        "until the drop is at most this fraction (accuracy control, tuned on crops of the --calib "
                        "images, never the held-out check images; sets --int8-max-drop)")
    parser.add_argument("--int8-reference", action="store_true",
                        help="with --int8, also quantize the reference model (the input-codec baselines' INT8 points)")
    parser.add_argument("--allow-int8-over-budget", action="store_true",
                        help="write INT8 artifacts that are over budget (recorded as failed in the manifest)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    parser.add_argument("--resize", type=int, help="for a model whose input follows the image (segmentation): "
                        "resize the shorter side to this instead of the registry's (e.g. 513)")
    parser.add_argument("--max-input", type=int, help="the largest input side a stream may come from (default: "
                        "4x the exported side); e.g. 1344 for a classifier that decodes its encoder's detection "
                        "streams")
    parser.add_argument("--validation-images", type=Path, help="images for the PyTorch comparison "
                        "(default: offline photos installed on this machine)")
    parser.add_argument("--allow-failed-validation", action="store_true",
                        help="write the bundle even if it does not match PyTorch within tolerance")
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=None,
                        help="also export the unmodified model (the teacher) for the input-codec baselines "
                             "(default: when its weights are trained)")
    parser.add_argument("--reference-checkpoint", type=Path, help="the reference model's weights")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle directory")
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    from sc2edge.calibrate.budget import Int8Budget
    from sc2edge.commands._common import validation_summary
    from sc2edge.export import ExportConfig, export_bundle
    from sc2edge.runtime import Bundle

    budget = Int8Budget(args.int8_max_drop if args.max_drop is None else args.max_drop, args.int8_max_bytes)
    config = ExportConfig(backends=tuple(args.backend), progress=show_progress(),
                          int8=args.int8, calib=args.calib, calib_samples=args.calib_samples, opset=args.opset,
                          calib_method=args.calib_method,
                          validation_images=args.validation_images,
                          allow_failed_validation=args.allow_failed_validation, overwrite=args.force,
                          int8_recipe=args.int8_recipe, int8_check_images=args.int8_check_images,
                          int8_check_labels=args.int8_check_labels, int8_check_count=args.int8_check_count,
                          int8_check_crops=args.int8_check_crops,
                          int8_budget=budget, int8_accuracy_control=args.max_drop is not None,
                          allow_int8_over_budget=args.allow_int8_over_budget, int8_reference=args.int8_reference,
                          reference=args.reference, reference_checkpoint=args.reference_checkpoint,
                          resize=args.resize, max_input=args.max_input)
    out = export_bundle(args.model, args.out, checkpoint=args.checkpoint, trust_checkpoint=args.trust_checkpoint,
                        config=config)
    bundle = Bundle.open(out)
    if args.json:
        print_json({"bundle": str(out), "trained": bundle.manifest["model"]["trained"],
                    "artifacts": [a.to_json() for a in bundle.artifacts],
                    "validation": bundle.manifest.get("validation", [])})
        return 0
    for result in bundle.manifest.get("validation", []):
        print(f"validation {validation_summary(result)}")
    reference = bundle.manifest.get("reference")
    if reference:
        for result in reference["validation"]:
            print(f"validation reference {reference['name']} {validation_summary(result)}"
                  + ("" if reference["trained"] else " (UNTRAINED reference: random weights)"))
    for line in int8_validation_lines(bundle.manifest.get("calibration", {}).get("int8_validation")):
        print(line)
    if not bundle.manifest["model"]["trained"]:
        print("note: UNTRAINED model (deterministic random weights): bytes and predictions are meaningless")
    print(f"wrote {out} ({', '.join(f'{a.role}/{a.format}/{a.precision}' for a in bundle.artifacts)})")
    return 0


def int8_validation_lines(checked: dict[str, Any] | None) -> list[str]:
    """One line per row of a manifest's ``calibration.int8_validation``: each INT8 graph as deployed (device,
    server, both halves; a row without the INT8 device graph has no kernel saturation)."""
    lines = []
    for result in checked["results"] if checked else []:
        saturation = result["kernel_saturation_pct"]
        lines.append(f"INT8 validation {result['backend']}/int8 {result.get('graph', 'device')}: "
                     f"{'PASS' if result['passed'] else 'FAIL (over budget)'}, {result['metric']} "
                     f"{100 * result['fp32']:.2f} -> {100 * result['int8']:.2f} %, bytes "
                     f"{result['rate_change_pct']:+.2f} %"
                     + ("" if saturation is None else f", kernel saturation on this CPU {saturation:.3f} % of symbols")
                     + f" ({checked['images']} held-out images)")
    if checked and checked.get("accuracy_control_skipped"):
        lines.append(f"INT8 accuracy control skipped: {checked['accuracy_control_skipped']}")
    return lines
