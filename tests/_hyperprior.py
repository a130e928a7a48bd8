"""A random-weight mshp student whose side latent and scales spread over the scale table, shared by the tests.

Untrained weights give z = 0 everywhere (every scale then sits at the lower bound, index 0), which would test
nothing; scaling h_a and h_s up spreads the indexes over about 40 of the 64 table rows, like a trained model.
"""

from __future__ import annotations

import functools

MODEL = "mshp_student_resnet50_beta0.08"


@functools.cache
def spread_mshp_model():
    import torch

    from sc2edge.zoo import get_model

    loaded = get_model(MODEL)
    bottleneck = loaded.model.bottleneck_layer
    with torch.no_grad():
        for p in bottleneck.h_a.parameters():
            p.mul_(8)
        for p in bottleneck.h_s.parameters():
            p.mul_(3)
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
