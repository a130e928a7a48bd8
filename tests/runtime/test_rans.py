"""RansCoder's two coders (native ``_rans.c`` and CompressAI's extension) against real CompressAI: byte-identical
streams that decode with either coder, exact round trips, safe refusals, a fuzzed native decoder, no torch."""

from __future__ import annotations

import itertools
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from compressai.entropy_models import EntropyBottleneck

from sc2edge.errors import BundleError, Sc2edgeError, StreamError
from sc2edge.runtime import _rans
from sc2edge.runtime import rans as rans_module
from sc2edge.runtime.rans import (
    MAX_ABS_SYMBOL,
    MAX_SYMBOLS,
    MIN_SYMBOLS,
    EntropyTables,
    RansCoder,
    available_coders,
    coder_label,
    max_payload_bytes,
)

CODERS = ("native", "compressai")
INT32 = np.iinfo(np.int32)


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
def tables(bottleneck) -> EntropyTables:
    return EntropyTables.from_bottleneck(bottleneck)


@pytest.fixture(scope="module", params=CODERS)
def coder(request, tables) -> RansCoder:
    return RansCoder(tables, request.param)


@pytest.fixture(scope="module")
def coders(tables) -> dict[str, RansCoder]:
    return {name: RansCoder(tables, name) for name in CODERS}


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


def _extreme_latent(magnitude: float, shape: tuple[int, int] = (30, 31), seed: int = 2) -> torch.Tensor:
    """Gaussian values with 10% of them, and two per channel, at +-magnitude (escape coded)."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.randn(1, 24, *shape, generator=generator)
    extreme = torch.rand(y.shape, generator=generator) < 0.1
    y[extreme] = magnitude * torch.sign(torch.randn(int(extreme.sum()), generator=generator))
    y[0, :, 0, 0] = magnitude  # every channel escapes at least once, upwards and downwards
    y[0, :, 0, 1] = -magnitude
    return y


@pytest.mark.parametrize(("scale", "shape"),
                         [(0.5, (55, 55)), (3.0, (55, 55)), (20.0, (14, 9)), (1.0, (1, 1))])
def test_encode_is_byte_identical_to_entropy_bottleneck_compress(bottleneck, coder, scale, shape):
    torch.manual_seed(1)
    y = torch.randn(1, 24, *shape) * scale + torch.randn(1, 24, 1, 1)
    _check_against_compressai(bottleneck, coder, y)


@pytest.mark.parametrize("magnitude", [60.0, 1e3, 1e5, float(MAX_ABS_SYMBOL // 2)])
def test_escape_path_is_byte_identical_and_exact(bottleneck, coder, magnitude):
    """Values far outside the tables go through CompressAI's escape (bypass) coding."""
    payload = _check_against_compressai(bottleneck, coder, _extreme_latent(magnitude))
    typical = _check_against_compressai(bottleneck, coder, torch.randn(1, 24, 30, 31))
    assert len(payload) > len(typical)


def test_table_edges(bottleneck, coder):
    """The last in-table value, the first escaped values above and below, on every channel."""
    tables = coder.tables
    top = tables.offset + tables.cdf_length - 3  # the highest value coded without an escape
    columns = [tables.offset, top, top + 1, top + 2, tables.offset - 1, tables.offset - 2]
    symbols = np.stack(columns * 2, axis=1).reshape(24, 3, 4).astype(np.int32)
    y = _latent(bottleneck, symbols)
    _check_against_compressai(bottleneck, coder, y)


@pytest.mark.parametrize(("scale", "magnitude"), [(1.0, None), (8.0, None), (1.0, 300.0),
                                                  (1.0, float(MAX_ABS_SYMBOL - 64))])
def test_streams_decode_with_either_coder(bottleneck, coders, scale, magnitude):
    """A stream written by one coder decodes with the other (both directions), realistic to extreme latents."""
    torch.manual_seed(4)
    y = torch.randn(1, 24, 55, 55) * scale if magnitude is None else _extreme_latent(magnitude, (55, 55), seed=4)
    symbols = _symbols(bottleneck, y)
    with torch.no_grad():
        reference = bottleneck.compress(y)[0]
    for writer, reader in itertools.permutations(CODERS):
        payload = coders[writer].encode(symbols)
        assert payload == reference, writer
        np.testing.assert_array_equal(coders[reader].decode(payload, symbols.shape), symbols)


