"""The .sc2 container: exact layout, every corruption refused (StreamError), crafted payloads safe."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from compressai.entropy_models import EntropyBottleneck

from sc2edge.errors import StreamError
from sc2edge.runtime.rans import MAX_PAYLOAD_BYTES, MAX_SYMBOLS, EntropyTables, RansCoder
from sc2edge.runtime.stream import HEADER_SIZE, MAGIC, StreamHeader, pack_stream, read_header, unpack_stream

HASH = "0123456789abcdef"
SHAPE = (24, 5, 7)


@pytest.fixture(scope="module")
def tables() -> EntropyTables:
    torch.manual_seed(0)
    eb = EntropyBottleneck(24)
    eb.update(force=True)
    return EntropyTables.from_bottleneck(eb)


@pytest.fixture(scope="module")
def stream(tables) -> bytes:
    symbols = np.random.default_rng(0).laplace(0, 2, SHAPE).round().astype(np.int32)
    return pack_stream(RansCoder(tables).encode(symbols), HASH, SHAPE)


def _raw(version=1, table_hash=HASH, shape=SHAPE, length=None, payload=b"\x00" * 8, crc=None) -> bytes:
    """A stream written field by field, with a correct CRC unless one is given: each check fires by itself."""
    fields = struct.pack("<4sB8s3HI", MAGIC, version, bytes.fromhex(table_hash), *shape,
                         len(payload) if length is None else length)
    crc = zlib.crc32(fields + payload) if crc is None else crc
    return fields + struct.pack("<I", crc) + payload


def test_round_trip_and_layout(stream):
    header, payload = unpack_stream(stream, table_hash=HASH, channels=24)
    assert header == StreamHeader(1, HASH, SHAPE, len(payload), header.crc32)
    assert read_header(stream) == header and header.symbols == 24 * 5 * 7
    assert HEADER_SIZE == 27 and len(stream) == 27 + len(payload)
    assert stream == _raw(payload=payload)  # the documented layout, byte for byte
    assert stream[:4] == b"SC2E" and stream[4] == 1 and stream[5:13] == bytes.fromhex(HASH)
    assert struct.unpack_from("<3HI", stream, 13) == (*SHAPE, len(payload))


def test_every_flipped_byte_is_refused(stream):
    for position in range(len(stream)):
        for mask in (0x01, 0x80, 0xFF):
            corrupt = bytearray(stream)
            corrupt[position] ^= mask
            with pytest.raises(StreamError):
                unpack_stream(bytes(corrupt))


def test_every_truncation_is_refused(stream):
    for length in range(len(stream)):
        with pytest.raises(StreamError, match="truncated|not an sc2edge"):
            unpack_stream(stream[:length])


@pytest.mark.parametrize(("data", "message"), [
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "not an sc2edge stream"),
    (b"SC", "truncated stream: 2 bytes"),
    (_raw(version=2), "format version 2 is not supported"),
    (_raw(version=0), "format version 0 is not supported"),
    (_raw(shape=(24, 0, 7)), "is not C x h x w"),
    (_raw(shape=(0, 5, 7)), "is not C x h x w"),
    (_raw(shape=(0xFFFF, 0xFFFF, 0xFFFF)), f"over the limit of {MAX_SYMBOLS}"),
    (_raw(length=0xFFFFFFFF), f"over the limit of {MAX_PAYLOAD_BYTES}"),
    (_raw(length=9), "truncated stream: 35 bytes, the header announces 36"),
    (_raw(length=7), "1 unexpected bytes after the payload"),
    (_raw() + b"garbage", "7 unexpected bytes after the payload"),
    (_raw(crc=0), "CRC32 mismatch"),
])
def test_bad_headers_are_refused_with_a_reason(data, message):
    with pytest.raises(StreamError, match=message):
        unpack_stream(data)


def test_header_only_read_checks_sizes_before_anything_else():
    with pytest.raises(StreamError, match="over the limit"):
        read_header(_raw(length=0xFFFFFFFF))
    assert read_header(_raw(crc=0)).shape == SHAPE  # inspect shows a header even when the CRC fails later


def test_streams_for_other_tables_or_models_are_refused(stream):
    with pytest.raises(StreamError, match=f"made for entropy tables {HASH}, this bundle has fedcba98"):
        unpack_stream(stream, table_hash="fedcba9876543210")
    with pytest.raises(StreamError, match="has 24 channels, this bundle's model has 48"):
        unpack_stream(stream, channels=48)


def test_pack_refuses_bad_arguments():
    with pytest.raises(StreamError, match="16 hex digits"):
        pack_stream(b"\0" * 8, "abc", SHAPE)
    with pytest.raises(StreamError, match="C x h x w"):
        pack_stream(b"\0" * 8, HASH, (24, 70000, 1))
    with pytest.raises(StreamError, match="C x h x w"):
        pack_stream(b"\0" * 8, HASH, (24, 5))
    with pytest.raises(StreamError, match="limit"):
        pack_stream(bytes(MAX_PAYLOAD_BYTES + 1), HASH, SHAPE)


_FUZZ = """
import sys
import numpy as np
from sc2edge.errors import StreamError
from sc2edge.runtime.rans import EntropyTables, RansCoder
from sc2edge.runtime.stream import pack_stream, unpack_stream

