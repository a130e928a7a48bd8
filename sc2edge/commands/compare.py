"""sc2edge compare METHOD... [--data D | --dataset fashion-mnist] [--labels L] [--precision fp32,int8] [--out DIR]
                       [--backend onnxruntime|openvino] [--calib C] [--bundles DIR]

A verb of its own rather than ``bench --sweep``: bench measures a few bundles in depth (one process per
configuration, latency percentiles, memory, FLOPs, links) on a handful of images; compare scores many methods
(bundles *and* input codecs at several qualities, which are not bundles) over hundreds of labelled items and
answers a different question, which method gives the best accuracy for the bytes. Its inputs and outputs differ,
so sharing bench's flags would give each of them two meanings.

A METHOD is a bundle directory, a registered model name (exported here first, into OUT/bundles/NAME), or an input
codec ``NAME[:Q1/Q2/...]`` (jpeg, webp, avif...) in front of the bundles' reference model (the teacher).
Registered models are exported for ONNX Runtime and OpenVINO at once (with ``int8``: INT8 graphs of the device
and server halves and of the teacher, which the codecs' INT8 points run), calibrated by default on the training
images of the evaluation data (300 Fashion-MNIST training images, or the offline training photos): the held-out
images compare scores on are never calibration images. ``scripts/compare_figures.sh`` runs the paper's figure for
Fashion-MNIST and the EfficientNet-Lite0 student on both runtimes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sc2edge.commands._common import (
    add_json_argument,
    add_threads_argument,
    comma_list,
    int_in,
    path_list,
    print_json,
    print_report_problems,
)
from sc2edge.errors import Sc2edgeError

DATASETS = ("fashion-mnist",)
DEFAULT_DATASET_IMAGES = 1000
DEFAULT_CALIBRATION_IMAGES = 300  # Fashion-MNIST training images for models exported here with INT8
CALIBRATION_SAMPLES = 100  # INT8 calibration samples per export
INT8_CHECK_IMAGES = 16  # the export's own INT8 budget check: a sanity check, compare measures INT8 on every item
EXPORT_BACKENDS = ("onnxruntime", "openvino")  # one export serves a compare on either CPU runtime


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("methods", nargs="+",
                        help="bundle directories, registered model names (exported first) and input codecs "
                             "NAME[:Q1/Q2/...], e.g. bundles/es0.4 bundles/es1.6 jpeg webp:10/50/90")
    parser.add_argument("--data", type=path_list, default=None,
                        help="comma-separated image files, folders or labelled file lists (default: the held-out "
                             "photos, 16 crops each, scored as agreement with the teacher)")
    parser.add_argument("--labels", type=Path, default=None,
                        help='class labels of --data: JSON {"image": class} or "path class" lines')
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help="a labelled test set installed here instead of --data: Fashion-MNIST's test images "
                             f"(seeded; --max-images of them, default {DEFAULT_DATASET_IMAGES})")
    parser.add_argument("--max-images", type=int_in(1, 1_000_000), default=None,
                        help="use at most N images (photos: N photos x 16 crops)")
    parser.add_argument("--backend", default="onnxruntime", help="onnxruntime | openvino (default: %(default)s)")
    parser.add_argument("--precision", type=comma_list, default=["fp32"],
                        help="comma-separated precisions: fp32,int8 (default: fp32; missing artifacts are skipped)")
    add_threads_argument(parser, "1")
    parser.add_argument("--calib", type=Path, default=None,
                        help="calibration images for models exported here with INT8 (with --precision int8; "
                             f"default: {DEFAULT_CALIBRATION_IMAGES} Fashion-MNIST training images with --dataset "
                             "fashion-mnist, else the offline training photos)")
    parser.add_argument("--export-backends", type=comma_list, default=list(EXPORT_BACKENDS),
                        help="runtimes registered models are exported for (default: %(default)s)")
    parser.add_argument("--calib-samples", type=int_in(1, 100_000), default=CALIBRATION_SAMPLES,
                        help="INT8 calibration samples of models exported here (default: %(default)s)")
    parser.add_argument("--bundles", type=Path, default=None,
                        help="where registered models are exported, or reused when already there (default: "
                             "OUT/bundles); share it between runs on different backends")
    parser.add_argument("--allow-calibration-images", action="store_true",
                        help="measure even if evaluation images were INT8 calibration images (flagged), "
                             "instead of refusing")
    parser.add_argument("--keep-from", type=Path, default=None,
                        help="an earlier compare.json of the same items and runtime: its rows of methods not given "
                             "here are kept (re-measure one retrained method, not the whole figure)")
    parser.add_argument("--out", type=Path, default=Path("compare-report"),
                        help="report folder: compare.md, compare.json, rate_accuracy.png (default: %(default)s)")
    add_json_argument(parser)


def _export_models(methods: list[str], where: Path, int8: bool, calib: Path | None, backends: list[str],
                   calib_samples: int) -> list[str]:
    """Registered model names -> bundles exported into ``where`` (reused when already there). The codecs' INT8 rows
    read one INT8 teacher (``run_compare`` takes the bundle that has it), so only the first bundle gets one: the
    teacher's calibration is the slowest part of an INT8 export."""
    from sc2edge.runtime.bundle import Bundle
    from sc2edge.runtime.input_codecs import list_input_codecs
    from sc2edge.runtime.reference import has_reference

    resolved = []
    int8_teacher = int8  # still to export
    for method in methods:
        if Path(method).is_dir() or method.partition(":")[0].lower() in list_input_codecs():
            resolved.append(method)
            continue
        from sc2edge.zoo import list_models

        if method not in list_models():
            raise Sc2edgeError(f"method {method!r} is neither a bundle directory, a registered model (sc2edge "
                               f"models) nor an input codec ({', '.join(list_input_codecs())}[:Q1/Q2/...])")
        target = where / method
        if not (target / "manifest.json").is_file():
            from sc2edge.export import ExportConfig, export_bundle

            if int8 and calib is None:
                raise Sc2edgeError(f"exporting {method} with INT8 for --data needs calibration images: pass --calib")
            export_bundle(method, target, config=ExportConfig(
                backends=tuple(backends), int8=int8, calib=calib, calib_samples=calib_samples,
                int8_check_count=INT8_CHECK_IMAGES, allow_int8_over_budget=True, reference=True,
                int8_reference=int8_teacher))
        int8_teacher = int8_teacher and not has_reference(Bundle.open(target, verify=False), precision="int8")
        resolved.append(str(target))
    return resolved