def test_encode_refuses_bad_input(coder):
    good = np.zeros((24, 4, 4), np.int32)
    for bad, message in [(good.astype(np.int64), "int32"), (good[:5], "shape"), (good[0], "shape"),
                         (np.zeros((2, 1, 1), np.int32), "shape"), (np.zeros((24, 0, 3), np.int32), "symbols")]:
        with pytest.raises(Sc2edgeError, match=message):
            coder.encode(bad)
    varied = (np.arange(24 * 4 * 4, dtype=np.int32).reshape(24, 4, 4) % 7 - 3)[:, ::2, ::-1]  # not contiguous
    np.testing.assert_array_equal(coder.decode(coder.encode(varied), (24, 2, 4)), varied)


def test_compressai_coder_refuses_what_it_cannot_code_and_native_codes_every_int32(tables, coders):
    """CompressAI loops forever on escapes >= 2**28 (|symbol| ~ 2**27): refused there, exact with the native coder,
    whose streams stay within max_payload_bytes even when every symbol is the most expensive int32."""
    good = np.zeros((24, 4, 4), np.int32)
    for value in (MAX_ABS_SYMBOL + 1, -MAX_ABS_SYMBOL - 1, 1 << 27, 1 << 28, INT32.min, INT32.max):
        extreme = good.copy()
        extreme[3, 1, 2] = value
        extreme[7, 0, 0] = -value if value != INT32.min else INT32.max
        with pytest.raises(Sc2edgeError, match="beyond"):
            coders["compressai"].encode(extreme)
        np.testing.assert_array_equal(coders["native"].decode(coders["native"].encode(extreme), good.shape), extreme)
    worst = np.full((24, 9, 9), INT32.min, np.int32)
    worst[::2] = INT32.max
    payload = coders["native"].encode(worst)
    assert len(payload) <= max_payload_bytes(worst.size)
    np.testing.assert_array_equal(coders["native"].decode(payload, worst.shape), worst)


def test_tiny_latents(tables):
    """CompressAI's encoder corrupts its heap for 1 symbol: its path needs 3; the native coder codes any count."""
    one_channel = EntropyTables(tables.quantized_cdf[:1], tables.cdf_length[:1], tables.offset[:1],
                                tables.medians[:1])
    native, compressai = RansCoder(one_channel, "native"), RansCoder(one_channel, "compressai")
    with pytest.raises(Sc2edgeError, match=f"{MIN_SYMBOLS} to"):
        compressai.encode(np.zeros((1, 1, 2), np.int32))
    with pytest.raises(StreamError, match=f"{MIN_SYMBOLS} to"):
        compressai.decode(bytes(4) + b"\0\0\0\x80", (1, 1, 1))
    for symbols in ([[[0]]], [[[-7000]]], [[[INT32.max, 5]]]):
        symbols = np.array(symbols, np.int32)
        np.testing.assert_array_equal(native.decode(native.encode(symbols), symbols.shape), symbols)
    symbols = np.array([[[0, 500, -500]]], np.int32)
    for writer, reader in itertools.product((native, compressai), repeat=2):
        np.testing.assert_array_equal(reader.decode(writer.encode(symbols), (1, 1, 3)), symbols)
    assert native.encode(symbols) == compressai.encode(symbols)


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


def test_native_decoder_reports_corrupt_payloads(bottleneck, coders):
    """Unlike CompressAI's, the native decoder checks a stream's end: extra or missing words and nearly every
    flipped bit are a StreamError (a flip that still decodes yields other symbols: rANS is a bijection; the
    raw nibbles of escaped values are plain bits, so flips there go unnoticed: this latent has few escapes)."""
    native = coders["native"]
    torch.manual_seed(5)
    symbols = _symbols(bottleneck, torch.randn(1, 24, 8, 8) * 3)
    payload = native.encode(symbols)
    with pytest.raises(StreamError, match="4 bytes left after the last symbol"):
        native.decode(payload + bytes(4), symbols.shape)
    with pytest.raises(StreamError, match="truncated|corrupt"):
        native.decode(payload[:-4], symbols.shape)
    rng = np.random.default_rng(5)
    refused = 0
    for bit in rng.choice(8 * len(payload), 200, replace=False):
        flipped = bytearray(payload)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:
            decoded = native.decode(flipped, symbols.shape)
        except StreamError:
            refused += 1
        else:
            assert not np.array_equal(decoded, symbols)
    assert refused >= 180


