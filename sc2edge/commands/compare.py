"""sc2edge compare METHOD... [--data D | --dataset fashion-mnist] [--labels L] [--precision fp32,int8] [--out DIR]

A verb of its own rather than ``bench --sweep``: bench measures a few bundles in depth (one process per
configuration, latency percentiles, memory, FLOPs, links) on a handful of images; compare scores many methods
(bundles *and* input codecs at several qualities, which are not bundles) over hundreds of labelled items and
answers a different question, which method gives the best accuracy for the bytes. Its inputs and outputs differ,
so sharing bench's flags would give each of them two meanings.

A METHOD is a bundle directory, a registered model name (exported here first, into OUT/bundles/NAME), or an input
codec ``NAME[:Q1/Q2/...]`` (jpeg, webp, avif...) in front of the bundles' reference model (the teacher).
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
                        help="calibration images for models exported here with INT8 (with --precision int8)")
    parser.add_argument("--allow-calibration-images", action="store_true",
                        help="measure even if evaluation images were INT8 calibration images (flagged), "
                             "instead of refusing")
    parser.add_argument("--out", type=Path, default=Path("compare-report"),
                        help="report folder: compare.md, compare.json, rate_accuracy.png (default: %(default)s)")
    add_json_argument(parser)


def _export_models(methods: list[str], out: Path, backend: str, int8: bool, calib: Path | None) -> list[str]:
    """Registered model names -> bundles exported into OUT/bundles (reused when already there)."""
    from sc2edge.runtime.input_codecs import list_input_codecs

    resolved = []
    for method in methods:
        if Path(method).is_dir() or method.partition(":")[0].lower() in list_input_codecs():
            resolved.append(method)
            continue
        from sc2edge.zoo import list_models

        if method not in list_models():
            raise Sc2edgeError(f"method {method!r} is neither a bundle directory, a registered model (sc2edge "
                               f"models) nor an input codec ({', '.join(list_input_codecs())}[:Q1/Q2/...])")
        target = out / "bundles" / method
        if not (target / "manifest.json").is_file():
            from sc2edge.export import ExportConfig, export_bundle

            if int8 and calib is None:
                raise Sc2edgeError(f"exporting {method} with INT8 needs calibration images: pass --calib")
            export_bundle(method, target, config=ExportConfig(backends=(backend,), int8=int8, calib=calib,
                                                              allow_int8_over_budget=True, reference=True))
        resolved.append(str(target))
    return resolved


def run(args: argparse.Namespace) -> int:
    from sc2edge.bench.report import compare_tables, to_markdown
    from sc2edge.bench.sweep import run_compare

    if args.dataset and args.data:
        raise Sc2edgeError("give --data or --dataset, not both")
    data, labels = args.data or (), args.labels
    if args.dataset == "fashion-mnist":
        from sc2edge.zoo.datasets import write_fashion_mnist_images

        data = [write_fashion_mnist_images("test", args.out / "data", args.max_images or DEFAULT_DATASET_IMAGES)]
    methods = _export_models(args.methods, args.out, args.backend, "int8" in args.precision, args.calib)
    report = run_compare(methods, images=data, labels_file=labels, backend=args.backend,
                         precisions=tuple(args.precision), threads=args.threads or 1, max_images=args.max_images,
                         allow_calibration_images=args.allow_calibration_images, out_dir=args.out)
    if args.json:
        print_json(report)
        return 0
    print(to_markdown(compare_tables(report)[:1], {}, title=None))
    print_report_problems(report)
    print(f"report: {report['files']['markdown']} (also compare.json, rate_accuracy.png in {args.out})")
    return 0
