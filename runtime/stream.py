"""The ``.sc2`` stream container: a self-describing, checksummed wrapper around one rANS payload.

Layout (little-endian, 27-byte header, then the payload)::

    offset size  field
    0      4     magic b"SC2E"
    4      1     format version (1)
    5      8     entropy table hash (EntropyTables.hash, 16 hex digits as 8 bytes)
    13     6     latent shape C, h, w (3 x uint16)
    19     4     payload length in bytes (uint32)
    23     4     CRC32 of bytes 0..22 followed by the payload
    27     ...   payload (CompressAI rANS bytes)

A stream names the tables it was coded with, so decoding with another model's tables fails with a clear
message instead of producing confident garbage. Every size is checked against hard limits before anything is
allocated from it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from sc2edge.errors import StreamError
from sc2edge.runtime.rans import MAX_PAYLOAD_BYTES, MAX_SYMBOLS

MAGIC = b"SC2E"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sB8s3HI")  # everything the CRC covers, before the CRC itself
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size + _CRC.size


@dataclass(frozen=True)
class StreamHeader:
    """The container's fields; ``table_hash`` is the 16-hex-digit EntropyTables.hash."""

    version: int
    table_hash: str
    shape: tuple[int, int, int]
    payload_length: int
    crc32: int

    @property
    def symbols(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]


def _hash_bytes(table_hash: str) -> bytes:
    try:
        raw = bytes.fromhex(table_hash)
    except (TypeError, ValueError):
        raw = b""
    if len(raw) != 8:
        raise StreamError(f'table hash must be 16 hex digits, got "{table_hash}"')
    return raw


def _check_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3 or not all(isinstance(n, int) and 0 < n <= 0xFFFF for n in shape):
        raise StreamError(f"latent shape {tuple(shape)} is not C x h x w with each side in 1..65535")
    if shape[0] * shape[1] * shape[2] > MAX_SYMBOLS:
        raise StreamError(f"latent shape {tuple(shape)} has {shape[0] * shape[1] * shape[2]} symbols, "
                          f"over the limit of {MAX_SYMBOLS}")
    return shape


def pack_stream(payload: bytes, table_hash: str, shape: tuple[int, int, int]) -> bytes:
    """Wrap a rANS payload coded with the tables ``table_hash`` for a latent of ``shape`` (C, h, w)."""
    shape = _check_shape(tuple(int(n) for n in shape))
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise StreamError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    fields = _HEADER.pack(MAGIC, FORMAT_VERSION, _hash_bytes(table_hash), *shape, len(payload))
    return fields + _CRC.pack(zlib.crc32(payload, zlib.crc32(fields))) + bytes(payload)


def read_header(data: bytes) -> StreamHeader:
    """Parse and sanity-check the header only (for ``inspect``); the payload is neither read nor verified."""
    if bytes(data[:len(MAGIC)]) != MAGIC[:len(data)]:
        raise StreamError(f"not an sc2edge stream (starts with {bytes(data[:4])!r}, expected {MAGIC!r})")
    if len(data) < HEADER_SIZE:
        raise StreamError(f"truncated stream: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    _, version, raw_hash, channels, height, width, length = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise StreamError(f"stream format version {version} is not supported (this sc2edge reads version "
                          f"{FORMAT_VERSION}); upgrade sc2edge or re-encode the image")
    shape = _check_shape((channels, height, width))
    if length > MAX_PAYLOAD_BYTES:
        raise StreamError(f"payload length field says {length} bytes, over the limit of {MAX_PAYLOAD_BYTES}")
    (crc,) = _CRC.unpack_from(data, _HEADER.size)
    return StreamHeader(version, raw_hash.hex(), shape, length, crc)


def unpack_stream(data: bytes, *, table_hash: str | None = None,
                  channels: int | None = None) -> tuple[StreamHeader, bytes]:
    """Check a whole stream (header, length, CRC, and optionally the tables and channels it was made for).

    Args:
        data (bytes): the stream.
        table_hash (str | None): the decoding bundle's EntropyTables.hash. Defaults to None (not checked).
        channels (int | None): the bundle's latent channels. Defaults to None (not checked).

    Returns:
        tuple[StreamHeader, bytes]: the header and the rANS payload.
    """
    data = bytes(data)
    header = read_header(data)
    end = HEADER_SIZE + header.payload_length
    if len(data) < end:
        raise StreamError(f"truncated stream: {len(data)} bytes, the header announces {end}")
    if len(data) > end:
        raise StreamError(f"{len(data) - end} unexpected bytes after the payload (stream is {len(data)} "
                          f"bytes, the header announces {end})")
    payload = data[HEADER_SIZE:]
    if zlib.crc32(payload, zlib.crc32(data[:_HEADER.size])) != header.crc32:
        raise StreamError("stream is corrupt: CRC32 mismatch")
    if table_hash is not None and header.table_hash != table_hash:
        raise StreamError(f"stream was made for entropy tables {header.table_hash}, this bundle has "
                          f"{table_hash}: decode it with the bundle that encoded it")
    if channels is not None and header.shape[0] != channels:
        raise StreamError(f"stream latent has {header.shape[0]} channels, this bundle's model has {channels}")
    return header, payload
