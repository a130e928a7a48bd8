"""CompressAI's learned image codecs as input codecs in front of a reference classifier (the paper's baselines).

Ballé et al. 2018 ("bmshj2018-factorized": factorized prior; "bmshj2018-hyperprior": scale hyperprior) and
Minnen et al. 2018 ("mbt2018-mean": mean-scale hyperprior), built with CompressAI's own classes at a quality
level (1..8, CompressAI's channel counts). The device codes the model's crop (zero-padded at the centre to a
multiple of the codec's stride, as CompressAI's evaluation does); the server decodes it with g_s, crops the
reconstruction back, clamps it to [0, 1] and runs the teacher on it. So a learned-codec bundle is a split model
like any other: the factorized one exports like an Entropic Student, the hyperpriors like an mshp student, with
the same deterministic index path on both ends (``export/hyperprior.py``).

Trained weights cannot be downloaded here: without a checkpoint the codec has deterministic random weights
(marked UNTRAINED). ``--checkpoint`` takes a CompressAI state dict (``g_a.0.weight``, ...; as ``compressai.zoo``
or ``compressai.utils.update_model`` write them) or one saved from this model (``bottleneck_layer.*``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from compressai.models import CompressionModel
from compressai.zoo import bmshj2018_factorized, bmshj2018_hyperprior, mbt2018_mean
from torch import Tensor, nn

from sc2edge.zoo.entropic_student import SplitClassifier
from sc2edge.zoo.registry import ModelSpec, ReferenceModel, register_builder, register_reference, verify_sha256

# architecture -> (CompressAI constructor, stride of the whole analysis (y and z), h_s predicts means)
ARCHITECTURES = {
    "bmshj2018-factorized": (bmshj2018_factorized, 16, None),
    "bmshj2018-hyperprior": (bmshj2018_hyperprior, 64, False),
    "mbt2018-mean": (mbt2018_mean, 64, True),
}
TEACHERS = ("efficientnet_lite0", "resnet50")
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_LITE0 = ((127 / 255,) * 3, (128 / 255,) * 3)  # (x - 127) / 128 on 0..255


class CentrePad(nn.Module):
    """Zero-pad an image at the centre to ``size`` x ``size`` (the codec's stride multiple of the crop)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        ph, pw = self.size - x.shape[-2], self.size - x.shape[-1]
        return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class CodecBottleneck(nn.Module):
    """A CompressAI codec under sc2edge's bottleneck names: ``g_a`` (padding + the codec's analysis), ``g_s``,
    ``entropy_bottleneck``, and for the hyperpriors ``h_a``, ``h_s``, ``gaussian_conditional``; the factorized
    prior also answers to ``encoder``/``decoder`` (the Entropic Student's names)."""

    def __init__(self, codec: CompressionModel, padded: int, means: bool | None):
        super().__init__()
        self.g_a = nn.Sequential(CentrePad(padded), codec.g_a)
        self.g_s = codec.g_s
        self.entropy_bottleneck = codec.entropy_bottleneck
        if means is not None:
            self.h_a, self.h_s, self.gaussian_conditional = codec.h_a, codec.h_s, codec.gaussian_conditional
            self.predicts_means = means

    @property
    def encoder(self) -> nn.Module:
        """g_a, for the factorized prior only (a hyperprior's device half is g_a and h_a)."""
        if hasattr(self, "h_s"):
            raise AttributeError("a hyperprior codec has g_a and h_a, no single encoder")
        return self.g_a

    @property
    def decoder(self) -> nn.Module:
        if hasattr(self, "h_s"):
            raise AttributeError("a hyperprior codec's decoder g_s reads y_hat from the index path")
        return self.g_s

    def received_latent(self, x: Tensor) -> Tensor:
        """y_hat as a receiver gets it (CompressAI's compress + decompress, in float)."""
        y = self.g_a(x)
        if not hasattr(self, "h_s"):
            medians = self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
            return torch.round(y - medians) + medians
        z = self.h_a(y if self.predicts_means else torch.abs(y))
        medians = self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
        params = self.h_s(torch.round(z - medians) + medians)
        if not self.predicts_means:
            return torch.round(y)
        means = params.chunk(2, 1)[1]
        return torch.round(y - means) + means

    def quantized(self, x: Tensor) -> Tensor:
        return self.g_s(self.received_latent(x))


class LearnedCodecClassifier(SplitClassifier):
    """A learned image codec (device: g_a [+ h_a]; server: g_s) followed by a classifier on its reconstruction.

    Args:
        architecture (str): one of ``ARCHITECTURES``.
        quality (int): CompressAI's quality level, 1..8.
        teacher (nn.Module): the classifier (image -> logits), on images normalized with ``mean``/``std``.
        mean, std (tuple[float, ...]): the teacher's normalization of a [0, 1] image.
        crop (int): the square input side the device codes (padded to the codec's stride).
    """

    def __init__(self, architecture: str, quality: int, teacher: nn.Module, mean: tuple[float, ...],
                 std: tuple[float, ...], crop: int = 224):
        super().__init__()
        build, stride, means = ARCHITECTURES[architecture]
        codec = build(quality=quality, pretrained=False)
        self.architecture, self.quality, self.crop = architecture, quality, crop
        self.padded = -(-crop // stride) * stride
        self.bottleneck_layer = CodecBottleneck(codec, self.padded, means)
        self.teacher = teacher
        self.register_buffer("mean", torch.tensor(mean).reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).reshape(1, -1, 1, 1), persistent=False)

    def reconstruct(self, x_hat: Tensor) -> Tensor:
        """g_s's output -> the reconstructed crop: the padding cut off, clamped to [0, 1] (CompressAI's)."""
        top = (self.padded - self.crop) // 2
        return x_hat[..., top:top + self.crop, top:top + self.crop].clamp(0, 1)

    def forward_tail(self, x_hat: Tensor) -> Tensor:
        return self.teacher((self.reconstruct(x_hat) - self.mean) / self.std)

    @property
    def latent_channels(self) -> int:
        return self.bottleneck_layer.g_a[-1][-1].out_channels

    def encoder_geometry(self) -> list[tuple[int, int, int]]:
        """The centre padding as a 1x1 "convolution" with padding (exact at the exported crop), then g_a's."""
        pad = (self.padded - self.crop) // 2
        return [(1, 1, pad)] + [(m.kernel_size[0], m.stride[0], m.padding[0])
                                for m in self.bottleneck_layer.g_a.modules() if isinstance(m, nn.Conv2d)]

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True):
        """Also takes a CompressAI codec's own state dict (``g_a.0.weight``, ...); the teacher keeps its weights
        when the checkpoint holds the codec only."""
        own = self.state_dict()
        mapped = {}
        for key, value in state_dict.items():
            if not key.startswith(("bottleneck_layer.", "teacher.")):
                key = "bottleneck_layer." + (f"g_a.1.{key[4:]}" if key.startswith("g_a.") else key)
            mapped[key] = value
        for key, value in own.items():
            if key.startswith("teacher.") and key not in mapped:
                mapped[key] = value
        return super().load_state_dict(mapped, strict=strict)


