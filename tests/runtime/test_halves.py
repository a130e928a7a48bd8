import struct
import zlib

import numpy as np
import pytest
import torch

from sc2edge.errors import StreamError
from sc2edge.runtime import Bundle, Decoder, Encoder
from sc2edge.runtime.stream import unpack_stream
from tests.conftest import heavy_imports_of


def test_round_trip_matches_compressai_bytes_and_pytorch_predictions(bundle_dir, es_model, photos):
    from sc2edge.runtime.preprocess import float_input

    model = es_model.model
    eb = model.bottleneck_layer.entropy_bottleneck
    with Encoder(bundle_dir) as encoder, Decoder(bundle_dir) as decoder:
        for path in photos[:3]:
            x = float_input(path, encoder.bundle.preprocess)
            stream = encoder.encode([path])[0]
            with torch.no_grad():
                y = model.bottleneck_layer.encoder(torch.from_numpy(x[None]))
                reference = eb.compress(y)
                expected = model.forward_tail(model.bottleneck_layer.decoder(
                    eb.decompress(reference, y.shape[-2:]))).numpy()[0]
            assert unpack_stream(stream)[1] == {"y": reference[0]}
            outputs = decoder.outputs(stream)
            assert list(outputs) == ["logits"] and outputs["logits"].shape == expected.shape
            np.testing.assert_allclose(outputs["logits"], expected, rtol=1e-3,
                                       atol=1e-4 + 1e-3 * np.abs(expected).max())
            prediction = decoder.decode(stream)
            assert prediction == decoder.task.predict(outputs)
            assert prediction.top1 == expected.argmax()


def test_raw_outputs_are_the_server_graphs_and_decode_returns_the_prediction(fp32_bundle_dir, photos):
    import onnxruntime as ort

    bundle = Bundle.open(fp32_bundle_dir)
    session = ort.InferenceSession(str(bundle.path / bundle.artifact("server", "onnx", "fp32").path),
                                   providers=["CPUExecutionProvider"])
    with Encoder(bundle) as encoder, Decoder(bundle) as decoder:
        streams = encoder.encode(photos[:2])
        for stream in streams:
            symbols = decoder.decode_symbols(stream)[None]
            (logits,) = session.run(["logits"], {"symbols": symbols})
            np.testing.assert_array_equal(decoder.outputs(stream)["logits"], logits[0])
            np.testing.assert_array_equal(decoder.predict_outputs(symbols)["logits"], logits)
            prediction = decoder.decode(stream)
            assert prediction.classes == tuple(int(i) for i in np.argsort(-logits[0])[:5])
            assert decoder.predict(symbols) == [prediction]


def test_preprocessing_matches_torchvision(photos):
    from PIL import Image
    from torchvision import transforms

    spec = {"resize": 256, "crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    reference = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                    transforms.Normalize(spec["mean"], spec["std"])])
    from sc2edge.runtime import preprocess_image

    for path in photos[:3]:
        expected = reference(Image.open(path).convert("RGB")).numpy()
        np.testing.assert_allclose(preprocess_image(path, spec, fast=False), expected, atol=1e-6)


def _bundle_with_other_tables(bundle_dir, tmp_path):
    """A copy of the bundle whose entropy tables differ, as another model's bundle would."""
    import dataclasses
    import shutil

    from sc2edge.runtime.bundle_writer import BundleEditor

    copy = tmp_path / "other"
    shutil.copytree(bundle_dir, copy)
    with BundleEditor(copy) as edit:
        tables = dataclasses.replace(edit.source.tables, medians=edit.source.tables.medians + np.float32(0.25))
        tables.save(edit.staging / "tables.npz")
        edit.manifest["entropy"]["sections"][0]["hash"] = tables.hash
        edit.commit()
    return copy


def test_stream_for_other_tables_is_refused(bundle_dir, tmp_path, photos):
    stream = Encoder(bundle_dir).encode([photos[0]])[0]
    other = _bundle_with_other_tables(bundle_dir, tmp_path)
    with Decoder(other) as decoder, pytest.raises(StreamError, match=Bundle.open(other).tables.hash):
        decoder.decode(stream)


DEVICE_SCRIPT = """
import sys
import zlib
from sc2edge.runtime import Encoder
streams = Encoder(sys.argv[1]).encode([sys.argv[2]])
assert len(streams[0]) > 0
"""


def test_device_path_does_not_import_torch(bundle_dir, photos):
    assert heavy_imports_of(DEVICE_SCRIPT, bundle_dir, photos[0]) == []


def test_latents_the_bundle_cannot_produce_are_refused_before_any_work(bundle_dir, photos):
    """A valid-CRC stream with a latent below the smallest the graphs ran on at export (graph runtimes fail there,
    OpenVINO for every later request too) or a 300x300 one (seconds of decoding for a 224-px model) is refused
    from its header, in either format; the measured smallest one decodes."""
    from sc2edge.runtime.rans import RansCoder
    from sc2edge.runtime.stream import pack_stream

    bundle = Bundle.open(bundle_dir)
    channels, smallest, _ = bundle.manifest["latent"]["min_shape"]
    coder = RansCoder(bundle.tables)
    tiny = coder.encode(np.zeros((channels, 1, 1), np.int32))
    crafted = [pack_stream("factorized", [("y", bundle.tables.hash, (channels, 300, 300), b"\xff" * 4096)]),
               pack_stream("factorized", [("y", bundle.tables.hash, (channels, 55, 2000), b"\xff" * 4096)])]
    if smallest > 1:  # below the measured minimum, in both stream formats
        v1 = struct.pack("<4sB8s3HI", b"SC2E", 1, bytes.fromhex(bundle.tables.hash), channels, 1, 1, len(tiny))
        crafted += [pack_stream("factorized", [("y", bundle.tables.hash, (channels, 1, 1), tiny)]),
                    v1 + struct.pack("<I", zlib.crc32(v1 + tiny)) + tiny]
    with Decoder(bundle_dir) as decoder:
        at_minimum = coder.encode(np.zeros((channels, smallest, smallest), np.int32))
        minimum = pack_stream("factorized", [("y", bundle.tables.hash, (channels, smallest, smallest), at_minimum)])
        assert np.isfinite(decoder.outputs(minimum)["logits"]).all()
        for stream in crafted:
            with pytest.raises(StreamError, match="outside what this bundle's model takes"):
                decoder.decode(stream)
        with pytest.raises(StreamError, match=f"latent has 16 channels, this bundle's model has {channels}"):
            decoder.decode(pack_stream("factorized", [("y", bundle.tables.hash, (16, 55, 55), tiny)]))
        with Encoder(bundle_dir) as encoder:  # and the decoder still works
            symbols = decoder.decode_symbols(encoder.encode([photos[0]])[0])
            assert symbols.shape == tuple(bundle.manifest["latent"]["shape"])
            assert np.isfinite(decoder.predict_outputs(symbols[None])["logits"]).all()