def test_native_module_checks_its_arguments(tables):
    """The extension is safe on its own: wrong buffers, invalid tables and indexes naming no row raise, nothing is
    read out of bounds."""
    cdf, lengths, offsets = tables.quantized_cdf, tables.cdf_length, tables.offset
    symbols = np.zeros(24 * 6, np.int32)
    indexes = np.repeat(np.arange(24, dtype=np.int32), 6)
    payload = _rans.encode_with_indexes(symbols, indexes, cdf, lengths, offsets)
    out = np.empty_like(symbols)
    bad_cdf = cdf.copy()
    bad_cdf[5, 2] = bad_cdf[5, 1]
    encode, decode = _rans.encode_with_indexes, _rans.decode_with_indexes
    bad_calls = [
        (TypeError, lambda: encode(symbols.astype(np.int64), indexes, cdf, lengths, offsets)),
        (TypeError, lambda: encode(symbols, indexes.astype(np.int64), cdf, lengths, offsets)),
        (TypeError, lambda: encode(symbols, indexes, cdf.ravel(), lengths, offsets)),
        (ValueError, lambda: encode(symbols, indexes[:-1], cdf, lengths, offsets)),
        (ValueError, lambda: encode(symbols, indexes + 1, cdf, lengths, offsets)),  # row 24 of 0..23
        (ValueError, lambda: encode(symbols, indexes - 1, cdf, lengths, offsets)),  # row -1
        (ValueError, lambda: encode(symbols[:0], indexes[:0], cdf, lengths, offsets)),
        (ValueError, lambda: encode(symbols, indexes, cdf, lengths[:5], offsets)),
        (ValueError, lambda: encode(symbols, indexes, bad_cdf, lengths, offsets)),
        (ValueError, lambda: encode(symbols, indexes, cdf, lengths + cdf.shape[1], offsets)),
        ((TypeError, ValueError, BufferError), lambda: encode(np.zeros(48 * 6, np.int32)[::2], indexes, cdf,
                                                              lengths, offsets)),
        ((TypeError, ValueError, BufferError), lambda: decode(payload, symbols.copy().view(np.float32), indexes,
                                                              cdf, lengths, offsets)),
        ((TypeError, ValueError, BufferError), lambda: decode(payload, np.frombuffer(bytes(4 * 144), np.int32),
                                                              indexes, cdf, lengths, offsets)),
        (ValueError, lambda: decode(payload[:6], out, indexes, cdf, lengths, offsets)),
        (ValueError, lambda: decode(payload, out, indexes, bad_cdf, lengths, offsets)),
        (ValueError, lambda: decode(payload, out[:-1], indexes, cdf, lengths, offsets)),
        (ValueError, lambda: decode(payload, out, np.full_like(indexes, 1 << 30), cdf, lengths, offsets)),
        (ValueError, lambda: decode(payload, out, np.full_like(indexes, -(1 << 31)), cdf, lengths, offsets)),
    ]
    for error, call in bad_calls:
        with pytest.raises(error):
            call()
    decode(payload, out, indexes, cdf, lengths, offsets)
    np.testing.assert_array_equal(out, symbols)


