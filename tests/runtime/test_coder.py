"""RansCoder against real CompressAI: byte-identical streams, exact round trips, safe refusals, no torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from compressai.entropy_models import EntropyBottleneck

from sc2edge.errors import BundleError, Sc2edgeError, StreamError
from sc2edge.runtime import coder as coder_module
from sc2edge.runtime.coder import (
    MAX_ABS_SYMBOL,
    MAX_SYMBOLS,
    EntropyTables,
    RansCoder,
    available_coders,
    coder_label,
    max_payload_bytes,
)


def _bottleneck(varied: bool) -> EntropyBottleneck:
    """A random-weight EntropyBottleneck(24) after update(); ``varied``: each channel its own CDF length."""
    torch.manual_seed(0)
    eb = EntropyBottleneck(24)
    if varied:
        with torch.no_grad():
            median, spread = torch.randn(24) * 0.7, torch.linspace(2, 30, 24)
            eb.quantiles[:, 0] = torch.stack([median - spread, median, median + 0.6 * spread], dim=1)
    eb.update(force=True)
    return eb


@pytest.fixture(scope="module", params=["default", "varied"])
def bottleneck(request) -> EntropyBottleneck:
    return _bottleneck(request.param == "varied")


@pytest.fixture(scope="module")
def coder(bottleneck) -> RansCoder:
    return RansCoder(EntropyTables.from_bottleneck(bottleneck))


def _symbols(eb: EntropyBottleneck, y: torch.Tensor) -> np.ndarray:
    return torch.round(y - eb.quantiles[:, 0, 1].detach().reshape(1, -1, 1, 1)).int()[0].numpy()


def _latent(eb: EntropyBottleneck, symbols: np.ndarray) -> torch.Tensor:
    """A float latent whose symbols are exactly ``symbols``."""
    medians = eb.quantiles[:, 0, 1].detach()[None, :, None, None]
    return torch.from_numpy(symbols[None].astype(np.float32)) + medians


def _check_against_compressai(eb: EntropyBottleneck, coder: RansCoder, y: torch.Tensor) -> bytes:
    with torch.no_grad():
        reference = eb.compress(y)[0]
        reference_y_hat = eb.decompress([reference], y.shape[-2:])[0]
    symbols = _symbols(eb, y)
    payload = coder.encode(symbols)
    assert payload == reference
    decoded = coder.decode(payload, symbols.shape)
    assert decoded.dtype == np.int32 and decoded.shape == symbols.shape
    np.testing.assert_array_equal(decoded, symbols)
    # The server adds the medians back: the same y_hat as CompressAI's own decoder.
    y_hat = decoded.astype(np.float32) + coder.tables.medians[:, None, None]
    np.testing.assert_array_equal(y_hat, reference_y_hat.numpy())
    return payload


@pytest.mark.parametrize(("scale", "shape"),
                         [(0.5, (55, 55)), (3.0, (55, 55)), (20.0, (14, 9)), (1.0, (1, 1))])
def test_encode_is_byte_identical_to_entropy_bottleneck_compress(bottleneck, coder, scale, shape):
    torch.manual_seed(1)
    y = torch.randn(1, 24, *shape) * scale + torch.randn(1, 24, 1, 1)
    _check_against_compressai(bottleneck, coder, y)


@pytest.mark.parametrize("magnitude", [60.0, 1e3, 1e5, float(MAX_ABS_SYMBOL // 2)])
def test_escape_path_is_byte_identical_and_exact(bottleneck, coder, magnitude):
    """Values far outside the tables go through CompressAI's escape (bypass) coding."""
    generator = torch.Generator().manual_seed(2)
    y = torch.randn(1, 24, 30, 31, generator=generator)
    extreme = torch.rand(y.shape, generator=generator) < 0.1
    y[extreme] = magnitude * torch.sign(torch.randn(int(extreme.sum()), generator=generator))
    y[0, :, 0, 0] = magnitude  # every channel escapes at least once, upwards and downwards
    y[0, :, 0, 1] = -magnitude
    payload = _check_against_compressai(bottleneck, coder, y)
    typical = _check_against_compressai(bottleneck, coder, torch.randn(1, 24, 30, 31, generator=generator))
    assert len(payload) > len(typical)


def test_table_edges(bottleneck, coder):
    """The last in-table value, the first escaped values above and below, on every channel."""
    tables = coder.tables
    top = tables.offset + tables.cdf_length - 3  # the highest value coded without an escape
    columns = [tables.offset, top, top + 1, top + 2, tables.offset - 1, tables.offset - 2]
    symbols = np.stack(columns * 2, axis=1).reshape(24, 3, 4).astype(np.int32)
    y = _latent(bottleneck, symbols)
    _check_against_compressai(bottleneck, coder, y)


