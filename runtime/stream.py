"""The ``.sc2`` stream container: a self-describing, checksummed wrapper around the named rANS payloads (sections)
of one item, written by an entropy codec (``runtime/entropy.py``).

Format 2 (written now; little-endian)::

    size  field
    4     magic b"SC2E"
    1     format version (2)
    1+k   entropy codec kind: its length k (1..16), then k ASCII bytes ("factorized", "hyperprior", ...)
    1     section count n (1..4)
    n x   section record:
      1+m   section name: its length m (1..16), then m ASCII bytes ("y", "z", ...)
      8     entropy table hash of the section (EntropyTables.hash, 16 hex digits as 8 bytes)
      6     symbol shape C, h, w (3 x uint16)
      4     payload length in bytes (uint32)
    4     CRC32 of every byte above followed by the payloads
    ...   the payloads, in section order

Format 1 (read only: streams on disk keep decoding), a 27-byte header for the factorized prior's one payload::

    4 magic b"SC2E" | 1 version (1) | 8 table hash | 6 shape C, h, w (3 x uint16) | 4 payload length (uint32)
    | 4 CRC32 of the 23 bytes before it followed by the payload | payload

It reads as codec "factorized" with one section "y".

Each section names the tables it was coded with, so decoding with another model's tables fails with a clear
message instead of producing confident garbage. Every size is checked against hard limits before anything is
allocated from it; what the bundle can produce (latent shapes) is checked by the entropy codec.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sc2edge.errors import StreamError
from sc2edge.runtime.rans import MAX_PAYLOAD_BYTES, MAX_SYMBOLS

MAGIC = b"SC2E"
FORMAT_VERSION = 2  # what pack_stream writes
READABLE_VERSIONS = (1, 2)
MAX_SECTIONS = 4
MAX_NAME_BYTES = 16  # codec kinds and section names
V1_CODEC, V1_SECTION = "factorized", "y"  # what a format-1 stream holds

_NAME = re.compile(r"[a-z0-9_\-]{1,16}")
_PREFIX = struct.Struct("<4sB")
_SECTION = struct.Struct("<8s3HI")  # after the section's name
_V1_HEADER = struct.Struct("<4sB8s3HI")  # everything the format-1 CRC covers, before the CRC itself
_CRC = struct.Struct("<I")
V1_HEADER_SIZE = _V1_HEADER.size + _CRC.size


@dataclass(frozen=True)
class Section:
    """One named payload of a stream: the tables it was coded with, the shape of its symbols, its length."""

    name: str
    table_hash: str
    shape: tuple[int, int, int]
    length: int

    @property
    def symbols(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]


@dataclass(frozen=True)
class StreamHeader:
    """The container's fields: format version, entropy codec kind, sections; ``size`` is the header's byte count."""

    version: int
    codec: str
    sections: tuple[Section, ...]
    crc32: int
    size: int

    @property
    def payload_length(self) -> int:
        return sum(section.length for section in self.sections)

    @property
    def symbols(self) -> int:
        return sum(section.symbols for section in self.sections)


def _hash_bytes(table_hash: str) -> bytes:
    try:
        raw = bytes.fromhex(table_hash)
    except (TypeError, ValueError):
        raw = b""
    if len(raw) != 8:
        raise StreamError(f'table hash must be 16 hex digits, got "{table_hash}"')
    return raw


def _check_name(name: str, what: str) -> bytes:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise StreamError(f'{what} "{name}" is not 1..{MAX_NAME_BYTES} characters of a-z, 0-9, "_" or "-"')
    return name.encode("ascii")


def _check_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3 or not all(isinstance(n, int) and 0 < n <= 0xFFFF for n in shape):
        raise StreamError(f"latent shape {tuple(shape)} is not C x h x w with each side in 1..65535")
    if shape[0] * shape[1] * shape[2] > MAX_SYMBOLS:
        raise StreamError(f"latent shape {tuple(shape)} has {shape[0] * shape[1] * shape[2]} symbols, "
                          f"over the limit of {MAX_SYMBOLS}")
    return shape


def _check_lengths(sections: Sequence[Section]) -> None:
    total = sum(section.length for section in sections)
    if total > MAX_PAYLOAD_BYTES:
        raise StreamError(f"payload lengths add up to {total} bytes, over the limit of {MAX_PAYLOAD_BYTES}")


def pack_stream(codec: str, sections: Sequence[tuple[str, str, tuple[int, int, int], bytes]]) -> bytes:
    """A format-2 stream of ``codec``'s sections, each (name, table hash, symbol shape (C, h, w), payload)."""
    if not 1 <= len(sections) <= MAX_SECTIONS:
        raise StreamError(f"a stream holds 1 to {MAX_SECTIONS} sections, got {len(sections)}")
    kind = _check_name(codec, "entropy codec kind")
    fields = [_PREFIX.pack(MAGIC, FORMAT_VERSION), bytes([len(kind)]), kind, bytes([len(sections)])]
    names, records = set(), []
    for name, table_hash, shape, payload in sections:
        raw_name = _check_name(name, "section name")
        if name in names:
            raise StreamError(f'section "{name}" appears twice')
        names.add(name)
        records.append(Section(name, table_hash, _check_shape(tuple(int(n) for n in shape)), len(payload)))
        fields += [bytes([len(raw_name)]), raw_name,
                   _SECTION.pack(_hash_bytes(table_hash), *records[-1].shape, len(payload))]
    _check_lengths(records)
    header = b"".join(fields)
    crc = zlib.crc32(header)
    for _, _, _, payload in sections:
        crc = zlib.crc32(payload, crc)
    return b"".join([header, _CRC.pack(crc), *(bytes(payload) for _, _, _, payload in sections)])


