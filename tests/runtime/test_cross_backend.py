"""A stream made by any backend and precision decodes with any other: the factorized prior's coding never
depends on the encoder's arithmetic, only on the bundle's tables."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sc2edge.runtime import Bundle, Decoder, Encoder

PAIRS = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8")]


@pytest.fixture(scope="module")
def streams(int8_bundle_dir, photos):
    bundle = Bundle.open(int8_bundle_dir)
    made = {}
    for backend, precision in PAIRS:
        with Encoder(bundle, backend, precision) as encoder:
            batch = np.stack([encoder.preprocess(p) for p in photos[:2]])
            symbols = encoder.symbols(batch)
            made[backend, precision] = (symbols, [encoder.compress_symbols(s) for s in symbols])
    return bundle, made


@pytest.mark.parametrize("encoder_key, decoder_key", list(itertools.product(PAIRS, PAIRS)))
def test_every_pairing_decodes(streams, encoder_key, decoder_key):
    bundle, made = streams
    symbols, encoded = made[encoder_key]
    with Decoder(bundle, *decoder_key) as decoder, Decoder(bundle, "onnxruntime", "fp32") as reference:
        for item, stream in zip(symbols, encoded, strict=True):
            decoded = decoder.decode_symbols(stream)
            assert decoded.dtype == np.int32 and np.array_equal(decoded, item)
            logits = decoder.predict_outputs(decoded[None])["logits"][0]
            expected = reference.predict_outputs(item[None])["logits"][0]
            scale = np.abs(expected).max()
            tolerance = 1e-3 * scale if decoder_key[1] == "fp32" else 0.25 * scale
            assert np.abs(logits - expected).max() <= tolerance


def test_int8_encoders_really_differ(streams):
    """Otherwise the pairings above would prove nothing about INT8 streams."""
    _, made = streams
    assert not np.array_equal(made["onnxruntime", "fp32"][0], made["onnxruntime", "int8"][0])
    assert not np.array_equal(made["openvino", "fp32"][0], made["openvino", "int8"][0])