tables = EntropyTables.load(sys.argv[1])
coder = RansCoder(tables, sys.argv[4])
rng = np.random.default_rng(int(sys.argv[2]))
decoded = refused = 0


def attempt(payload, shape):
    global decoded, refused
    stream = pack_stream(payload, tables.hash, shape)  # a valid container: only the coder stands in the way
    header, body = unpack_stream(stream, table_hash=tables.hash, channels=24)
    try:
        symbols = coder.decode(body, header.shape)
    except StreamError:
        refused += 1
        return None
    assert symbols.shape == shape and symbols.dtype == np.int32
    decoded += 1
    return symbols


for round_ in range(int(sys.argv[3])):
    shape = (24, int(rng.integers(1, 20)), int(rng.integers(1, 20)))
    symbols = np.clip(rng.laplace(0, float(rng.choice([0.5, 3, 30])), shape), -5000, 5000).astype(np.int32)
    valid = coder.encode(symbols)
    assert (attempt(valid, shape) == symbols).all()
    words = int(rng.integers(2, 3 * 24 * 400 // 2))
    kinds = [
        rng.integers(0, 256, 4 * words, dtype=np.uint8).tobytes(),  # random words
        b"\\xff" * 4 * words,  # the longest bypass runs
        b"\\xff" * 8 + bytes(4 * words),  # a huge state, then zeros
        valid[: 4 * int(rng.integers(2, len(valid) // 4 + 1))],  # truncated
        valid + rng.integers(0, 256, 4 * int(rng.integers(1, 50)), dtype=np.uint8).tobytes(),  # extended
        rng.integers(0, 256, int(rng.integers(0, 64)), dtype=np.uint8).tobytes(),  # odd lengths
    ]
    flipped = bytearray(valid)
    for position in rng.integers(0, len(valid), int(rng.integers(1, 8))):
        flipped[position] ^= 1 << int(rng.integers(0, 8))
    kinds.append(bytes(flipped))
    for payload in kinds:
        attempt(payload, shape)
    attempt(b"\\xff" * 4 * words, (24, 55, 55))
print(decoded, refused)
"""


@pytest.mark.parametrize("coder_name", ["native", "compressai"])
def test_crafted_payloads_never_crash_or_hang(tmp_path, tables, coder_name):
    """Crafted payloads in a valid container: each decodes (to garbage) or is refused; the process survives.
    CompressAI's decoder cannot tell garbage from data; the native one refuses nearly all of it."""
    tables.save(tmp_path / "tables.npz")
    done = subprocess.run([sys.executable, "-c", _FUZZ, str(tmp_path / "tables.npz"), "7", "400", coder_name],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"decoder process died ({done.returncode}): {done.stderr[-2000:]}"
    decoded, refused = map(int, done.stdout.split())
    if coder_name == "compressai":
        assert decoded > 1500 and refused > 300  # both outcomes exercised
    else:
        assert decoded >= 400 and refused > 2500  # the 400 valid payloads decode, crafted ones are refused