class _Reader:
    """Reads a header field by field, saying "truncated" the moment a field runs past the data."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, size: int, what: str) -> bytes:
        if self.at + size > len(self.data):
            raise StreamError(f"truncated stream: {len(self.data)} bytes end inside the header ({what})")
        self.at += size
        return self.data[self.at - size:self.at]

    def name(self, what: str) -> str:
        size = self.take(1, what)[0]
        raw = self.take(size, what)
        try:
            return _check_name(raw.decode("ascii"), what).decode("ascii")
        except UnicodeDecodeError:
            raise StreamError(f"{what} is not ASCII: {raw!r}") from None


def read_header(data: bytes) -> StreamHeader:
    """Parse and sanity-check the header only (for ``inspect``); the payloads are neither read nor verified."""
    data = bytes(data[:_PREFIX.size + 2 + MAX_NAME_BYTES + MAX_SECTIONS * (1 + MAX_NAME_BYTES + _SECTION.size)
                      + _CRC.size])  # the longest header there can be
    if data[:len(MAGIC)] != MAGIC[:len(data)]:
        raise StreamError(f"not an sc2edge stream (starts with {data[:4]!r}, expected {MAGIC!r})")
    if len(data) < _PREFIX.size:
        raise StreamError(f"truncated stream: {len(data)} bytes, shorter than the {_PREFIX.size}-byte prefix")
    version = data[4]
    if version not in READABLE_VERSIONS:
        raise StreamError(f"stream format version {version} is not supported (this sc2edge reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade sc2edge or re-encode the image")
    if version == 1:
        return _read_v1_header(data)
    reader = _Reader(data)
    reader.take(_PREFIX.size, "prefix")
    codec = reader.name("entropy codec kind")
    count = reader.take(1, "section count")[0]
    if not 1 <= count <= MAX_SECTIONS:
        raise StreamError(f"stream declares {count} sections; a stream holds 1 to {MAX_SECTIONS}")
    sections: list[Section] = []
    for _ in range(count):
        name = reader.name("section name")
        if any(section.name == name for section in sections):
            raise StreamError(f'section "{name}" appears twice')
        raw_hash, channels, height, width, length = _SECTION.unpack(reader.take(_SECTION.size, f"section {name}"))
        sections.append(Section(name, raw_hash.hex(), _check_shape((channels, height, width)), length))
    _check_lengths(sections)
    (crc,) = _CRC.unpack(reader.take(_CRC.size, "CRC32"))
    return StreamHeader(version, codec, tuple(sections), crc, reader.at)


def _read_v1_header(data: bytes) -> StreamHeader:
    if len(data) < V1_HEADER_SIZE:
        raise StreamError(f"truncated stream: {len(data)} bytes, shorter than the {V1_HEADER_SIZE}-byte header")
    _, _, raw_hash, channels, height, width, length = _V1_HEADER.unpack_from(data)
    section = Section(V1_SECTION, raw_hash.hex(), _check_shape((channels, height, width)), length)
    _check_lengths([section])
    (crc,) = _CRC.unpack_from(data, _V1_HEADER.size)
    return StreamHeader(1, V1_CODEC, (section,), crc, V1_HEADER_SIZE)


def unpack_stream(data: bytes, *, codec: str | None = None,
                  tables: Mapping[str, str] | None = None) -> tuple[StreamHeader, dict[str, bytes]]:
    """Check a whole stream (header, lengths, CRC, and optionally the codec and tables it was made for).

    Args:
        data (bytes): the stream.
        codec (str | None): the decoding bundle's entropy codec kind. Defaults to None (not checked).
        tables (Mapping[str, str] | None): the decoding bundle's table hash of each section, by section name;
            the stream must hold exactly these sections. Defaults to None (not checked).

    Returns:
        tuple[StreamHeader, dict[str, bytes]]: the header and each section's rANS payload, by section name.
    """
    data = bytes(data)
    header = read_header(data)
    end = header.size + header.payload_length
    if len(data) < end:
        raise StreamError(f"truncated stream: {len(data)} bytes, the header announces {end}")
    if len(data) > end:
        raise StreamError(f"{len(data) - end} unexpected bytes after the payload (stream is {len(data)} "
                          f"bytes, the header announces {end})")
    crc_at = header.size - _CRC.size
    if zlib.crc32(data[header.size:], zlib.crc32(data[:crc_at])) != header.crc32:
        raise StreamError("stream is corrupt: CRC32 mismatch")
    if codec is not None and header.codec != codec:
        raise StreamError(f'stream was coded by the "{header.codec}" entropy model, this bundle uses "{codec}"')
    if tables is not None:
        names = [section.name for section in header.sections]
        if sorted(names) != sorted(tables):
            raise StreamError(f"stream holds sections {', '.join(names)}; this bundle's entropy model codes "
                              f"{', '.join(tables)}")
        for section in header.sections:
            if section.table_hash != tables[section.name]:
                raise StreamError(f'stream section "{section.name}" was made for entropy tables '
                                  f"{section.table_hash}, this bundle has {tables[section.name]}: decode it with "
                                  "the bundle that encoded it")
    payloads, at = {}, header.size
    for section in header.sections:
        payloads[section.name] = data[at:at + section.length]
        at += section.length
    return header, payloads
