"""Singh et al.'s end-to-end baseline deploys like the Entropic Student it shares an architecture with: a trained
Fashion-MNIST one exports for ONNX Runtime and OpenVINO and round-trips through both (ONNX Runtime's streams
byte-identical to CompressAI's, predictions the PyTorch model's)."""

from __future__ import annotations

import numpy as np
import torch

from sc2edge.export import ExportConfig, export_bundle
from sc2edge.runtime import Bundle, Decoder, Encoder
from sc2edge.runtime.preprocess import float_input
from sc2edge.runtime.stream import unpack_stream
from sc2edge.zoo import get_model

E2E_MODEL = "singh_e2e_fashion_mnist_beta0.4"
BACKENDS = ("onnxruntime", "openvino")


def test_end_to_end_baseline_round_trips_on_both_runtimes(tmp_path, photos):
    images = tmp_path / "validation"
    images.mkdir()
    for p in photos[:2]:
        (images / p.name).symlink_to(p)
    bundle = Bundle.open(export_bundle(E2E_MODEL, tmp_path / "e2e",
                                       config=ExportConfig(backends=BACKENDS, validation_images=images)))
    assert bundle.manifest["model"]["trained"] and bundle.manifest["entropy"]["kind"] == "factorized"
    assert [v["passed"] for v in bundle.manifest["validation"]] == [True, True]
    model = get_model(E2E_MODEL).model
    eb = model.bottleneck_layer.entropy_bottleneck
    for backend in BACKENDS:
        with Encoder(bundle, backend) as encoder, Decoder(bundle, backend) as decoder:
            x = np.stack([float_input(p, bundle.preprocess) for p in photos[:3]])  # what PyTorch reads
            streams = encoder.encode(photos[:3])
            with torch.no_grad():
                payloads = eb.compress(model.bottleneck_layer.encoder(torch.from_numpy(x)))
                expected = model(torch.from_numpy(x)).numpy()
            logits = np.stack([decoder.outputs(s)["logits"] for s in streams])
            if backend == "onnxruntime":  # OpenVINO's float latent may cross a rounding boundary: top-1 only
                assert [unpack_stream(s)[1]["y"] for s in streams] == payloads
                np.testing.assert_allclose(logits, expected, atol=1e-3, rtol=1e-3)
            assert list(logits.argmax(1)) == list(expected.argmax(1))
