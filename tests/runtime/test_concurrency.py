"""One Encoder and one Decoder shared by 16 threads: every caller gets its own answer, on every backend.

A single shared OpenVINO InferRequest handed callers each other's streams and logits (most requests of 16 x 2
came back wrong); ``python -m sc2edge.bench.concurrency BUNDLE`` runs the same check at 16 x 1,000.
"""

import pytest

from sc2edge.bench.concurrency import hammer
from sc2edge.runtime import Bundle, preprocess_image


@pytest.fixture(scope="module")
def batches(bundle_dir, photos):
    spec = Bundle.open(bundle_dir).preprocess  # full size: the bundle refuses latents below its geometry's minimum
    return [preprocess_image(path, spec)[None] for path in photos[:4]]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_shared_halves_give_each_thread_its_own_answer(bundle_dir, batches, backend, precision):
    result = hammer(bundle_dir, backend, precision, batches, threads=16, requests_per_thread=1)
    assert result.ok, str(result)
    assert result.requests == 16
