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
from sc2edge.zoo.datasets import evaluation_crops, fashion_mnist, split_photos
from sc2edge.zoo.efficientnet_student import (
    EntropicStudentEfficientNetLite0,
    LiteHead,
    efficientnet_lite0_teacher,
    teacher_weights_path,
)
from sc2edge.zoo.fashion_mnist import FashionTeacher, student_from_teacher
from sc2edge.zoo.registry import IMAGENET_CLASS_FILE

WEIGHTS = Path(__file__).resolve().parents[1] / "zoo" / "weights"
BETAS = (0.1, 0.4, 1.6)  # low to high rate penalty; the first also trains the shared stage-1 start
RECIPE_DEFAULTS = {
    "fashion-mnist": {"shared_steps": 600, "stage1_steps": 200, "stage2_steps": 150, "batch_size": 128, "lr": 3e-3},
    "efficientnet": {"shared_steps": 700, "stage1_steps": 200, "stage2_steps": 150, "batch_size": 16, "lr": 2e-3},
}
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530  # the training set's pixel statistics
LITE0_MEAN, LITE0_STD = 127 / 255, 128 / 255  # the teacher's (x - 127) / 128 on 0..255 input


def _beta_tag(beta: float) -> str:
    return f"beta{beta:g}"


def _fashion_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = fashion_mnist(split)
    x = (torch.from_numpy(images).float().div_(255).sub_(FASHION_MEAN).div_(FASHION_STD)).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def _students(args, make_student, head, teacher, batches, path_of, label_weight: float = 0.0) -> list:
    """(beta, student, entry) per beta: trained (shared stage-1 start, see ``train_sweep``) and saved, or
    loaded from ``--out`` with ``--evaluate-only``."""
    if args.evaluate_only:
        out = []
        for beta in args.betas:
            student = make_student()
            load_into(student, read_state_dict(path_of(beta)))
            out.append((beta, student, {}))
        return out
    configs = [tr.StudentConfig(beta=b, stage1_steps=args.stage1_steps, stage2_steps=args.stage2_steps,
                                lr=args.lr, label_weight=label_weight, seed=args.seed) for b in args.betas]
    shared, results = tr.train_sweep(make_student(), head, teacher, batches, configs, args.shared_steps)
    out = []
    for r in results:
        entry = {**tr.summarize(r.config, r.stage1, r.stage2), "batch_size": args.batch_size,
                 "shared_stage1": {"beta": args.betas[0], "steps": args.shared_steps,
                                   "seconds": round(shared.seconds, 1)}}
        entry["sha256"] = tr.save_checkpoint(r.model, path_of(r.beta), entry)
        out.append((r.beta, r.model, entry))
    return out


def fashion(args: argparse.Namespace) -> dict:
    train_x, train_y = _fashion_tensors("train")
    test_x, test_y = _fashion_tensors("test")
    teacher_path = args.out / "fashion_mnist_teacher.safetensors"
    results: dict = {"students": {}}
    torch.manual_seed(args.seed)
    teacher = FashionTeacher()
    batches = tr.ArrayBatches(train_x, train_y, args.batch_size, seed=args.seed, flip=True)
    if args.evaluate_only:
        load_into(teacher, read_state_dict(teacher_path))
    else:
        log = tr.train_classifier(teacher, batches, args.teacher_steps, lr=2e-3, seed=args.seed)
        results["teacher_train_seconds"] = round(log.seconds, 1)
        results["teacher_sha256"] = tr.save_checkpoint(teacher, teacher_path, {"steps": args.teacher_steps})
    teacher.eval()
    teacher_top1 = tr.predict(teacher, test_x, 500).argmax(1)
    results["teacher_accuracy"] = round(float((teacher_top1 == test_y).float().mean()), 4)
    results["teacher_head_macs"] = tr.count_macs(teacher.head, (1, 1, 28, 28))
    print(f"teacher: test accuracy {results['teacher_accuracy']}")
    students = _students(args, lambda: student_from_teacher(teacher), teacher.head, teacher, batches,
                         lambda b: args.out / f"es_fashion_mnist_{_beta_tag(b)}.safetensors", label_weight=1.0)
    for beta, student, entry in students:
        logits = tr.predict(student, test_x, 500)
        entry.update(
            file=f"es_fashion_mnist_{_beta_tag(beta)}.safetensors",
            test_accuracy=round(float((logits.argmax(1) == test_y).float().mean()), 4),
            agreement_with_teacher=round(float((logits.argmax(1) == teacher_top1).float().mean()), 4),
            bytes_per_image=round(float(np.mean(tr.stream_bytes(student, test_x, 500))), 1),
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
    teacher_top1 = tr.predict(teacher, inputs, 32).argmax(1)
    names = IMAGENET_CLASS_FILE.read_text().splitlines() if IMAGENET_CLASS_FILE.is_file() else None
    centre = teacher_top1[:: args.crops_per_photo].tolist()
    results: dict = {
        "teacher_weights": teacher_weights_path(),
        "held_out_photos": [p.name for p in held_paths],
        "train_photos": [p.name for p in train_paths],
        "crops_per_photo": args.crops_per_photo,
        "teacher_top1_centre_crop": {
            p.name: names[c] if names else c for p, c in zip(held_paths, centre, strict=True)
        },
        "teacher_head_macs": tr.count_macs(head, (1, 3, 224, 224)),
        "students": {},
    }
    for photo, label in results["teacher_top1_centre_crop"].items():
        print(f"teacher top-1 on {photo}: {label}")
    batches = tr.PhotoCrops(train_paths, args.crop, args.batch_size, preprocess["mean"], preprocess["std"],
                            seed=args.seed)
    students = _students(args, lambda: EntropicStudentEfficientNetLite0(teacher=teacher), head, teacher, batches,
                         lambda b: args.out / f"es_efficientnet_lite0_{_beta_tag(b)}.safetensors")
    for beta, student, entry in students:
        logits = tr.predict(student, inputs, 32)
        top5 = logits.topk(5, dim=1).indices
        entry.update(
            file=f"es_efficientnet_lite0_{_beta_tag(beta)}.safetensors",
            train_crop=args.crop,
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
    parser.add_argument("--shared-steps", type=int, help="stage-1 steps shared by all betas (at the first)")
    parser.add_argument("--stage1-steps", type=int, help="stage-1 steps per beta after the shared ones")
    parser.add_argument("--stage2-steps", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--teacher-steps", type=int, default=940, help="Fashion-MNIST teacher steps (2 epochs)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--crop", type=int, default=128, help="EfficientNet training crop (px)")
    parser.add_argument("--crops-per-photo", type=int, default=16, help="EfficientNet evaluation crops")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--evaluate-only", action="store_true")
    args = parser.parse_args(argv)
    defaults = RECIPE_DEFAULTS[args.recipe]
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
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
