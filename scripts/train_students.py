"""Rebuild the packaged Entropic Student checkpoints (zoo/weights/*.safetensors) and measure them.

    python scripts/train_students.py fashion-mnist   # teacher CNN + a student per beta, 10k-test accuracy
    python scripts/train_students.py efficientnet    # EfficientNet-Lite0 students, agreement on held-out data

Deterministic (fixed seeds, one thread). Prints a rate-accuracy table and writes the figures as JSON
(``--results``), from which the models.yaml entries are filled in. ``--evaluate-only`` re-measures the
checkpoints already in ``--out``. Small ``--*-steps`` values give a quick smoke run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sc2edge.zoo import training as tr
from sc2edge.zoo.checkpoint import load_into, read_state_dict
from sc2edge.zoo.datasets import HELD_OUT_PHOTOS, evaluation_crops, fashion_mnist, split_photos
from sc2edge.zoo.efficientnet_student import (
    EntropicStudentEfficientNetLite0,
    LiteHead,
    efficientnet_lite0_teacher,
    teacher_weights_path,
)
from sc2edge.zoo.fashion_mnist import FashionTeacher, student_from_teacher
from sc2edge.zoo.registry import IMAGENET_CLASS_FILE

WEIGHTS = Path(__file__).resolve().parents[1] / "zoo" / "weights"
BETAS = (0.01, 0.04, 0.16, 0.64)
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530  # the training set's pixel statistics
LITE0_MEAN, LITE0_STD = 127 / 255, 128 / 255  # the teacher's (x - 127) / 128 on 0..255 input


def _beta_tag(beta: float) -> str:
    return f"beta{beta:g}"


def _fashion_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = fashion_mnist(split)
    x = (torch.from_numpy(images).float().div_(255).sub_(FASHION_MEAN).div_(FASHION_STD)).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def fashion(args: argparse.Namespace) -> dict:
    train_x, train_y = _fashion_tensors("train")
    test_x, test_y = _fashion_tensors("test")
    teacher_path = args.out / "fashion_mnist_teacher.safetensors"
    results: dict = {"students": {}}
    torch.manual_seed(args.seed)
    teacher = FashionTeacher()
    if args.evaluate_only:
        load_into(teacher, read_state_dict(teacher_path))
    else:
        batches = tr.ArrayBatches(train_x, train_y, args.batch_size, seed=args.seed, flip=True)
        log = tr.train_classifier(teacher, batches, args.teacher_steps, lr=2e-3, seed=args.seed)
        results["teacher_train_seconds"] = round(log.seconds, 1)
        results["teacher_sha256"] = tr.save_checkpoint(teacher, teacher_path, {"steps": args.teacher_steps})
    teacher.eval()
    teacher_top1 = tr.predict(teacher, test_x, 500).argmax(1)
    results["teacher_accuracy"] = round(float((teacher_top1 == test_y).float().mean()), 4)
    print(f"teacher: test accuracy {results['teacher_accuracy']:.4f}")
    results["teacher_encoder_region_macs"] = tr.count_macs(teacher.head, (1, 1, 28, 28))
    for beta in args.betas:
        path = args.out / f"es_fashion_mnist_{_beta_tag(beta)}.safetensors"
        student = student_from_teacher(teacher)
        entry: dict = {}
        if args.evaluate_only:
            load_into(student, read_state_dict(path))
        else:
            cfg = tr.StudentConfig(beta=beta, stage1_steps=args.stage1_steps, stage2_steps=args.stage2_steps,
                                   label_weight=1.0, seed=args.seed)
            batches = tr.ArrayBatches(train_x, train_y, args.batch_size, seed=args.seed, flip=True)
            stage1, stage2 = tr.train_student(student, teacher.head, teacher, batches, cfg)
            entry.update(tr.summarize(cfg, stage1, stage2), batch_size=args.batch_size)
            entry["sha256"] = tr.save_checkpoint(student, path, entry)
        logits = tr.predict(student, test_x, 500)
        sizes = tr.stream_bytes(student, test_x, 500)
        entry.update(
            file=path.name,
            test_accuracy=round(float((logits.argmax(1) == test_y).float().mean()), 4),
            agreement_with_teacher=round(float((logits.argmax(1) == teacher_top1).float().mean()), 4),
            bytes_per_image=round(float(np.mean(sizes)), 1),
            encoder_macs=tr.count_macs(student.bottleneck_layer.encoder, (1, 1, 28, 28)),
        )
        results["students"][_beta_tag(beta)] = entry
        print(f"beta {beta:g}: test accuracy {entry['test_accuracy']}, {entry['bytes_per_image']} B/image")
    return results


def efficientnet(args: argparse.Namespace) -> dict:
    teacher = efficientnet_lite0_teacher()
    head = LiteHead(teacher)
    train_paths, held_paths = split_photos()
    preprocess = {"resize": 256, "crop": 224, "mean": [LITE0_MEAN] * 3, "std": [LITE0_STD] * 3}
    inputs = torch.from_numpy(evaluation_crops(held_paths, args.crops_per_photo, preprocess, seed=args.seed))
    teacher_logits = tr.predict(teacher, inputs, 32)
    teacher_top1 = teacher_logits.argmax(1)
    names = IMAGENET_CLASS_FILE.read_text().splitlines() if IMAGENET_CLASS_FILE.is_file() else None
    centre = teacher_top1[:: args.crops_per_photo].tolist()
    results: dict = {
        "teacher_weights": teacher_weights_path(),
        "held_out_photos": list(HELD_OUT_PHOTOS),
        "train_photos": [p.name for p in train_paths],
        "crops_per_photo": args.crops_per_photo,
        "teacher_top1_centre_crop": {
            p.name: names[c] if names else c for p, c in zip(held_paths, centre, strict=True)
        },
        "teacher_encoder_region_macs": tr.count_macs(head, (1, 3, 224, 224)),
        "students": {},
    }
    for photo, label in results["teacher_top1_centre_crop"].items():
        print(f"teacher top-1 on {photo}: {label}")
    for beta in args.betas:
        path = args.out / f"es_efficientnet_lite0_{_beta_tag(beta)}.safetensors"
        student = EntropicStudentEfficientNetLite0(teacher=teacher)
        entry: dict = {}
        if args.evaluate_only:
            load_into(student, read_state_dict(path))
        else:
            cfg = tr.StudentConfig(beta=beta, stage1_steps=args.stage1_steps, stage2_steps=args.stage2_steps,
                                   seed=args.seed)
            batches = tr.PhotoCrops(train_paths, args.crop, args.batch_size, preprocess["mean"],
                                    preprocess["std"], seed=args.seed)
            stage1, stage2 = tr.train_student(student, head, teacher, batches, cfg)
            entry.update(tr.summarize(cfg, stage1, stage2), batch_size=args.batch_size, train_crop=args.crop)
            entry["sha256"] = tr.save_checkpoint(student, path, entry)
        logits = tr.predict(student, inputs, 32)
        top5 = logits.topk(5, dim=1).indices
        entry.update(
            file=path.name,
            top1_agreement=round(float((logits.argmax(1) == teacher_top1).float().mean()), 4),
            top5_contains_teacher_top1=round(float((top5 == teacher_top1[:, None]).any(1).float().mean()), 4),
            bytes_per_image=round(float(np.mean(tr.stream_bytes(student, inputs, 32))), 1),
            encoder_macs=tr.count_macs(student.bottleneck_layer.encoder, (1, 3, 224, 224)),
        )
        results["students"][_beta_tag(beta)] = entry
        print(f"beta {beta:g}: top-1 agreement {entry['top1_agreement']}, {entry['bytes_per_image']} B/image")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipe", choices=["fashion-mnist", "efficientnet"])
    parser.add_argument("--betas", type=float, nargs="+", default=list(BETAS))
    parser.add_argument("--out", type=Path, default=WEIGHTS, help="where the .safetensors files go")
    parser.add_argument("--results", type=Path, help="write the figures here as JSON")
    parser.add_argument("--stage1-steps", type=int)
    parser.add_argument("--stage2-steps", type=int)
    parser.add_argument("--teacher-steps", type=int, default=1400, help="Fashion-MNIST teacher steps")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--crop", type=int, default=128, help="EfficientNet training crop (px)")
    parser.add_argument("--crops-per-photo", type=int, default=16, help="EfficientNet evaluation crops")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--evaluate-only", action="store_true")
    args = parser.parse_args(argv)
    defaults = {"fashion-mnist": (900, 300, 128), "efficientnet": (400, 150, 16)}[args.recipe]
    args.stage1_steps = defaults[0] if args.stage1_steps is None else args.stage1_steps
    args.stage2_steps = defaults[1] if args.stage2_steps is None else args.stage2_steps
    args.batch_size = defaults[2] if args.batch_size is None else args.batch_size
    torch.set_num_threads(args.threads)
    start, cpu_start = time.perf_counter(), time.process_time()
    results = (fashion if args.recipe == "fashion-mnist" else efficientnet)(args)
    results.update(seconds=round(time.perf_counter() - start, 1), cpu_seconds=round(time.process_time() - cpu_start),
                   threads=args.threads, torch=torch.__version__)
    print(f"total {results['seconds']:.0f} s wall, {results['cpu_seconds']} s CPU, {args.threads} thread(s)")
    if args.results:
        args.results.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
