"""Every shipped model (the default EfficientNet student, the Fashion-MNIST student, the ResNet-50 student)
exports, validates against PyTorch and round-trips through the runtime: ONNX Runtime FP32, two photos."""

from __future__ import annotations

import pytest
import torch

from sc2edge.export import ExportConfig, export_bundle
from sc2edge.runtime import Bundle, Decoder, Encoder
from sc2edge.runtime.preprocess import float_input
from sc2edge.runtime.stream import unpack_stream
from sc2edge.zoo import default_model_name, get_model
from tests.conftest import DEFAULT_TEST_MODEL

SHIPPED = [default_model_name(), "entropic_student_fashion_mnist_beta0.1", DEFAULT_TEST_MODEL]


@pytest.fixture(scope="module")
def two_photos(tmp_path_factory, photos):
    folder = tmp_path_factory.mktemp("two-photos")
    for p in photos[:2]:
        (folder / p.name).symlink_to(p)
    return folder


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_exports_and_round_trips(name, request, two_photos, photos, tmp_path):
    if name == DEFAULT_TEST_MODEL:  # the session's export of it (same photos): no second ResNet-50 export
        path = request.getfixturevalue("fp32_bundle_dir")
    else:
        path = export_bundle(name, tmp_path / "bundle", config=ExportConfig(validation_images=two_photos))
    bundle = Bundle.open(path)
    assert bundle.manifest["model"]["name"] == name
    assert bundle.manifest["validation"] and all(v["passed"] for v in bundle.manifest["validation"])
    if name != DEFAULT_TEST_MODEL:  # a plain FP32 export: the device graph takes uint8 pixels, normalizes in-graph
        assert bundle.spec.preprocess.graph_input == "uint8-nhwc"
    model = get_model(name).model
    layer, eb = model.bottleneck_layer, model.bottleneck_layer.entropy_bottleneck
    with Encoder(bundle) as encoder, Decoder(bundle) as decoder:
        task = decoder.task
        for image in photos[:2]:
            # torchvision's exact pixels, as the export validated them (the fast crop moves a few symbols)
            stream = encoder.encode_batch(encoder.preprocess(image, fast=False)[None])[0]
            with torch.no_grad():
                y = layer.encoder(torch.from_numpy(float_input(image, bundle.preprocess, fast=False)[None]))
                payload = eb.compress(y)
                logits = model.forward_tail(layer.decoder(eb.decompress(payload, y.shape[-2:]))).numpy()
            assert unpack_stream(stream)[1] == {"y": payload[0]}  # byte-identical to CompressAI
            reference = task.items({"logits": logits})[0]
            outputs = decoder.outputs(stream)
            assert all(e.passed for e in task.compare(reference, outputs).values())
            assert task.agree(task.predict(reference), decoder.decode(stream))
