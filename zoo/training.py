"""Two-stage Entropic Student training (Matsubara et al., WACV 2022, section 3), scaled down for a CPU.

Stage 1 (no labels): the encoder, entropy bottleneck and decoder learn to reproduce the teacher's features
at the split point and at later stages of the frozen tail (squared error relative to each map's variance),
with ``beta`` weighting the rate (bits per input pixel from the bottleneck's likelihoods); the
bottleneck's quantiles follow their own aux loss and optimizer.
Stage 2: the student is trained end to end to match the teacher's output distribution (KD, plus
cross-entropy where labels exist) with the same ``beta * rate`` term; the decoder sees the rounded latent
(what a receiver gets) through a straight-through estimator. (``stage2_end_to_end=False`` keeps the older
recipe: encoder and bottleneck frozen, decoder only, as the Fashion-MNIST checkpoints were trained.)

Long runs resume: ``Resume`` saves a stage's weights, optimizer, schedule, logs and random states every
few minutes and a rerun continues from there.

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
from PIL import Image
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from sc2edge._files import sha256_file
from sc2edge.errors import Sc2edgeError
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
    stage2_end_to_end: bool = True  # False: decoder only on the frozen encoder's rounded latent
    pretrained_lr_factor: float = 0.1  # encoder layers copied from the teacher move slower than new ones
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
    """An endless source of augmented photo crops: torchvision's RandomResizedCrop (area 8-100 %), flips and
    colour jitter, at a size drawn per batch from ``sizes`` (the student sees objects at several scales).

    The images are decoded once and kept as uint8 tensors. The crops draw from their own random state, so
    a batch does not depend on what training did with torch's, and ``state_dict`` lets a run resume.
    """

    def __init__(
        self,
        images: Sequence[Image.Image],
        sizes: Sequence[int],
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int,
        jitter: float = 0.3,
    ):
        from torchvision.transforms import v2

        if not images:
            raise Sc2edgeError("no training photos")
        self.images = [torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).contiguous()
                       for img in images]
        self.transforms = {size: v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=jitter / 10),
        ]) for size in sizes}
        self.sizes, self.batch_size = list(sizes), batch_size
        self.mean = torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1) * 255
        self.rng_state = torch.Generator().manual_seed(seed).get_state()

    def __call__(self) -> Batch:
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng_state)
            size = self.sizes[int(torch.randint(len(self.sizes), ()))]
            picks = torch.randint(len(self.images), (self.batch_size,)).tolist()
            crops = torch.stack([self.transforms[size](self.images[i]) for i in picks])
            self.rng_state = torch.get_rng_state()
        return (crops.float() - self.mean) / self.std, None

    def state_dict(self) -> dict:
        return {"rng_state": self.rng_state}

    def load_state_dict(self, state: dict) -> None:
        self.rng_state = state["rng_state"]


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

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"], int(state["position"])


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


def _progress(steps: int, desc: str, enabled: bool, start: int = 0) -> tqdm:
    return tqdm(range(start, steps), desc=desc, disable=not enabled, mininterval=10.0, dynamic_ncols=False,
                initial=start, total=steps)


@dataclass
class Resume:
    """Where a stage saves its progress (``path``), how often, and how often it prints its losses.

    The file holds only tensors, numbers and lists, and is read back with ``torch.load(weights_only=True)``.
    """

    path: Path
    every_s: float = 180.0
    log_every: int = 25
    evaluate: Callable[[], str] | None = None  # a held-out figure for the learning curve, every ...
    evaluate_every: int = 0  # ... this many steps (0: never)

    def restore(self, tag: str, model: nn.Module, stateful: Sequence, batches: Callable, log: StageLog) -> int:
        """Load a saved state of stage ``tag`` if there is one; returns the step to continue from."""
        if not self.path.is_file():
            return 0
        state = torch.load(self.path, weights_only=True)
        if state["tag"] != tag:
            raise Sc2edgeError(f"{self.path} holds stage {state['tag']!r}, not {tag!r}: remove it to restart")
        current, resized = model.state_dict(keep_vars=True), {}
        with torch.no_grad():  # in place: the optimizers already hold these very parameters
            for key, value in state["model"].items():
                if current[key].shape == value.shape:
                    current[key].copy_(value)
                else:  # entropy tables, whose size follows the density
                    resized[key] = value
        model.load_state_dict(resized, strict=False)
        for obj, obj_state in zip(stateful, state["stateful"], strict=True):
            obj.load_state_dict(obj_state)
        if hasattr(batches, "load_state_dict"):
            batches.load_state_dict(state["batches"])
        torch.set_rng_state(state["torch_rng"])
        log.loss[:], log.bpp[:], log.seconds = state["loss"], state["bpp"], state["seconds"]
        return int(state["step"])

    def save(self, tag: str, step: int, model: nn.Module, stateful: Sequence, batches: Callable,
             log: StageLog) -> None:
        state = {"tag": tag, "step": step, "model": checkpoint_state(model),
                 "stateful": [obj.state_dict() for obj in stateful],
                 "batches": batches.state_dict() if hasattr(batches, "state_dict") else {},
                 "torch_rng": torch.get_rng_state(), "loss": log.loss, "bpp": log.bpp, "seconds": log.seconds}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        torch.save(state, partial)
        partial.replace(self.path)  # a run killed while saving keeps the previous state


def _run_stage(
    tag: str, steps: int, step_fn: Callable[[], tuple[float, float]], model: nn.Module, stateful: Sequence,
    batches: Callable, progress: bool, resume: Resume | None,
) -> StageLog:
    """The loop both stages share: ``step_fn`` does one optimisation step and returns (loss, bpp)."""
    log = StageLog()
    first = resume.restore(tag, model, stateful, batches, log) if resume else 0
    start, saved = time.perf_counter() - log.seconds, time.perf_counter()
    bar = _progress(steps, tag, progress, first)
    for step in bar:
        loss, bpp = step_fn()
        log.loss.append(loss)
        log.bpp.append(bpp)
        bar.set_postfix(loss=f"{loss:.4f}", bpp=f"{bpp:.3f}", refresh=False)
        log.seconds = time.perf_counter() - start
        if resume and (step + 1) % resume.log_every == 0:
            recent = slice(-resume.log_every, None)
            print(f"{tag} step {step + 1}/{steps} loss {np.mean(log.loss[recent]):.4f} "
                  f"bpp {np.mean(log.bpp[recent]):.4f} {log.seconds:.0f} s", flush=True)
        if resume and resume.evaluate and resume.evaluate_every and (step + 1) % resume.evaluate_every == 0:
            modes = [(m, m.training) for m in model.modules()]
            print(f"{tag} step {step + 1}/{steps} held-out: {resume.evaluate()}", flush=True)
            for m, mode in modes:
                m.train(mode)
        if resume and (time.perf_counter() - saved > resume.every_s or step + 1 == steps):
            resume.save(tag, step + 1, model, stateful, batches, log)
            saved = time.perf_counter()
    log.seconds = time.perf_counter() - start
    return log


def _optimizers(model: SplitClassifier, cfg: StudentConfig, lr: float, trainable: nn.Module) -> tuple:
    """Adam over ``trainable``'s transforms (teacher-initialised encoder layers at ``pretrained_lr_factor``)
    and the bottleneck's density (``density_lr_factor``), a separate Adam for its quantiles (aux loss)."""
    layer = model.bottleneck_layer
    pretrained = {id(p) for m in list(layer.encoder)[: getattr(model, "pretrained_encoder_layers", 0)]
                  for p in m.parameters()}
    named = [(n, p) for n, p in trainable.named_parameters()]
    density = [p for n, p in layer.entropy_bottleneck.named_parameters() if not n.endswith("quantiles")]
    density_ids = {id(p) for p in layer.entropy_bottleneck.parameters()}
    transforms = [p for _, p in named if id(p) not in density_ids]
    groups = [{"params": [p for p in transforms if id(p) not in pretrained]},
              {"params": [p for p in transforms if id(p) in pretrained], "lr": lr * cfg.pretrained_lr_factor}]
    if trainable is layer or trainable is model:
        groups.append({"params": density, "lr": lr * cfg.density_lr_factor})
    main = torch.optim.Adam([g for g in groups if g["params"]], lr=lr)
    aux = torch.optim.Adam([layer.entropy_bottleneck.quantiles], lr=cfg.aux_lr)
    return main, aux


