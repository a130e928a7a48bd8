"""Rebuild the packaged Entropic Student checkpoints (zoo/weights/*.safetensors) and measure them.

    python scripts/train_students.py fashion-mnist   # teacher CNN + a student per beta, 10k-test accuracy
    python scripts/train_students.py efficientnet    # EfficientNet-Lite0 students, agreement on held-out data
    python scripts/train_students.py fashion-mnist-bq    # CR+BQ baselines of the packaged Fashion-MNIST teacher
    python scripts/train_students.py fashion-mnist-e2e   # Singh et al. end-to-end baselines (no teacher)
    python scripts/train_students.py efficientnet-bq     # CR+BQ baselines at the EfficientNet-Lite0 student's split
    python scripts/train_students.py efficientnet-e2e    # end-to-end baselines of the EfficientNet-Lite0 student
    python scripts/train_students.py efficientnet --quick --out /tmp/w --run-dir /tmp/r   # pipeline check

Deterministic (fixed seeds, one thread). Prints a rate-accuracy table and writes the figures as JSON
(``--results``), from which the models.yaml entries are filled in. ``--evaluate-only`` re-measures the
checkpoints already in ``--out``. The EfficientNet run saves its progress in ``--run-dir`` every few
minutes and prints its losses and held-out figures; rerun the same command to resume.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sc2edge.zoo import training as tr
from sc2edge.zoo.bq import CrBqEfficientNetLite0, CrBqFashionMNIST, cr_bq_from_teacher
from sc2edge.zoo.checkpoint import load_into, read_state_dict
from sc2edge.zoo.datasets import evaluation_crops, fashion_mnist, split_photos, training_images
from sc2edge.zoo.efficientnet_student import (
    EntropicStudentEfficientNetLite0,
    LiteHead,
    efficientnet_lite0_teacher,
    teacher_weights_path,
)
from sc2edge.zoo.fashion_mnist import EntropicStudentFashionMNIST, FashionTeacher, student_from_teacher
from sc2edge.zoo.registry import IMAGENET_CLASS_FILE

WEIGHTS = Path(__file__).resolve().parents[1] / "zoo" / "weights"
BETAS = (0.1, 0.4, 1.6)  # Fashion-MNIST: low to high rate penalty; the first also trains the shared start
BQ_CHANNELS = (1, 2, 4)  # Fashion-MNIST CR+BQ: bottleneck widths (latent N x 14 x 14, N * 196 + 5 bytes)
LITE0_BETAS = (1.6, 3.2, 6.4)  # EfficientNet: the smallest is trained in full, the others fine-tuned from it
RECIPE_DEFAULTS = {
    "fashion-mnist": {"shared_steps": 600, "stage1_steps": 200, "stage2_steps": 150, "batch_size": 128, "lr": 3e-3},
    "fashion-mnist-bq": {"stage1_steps": 400, "stage2_steps": 300, "batch_size": 128, "lr": 3e-3},
    "fashion-mnist-e2e": {"shared_steps": 800, "stage1_steps": 400, "batch_size": 128, "lr": 3e-3},
    # the EfficientNet baselines get the Entropic Student's budget: 150 + 120 steps, the E2E's in one stage per beta
    "efficientnet-bq": {"stage1_steps": 150, "stage2_steps": 120, "batch_size": 8, "lr": 1e-3},
    "efficientnet-e2e": {"stage1_steps": 270, "batch_size": 8, "lr": 2e-3},
    "efficientnet": {"stage1_steps": 150, "stage2_steps": 120, "finetune_stage1_steps": 60,
                     "finetune_stage2_steps": 60, "batch_size": 8, "lr": 2e-3},
}
QUICK = {"shared_steps": 4, "stage1_steps": 3, "stage2_steps": 3, "finetune_stage1_steps": 2,
         "finetune_stage2_steps": 2, "teacher_steps": 5, "batch_size": 4, "sizes": [64], "frames_per_video": 2,
         "crops_per_photo": 2, "eval_every": 2, "log_every": 1}
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
                                lr=args.lr, label_weight=label_weight, seed=args.seed,
                                stage2_end_to_end=False) for b in args.betas]
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


def _fashion_data(args) -> tuple:
    """Training batches, test images and labels, the packaged teacher and its test predictions."""
    train_x, train_y = _fashion_tensors("train")
    test_x, test_y = _fashion_tensors("test")
    teacher = FashionTeacher()
    load_into(teacher, read_state_dict(WEIGHTS / "fashion_mnist_teacher.safetensors"))
    teacher.eval()
    batches = tr.ArrayBatches(train_x, train_y, args.batch_size, seed=args.seed, flip=True)
    return batches, test_x, test_y, teacher, tr.predict(teacher, test_x, 500).argmax(1)


def _test_figures(model, test_x, test_y, teacher_top1) -> dict:
    top1 = tr.predict(model, test_x, 500).argmax(1)  # eval forward: the receiver's path (quantized latent)
    return {"test_accuracy": round(float((top1 == test_y).float().mean()), 4),
            "agreement_with_teacher": round(float((top1 == teacher_top1).float().mean()), 4)}


def fashion_bq(args: argparse.Namespace) -> dict:
    """CR+BQ students of the packaged teacher, one per bottleneck width (head network distillation, then 8-bit
    quantization); bytes per image = the stream payload (scale, zero point, uint8 values)."""
    from sc2edge.runtime.bq import pack, quantize

    batches, test_x, test_y, teacher, teacher_top1 = _fashion_data(args)
    results: dict = {"students": {}}
    for channels in args.channels:
        name = f"cr_bq_fashion_mnist_b{channels}ch.safetensors"
        if args.evaluate_only:
            student = CrBqFashionMNIST(bottleneck_channels=channels)
            load_into(student, read_state_dict(args.out / name))
            entry: dict = {}
        else:
            student = cr_bq_from_teacher(teacher, channels)
            cfg = tr.StudentConfig(beta=0.0, stage1_steps=args.stage1_steps, stage2_steps=args.stage2_steps,
                                   lr=args.lr, label_weight=1.0, seed=args.seed)
            stage1, stage2 = tr.train_bottleneck_distillation(student, teacher.head, teacher, batches, cfg)
            entry = {**tr.summarize(cfg, stage1, stage2), "batch_size": args.batch_size}
            entry["sha256"] = tr.save_checkpoint(student, args.out / name, entry)
        student.eval()
        with torch.no_grad():
            chunks = [test_x[i: i + 500] for i in range(0, len(test_x), 500)]
            latents = torch.cat([student.bottleneck_layer.encoder(x) for x in chunks]).numpy()
            float_top1 = torch.cat([student.forward_tail(student.bottleneck_layer(x)) for x in chunks])
        entry.update(file=name, **_test_figures(student, test_x, test_y, teacher_top1),
                     test_accuracy_unquantized=round(float((float_top1.argmax(1) == test_y).float().mean()), 4),
                     bytes_per_image=round(float(np.mean([len(pack(quantize(z))) for z in latents])), 1),
                     encoder_macs=tr.count_macs(student.bottleneck_layer.encoder, (1, 1, 28, 28)))
        results["students"][f"b{channels}ch"] = entry
        print(f"CR+BQ {channels} ch: test accuracy {entry['test_accuracy']} (unquantized "
              f"{entry['test_accuracy_unquantized']}), {entry['bytes_per_image']} B/image", flush=True)
    return results


def fashion_e2e(args: argparse.Namespace) -> dict:
    """Singh et al.'s end-to-end students: the Entropic Student architecture, tail included, trained from scratch
    on labels + beta * rate (no teacher): a shared start at the first beta, then each beta on its own."""
    batches, test_x, test_y, teacher, teacher_top1 = _fashion_data(args)
    path_of = lambda b: args.out / f"e2e_fashion_mnist_{_beta_tag(b)}.safetensors"  # noqa: E731
    results: dict = {"students": {}}
    trained = []
    if args.evaluate_only:
        for beta in args.betas:
            student = EntropicStudentFashionMNIST()
            load_into(student, read_state_dict(path_of(beta)))
            trained.append((beta, student, {}))
    else:
        torch.manual_seed(args.seed)
        base = EntropicStudentFashionMNIST()
        tr.init_latent_scale(base, batches()[0])
        configs = [tr.StudentConfig(beta=b, stage1_steps=args.stage1_steps, stage2_steps=0, lr=args.lr,
                                    seed=args.seed) for b in args.betas]
        shared = tr.train_end_to_end(base, batches, replace(configs[0], stage1_steps=args.shared_steps))
        for cfg in configs:
            student = copy.deepcopy(base)
            log = tr.train_end_to_end(student, batches, cfg)
            entry = {**tr.summarize(cfg, log, tr.StageLog()), "batch_size": args.batch_size,
                     "shared_start": {"beta": args.betas[0], "steps": args.shared_steps,
                                      "seconds": round(shared.seconds, 1)}}
            entry["sha256"] = tr.save_checkpoint(student, path_of(cfg.beta), entry)
            trained.append((cfg.beta, student, entry))
    for beta, student, entry in trained:
        entry.update(file=path_of(beta).name, **_test_figures(student, test_x, test_y, teacher_top1),
                     bytes_per_image=round(float(np.mean(tr.stream_bytes(student, test_x, 500))), 1))
        results["students"][_beta_tag(beta)] = entry
        print(f"end-to-end beta {beta:g}: test accuracy {entry['test_accuracy']}, {entry['bytes_per_image']} B/image",
              flush=True)
    return results


def _lite0_student(args, teacher) -> EntropicStudentEfficientNetLite0:
    return EntropicStudentEfficientNetLite0(latent_channels=args.latent_channels, latent_stride=args.latent_stride,
                                            teacher=teacher)


def _efficientnet_students(args, teacher, head, batches, evaluate) -> list:
    """(beta, student, entry) per beta. Stage 1 runs in full at the highest-rate beta (the smallest); each
    other beta fine-tunes that stage-1 result with its own rate term (a CPU hour does not fit three full
    runs); stage 2 (KD + rate) then starts from each beta's own stage-1 result. Past the first stage 1 the
    betas are independent, so processes sharing ``--run-dir`` can train them in parallel (``--stage2-betas``;
    each process lists the first beta and its own). Each stage resumes from ``--run-dir`` if a run stopped."""
    path_of = lambda b: args.out / f"es_efficientnet_lite0_{_beta_tag(b)}.safetensors"  # noqa: E731
    if args.evaluate_only:
        out = []
        for beta in args.betas:
            student = _lite0_student(args, teacher)
            load_into(student, read_state_dict(path_of(beta)))
            out.append((beta, student, {}))
        return out

    def resume(name: str, model) -> tr.Resume:
        return tr.Resume(args.run_dir / f"{name}.pt", every_s=args.save_every, log_every=args.log_every,
                         evaluate=lambda: json.dumps(evaluate(model)), evaluate_every=args.eval_every)

    betas = sorted(args.betas)
    base = tr.StudentConfig(beta=betas[0], stage1_steps=args.stage1_steps, stage2_steps=args.stage2_steps,
                            lr=args.lr, seed=args.seed, stage2_lr_factor=args.stage2_lr_factor)
    student = _lite0_student(args, teacher)
    student.init_from_features(batches()[0], std=args.init_std)
    chain = []  # (config, model after stage 1, stage-1 log, parent beta)
    for index, beta in enumerate(betas):
        cfg = base if index == 0 else replace(base, beta=beta, stage1_steps=args.finetune_stage1_steps,
                                               stage2_steps=args.finetune_stage2_steps)
        model = student if index == 0 else copy.deepcopy(chain[0][1])
        s1 = tr.train_stage1(model, head, batches, cfg, resume=resume(f"stage1_{_beta_tag(beta)}", model))
        chain.append((cfg, model, s1, None if index == 0 else betas[0]))
    out = []
    for cfg, stage1_model, s1, parent in chain:
        if args.stage2_betas and cfg.beta not in args.stage2_betas:
            continue
        model = copy.deepcopy(stage1_model)
        s2 = tr.train_stage2(model, teacher, batches, cfg, resume=resume(f"stage2_{_beta_tag(cfg.beta)}", model))
        model.update(force=True)
        entry = {**tr.summarize(cfg, s1, s2), "batch_size": args.batch_size, "train_sizes": args.sizes,
                 "latent_channels": args.latent_channels, "latent_stride": args.latent_stride,
                 "fine_tuned_from": None if parent is None else f"{_beta_tag(parent)} after stage 1"}
        entry["sha256"] = tr.save_checkpoint(model, path_of(cfg.beta), entry)
        out.append((cfg.beta, model, entry))
    return out


def efficientnet(args: argparse.Namespace) -> dict:
    teacher = efficientnet_lite0_teacher()
    head = LiteHead(teacher)
    train_paths, held_paths = split_photos()
    preprocess = {"resize": 256, "crop": 224, "mean": [LITE0_MEAN] * 3, "std": [LITE0_STD] * 3}
    inputs = torch.from_numpy(evaluation_crops(held_paths, args.crops_per_photo, preprocess, seed=args.seed))
    teacher_top1 = tr.predict(teacher, inputs, 32).argmax(1)
    names = IMAGENET_CLASS_FILE.read_text().splitlines() if IMAGENET_CLASS_FILE.is_file() else None
    centre = teacher_top1[:: args.crops_per_photo].tolist()
    images = training_images(frames_per_video=args.frames_per_video)
    results: dict = {
        "teacher_weights": teacher_weights_path(),
        "held_out_photos": [p.name for p in held_paths],
        "train_images": dict(sorted(Counter(source for source, _ in images).items())),
        "crops_per_photo": args.crops_per_photo,
        "teacher_top1_centre_crop": {
            p.name: names[c] if names else c for p, c in zip(held_paths, centre, strict=True)
        },
        "teacher_head_macs": tr.count_macs(head, (1, 3, 224, 224)),
        "students": {},
    }
    print(f"training images: {len(images)} {results['train_images']}", flush=True)
    batches = tr.PhotoCrops([img for _, img in images], args.sizes, args.batch_size, preprocess["mean"],
                            preprocess["std"], seed=args.seed)
    # the learning curve reads the first 4 crops of each photo (centre crop first): a quarter of the cost
    curve = min(4, args.crops_per_photo)
    pick = (torch.arange(len(inputs)) % args.crops_per_photo) < curve
    evaluate = lambda model: tr.held_out_figures(model, inputs[pick], teacher_top1[pick], curve)  # noqa: E731
    for beta, student, entry in _efficientnet_students(args, teacher, head, batches, evaluate):
        logits = tr.predict(student, inputs, 32)
        top5 = logits.topk(5, dim=1).indices
        agree = logits.argmax(1) == teacher_top1
        entry.update(
            file=f"es_efficientnet_lite0_{_beta_tag(beta)}.safetensors",
            top1_agreement=round(float(agree.float().mean()), 4),
            top1_agreement_centre=round(float(agree[:: args.crops_per_photo].float().mean()), 4),
            top5_contains_teacher_top1=round(float((top5 == teacher_top1[:, None]).any(1).float().mean()), 4),
            bytes_per_image=round(float(np.mean(tr.stream_bytes(student, inputs, 32))), 1),
            bytes_per_image_centre=round(float(np.mean(tr.stream_bytes(student, inputs[:: args.crops_per_photo]))), 1),
            encoder_macs=tr.count_macs(student.bottleneck_layer.encoder, (1, 3, 224, 224)),
        )
        results["students"][_beta_tag(beta)] = entry
        print(f"beta {beta:g}: top-1 agreement {entry['top1_agreement']} (centre {entry['top1_agreement_centre']}),"
              f" {entry['bytes_per_image']} B/image", flush=True)
    return results


def _lite0_baseline_data(args) -> tuple:
    """The EfficientNet-Lite0 baselines' teacher, its head, training crops and the held-out evaluation crops with
    the teacher's top-1 on them: the Entropic Student's data and protocol (``efficientnet``)."""
    teacher = efficientnet_lite0_teacher()
    preprocess = {"resize": 256, "crop": 224, "mean": [LITE0_MEAN] * 3, "std": [LITE0_STD] * 3}
    inputs = torch.from_numpy(evaluation_crops(split_photos()[1], args.crops_per_photo, preprocess, seed=args.seed))
    images = training_images(frames_per_video=args.frames_per_video)
    batches = tr.PhotoCrops([img for _, img in images], args.sizes, args.batch_size, preprocess["mean"],
                            preprocess["std"], seed=args.seed)
    return teacher, LiteHead(teacher), batches, inputs, tr.predict(teacher, inputs, 32).argmax(1)


def _resume(args, name: str) -> tr.Resume:
    """Where a baseline's stage saves its progress in ``--run-dir`` (a rerun of the same command resumes)."""
    return tr.Resume(args.run_dir / f"{name}.pt", every_s=args.save_every, log_every=args.log_every)


