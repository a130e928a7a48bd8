"""One encoder, three tails, at each task's own resolution: the figures behind docs/results/tasks.md.

Exports the classifier (224 crop), the segmenter (shorter side 513) and the detector (800 / 1333) that share the
ImageNet student's encoder and tables, each to ONNX Runtime and OpenVINO, FP32 and INT8 (both halves), validated
against PyTorch on labelme-examples' VOC photos (held out: calibration uses other offline photos); benches every
stage of each at its resolution; then encodes one photo with the detector's encoder and decodes that stream with
all three tails, per runtime and precision.

    python scripts/measure_tasks.py --out out/tasks [--tasks segmentation,detection] [--threads 2]

Every model is UNTRAINED (random weights, seed 0; the detector has "person" made likely so that NMS keeps boxes):
the figures say how faithfully the runtimes and INT8 reproduce PyTorch and how fast each stage runs at the
task's size, nothing about task accuracy, and the bytes are a random encoder's.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from sc2edge.bench import run_bench
from sc2edge.bench.timing import TimingConfig
from sc2edge.export import ExportConfig, export_bundle
from sc2edge.photos import system_photos
from sc2edge.runtime import Bundle, Encoder
from sc2edge.runtime.tails import TailDecoders
from sc2edge.zoo import get_model

VOC = Path("/usr/share/doc/labelme-examples/examples/semantic_segmentation/data_dataset_voc/JPEGImages")
MODELS = {"classification": "entropic_student_resnet50_beta0.08",
          "segmentation": "entropic_student_deeplabv3_resnet50_beta0.16",
          "detection": "entropic_student_retinanet_resnet50_fpn_beta0.08"}
PERSON = 1  # COCO category id
DETECTION_SIDE = 1344  # 1333, padded to a multiple of 32: every tail takes the detector's streams
BACKENDS = ("onnxruntime", "openvino")


def _linked(folder: Path, paths: list[Path]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if not (folder / path.name).exists():
            (folder / path.name).symlink_to(path)
    return folder


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def export(task: str, out: Path, calib: Path, held_out: Path, calib_samples: int) -> tuple[Path, dict[str, Any]]:
    """The task's bundle, exported once (reused when its manifest exists), and what the export took."""
    bundle = out / task
    record: dict[str, Any] = {"model": MODELS[task]}
    if not (bundle / "manifest.json").exists():
        model = get_model(MODELS[task])
        if task == "detection":
            model.model.make_likely(PERSON)
        record["load_before"], started = _load(), time.perf_counter()
        export_bundle(model, bundle, config=ExportConfig(
            backends=BACKENDS, validation_images=held_out, int8=True, calib=calib, calib_samples=calib_samples,
            int8_check_images=held_out, int8_check_count=3, int8_check_crops=1, allow_int8_over_budget=True,
            progress=False, overwrite=True, reference=False,
            max_input=DETECTION_SIDE if task == "classification" else None))
        record["export_s"], record["load_after"] = round(time.perf_counter() - started, 1), _load()
    manifest = json.loads((bundle / "manifest.json").read_text())
    calibration = manifest.get("calibration", {})
    record.update(input=manifest["input"], validation=manifest["validation"],
                  int8_validation=calibration.get("int8_validation"))
    return bundle, record


def bench(bundle: Path, out: Path, held_out: Path, threads: int) -> dict[str, Any]:
    """Per runtime: each stage's p50 and the bytes per image, FP32 and INT8 (both halves), at the task's size."""
    figures: dict[str, Any] = {}
    for backend in BACKENDS:
        load = _load()
        report = run_bench([bundle], [backend], ["fp32", "int8"], threads=threads, images=[held_out], links=["lte"],
                           out_dir=out / f"bench-{bundle.name}-{backend}", max_images=1, torch_baseline=False,
                           codecs=(), timing=TimingConfig(warmup_s=0.0, warmup_count=1, min_time_s=0.0, min_count=3))
        for key, latency in report["latency"].items():
            row = figures.setdefault(key, {"load_before": load})
            row["stages_ms_p50"] = {stage: round(v["p50"], 2) for stage, v in latency["stages"].items()}
        for key, size in report["size"].items():
            figures.setdefault(key, {})["payload_bytes"] = [i["payload_bytes"] for i in size["per_image"]]
        for key in figures:
            figures[key].setdefault("load_after", _load())
    return figures


def one_stream(bundles: list[Path], photo: Path, threads: int) -> list[dict[str, Any]]:
    """The detector's encoder codes ``photo`` once; the three tails decode that stream (ms of a second call), and
    each tail's INT8 prediction is compared with its FP32 one (the task's agreement)."""
    rows, fp32 = [], {}
    detector = Bundle.open(next(b for b in bundles if b.name == "detection"))
    for backend in BACKENDS:
        for precision in ("fp32", "int8"):
            with Encoder(detector, backend, precision, threads=threads) as encoder:
                stream = encoder.encode([photo])[0]
            row: dict[str, Any] = {"backend": backend, "precision": precision, "stream_bytes": len(stream),
                                   "tails": {}}
            with TailDecoders(bundles, backend=backend, precision=precision, threads=threads) as tails:
                for kind, decoder in tails.decoders.items():
                    decoder.decode(stream)
                    started = time.perf_counter()
                    prediction = decoder.decode(stream)
                    tail = {"ms": round((time.perf_counter() - started) * 1e3, 1),
                            "prediction": _summary(kind, prediction.to_json())}
                    if precision == "fp32":
                        fp32[backend, kind] = prediction
                    else:
                        tail["agreement_with_fp32"] = decoder.task.agreement_scores([fp32[backend, kind]],
                                                                                    [prediction])
                    row["tails"][kind] = tail
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _summary(kind: str, prediction: dict[str, Any]) -> Any:
    """The prediction without its bulk: top-1, the box count, the class map's size and class shares."""
    if kind == "classification":
        return {"top1": prediction["classes"][0], "score": prediction["scores"][0]}
    if kind == "detection":
        return {"boxes": len(prediction["detections"])}
    return {key: value for key, value in prediction.items() if key != "mask_png"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tasks", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calib-samples", type=int, default=4)
    args = parser.parse_args()
    held_out = _linked(args.out / "held-out", sorted(VOC.glob("*.jpg")))
    calib = _linked(args.out / "calib", system_photos()[::2][:args.calib_samples])
    path = args.out / "figures.json"
    figures: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"tasks": {}}
    figures.update(threads=args.threads, held_out=[p.name for p in sorted(held_out.iterdir())],
                   calibration=[p.name for p in sorted(calib.iterdir())])
    for task in args.tasks.split(","):
        bundle, record = export(task, args.out, calib, held_out, args.calib_samples)
        print(task, "exported", record.get("export_s"), "s", flush=True)
        record["bench"] = bench(bundle, args.out, held_out, args.threads)
        figures["tasks"][task] = record
        path.write_text(json.dumps(figures, indent=1))
    bundles = [args.out / task for task in MODELS if (args.out / task / "manifest.json").exists()]
    if len(bundles) == len(MODELS):
        figures["one_stream"] = one_stream(bundles, sorted(held_out.iterdir())[-1], args.threads)
    path.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