def test_padding_bound_covers_every_read(coders):
    """CompressAI's decoder: words past the proven bound never influence decoding, even for payloads built to
    read far.

    Each payload is decoded twice: followed by exactly the proven number of zero words and then 0xFF words
    (which would change the symbols if read), and followed by far more zero words (reference).
    """
    impl = coders["compressai"].impl
    decoder = rans_module._ans_module().RansDecoder()
    rng = np.random.default_rng(3)
    shape = (24, 6, 7)
    count = 24 * 6 * 7
    indexes = coders["compressai"].channel_indexes(shape).ravel().tolist()
    payloads = [b"\xff" * 8 * k for k in (1, 4, 64)]  # all 15-nibbles: the longest bypass runs
    payloads += [b"\xff" * 8 + rng.integers(0, 256, 4 * k, dtype=np.uint8).tobytes() for k in (1, 10, 100)]
    payloads += [b"\x00\x00\x00\x80" * 2 + b"\xff\xff\xff\x0f" * 16]
    for payload in payloads:
        bound = 4 * rans_module._decoder_padding_words(count, len(payload) // 4)
        args = (indexes, impl.cdfs, impl.cdf_lengths, impl.offsets)
        fenced = decoder.decode_with_indexes(payload + bytes(bound) + b"\xff" * 4096, *args)
        reference = decoder.decode_with_indexes(payload + bytes(bound + (1 << 20)), *args)
        assert fenced == reference
        np.testing.assert_array_equal(coders["compressai"].decode(payload, shape).ravel(), reference)
        with pytest.raises(StreamError):  # the native decoder sees them for what they are
            coders["native"].decode(payload, shape)


_FUZZ = """
import sys, time
import numpy as np
from sc2edge.errors import StreamError
from sc2edge.runtime.rans import EntropyTables, RansCoder
coder = RansCoder(EntropyTables.load(sys.argv[1]), "native")
rng = np.random.default_rng(int(sys.argv[2]))
shapes = [(24, 1, 1), (24, 3, 5), (24, 16, 16)]
valid = {}
for shape in shapes:
    symbols = np.round(rng.laplace(size=shape) * 4).astype(np.int32)
    symbols.flat[::7] = rng.integers(-(1 << 31), 1 << 31, symbols.size, dtype=np.int64)[::7]
    valid[shape] = (symbols, coder.encode(symbols))
payloads = []
for _ in range(3000):  # random words
    shape = shapes[rng.integers(len(shapes))]
    words = rng.integers(2, max(3, len(valid[shape][1]) // 4 + 8))
    payloads.append((shape, rng.integers(0, 256, 4 * words, dtype=np.uint8).tobytes()))
for shape, (symbols, payload) in valid.items():
    for cut in range(8, len(payload), 4):  # every truncation, with and without random tails
        payloads.append((shape, payload[:cut]))
        payloads.append((shape, payload[:cut] + rng.integers(0, 256, 4, dtype=np.uint8).tobytes()))
    for fill in (b"\\xff", b"\\x00", b"\\x0f", b"\\xf0", b"\\x80"):  # long escape runs, zero reads, ...
        payloads.append((shape, b"\\xff" * 8 + fill * (len(payload) - 8)))
        payloads.append((shape, b"\\x00\\x00\\x00\\x80\\x00\\x00\\x00\\x00" + fill * (len(payload) - 8)))
    for _ in range(300):  # random words spliced into a valid stream
        spliced = bytearray(payload)
        at = 4 * rng.integers(len(payload) // 4)
        spliced[at:at + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        payloads.append((shape, bytes(spliced)))
outcomes = {"ok": 0, "error": 0}
start = time.perf_counter()
for shape, payload in payloads:
    try:
        decoded = coder.decode(payload, shape)
        assert decoded.shape == shape and decoded.dtype == np.int32
        outcomes["ok"] += 1
    except StreamError:
        outcomes["error"] += 1
for shape, (symbols, payload) in valid.items():
    assert (coder.decode(payload, shape) == symbols).all()
print(len(payloads), outcomes["ok"], outcomes["error"], f"{time.perf_counter() - start:.2f}")
"""


def test_native_decoder_fuzz_in_subprocess(tmp_path, tables):
    """Random and crafted payloads: each decodes or raises StreamError; no crash, no hang (in a subprocess)."""
    tables.save(tmp_path / "tables.npz")
    done = subprocess.run([sys.executable, "-c", _FUZZ, str(tmp_path / "tables.npz"), "6"], capture_output=True,
                          timeout=300, text=True)
    assert done.returncode == 0, done.stderr
    total, ok, errors, _ = done.stdout.split()
    assert int(total) == int(ok) + int(errors) > 4000
    assert int(errors) > 0.9 * int(total)


def test_native_coder_runs_in_threads(bottleneck, coders):
    """The native coder releases the GIL and keeps no state: concurrent calls give the sequential results."""
    latents = [_symbols(bottleneck, torch.randn(1, 24, 20, 20) * s) for s in (0.5, 2.0, 9.0, 40.0)] * 4
    native = coders["native"]
    expected = [native.encode(symbols) for symbols in latents]
    with ThreadPoolExecutor(4) as pool:
        payloads = list(pool.map(native.encode, latents))
        decoded = list(pool.map(lambda p: native.decode(p, (24, 20, 20)), payloads))
    assert payloads == expected
    for symbols, values in zip(latents, decoded, strict=True):
        np.testing.assert_array_equal(values, symbols)


def test_tables_save_load_and_hash(tmp_path, tables):
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


def test_tables_load_bounds_declared_sizes_before_allocating(tmp_path):
    """A small compressed npz can declare gigabytes: the .npy headers are read and bounded first."""
    import zipfile

    huge = tmp_path / "huge.npz"
    with zipfile.ZipFile(huge, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("quantized_cdf", "cdf_length", "offset", "medians"):
            with archive.open(f"{name}.npy", "w") as member:
                shape = (65535, 1 << 20) if name == "quantized_cdf" else (65535,)
                dtype = np.float32 if name == "medians" else np.int32
                np.lib.format.write_array_header_1_0(member, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                             "shape": shape})
                member.write(bytes(64))
    assert huge.stat().st_size < 4096
    with pytest.raises(BundleError, match="quantized_cdf declares shape .65535, 1048576. .* over the 16777216-byte"):
        EntropyTables.load(huge)
    zeros = tmp_path / "zeros.npz"  # a real 32 MB array, compressed to kilobytes
    np.savez_compressed(zeros, quantized_cdf=np.zeros((8192, 1024), np.int32), cdf_length=np.zeros(8192, np.int32),
                        offset=np.zeros(8192, np.int32), medians=np.zeros(8192, np.float32))
    with pytest.raises(BundleError, match="over the 16777216-byte limit"):
        EntropyTables.load(zeros)


def test_tables_load_rejects_non_npz(tmp_path):
    (tmp_path / "tables.npz").write_bytes(b"not a zip file")
    with pytest.raises(BundleError, match="cannot read"):
        EntropyTables.load(tmp_path / "tables.npz")
    with pytest.raises(BundleError, match="cannot read"):
        EntropyTables.load(tmp_path / "missing.npz")
    np.save(tmp_path / "array.npy", np.zeros(3, np.int32))
    with pytest.raises(BundleError, match="not an npz archive"):
        EntropyTables.load(tmp_path / "array.npy")


def test_named_coders(tables):
    assert available_coders() == ["native", "compressai"]
    assert coder_label() == coder_label("native") == coder_label("compressai") == "compressai-rans64"
    assert RansCoder(tables).name == "native"
    for call in (lambda: coder_label("range"), lambda: RansCoder(tables, "range")):
        with pytest.raises(Sc2edgeError, match=r'Unknown entropy coder "range" \(known: native, compressai\)'):
            call()


def _unavailable(message: str):
    def load():
        raise Sc2edgeError(message)
    return load


def test_missing_coders_fall_back_or_fail_clearly(monkeypatch, tables):
    monkeypatch.setattr(rans_module, "_native_module", _unavailable("native coder is not built"))
    assert available_coders() == ["compressai"]
    assert RansCoder(tables).name == "compressai"
    with pytest.raises(Sc2edgeError, match="not built"):
        RansCoder(tables, "native")
    monkeypatch.setattr(rans_module, "_ans_module", _unavailable("compressai is missing"))
    assert available_coders() == []
    with pytest.raises(Sc2edgeError, match="no rANS coder is available: native coder is not built; compressai is"):
        RansCoder(tables)


def test_missing_compressai_is_a_clear_error(monkeypatch, tables):
    rans_module._ans_module.cache_clear()
    monkeypatch.delitem(sys.modules, "compressai.ans", raising=False)
    monkeypatch.setattr(rans_module.importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(Sc2edgeError, match="pip install --no-deps compressai"):
            rans_module._ans_module()
        assert available_coders() == ["native"]
        assert RansCoder(tables).name == "native"
    finally:
        rans_module._ans_module.cache_clear()


def test_native_module_import_is_a_clear_error(monkeypatch):
    rans_module._native_module.cache_clear()
    monkeypatch.setitem(sys.modules, "sc2edge.runtime._rans", None)  # makes the import fail
    try:
        with pytest.raises(Sc2edgeError, match="native rANS coder sc2edge.runtime._rans is not built"):
            rans_module._native_module()
    finally:
        rans_module._native_module.cache_clear()


_NO_TORCH = """
import sys
import numpy as np
from sc2edge.runtime.rans import EntropyTables, RansCoder
name = sys.argv[2]
coder = RansCoder(EntropyTables.load(sys.argv[1]), None if name == "native" else name)
assert coder.name == name
symbols = np.arange(-50, 50, dtype=np.int32).repeat(3 * 24)[:24 * 100].reshape(24, 10, 10)
payload = coder.encode(symbols)
assert (coder.decode(payload, symbols.shape) == symbols).all()
assert "torch" not in sys.modules, "torch was imported"
assert "compressai" not in sys.modules, "compressai/__init__.py was executed"
assert ("compressai.ans" in sys.modules) == (name == "compressai"), "the default coder loaded CompressAI's"
# CompressAI imported later in the same process shares the extension already loaded (no double init).
import torch
from compressai.entropy_models import EntropyBottleneck
from compressai import ans
assert ans is sys.modules["compressai.ans"]
sys.stdout.buffer.write(payload)
"""


@pytest.mark.parametrize("name", CODERS)
def test_coder_imports_no_torch_and_coexists_with_compressai(tmp_path, bottleneck, name):
    tables = EntropyTables.from_bottleneck(bottleneck)
    tables.save(tmp_path / "tables.npz")
    done = subprocess.run([sys.executable, "-c", _NO_TORCH, str(tmp_path / "tables.npz"), name],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    symbols = np.arange(-50, 50, dtype=np.int32).repeat(3 * 24)[:24 * 100].reshape(24, 10, 10)
    y = _latent(bottleneck, symbols)
    assert done.stdout == bottleneck.compress(y)[0]


@pytest.fixture(scope="module")
def gaussian_tables() -> EntropyTables:
    """A hyperprior's tables: CompressAI's GaussianConditional over its 64 default scales (one row per scale)."""
    from compressai.entropy_models import GaussianConditional
    from compressai.models.google import get_scale_table

    conditional = GaussianConditional(None)
    conditional.update_scale_table(get_scale_table())
    rows = conditional._offset.numel()
    return EntropyTables(quantized_cdf=conditional._quantized_cdf.numpy().astype(np.int32),
                         cdf_length=conditional._cdf_length.numpy().astype(np.int32).reshape(-1),
                         offset=conditional._offset.numpy().astype(np.int32).reshape(-1),
                         medians=np.zeros(rows, np.float32))


@pytest.mark.parametrize("seed", range(4))
def test_encode_with_indexes_is_byte_identical_to_compressai(tables, gaussian_tables, seed):
    """Random index maps over factorized and Gaussian tables: our bytes are CompressAI's, and every decoder
    (ours twice, CompressAI's) reads them back exactly."""
    from compressai.ans import RansDecoder, RansEncoder

    rng = np.random.default_rng(seed)
    for table_set in (tables, gaussian_tables):
        shape = tuple(int(n) for n in rng.integers(1, 12, size=3)) + (int(rng.integers(3, 9)),)
        indexes = rng.integers(0, table_set.channels, size=shape, dtype=np.int32)
        spread = 1 + table_set.cdf_length[indexes] // 2
        symbols = (table_set.offset[indexes] + rng.normal(0, spread)).round().astype(np.int32)
        symbols.ravel()[rng.integers(0, symbols.size, 3)] = rng.integers(-5000, 5000, 3)  # escapes
        lists = (table_set.quantized_cdf.tolist(), table_set.cdf_length.tolist(), table_set.offset.tolist())
        reference = RansEncoder().encode_with_indexes(symbols.ravel().tolist(), indexes.ravel().tolist(), *lists)
        decoded = RansDecoder().decode_with_indexes(reference, indexes.ravel().tolist(), *lists)
        assert decoded == symbols.ravel().tolist()
        for name in CODERS:
            coder = RansCoder(table_set, name)
            assert coder.encode_with_indexes(symbols, indexes) == reference, name
            np.testing.assert_array_equal(coder.decode_with_indexes(reference, indexes), symbols)


def test_channel_indexes_are_the_factorized_prior(coder):
    symbols = np.random.default_rng(5).integers(-20, 20, (24, 5, 6), dtype=np.int32)
    indexes = coder.channel_indexes(symbols.shape)
    assert indexes.shape == symbols.shape and (indexes[:, 2, 3] == np.arange(24)).all()
    assert coder.encode_with_indexes(symbols, indexes) == coder.encode(symbols)


def test_bad_indexes_are_refused(coder):
    symbols = np.zeros((24, 4, 4), np.int32)
    indexes = coder.channel_indexes(symbols.shape)
    payload = coder.encode(symbols)
    for bad in (indexes + 1, indexes - 1, np.full_like(indexes, INT32.max), np.full_like(indexes, INT32.min)):
        with pytest.raises(Sc2edgeError, match="CDF rows 0..23"):
            coder.encode_with_indexes(symbols, bad)
        with pytest.raises(StreamError, match="CDF rows 0..23"):
            coder.decode_with_indexes(payload, bad)
    for bad, message in ((indexes.astype(np.int64), "int32"), (indexes.tolist(), "int32"),
                         (indexes[:, :2], "shape")):
        with pytest.raises(Sc2edgeError, match=message):
            coder.encode_with_indexes(symbols, bad)
    with pytest.raises(StreamError, match="symbols"):
        coder.decode_with_indexes(payload, np.zeros((1 << 23,), np.int32))
    with pytest.raises(StreamError, match="impossible"):
        coder.decode_with_indexes(payload, indexes[:1, :1, :3])
