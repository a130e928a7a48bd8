"""The .sc2 container, formats 2 (written) and 1 (read): exact layout, every corruption refused (StreamError),
crafted payloads safe."""

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
from sc2edge.runtime.stream import (
    MAGIC,
    V1_HEADER_SIZE,
    Section,
    StreamHeader,
    pack_stream,
    read_header,
    unpack_stream,
)

HASH = "0123456789abcdef"
HASH_Z = "fedcba9876543210"
SHAPE = (24, 5, 7)
SHAPE_Z = (8, 2, 3)


@pytest.fixture(scope="module")
def tables() -> EntropyTables:
    torch.manual_seed(0)
    eb = EntropyBottleneck(24)
    eb.update(force=True)
    return EntropyTables.from_bottleneck(eb)


@pytest.fixture(scope="module")
def payload(tables) -> bytes:
    symbols = np.random.default_rng(0).laplace(0, 2, SHAPE).round().astype(np.int32)
    return RansCoder(tables).encode(symbols)


@pytest.fixture(scope="module")
def stream(payload) -> bytes:
    return pack_stream("factorized", [("y", HASH, SHAPE, payload)])


@pytest.fixture(scope="module")
def stream_v1(payload) -> bytes:
    return _raw_v1(payload=payload)


@pytest.fixture(scope="module")
def stream_two(payload) -> bytes:
    """Two sections, as a hyperprior writes them: z first (its own tables), then y."""
    return pack_stream("hyperprior", [("z", HASH_Z, SHAPE_Z, payload[:12]), ("y", HASH, SHAPE, payload)])


def _raw_v1(version=1, table_hash=HASH, shape=SHAPE, length=None, payload=b"\x00" * 8, crc=None) -> bytes:
    """A format-1 stream written field by field, with a correct CRC unless one is given."""
    fields = struct.pack("<4sB8s3HI", MAGIC, version, bytes.fromhex(table_hash), *shape,
                         len(payload) if length is None else length)
    crc = zlib.crc32(fields + payload) if crc is None else crc
    return fields + struct.pack("<I", crc) + payload


def _raw_v2(codec=b"factorized", sections=((b"y", HASH, SHAPE, None),), payloads=(b"\x00" * 8,), count=None,
            crc=None, version=2) -> bytes:
    """A format-2 stream written field by field (each section: name, hash, shape, length or None for the
    payload's), with a correct CRC unless one is given: each check fires by itself."""
    fields = struct.pack("<4sBB", MAGIC, version, len(codec)) + codec
    fields += bytes([len(sections) if count is None else count])
    for (name, table_hash, shape, length), body in zip(sections, payloads, strict=False):
        fields += bytes([len(name)]) + name + struct.pack("<8s3HI", bytes.fromhex(table_hash), *shape,
                                                           len(body) if length is None else length)
    body = b"".join(payloads)
    crc = zlib.crc32(fields + body) if crc is None else crc
    return fields + struct.pack("<I", crc) + body


def test_v2_round_trip_and_layout(stream, payload):
    header, payloads = unpack_stream(stream, codec="factorized", tables={"y": HASH})
    assert payloads == {"y": payload}
    assert header == StreamHeader(2, "factorized", (Section("y", HASH, SHAPE, len(payload)),), header.crc32,
                                  header.size)
    assert read_header(stream) == header and header.symbols == 24 * 5 * 7 and header.payload_length == len(payload)
    assert header.size == 6 + len("factorized") + 1 + 2 + 18 + 4 and len(stream) == header.size + len(payload)
    assert stream == _raw_v2(payloads=(payload,))  # the documented layout, byte for byte
    assert stream[:5] == b"SC2E\x02" and stream[5] == 10 and stream[6:16] == b"factorized" and stream[16] == 1


