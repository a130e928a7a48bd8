"""One Encoder and one Decoder shared by 16 threads: every caller gets its own answer, on every backend.

A single shared OpenVINO InferRequest handed callers each other's streams and logits (most requests of 16 x 2
came back wrong); scripts/attack.py load runs the same check at 16 x 1,000.
"""

import numpy as np
import pytest

from sc2edge.bench.concurrency import hammer
from sc2edge.runtime import Bundle, preprocess_image

SIDE = 64  # a 64x64 input keeps the ResNet-50 server half cheap (latent 15x15, above the graph's minimum)


@pytest.fixture(scope="module")
def small_batches(bundle_dir, photos):
    spec = Bundle.open(bundle_dir).preprocess
    batches = []
    for path in photos[:4]:
        image = preprocess_image(path, spec)
        top = (image.shape[1] - SIDE) // 2
        batches.append(np.ascontiguousarray(image[None, :, top:top + SIDE, top:top + SIDE]))
    return batches


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_shared_halves_give_each_thread_its_own_answer(bundle_dir, small_batches, backend, precision):
    result = hammer(bundle_dir, backend, precision, small_batches, threads=16, requests_per_thread=2)
    assert result.ok, str(result)
    assert result.requests == 32