def _teacher(name: str, num_classes: int) -> tuple[nn.Module, tuple, tuple, Path | None]:
    """(module, mean, std, weights file or None for random weights) of a named teacher."""
    if name == "efficientnet_lite0":
        from sc2edge.zoo.efficientnet_student import efficientnet_lite0_teacher, teacher_weights_path

        return efficientnet_lite0_teacher(), *_LITE0, Path(teacher_weights_path())
    if name == "resnet50":
        from torchvision.models import resnet50

        return resnet50(weights=None, num_classes=num_classes), *_IMAGENET, None
    raise ValueError(f'unknown teacher "{name}" (known: {", ".join(TEACHERS)})')


def _builder(architecture: str):
    def build(*, num_classes: int = 1000, quality: int = 1, teacher: str = "efficientnet_lite0",
              crop: int = 224) -> LearnedCodecClassifier:
        module, mean, std, _ = _teacher(teacher, num_classes)
        return LearnedCodecClassifier(architecture, quality, module, mean, std, crop)

    return build


class NormalizedTeacher(nn.Module):
    """The teacher on the bundle's [0, 1] input: its normalization, then the classifier (the reference role)."""

    def __init__(self, teacher: nn.Module, mean: tuple, std: tuple):
        super().__init__()
        self.teacher = teacher
        self.register_buffer("mean", torch.tensor(mean).reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).reshape(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.teacher((x - self.mean) / self.std)


def _reference(spec: ModelSpec) -> ReferenceModel:
    name = spec.builder_args.get("teacher", "efficientnet_lite0")
    module, mean, std, weights = _teacher(name, spec.num_classes)
    return ReferenceModel(NormalizedTeacher(module, mean, std).eval(), name,
                          f"{name} on the uncompressed crop (the classifier behind the learned codec)",
                          trained=weights is not None, weights=weights,
                          weights_sha256=verify_sha256(weights, None) if weights else None)


for _architecture in ARCHITECTURES:
    _name = "learned_codec_" + _architecture.replace("-", "_")
    register_builder(_name)(_builder(_architecture))
    register_reference(_name)(_reference)