def _lite0_figures(model, inputs, teacher_top1, per_photo: int) -> dict:
    """Held-out agreement with the teacher through the receiver's path (eval forward: the quantized latent)."""
    agree = tr.predict(model, inputs, 32).argmax(1) == teacher_top1
    return {"top1_agreement": round(float(agree.float().mean()), 4),
            "top1_agreement_centre": round(float(agree[::per_photo].float().mean()), 4)}


def _lite0_baselines(args, label: str, tags: list[str], path_of: Callable[[str], Path],
                     make: Callable[[str], nn.Module], train: Callable[[nn.Module, str], dict],
                     measure: Callable[[nn.Module], dict], data: tuple) -> dict:
    """Train (or with ``--evaluate-only`` load) one EfficientNet-Lite0 baseline per setting ``tag`` from the
    student's principal-component start, save it, and measure it on the held-out crops of ``data``."""
    _, _, batches, inputs, teacher_top1 = data
    results: dict = {"students": {}}
    for tag in tags:
        student = make(tag)
        if args.evaluate_only:
            load_into(student, read_state_dict(path_of(tag)))
            entry: dict = {}
        else:
            student.init_from_features(batches()[0], std=args.init_std)
            entry = {**train(student, tag), "batch_size": args.batch_size, "train_sizes": args.sizes,
                     "latent_stride": args.latent_stride}
            entry["sha256"] = tr.save_checkpoint(student, path_of(tag), entry)
        student.eval()
        entry.update(file=path_of(tag).name, **_lite0_figures(student, inputs, teacher_top1, args.crops_per_photo),
                     **measure(student), encoder_macs=tr.count_macs(student.bottleneck_layer.encoder, (1, 3, 224, 224)))
        results["students"][tag] = entry
        print(f"{label} {tag}: top-1 agreement {entry['top1_agreement']} (centre "
              f"{entry['top1_agreement_centre']}), {entry['bytes_per_image']} B/image", flush=True)
    return results