def train_stage1(
    model: SplitClassifier, teacher_head: nn.Module, batches: Callable[[], Batch], cfg: StudentConfig,
    progress: bool = True, resume: Resume | None = None,
) -> StageLog:
    """Feature mimicking at the split and at each of the tail's feature maps, plus beta * rate."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    layer = model.bottleneck_layer
    _set_trainable(model, [layer])
    teacher_head.eval().requires_grad_(False)
    main, aux = _optimizers(model, cfg, cfg.lr, layer)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(main, max(cfg.stage1_steps, 1), eta_min=cfg.lr / 20)

    def step() -> tuple[float, float]:
        x, _ = batches()
        with torch.no_grad():
            split = teacher_head(x)
            targets = [split, *model.tail_features(split)[:-1]]
        z, likelihoods = layer(x)
        outputs = [z, *model.tail_features(z)[:-1]]
        distortion = sum(relative_mse(o, t) for o, t in zip(outputs, targets, strict=True))
        bpp = rate_bpp(likelihoods, x)
        loss = distortion + cfg.beta * bpp
        _update(main, loss, layer.parameters(), schedule)
        _update(aux, model.aux_loss())
        return loss.item(), bpp.item()

    return _run_stage(f"stage1 beta={cfg.beta:g}", cfg.stage1_steps, step, model, [main, aux, schedule],
                      batches, progress, resume)


def _update(opt: torch.optim.Optimizer, loss: Tensor, clip: object = None, schedule: object = None) -> None:
    opt.zero_grad()
    loss.backward()
    if clip is not None:
        nn.utils.clip_grad_norm_(list(clip), 1.0)
    opt.step()
    if schedule is not None:
        schedule.step()


def straight_through_latent(layer: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """(latent rounded as a receiver gets it, with the gradient of the unrounded one; likelihoods)."""
    y = layer.encoder(x)
    _, likelihoods = layer.entropy_bottleneck(y)
    medians = layer.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
    return y + (torch.round(y - medians) + medians - y).detach(), likelihoods


def train_stage2(
    model: SplitClassifier, teacher: nn.Module, batches: Callable[[], Batch], cfg: StudentConfig,
    progress: bool = True, resume: Resume | None = None,
) -> StageLog:
    """KD against the teacher's logits (and labels, if weighted), end to end with beta * rate, or the
    decoder only (``stage2_end_to_end=False``)."""
    cfg.validate()
    torch.manual_seed(cfg.seed + 1)
    layer = model.bottleneck_layer
    trainable = layer if cfg.stage2_end_to_end else layer.decoder
    _set_trainable(model, [trainable])
    teacher.eval().requires_grad_(False)
    lr = cfg.lr * cfg.stage2_lr_factor
    main, aux = _optimizers(model, cfg, lr, trainable)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(main, max(cfg.stage2_steps, 1), eta_min=lr / 20)

    def step() -> tuple[float, float]:
        x, labels = batches()
        with torch.no_grad():
            teacher_logits = teacher(x)
        if cfg.stage2_end_to_end:
            y_hat, likelihoods = straight_through_latent(layer, x)
            bpp = rate_bpp(likelihoods, x)
        else:
            with torch.no_grad():
                y_hat, bpp = layer.received_latent(x), torch.zeros(())
        logits = model.forward_tail(layer.decoder(y_hat))
        loss = kd_loss(logits, teacher_logits, cfg.temperature) + cfg.beta * bpp
        if labels is not None and cfg.label_weight > 0:
            loss = loss + cfg.label_weight * F.cross_entropy(logits, labels.long())
        _update(main, loss, trainable.parameters(), schedule)
        if cfg.stage2_end_to_end:
            _update(aux, model.aux_loss())
        return loss.item(), bpp.item()

    return _run_stage(f"stage2 beta={cfg.beta:g}", cfg.stage2_steps, step, model, [main, aux, schedule],
                      batches, progress, resume)


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


def train_end_to_end(
    model: SplitClassifier, batches: Callable[[], Batch], cfg: StudentConfig, progress: bool = True,
    resume: Resume | None = None, trainable: nn.Module | None = None,
) -> StageLog:
    """Singh et al. (ICIP 2020), the paper's end-to-end baseline: the whole student, tail included, trained on
    labels alone with cross-entropy + ``beta`` * rate (bits per input pixel), through the bottleneck's additive
    noise; no teacher, no distillation. Runs ``cfg.stage1_steps`` steps, then builds the entropy tables.
    ``trainable`` (default: the whole model) limits training to a part, e.g. the bottleneck of a model whose
    tail comes from an installed package and is not saved."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    layer = model.bottleneck_layer
    trainable = model if trainable is None else trainable
    _set_trainable(model, [trainable])
    main, aux = _optimizers(model, cfg, cfg.lr, trainable)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(main, max(cfg.stage1_steps, 1), eta_min=cfg.lr / 20)

    def step() -> tuple[float, float]:
        x, labels = batches()
        features, likelihoods = layer(x)
        bpp = rate_bpp(likelihoods, x)
        loss = F.cross_entropy(model.forward_tail(features), labels.long()) + cfg.beta * bpp
        _update(main, loss, trainable.parameters(), schedule)
        _update(aux, model.aux_loss())
        return loss.item(), bpp.item()

    log = _run_stage(f"end-to-end beta={cfg.beta:g}", cfg.stage1_steps, step, model, [main, aux, schedule],
                     batches, progress, resume)
    model.update(force=True)
    return log