def _default_calibration(args: argparse.Namespace) -> Path:
    """Training images of the evaluation data, for INT8 exports: Fashion-MNIST's training split, or the offline
    training photos (``zoo.datasets.split_photos``, which holds the evaluation photos out)."""
    folder = args.out / "calibration"
    if args.dataset == "fashion-mnist":
        from sc2edge.zoo.datasets import write_fashion_mnist_images

        return write_fashion_mnist_images("train", folder, DEFAULT_CALIBRATION_IMAGES).parent
    from sc2edge.zoo.datasets import split_photos

    folder.mkdir(parents=True, exist_ok=True)
    listing = folder / "training_photos.txt"
    listing.write_text("".join(f"{p}\n" for p in split_photos()[0]))
    return listing


def run(args: argparse.Namespace) -> int:
    from sc2edge.bench.report import compare_tables, to_markdown
    from sc2edge.bench.sweep import run_compare

    if args.dataset and args.data:
        raise Sc2edgeError("give --data or --dataset, not both")
    data, labels = args.data or (), args.labels
    if args.dataset == "fashion-mnist":
        from sc2edge.zoo.datasets import write_fashion_mnist_images

        data = [write_fashion_mnist_images("test", args.out / "data", args.max_images or DEFAULT_DATASET_IMAGES)]
    keep_from = None
    if args.keep_from is not None:  # read before the exports, which take minutes, so a bad path fails at once
        import json

        keep_from = json.loads(args.keep_from.read_text())
    int8 = "int8" in args.precision
    calib = args.calib or (_default_calibration(args) if int8 and args.data is None else None)
    methods = _export_models(args.methods, args.bundles or args.out / "bundles", int8, calib, args.export_backends,
                             args.calib_samples)
    report = run_compare(methods, images=data, labels_file=labels, backend=args.backend,
                         precisions=tuple(args.precision), threads=args.threads or 1, max_images=args.max_images,
                         allow_calibration_images=args.allow_calibration_images, out_dir=args.out,
                         keep_from=keep_from)
    if args.json:
        print_json(report)
        return 0
    print(to_markdown(compare_tables(report)[:1], {}, title=None))
    print_report_problems(report)
    print(f"report: {report['files']['markdown']} (also compare.json, rate_accuracy.png in {args.out})")
    return 0