def efficientnet_bq(args: argparse.Namespace) -> dict:
    """CR+BQ baselines of EfficientNet-Lite0 at the Entropic Student's split, one per bottleneck width: the
    student's encoder/decoder with a narrow 8-bit latent (principal-component start, head network distillation,
    quantization after training); bytes per image = the payload (scale, zero point, N x 28 x 28 uint8 at
    ``--latent-stride`` 8)."""
    from sc2edge.runtime.bq import pack, quantize

    data = _lite0_baseline_data(args)
    teacher, head, batches, inputs, _ = data

    def train(student: nn.Module, tag: str) -> dict:
        cfg = tr.StudentConfig(beta=0.0, stage1_steps=args.stage1_steps, stage2_steps=args.stage2_steps,
                               lr=args.lr, seed=args.seed, stage2_lr_factor=0.5)
        saves = (_resume(args, f"bq_{tag}_stage1"), _resume(args, f"bq_{tag}_stage2"))
        return tr.summarize(cfg, *tr.train_bottleneck_distillation(student, head, teacher, batches, cfg,
                                                                   resume=saves))

    @torch.no_grad()
    def measure(student: nn.Module) -> dict:
        latents = torch.cat([student.bottleneck_layer.encoder(inputs[i: i + 32])
                             for i in range(0, len(inputs), 32)]).numpy()
        return {"bytes_per_image": round(float(np.mean([len(pack(quantize(z))) for z in latents])), 1)}

    return _lite0_baselines(
        args, "CR+BQ", [f"b{c}ch" for c in args.channels],
        lambda tag: args.out / f"cr_bq_efficientnet_lite0_{tag}.safetensors",
        lambda tag: CrBqEfficientNetLite0(bottleneck_channels=int(tag[1:-2]), latent_stride=args.latent_stride,
                                          teacher=teacher),
        train, measure, data)


