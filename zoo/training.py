"""Two-stage Entropic Student training (Matsubara et al., WACV 2022, section 3), scaled down for a CPU.

Stage 1 (no labels): the encoder, entropy bottleneck and decoder learn to reproduce the teacher's features
at the split point and at later stages of the frozen tail (squared error relative to each map's variance),
with ``beta`` weighting the rate (bits per input pixel from the bottleneck's likelihoods); the
bottleneck's quantiles follow their own aux loss and optimizer.
Stage 2: encoder and bottleneck are frozen, and the decoder is fine-tuned on the quantized latent (what a
receiver gets) to match the teacher's output distribution (KD), plus cross-entropy where labels exist.

Students expose ``tail_features(z) -> [feature maps..., logits]`` and the caller passes the teacher's head
(the layers the encoder replaces), so the stage-1 targets are ``[head(x), *tail_features(head(x))]``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from sc2edge._files import sha256_file
from sc2edge.errors import Sc2edgeError
from sc2edge.zoo.datasets import load_rgb, normalize, random_resized_crop
from sc2edge.zoo.entropic_student import SplitClassifier

Batch = tuple[Tensor, Tensor | None]  # normalised images, labels (None for unlabelled photos)


@dataclass(frozen=True)
class StudentConfig:
    """Hyper-parameters of one student's two stages."""

    beta: float
    stage1_steps: int
    stage2_steps: int
    lr: float = 1e-3
    aux_lr: float = 1e-3
    density_lr_factor: float = 10.0  # the bottleneck's density starts far too wide; let it fit fast
    stage2_lr_factor: float = 0.1  # stage 2 only nudges the decoder: at the stage-1 rate KD through the
    # frozen tail drove the inverse-GDN decoder away from the teacher's features (split error 0.5 -> 5.8)
    temperature: float = 1.0  # KD softmax temperature in stage 2
    label_weight: float = 0.0  # weight of cross-entropy with labels in stage 2 (labelled data only)
    seed: int = 0

    def validate(self) -> None:
        if min(self.beta, self.stage1_steps, self.stage2_steps) < 0 or min(self.lr, self.aux_lr) <= 0:
            raise Sc2edgeError(f"invalid training configuration: {self}")


@dataclass
class StageLog:
    """Per-step figures of one stage, for progress reports and the loss-falls test."""

    loss: list[float] = field(default_factory=list)
    bpp: list[float] = field(default_factory=list)
    seconds: float = 0.0


class PhotoCrops:
    """An endless source of random resized, flipped photo crops (each photo decoded once, shrunk)."""

    def __init__(
        self,
        paths: Sequence[Path],
        size: int,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int,
        max_side: int = 768,
    ):
        if not paths:
            raise Sc2edgeError("no training photos")
        self.images = [load_rgb(p, max_side=max_side) for p in paths]
        self.size, self.batch_size, self.mean, self.std = size, batch_size, mean, std
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> Batch:
        picks = self.rng.integers(0, len(self.images), self.batch_size)
        crops = np.stack([random_resized_crop(self.images[i], self.size, self.rng) for i in picks])
        return torch.from_numpy(normalize(crops, self.mean, self.std)), None


class ArrayBatches:
    """Shuffled passes over an in-memory labelled set (N, C, H, W), with optional horizontal flips."""

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, seed: int, flip: bool = False):
        self.images, self.labels, self.batch_size, self.flip = images, labels, batch_size, flip
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.position = torch.empty(0, dtype=torch.long), 0

    def __call__(self) -> Batch:
        if self.position + self.batch_size > len(self.order):
            self.order, self.position = torch.randperm(len(self.images), generator=self.generator), 0
        index = self.order[self.position: self.position + self.batch_size]
        self.position += self.batch_size
        x = self.images[index]
        if self.flip:
            mask = torch.rand(len(index), generator=self.generator) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return x, self.labels[index]


def _set_trainable(model: nn.Module, trainable: Sequence[nn.Module]) -> None:
    """Freeze everything (eval mode: BN statistics and drop-connect off) except ``trainable``."""
    model.eval().requires_grad_(False)
    for module in trainable:
        module.train().requires_grad_(True)


def rate_bpp(likelihoods: Tensor, x: Tensor) -> Tensor:
    """Bits per input pixel of a batch: the rate term the paper weights by beta."""
    return -torch.log2(likelihoods).sum() / (x.shape[0] * x.shape[2] * x.shape[3])