def test_encode_refuses_what_compressai_cannot_code(coder):
    good = np.zeros((24, 4, 4), np.int32)
    for bad, message in [(good.astype(np.int64), "int32"), (good[:5], "shape"), (good[0], "shape"),
                         (np.zeros((2, 1, 1), np.int32), "shape")]:
        with pytest.raises(Sc2edgeError, match=message):
            coder.encode(bad)
    for value in (MAX_ABS_SYMBOL + 1, -MAX_ABS_SYMBOL - 1, np.iinfo(np.int32).min):
        extreme = good.copy()
        extreme[3, 1, 2] = value
        with pytest.raises(Sc2edgeError, match="beyond"):
            coder.encode(extreme)


def test_tiny_latents_are_refused_not_overrun():
    """CompressAI's encoder corrupts its heap for 1 symbol; 3 is the smallest count the coder accepts."""
    tables = EntropyTables.from_bottleneck(_bottleneck(varied=False))
    one_channel = EntropyTables(tables.quantized_cdf[:1], tables.cdf_length[:1], tables.offset[:1],
                                tables.medians[:1])
    small = RansCoder(one_channel)
    with pytest.raises(Sc2edgeError, match="3 to"):
        small.encode(np.zeros((1, 1, 2), np.int32))
    symbols = np.array([[[0, 500, -500]]], np.int32)
    np.testing.assert_array_equal(small.decode(small.encode(symbols), (1, 1, 3)), symbols)


def test_decode_refuses_impossible_payloads(coder):
    payload = coder.encode(np.zeros((24, 5, 5), np.int32))
    shape = (24, 5, 5)
    cases = {
        b"": "impossible", payload[:6]: "impossible", payload + b"\0": "impossible",
        payload + bytes(max_payload_bytes(600)): "impossible",
        bytes(8) + payload[8:]: "initial coder state",
    }
    for bad, message in cases.items():
        with pytest.raises(StreamError, match=message):
            coder.decode(bad, shape)
    with pytest.raises(StreamError, match="shape"):
        coder.decode(payload, (23, 5, 5))
    with pytest.raises(StreamError, match=str(MAX_SYMBOLS)):  # refused before anything is allocated
        coder.decode(payload, (24, 0xFFFF, 0xFFFF))
    np.testing.assert_array_equal(coder.decode(bytearray(payload), shape), np.zeros(shape, np.int32))