def efficientnet_e2e(args: argparse.Namespace) -> dict:
    """Singh et al.'s end-to-end baseline of EfficientNet-Lite0: the Entropic Student's architecture and start,
    trained in one stage on cross-entropy + beta * rate, without distillation (no feature mimicking, no soft
    targets). The photos have no labels, so the labels are the teacher's top-1 on each training crop; the tail is
    the teacher's (frozen: checkpoints hold the bottleneck only), as in the student."""
    data = _lite0_baseline_data(args)
    teacher, _, batches, inputs, _ = data
    beta_of = {_beta_tag(beta): beta for beta in args.betas}

    def labelled() -> tr.Batch:
        x, _ = batches()
        with torch.no_grad():
            return x, teacher(x).argmax(1)

    def train(student: nn.Module, tag: str) -> dict:
        cfg = tr.StudentConfig(beta=beta_of[tag], stage1_steps=args.stage1_steps, stage2_steps=0, lr=args.lr,
                               seed=args.seed)
        log = tr.train_end_to_end(student, labelled, cfg, trainable=student.bottleneck_layer,
                                  resume=_resume(args, f"e2e_{tag}"))
        return {**tr.summarize(cfg, log, tr.StageLog()), "latent_channels": args.latent_channels,
                "labels": "teacher top-1 (hard pseudo-labels)"}

    return _lite0_baselines(
        args, "end-to-end", list(beta_of), lambda tag: args.out / f"e2e_efficientnet_lite0_{tag}.safetensors",
        lambda tag: _lite0_student(args, teacher), train,
        lambda student: {"bytes_per_image": round(float(np.mean(tr.stream_bytes(student, inputs, 32))), 1)}, data)


