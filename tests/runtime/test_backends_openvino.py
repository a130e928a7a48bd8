"""The OpenVINO backend: IR graphs give ONNX Runtime's exact symbols, inputs are never shared, options apply."""

from __future__ import annotations

import numpy as np
import pytest

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle, Decoder, Encoder, create_runner
from sc2edge.runtime.backends.openvino import OpenVinoRunner


@pytest.fixture(scope="module")
def bundle(int8_bundle_dir):
    return Bundle.open(int8_bundle_dir)


@pytest.fixture(scope="module")
def batch(bundle, photos):
    from sc2edge.runtime.preprocess import preprocess_image

    return np.stack([preprocess_image(p, bundle.preprocess) for p in photos[:3]])


def test_fp32_ir_keeps_round_exact(bundle, batch):
    """The device graph's Round/Cast inside OpenVINO: int32 symbols identical to ONNX Runtime's."""
    with create_runner("openvino", bundle, "device", "fp32", threads=2) as ov, \
            create_runner("onnxruntime", bundle, "device", "fp32") as ref:
        got, expected = ov.infer({"image": batch})["symbols"], ref.infer({"image": batch})["symbols"]
    assert got.dtype == np.int32 and got.shape == expected.shape
    assert np.count_nonzero(got != expected) <= 1e-4 * got.size
    assert ov.inference_time is not None and ov.inference_time > 0


def test_fp16_weights_and_server_graph(bundle, batch):
    with create_runner("onnxruntime", bundle, "device", "fp32") as device:
        symbols = device.infer({"image": batch})["symbols"]
    with create_runner("openvino", bundle, "server", "fp32") as ov, \
            create_runner("onnxruntime", bundle, "server", "fp32") as ref:
        got, expected = ov.infer({"symbols": symbols})["logits"], ref.infer({"symbols": symbols})["logits"]
    assert np.allclose(got, expected, atol=1e-3, rtol=1e-3)
    with create_runner("openvino", bundle, "device", "fp16") as half:
        assert np.mean(half.infer({"image": batch})["symbols"] != symbols) < 0.01
    ir = bundle.path / bundle.artifact("device", "openvino", "fp16").path
    assert ir.with_suffix(".bin").stat().st_size < 0.6 * (bundle.path / "device.fp32.bin").stat().st_size


def test_inputs_are_not_shared(bundle, batch):
    with create_runner("openvino", bundle, "device", "fp32") as ov:
        x = batch[:1].copy()
        first = ov.infer({"image": x})["symbols"].copy()
        out = ov.infer({"image": x})["symbols"]
        x[:] = 0  # the caller reuses its buffer: an earlier result must not change
        assert np.array_equal(out, first)
        assert not np.shares_memory(out, ov.infer({"image": x})["symbols"])


def test_request_tensors_follow_the_callers_shape_and_dtype(bundle, batch):
    """Each request owns its input tensor: replaced when the shape changes, a read-only or wider-typed array is
    copied in (converted as OpenVINO's own copy does) and gives the same symbols."""
    with create_runner("openvino", bundle, "device", "fp32") as ov:  # one caller: one request
        one = ov.infer({"image": batch[:1]})["symbols"]
        three = ov.infer({"image": batch})["symbols"]
        frozen = batch[:1].copy()
        frozen.flags.writeable = False
        assert np.array_equal(ov.infer({"image": frozen})["symbols"], one)
        wider = batch[:1].astype(np.int64 if batch.dtype == np.uint8 else np.float64)
        assert np.array_equal(ov.infer({"image": wider})["symbols"], one)
    assert three.shape[0] == 3 and three.shape[1:] == one.shape[1:]
    assert np.count_nonzero(three[:1] != one) <= 1e-4 * one.size


def test_threads_and_f32_hint_reach_openvino(bundle):
    """OpenVINO's own CPU default may be bf16 (it is on this machine): reference runs pin f32."""
    import openvino

    with create_runner("openvino", bundle, "device", "fp32", threads=1) as ov:
        assert int(ov.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
        assert ov.compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32


def test_bad_devices_are_clear_errors(bundle):
    path = bundle.path / bundle.artifact("device", "openvino", "fp32").path
    with pytest.raises(Sc2edgeError, match='unknown device "TPU"'):
        OpenVinoRunner(path, device="TPU").activate()
    import openvino as ov

    if "NPU" not in ov.Core().available_devices:
        with pytest.raises(Sc2edgeError, match='device "NPU" is not present'):
            OpenVinoRunner(path, device="NPU").activate()


def test_encode_decode_with_openvino(bundle, photos):
    with Encoder(bundle, "openvino") as encoder, Decoder(bundle, "openvino") as decoder, \
            Decoder(bundle, "onnxruntime") as reference:
        stream = encoder.encode(photos[:1])[0]
        assert np.allclose(decoder.outputs(stream)["logits"], reference.outputs(stream)["logits"], atol=1e-3,
                           rtol=1e-3)