def train_bottleneck_distillation(
    model: nn.Module, teacher_head: nn.Module, teacher: nn.Module, batches: Callable[[], Batch],
    cfg: StudentConfig, progress: bool = True, resume: tuple[Resume, Resume] | None = None,
) -> tuple[StageLog, StageLog]:
    """CR+BQ's training (head network distillation), for a bottleneck without an entropy model: stage 1 mimics the
    teacher's features at the split and in the frozen tail (no rate term: the bottleneck is narrow instead);
    stage 2 fits the teacher's outputs (KD, plus cross-entropy with ``label_weight``) through it. The 8-bit
    quantization is applied after training only, as in the paper. ``resume``: where each stage saves progress."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    layer = model.bottleneck_layer
    teacher_head.eval().requires_grad_(False)
    teacher.eval().requires_grad_(False)

    def stage(tag: str, steps: int, lr: float, loss_of: Callable[[Tensor, Tensor | None], Tensor],
              saves: Resume | None) -> StageLog:
        _set_trainable(model, [layer])
        opt = torch.optim.Adam(layer.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=lr / 20)

        def step() -> tuple[float, float]:
            x, labels = batches()
            loss = loss_of(x, labels)
            _update(opt, loss, layer.parameters(), schedule)
            return loss.item(), 0.0

        return _run_stage(tag, steps, step, model, [opt, schedule], batches, progress, saves)

    def mimic(x: Tensor, _: Tensor | None) -> Tensor:
        with torch.no_grad():
            split = teacher_head(x)
            targets = [split, *model.tail_features(split)[:-1]]
        z = layer(x)
        return sum(relative_mse(o, t) for o, t in zip([z, *model.tail_features(z)[:-1]], targets, strict=True))

    def distil(x: Tensor, labels: Tensor | None) -> Tensor:
        with torch.no_grad():
            teacher_logits = teacher(x)
        logits = model.forward_tail(layer(x))
        loss = kd_loss(logits, teacher_logits, cfg.temperature)
        if labels is not None and cfg.label_weight > 0:
            loss = loss + cfg.label_weight * F.cross_entropy(logits, labels.long())
        return loss

    saves = resume or (None, None)
    stage1 = stage("stage1 (mimic)", cfg.stage1_steps, cfg.lr, mimic, saves[0])
    stage2 = stage("stage2 (KD)", cfg.stage2_steps, cfg.lr * cfg.stage2_lr_factor, distil, saves[1])
    model.eval()
    return stage1, stage2


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
def held_out_figures(model: SplitClassifier, inputs: Tensor, teacher_top1: Tensor, per_photo: int,
                     batch_size: int = 32) -> dict[str, float]:
    """Top-1 agreement with the teacher on the centre crops (every ``per_photo``-th input) and on all crops,
    and the latent's estimated bytes per input (its information content under the current density, without
    building tables): the learning-curve figures."""
    model.eval()
    layer, top1, bits = model.bottleneck_layer, [], []
    for i in range(0, len(inputs), batch_size):
        y = layer.encoder(inputs[i: i + batch_size])
        _, likelihoods = layer.entropy_bottleneck(y)
        bits.append(-torch.log2(likelihoods).flatten(1).sum(1))
        medians = layer.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
        top1.append(model.forward_tail(layer.decoder(torch.round(y - medians) + medians)).argmax(1))
    agree = torch.cat(top1) == teacher_top1
    return {"centre": round(float(agree[::per_photo].float().mean()), 4),
            "crops": round(float(agree.float().mean()), 4),
            "est_bytes": round(float(torch.cat(bits).mean()) / 8, 1)}


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