def test_v2_sections_keep_their_order_tables_and_payloads(stream_two, payload):
    header, payloads = unpack_stream(stream_two, codec="hyperprior", tables={"y": HASH, "z": HASH_Z})
    assert [s.name for s in header.sections] == ["z", "y"] and header.sections[0].shape == SHAPE_Z
    assert payloads == {"z": payload[:12], "y": payload}
    assert stream_two == _raw_v2(b"hyperprior", ((b"z", HASH_Z, SHAPE_Z, None), (b"y", HASH, SHAPE, None)),
                                 (payload[:12], payload))


def test_v1_streams_still_read(stream_v1, payload):
    header, payloads = unpack_stream(stream_v1, codec="factorized", tables={"y": HASH})
    assert payloads == {"y": payload} and header.size == V1_HEADER_SIZE == 27
    assert header == StreamHeader(1, "factorized", (Section("y", HASH, SHAPE, len(payload)),), header.crc32, 27)
    assert read_header(stream_v1) == header


@pytest.mark.parametrize("which", ["stream", "stream_v1", "stream_two"])
def test_every_flipped_byte_is_refused(request, which):
    data = request.getfixturevalue(which)
    for position in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            corrupt = bytearray(data)
            corrupt[position] ^= mask
            with pytest.raises(StreamError):
                unpack_stream(bytes(corrupt))


@pytest.mark.parametrize("which", ["stream", "stream_v1", "stream_two"])
def test_every_truncation_is_refused(request, which):
    data = request.getfixturevalue(which)
    for length in range(len(data)):
        with pytest.raises(StreamError, match="truncated|not an sc2edge"):
            unpack_stream(data[:length])


@pytest.mark.parametrize(("data", "message"), [
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "not an sc2edge stream"),
    (b"SC", "truncated stream: 2 bytes"),
    (_raw_v1(version=3), "format version 3 is not supported"),
    (_raw_v1(version=0), "format version 0 is not supported"),
    (_raw_v1(shape=(24, 0, 7)), "is not C x h x w"),
    (_raw_v1(shape=(0, 5, 7)), "is not C x h x w"),
    (_raw_v1(shape=(0xFFFF, 0xFFFF, 0xFFFF)), f"over the limit of {MAX_SYMBOLS}"),
    (_raw_v1(length=0xFFFFFFFF), f"over the limit of {MAX_PAYLOAD_BYTES}"),
    (_raw_v1(length=9), "truncated stream: 35 bytes, the header announces 36"),
    (_raw_v1(length=7), "1 unexpected bytes after the payload"),
    (_raw_v1() + b"garbage", "7 unexpected bytes after the payload"),
    (_raw_v1(crc=0), "CRC32 mismatch"),
    (_raw_v2(codec=b""), "entropy codec kind"),
    (_raw_v2(codec=b"Factorized"), "entropy codec kind"),
    (_raw_v2(codec=b"\xff\xfe"), "not ASCII"),
    (_raw_v2(codec=b"x" * 17), "entropy codec kind"),
    (_raw_v2(count=0, sections=(), payloads=()), "declares 0 sections"),
    (_raw_v2(count=5), "declares 5 sections"),
    (_raw_v2(count=2), "truncated stream"),
    (_raw_v2(sections=((b"", HASH, SHAPE, None),)), "section name"),
    (_raw_v2(sections=((b"y", HASH, SHAPE, None), (b"y", HASH, SHAPE, None)), payloads=(bytes(8), bytes(8))),
     'section "y" appears twice'),
    (_raw_v2(sections=((b"y", HASH, (24, 0, 7), None),)), "is not C x h x w"),
    (_raw_v2(sections=((b"y", HASH, (0xFFFF, 0xFFFF, 0xFFFF), None),)), f"over the limit of {MAX_SYMBOLS}"),
    (_raw_v2(sections=((b"y", HASH, SHAPE, 0xFFFFFFFF),)), f"over the limit of {MAX_PAYLOAD_BYTES}"),
    (_raw_v2(sections=((b"y", HASH, SHAPE, MAX_PAYLOAD_BYTES), (b"z", HASH, SHAPE, MAX_PAYLOAD_BYTES)),
             payloads=(b"", b"")), f"over the limit of {MAX_PAYLOAD_BYTES}"),
    (_raw_v2(sections=((b"y", HASH, SHAPE, 9),)), "truncated stream: 49 bytes, the header announces 50"),
    (_raw_v2(sections=((b"y", HASH, SHAPE, 7),)), "1 unexpected bytes after the payload"),
    (_raw_v2() + b"garbage", "7 unexpected bytes after the payload"),
    (_raw_v2(crc=0), "CRC32 mismatch"),
])
def test_bad_headers_are_refused_with_a_reason(data, message):
    with pytest.raises(StreamError, match=message):
        unpack_stream(data)