def test_padding_bound_covers_every_read(coder):
    """Words past the proven bound never influence decoding, even for payloads built to read far.

    Each payload is decoded twice: followed by exactly the proven number of zero words and then 0xFF words
    (which would change the symbols if read), and followed by far more zero words (reference).
    """
    ans = coder_module._ans_module()
    decoder = ans.RansDecoder()
    rng = np.random.default_rng(3)
    shape = (24, 6, 7)
    count = 24 * 6 * 7
    indexes = coder._channel_indexes(shape)
    payloads = [b"\xff" * 8 * k for k in (1, 4, 64)]  # all 15-nibbles: the longest bypass runs
    payloads += [b"\xff" * 8 + rng.integers(0, 256, 4 * k, dtype=np.uint8).tobytes() for k in (1, 10, 100)]
    payloads += [b"\x00\x00\x00\x80" * 2 + b"\xff\xff\xff\x0f" * 16]
    for payload in payloads:
        bound = 4 * coder_module._decoder_padding_words(count, len(payload) // 4)
        args = (indexes, coder._cdfs, coder._cdf_lengths, coder._offsets)
        fenced = decoder.decode_with_indexes(payload + bytes(bound) + b"\xff" * 4096, *args)
        reference = decoder.decode_with_indexes(payload + bytes(bound + (1 << 20)), *args)
        assert fenced == reference
        np.testing.assert_array_equal(coder.decode(payload, shape).ravel(), reference)


def test_tables_save_load_and_hash(tmp_path, coder):
    tables = coder.tables
    tables.save(tmp_path / "tables.npz")
    loaded = EntropyTables.load(tmp_path / "tables.npz")
    for name in ("quantized_cdf", "cdf_length", "offset", "medians"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(tables, name))
        assert getattr(loaded, name).dtype == getattr(tables, name).dtype
    assert loaded.hash == tables.hash and len(tables.hash) == 16
    assert loaded.channels == 24
    nudged = EntropyTables(tables.quantized_cdf, tables.cdf_length, tables.offset,
                           tables.medians + np.float32(1e-3))
    assert nudged.hash != tables.hash


def test_table_hash_is_stable():
    """Streams in the wild carry this hash: its definition (DESIGN.md) must not drift."""
    tables = EntropyTables(np.array([[0, 30000, 65000, 65536], [0, 1, 65535, 65536]], np.int32),
                           np.array([4, 4], np.int32), np.array([-1, -2], np.int32),
                           np.array([0.25, -1.5], np.float32))
    assert tables.hash == "deb7d059422b3a34"


def _tables_npz(path, **arrays):
    base = {"quantized_cdf": np.array([[0, 30000, 65000, 65536, 0]], np.int32),
            "cdf_length": np.array([4], np.int32), "offset": np.array([-1], np.int32),
            "medians": np.array([0.5], np.float32)}
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


@pytest.mark.parametrize(("arrays", "message"), [
    ({"medians": None}, "expected arrays"),
    ({"offset": np.array([-1], np.int64)}, "offset must be a 1-d int32"),
    ({"quantized_cdf": np.array([0, 30000, 65536], np.int32)}, "quantized_cdf must be a 2-d"),
    ({"cdf_length": np.array([6], np.int32)}, "cdf_length must lie in 3..5"),
    ({"cdf_length": np.array([4, 4], np.int32)}, "cdf_length has shape"),
    ({"quantized_cdf": np.array([[0, 30000, 30000, 65536, 0]], np.int32)}, "not a valid 16-bit CDF"),
    ({"quantized_cdf": np.array([[0, 30000, 65000, 65535, 0]], np.int32)}, "not a valid 16-bit CDF"),
    ({"quantized_cdf": np.array([[5, 30000, 65000, 65536, 0]], np.int32)}, "not a valid 16-bit CDF"),
    ({"medians": np.array([np.nan], np.float32)}, "finite"),
    ({"offset": np.array([-(1 << 21)], np.int32)}, "offsets"),
    ({"medians": np.array([object()], dtype=object)}, "cannot read"),
])
def test_tables_load_rejects_bad_files(tmp_path, arrays, message):
    path = _tables_npz(tmp_path / "tables.npz", **arrays)
    with pytest.raises(BundleError, match=message):
        EntropyTables.load(path)


def test_tables_load_rejects_non_npz(tmp_path):
    (tmp_path / "tables.npz").write_bytes(b"not a zip file")
    with pytest.raises(BundleError, match="cannot read"):
        EntropyTables.load(tmp_path / "tables.npz")
    with pytest.raises(BundleError, match="cannot read"):
        EntropyTables.load(tmp_path / "missing.npz")
    np.save(tmp_path / "array.npy", np.zeros(3, np.int32))
    with pytest.raises(BundleError, match="not an npz archive"):
        EntropyTables.load(tmp_path / "array.npy")


def test_named_coders():
    assert available_coders() == ["rans64"]
    assert coder_label("rans64") == "compressai-rans64"
    with pytest.raises(Sc2edgeError, match=r'Unknown entropy coder "range" \(available: rans64\)'):
        coder_label("range")


def test_missing_compressai_is_a_clear_error(monkeypatch):
    coder_module._ans_module.cache_clear()
    monkeypatch.delitem(sys.modules, "compressai.ans", raising=False)
    monkeypatch.setattr(coder_module.importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(Sc2edgeError, match="pip install --no-deps compressai"):
            coder_module._ans_module()
    finally:
        coder_module._ans_module.cache_clear()


_NO_TORCH = """
import sys
import numpy as np
from sc2edge.runtime.coder import EntropyTables, RansCoder
coder = RansCoder(EntropyTables.load(sys.argv[1]))
symbols = np.arange(-50, 50, dtype=np.int32).repeat(3 * 24)[:24 * 100].reshape(24, 10, 10)
payload = coder.encode(symbols)
assert (coder.decode(payload, symbols.shape) == symbols).all()
assert "torch" not in sys.modules, "torch was imported"
assert "compressai" not in sys.modules, "compressai/__init__.py was executed"
# CompressAI imported later in the same process shares the extension already loaded (no double init).
import torch
from compressai.entropy_models import EntropyBottleneck
from compressai import ans
assert ans is sys.modules["compressai.ans"]
sys.stdout.buffer.write(payload)
"""


def test_coder_imports_no_torch_and_coexists_with_compressai(tmp_path, bottleneck):
    tables = EntropyTables.from_bottleneck(bottleneck)
    tables.save(tmp_path / "tables.npz")
    done = subprocess.run([sys.executable, "-c", _NO_TORCH, str(tmp_path / "tables.npz")],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    symbols = np.arange(-50, 50, dtype=np.int32).repeat(3 * 24)[:24 * 100].reshape(24, 10, 10)
    y = _latent(bottleneck, symbols)
    assert done.stdout == bottleneck.compress(y)[0]