RECIPES = {"fashion-mnist": fashion, "fashion-mnist-bq": fashion_bq, "fashion-mnist-e2e": fashion_e2e,
           "efficientnet": efficientnet, "efficientnet-bq": efficientnet_bq, "efficientnet-e2e": efficientnet_e2e}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipe", choices=list(RECIPES))
    parser.add_argument("--betas", type=float, nargs="+", help=f"default: {BETAS}, EfficientNet {LITE0_BETAS}")
    parser.add_argument("--channels", type=int, nargs="+", default=list(BQ_CHANNELS),
                        help="fashion-mnist-bq, efficientnet-bq: bottleneck widths")
    parser.add_argument("--out", type=Path, default=WEIGHTS, help="where the .safetensors files go")
    parser.add_argument("--results", type=Path, help="write the figures here as JSON")
    parser.add_argument("--shared-steps", type=int, help="stage-1 steps shared by all betas (at the first)")
    parser.add_argument("--stage1-steps", type=int, help="stage-1 steps per beta after the shared ones")
    parser.add_argument("--stage2-steps", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--teacher-steps", type=int, default=940, help="Fashion-MNIST teacher steps (2 epochs)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--finetune-stage1-steps", type=int, help="EfficientNet: stage-1 steps of each lower-rate beta")
    parser.add_argument("--finetune-stage2-steps", type=int, help="EfficientNet: stage-2 steps of each lower-rate beta")
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 128], help="EfficientNet training crops (px)")
    parser.add_argument("--latent-channels", type=int, default=24, help="EfficientNet: latent channels")
    parser.add_argument("--latent-stride", type=int, default=8, choices=(4, 8), help="EfficientNet: latent stride")
    parser.add_argument("--stage2-lr-factor", type=float, default=0.2,
                        help="EfficientNet: stage 2's learning rate over stage 1's")
    parser.add_argument("--stage2-betas", type=float, nargs="+",
                        help="EfficientNet: stage 2 (and figures) of these betas only; once the first beta's stage 1 "
                             "is in --run-dir, processes sharing it can so train the other betas in parallel")
    parser.add_argument("--init-std", type=float, default=2.0, help="EfficientNet: the latent's starting std")
    parser.add_argument("--frames-per-video", type=int, default=40, help="EfficientNet: frames of each video")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/efficientnet"),
                        help="EfficientNet: where stages save progress; a rerun resumes from it")
    parser.add_argument("--save-every", type=float, default=180.0, help="seconds between progress saves")
    parser.add_argument("--log-every", type=int, default=10, help="steps between loss lines")
    parser.add_argument("--eval-every", type=int, default=40, help="steps between held-out figures")
    parser.add_argument("--quick", action="store_true", help="a few steps on tiny crops: checks the pipeline")
    parser.add_argument("--crops-per-photo", type=int, default=16, help="EfficientNet evaluation crops")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--evaluate-only", action="store_true")
    args = parser.parse_args(argv)
    defaults = {**RECIPE_DEFAULTS[args.recipe], **(QUICK if args.quick else {}),
                "betas": list(LITE0_BETAS if args.recipe.startswith("efficientnet") else BETAS)}
    for key, value in defaults.items():
        if getattr(args, key, None) is None or (args.quick and key in QUICK):
            setattr(args, key, value)
    torch.set_num_threads(args.threads)
    start, cpu_start = time.perf_counter(), time.process_time()
    results = RECIPES[args.recipe](args)
    results.update(seconds=round(time.perf_counter() - start, 1), cpu_seconds=round(time.process_time() - cpu_start),
                   threads=args.threads, torch=torch.__version__)
    print(f"total {results['seconds']:.0f} s wall, {results['cpu_seconds']} s CPU, {args.threads} thread(s)")
    if args.results:
        args.results.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