def test_header_only_read_checks_sizes_before_anything_else():
    for data in (_raw_v1(length=0xFFFFFFFF), _raw_v2(sections=((b"y", HASH, SHAPE, 0xFFFFFFFF),))):
        with pytest.raises(StreamError, match="over the limit"):
            read_header(data)
    for data in (_raw_v1(crc=0), _raw_v2(crc=0)):  # inspect shows a header even when the CRC fails later
        assert read_header(data).sections[0].shape == SHAPE


def test_streams_for_other_tables_or_codecs_are_refused(stream, stream_v1, stream_two):
    for data in (stream, stream_v1):
        with pytest.raises(StreamError, match=f'"y" was made for entropy tables {HASH}, this bundle has fedcba98'):
            unpack_stream(data, tables={"y": HASH_Z})
        with pytest.raises(StreamError, match='coded by the "factorized" entropy model, this bundle uses "hyper'):
            unpack_stream(data, codec="hyperprior")
        with pytest.raises(StreamError, match="holds sections y; this bundle's entropy model codes z, y"):
            unpack_stream(data, tables={"z": HASH_Z, "y": HASH})
    with pytest.raises(StreamError, match="holds sections z, y; this bundle's entropy model codes y"):
        unpack_stream(stream_two, tables={"y": HASH})


def test_pack_refuses_bad_arguments():
    good = ("y", HASH, SHAPE, b"\0" * 8)
    bad = [
        ("factorized", [("y", "abc", SHAPE, b"\0" * 8)], "16 hex digits"),
        ("factorized", [("y", HASH, (24, 70000, 1), b"\0" * 8)], "C x h x w"),
        ("factorized", [("y", HASH, (24, 5), b"\0" * 8)], "C x h x w"),
        ("factorized", [("y", HASH, SHAPE, bytes(MAX_PAYLOAD_BYTES + 1))], "limit"),
        ("factorized", [], "1 to 4 sections"),
        ("factorized", [good] * 5, "1 to 4 sections"),
        ("factorized", [good, good], "appears twice"),
        ("factorized", [("Y!", HASH, SHAPE, b"\0" * 8)], "section name"),
        ("", [good], "entropy codec kind"),
        ("a" * 17, [good], "entropy codec kind"),
    ]
    for codec, sections, message in bad:
        with pytest.raises(StreamError, match=message):
            pack_stream(codec, sections)


_FUZZ = """
import struct
import sys
import zlib
import numpy as np
from sc2edge.errors import StreamError
from sc2edge.runtime.rans import EntropyTables, RansCoder
from sc2edge.runtime.stream import pack_stream, unpack_stream

tables = EntropyTables.load(sys.argv[1])
coder = RansCoder(tables, sys.argv[4])
rng = np.random.default_rng(int(sys.argv[2]))
decoded = refused = 0
versions = set()


def attempt(payload, shape):
    global decoded, refused
    if rng.integers(2):  # a valid container of either format: only the coder stands in the way
        stream = pack_stream("factorized", [("y", tables.hash, shape, payload)])
    else:
        fields = struct.pack("<4sB8s3HI", b"SC2E", 1, bytes.fromhex(tables.hash), *shape, len(payload))
        stream = fields + struct.pack("<I", zlib.crc32(fields + payload)) + payload
    header, body = unpack_stream(stream, codec="factorized", tables={"y": tables.hash})
    versions.add(header.version)
    try:
        symbols = coder.decode(body["y"], header.sections[0].shape)
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
assert versions == {1, 2}
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
