"""A random-weight mshp student whose side latent and scales spread over the scale table, shared by the tests.

Untrained weights give z = 0 everywhere (every scale then sits at the lower bound, index 0), which would test
nothing; scaling h_a and h_s up spreads the indexes over about 40 of the 64 table rows, like a trained model.
"""

from __future__ import annotations

import functools

MODEL = "mshp_student_resnet50_beta0.08"


def spread_side_networks(bottleneck, h_a_gain: float = 8, h_s_gain: float = 3) -> None:
    """Scale h_a and h_s of a random-weight hyperprior up (in place), so its scale indexes spread."""
    import torch

    with torch.no_grad():
        for p in bottleneck.h_a.parameters():
            p.mul_(h_a_gain)
        for p in bottleneck.h_s.parameters():
            p.mul_(h_s_gain)


@functools.cache
def spread_mshp_model():
    from sc2edge.zoo import get_model

    loaded = get_model(MODEL)
    spread_side_networks(loaded.model.bottleneck_layer)
    return loaded


def torch_reference(bottleneck, image):
    """sc2bench's encode path in PyTorch float: (y, z, z strings, scales, means, indexes, y strings)."""
    import torch

    with torch.no_grad():
        y = bottleneck.g_a(image)
        z = bottleneck.h_a(y)
        z_strings = bottleneck.entropy_bottleneck.compress(z)
        z_hat = bottleneck.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        scales, means = bottleneck.gaussian_params(z_hat)
        indexes = bottleneck.gaussian_conditional.build_indexes(scales)
        y_strings = bottleneck.gaussian_conditional.compress(y, indexes, means=means)
    return {"y": y, "z": z, "z_strings": z_strings, "scales": scales, "means": means, "indexes": indexes,
            "y_strings": y_strings}


def tiny_learned_codec(architecture: str, crop: int = 64, spread: bool = True):
    """A learned-codec classifier small enough for the tests: CompressAI's ``architecture`` at quality 1 coding a
    ``crop`` x ``crop`` image, a two-layer classifier behind it (10 classes), random weights (seed 0), h_a and h_s
    scaled up so the Gaussian indexes spread as a trained model's do. Returns a ``LoadedModel`` for export."""
    import dataclasses

    import torch
    from torch import nn

    from sc2edge.runtime.manifest import PreprocessSpec
    from sc2edge.zoo import LoadedModel, get_spec
    from sc2edge.zoo.learned_codecs import LearnedCodecClassifier

    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(3, 8, 3, 2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    model = LearnedCodecClassifier(architecture, 1, teacher, (0.5,) * 3, (0.25,) * 3, crop)
    bottleneck = model.bottleneck_layer
    if spread and hasattr(bottleneck, "h_s"):
        spread_side_networks(bottleneck, h_a_gain=6, h_s_gain=4)
    model.update(force=True)
    base = get_spec(f"learned_codec_{architecture.replace('-', '_')}_q1")
    spec = dataclasses.replace(base, name=f"tiny-{architecture}", num_classes=10, labels=None,
                               preprocess=PreprocessSpec.from_json({"resize": crop, "crop": crop, "mean": [0, 0, 0],
                                                                    "std": [1, 1, 1]}, "tiny"))
    return LoadedModel(model.eval(), spec, trained=False, checkpoint_path=None, checkpoint_sha256=None)