def relative_mse(output: Tensor, target: Tensor) -> Tensor:
    """MSE over the target's variance: feature maps of very different scales (a 24-channel block output, the
    1280-channel head) weigh alike, and beta means the same trade-off for every model."""
    return F.mse_loss(output, target) / target.var().clamp_min(1e-8)


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton et al.'s knowledge distillation: KL(teacher || student) at ``temperature``, scaled by T^2."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                    reduction="batchmean", log_target=True) * t * t


def _progress(steps: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(range(steps), desc=desc, disable=not enabled, mininterval=10.0, dynamic_ncols=False)


def train_stage1(
    model: SplitClassifier, teacher_head: nn.Module, batches: Callable[[], Batch], cfg: StudentConfig,
    progress: bool = True,
) -> StageLog:
    """Feature mimicking at the split and at each of the tail's feature maps, plus beta * rate."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    layer = model.bottleneck_layer
    _set_trainable(model, [layer])
    teacher_head.eval().requires_grad_(False)
    named = list(layer.named_parameters())
    density = [p for n, p in named if n.startswith("entropy_bottleneck.") and not n.endswith("quantiles")]
    transforms = [p for n, p in named if not n.startswith("entropy_bottleneck.")]
    main = torch.optim.Adam([{"params": transforms}, {"params": density, "lr": cfg.lr * cfg.density_lr_factor}],
                            lr=cfg.lr)
    aux = torch.optim.Adam([p for n, p in named if n.endswith("quantiles")], lr=cfg.aux_lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(main, max(cfg.stage1_steps, 1), eta_min=cfg.lr / 20)
    log, start = StageLog(), time.perf_counter()
    bar = _progress(cfg.stage1_steps, f"stage 1 beta={cfg.beta:g}", progress)
    for _ in bar:
        x, _ = batches()
        with torch.no_grad():
            split = teacher_head(x)
            targets = [split, *model.tail_features(split)[:-1]]
        z, likelihoods = layer(x)
        outputs = [z, *model.tail_features(z)[:-1]]
        distortion = sum(relative_mse(o, t) for o, t in zip(outputs, targets, strict=True))
        bpp = rate_bpp(likelihoods, x)
        loss = distortion + cfg.beta * bpp
        main.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_([p for _, p in named], 1.0)
        main.step()
        schedule.step()
        aux.zero_grad()
        model.aux_loss().backward()
        aux.step()
        log.loss.append(loss.item())
        log.bpp.append(bpp.item())
        bar.set_postfix(loss=f"{log.loss[-1]:.4f}", bpp=f"{log.bpp[-1]:.3f}", refresh=False)
    log.seconds = time.perf_counter() - start
    return log


def train_stage2(
    model: SplitClassifier, teacher: nn.Module, batches: Callable[[], Batch], cfg: StudentConfig,
    progress: bool = True,
) -> StageLog:
    """Decoder fine-tuning on the quantized latent, against the teacher's logits (and labels, if weighted)."""
    cfg.validate()
    torch.manual_seed(cfg.seed + 1)
    layer = model.bottleneck_layer
    _set_trainable(model, [layer.decoder])
    teacher.eval().requires_grad_(False)
    lr = cfg.lr * cfg.stage2_lr_factor
    opt = torch.optim.Adam(layer.decoder.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(cfg.stage2_steps, 1), eta_min=lr / 20)
    log, start = StageLog(), time.perf_counter()
    bar = _progress(cfg.stage2_steps, f"stage 2 beta={cfg.beta:g}", progress)
    for _ in bar:
        x, labels = batches()
        with torch.no_grad():
            teacher_logits = teacher(x)
            y_hat = layer.received_latent(x)
        logits = model.forward_tail(layer.decoder(y_hat))
        loss = kd_loss(logits, teacher_logits, cfg.temperature)
        if labels is not None and cfg.label_weight > 0:
            loss = loss + cfg.label_weight * F.cross_entropy(logits, labels.long())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(layer.decoder.parameters(), 1.0)
        opt.step()
        schedule.step()
        log.loss.append(loss.item())
        bar.set_postfix(loss=f"{log.loss[-1]:.4f}", refresh=False)
    log.seconds = time.perf_counter() - start
    return log


def train_student(
    model: SplitClassifier, teacher_head: nn.Module, teacher: nn.Module, batches: Callable[[], Batch],
    cfg: StudentConfig, progress: bool = True,
) -> tuple[StageLog, StageLog]:
    """Both stages, then the entropy tables (``update(force=True)``) so the model can compress."""
    stage1 = train_stage1(model, teacher_head, batches, cfg, progress)
    stage2 = train_stage2(model, teacher, batches, cfg, progress)
    model.update(force=True)
    return stage1, stage2


@torch.no_grad()
def init_latent_scale(model: SplitClassifier, x: Tensor, std: float = 4.0) -> None:
    """Scale the encoder's last conv so the latent starts at ``std`` on ``x``, well above the unit
    quantization step: at the default init it is about 0.1, drowned by the training noise, and the decoder
    gets nothing to learn from for many steps."""
    last = [m for m in model.bottleneck_layer.encoder.modules() if isinstance(m, nn.Conv2d)][-1]
    last.weight.mul_(std / model.bottleneck_layer.encoder(x).std().clamp_min(1e-8))


@dataclass
class SweepResult:
    beta: float
    model: SplitClassifier
    config: StudentConfig
    stage1: StageLog
    stage2: StageLog


def train_sweep(
    base: SplitClassifier, teacher_head: nn.Module, teacher: nn.Module, batches: Callable[[], Batch],
    configs: Sequence[StudentConfig], shared_steps: int, progress: bool = True,
) -> tuple[StageLog, list[SweepResult]]:
    """Students for several betas from one shared start: stage 1 at the first config's beta for
    ``shared_steps``, then for each config its own stage-1 steps at its beta, stage 2, and the tables.

    Learning to mimic the teacher is the slow part and is the same for every beta; the rate settles in a few
    hundred steps. (The paper trains each beta from scratch, with far more compute than a CPU has.)
    """
    init_latent_scale(base, batches()[0])
    shared = train_stage1(base, teacher_head, batches, replace(configs[0], stage1_steps=shared_steps), progress)
    results = []
    for cfg in configs:
        model = copy.deepcopy(base)
        stage1, stage2 = train_student(model, teacher_head, teacher, batches, cfg, progress)
        results.append(SweepResult(cfg.beta, model, cfg, stage1, stage2))
    return shared, results


def train_classifier(
    model: nn.Module, batches: Callable[[], Batch], steps: int, lr: float, seed: int, progress: bool = True
) -> StageLog:
    """Plain supervised training (the Fashion-MNIST teacher): cross-entropy, Adam, cosine decay."""
    torch.manual_seed(seed)
    model.train().requires_grad_(True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=lr / 20)
    log, start = StageLog(), time.perf_counter()
    bar = _progress(steps, "teacher", progress)
    for _ in bar:
        x, labels = batches()
        loss = F.cross_entropy(model(x), labels.long())
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        log.loss.append(loss.item())
        bar.set_postfix(loss=f"{log.loss[-1]:.4f}", refresh=False)
    log.seconds = time.perf_counter() - start
    model.eval()
    return log


@torch.no_grad()
def predict(model: nn.Module, inputs: Tensor, batch_size: int = 64) -> Tensor:
    """Logits for ``inputs`` in eval mode, batch by batch."""
    model.eval()
    return torch.cat([model(inputs[i: i + batch_size]) for i in range(0, len(inputs), batch_size)])


@torch.no_grad()
def stream_bytes(model: SplitClassifier, inputs: Tensor, batch_size: int = 64) -> list[int]:
    """Bytes of each input's latent as CompressAI's ``EntropyBottleneck.compress`` writes it (no header)."""
    layer = model.eval().bottleneck_layer
    sizes = []
    for i in range(0, len(inputs), batch_size):
        sizes += [len(s) for s in layer.entropy_bottleneck.compress(layer.encoder(inputs[i: i + batch_size]))]
    return sizes


def count_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of convolutions and matmuls (GDN's 1x1 conv included; elementwise ops are not)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.zeros(*input_shape))
    return counter.get_total_flops() // 2


def checkpoint_state(model: nn.Module) -> dict[str, Tensor]:
    """The state to save: everything except weights an installed package provides (``external_prefixes``)."""
    external = tuple(getattr(model, "external_prefixes", ()))
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()
            if not (external and k.startswith(external))}


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict) -> str:
    """Write a .safetensors checkpoint with ``meta`` as JSON in its header; returns the file's sha256."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(checkpoint_state(model), str(path), metadata={"sc2edge": json.dumps(meta, sort_keys=True)})
    return sha256_file(path)


def summarize(cfg: StudentConfig, stage1: StageLog, stage2: StageLog) -> dict:
    """The training facts a registry entry records."""
    return {
        "config": asdict(cfg),
        "stage1_seconds": round(stage1.seconds, 1),
        "stage2_seconds": round(stage2.seconds, 1),
        "stage1_final_loss": round(float(np.mean(stage1.loss[-20:])), 5) if stage1.loss else math.nan,
        "stage1_final_train_bpp": round(float(np.mean(stage1.bpp[-20:])), 4) if stage1.bpp else math.nan,
        "stage2_final_loss": round(float(np.mean(stage2.loss[-20:])), 5) if stage2.loss else math.nan,
    }
