"""Entropy models behind one interface: what the device graph outputs -> named stream sections -> what the server
graph takes.

An ``EntropyCodec`` names the device graph outputs it consumes (``device_outputs``) and the server graph inputs
it produces (``server_inputs``); ``compress`` turns one item's device outputs into a stream (``runtime/stream.py``,
one section per payload, each with its table hash), ``decompress`` checks a stream and turns its sections back
into server inputs. The bundle manifest's ``entropy`` section picks the codec by ``kind``::

    {"kind": "factorized", "coder": "compressai-rans64", "precision": 16,
     "sections": [{"name": "y", "input": "symbols", "tables": "tables.npz", "hash": "<16 hex>"}]}

A new entropy model (a hyperprior: sections "z" then "y", indexes from a side network) is a new file in
``runtime/`` with a subclass, plus one entry in ``CODECS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sc2edge.errors import BundleError, Sc2edgeError, StreamError
from sc2edge.runtime.rans import MAX_SYMBOLS, EntropyTables, RansCoder
from sc2edge.runtime.stream import MAX_SECTIONS, pack_stream, unpack_stream

if TYPE_CHECKING:
    from sc2edge.runtime.bundle import Bundle

_SECTION_KEYS = ("name", "input", "tables", "hash")
MAX_INPUT_SCALE = 4  # a stream's latent may come from an image up to 4x the exported input side, no larger


def entropy_spec(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's ``entropy`` section in the v2 layout (kind + sections), whichever layout it was written in,
    checked for shape (BundleError names what is off).

    Format-1 manifests hold ``{"coder", "precision", "file", "hash"}``: the factorized prior with one section "y"
    coded from the device output "symbols".
    """
    entropy = manifest.get("entropy")
    if isinstance(entropy, Mapping) and "sections" not in entropy:
        entropy = {"kind": "factorized", "coder": entropy.get("coder"), "precision": entropy.get("precision"),
                   "sections": [{"name": "y", "input": "symbols", "tables": entropy.get("file"),
                                 "hash": entropy.get("hash")}]}
    sections = entropy.get("sections") if isinstance(entropy, Mapping) else None
    well_formed = (isinstance(sections, list) and isinstance(entropy.get("kind"), str)
                   and 1 <= len(sections) <= MAX_SECTIONS
                   and all(isinstance(s, Mapping) and all(isinstance(s.get(k), str) for k in _SECTION_KEYS)
                           for s in sections))
    if not well_formed:
        raise BundleError(f"the manifest's entropy section is malformed: expected a kind and 1 to {MAX_SECTIONS} "
                          f"sections, each with {', '.join(_SECTION_KEYS)} (or the format-1 file and hash)")
    return dict(entropy)


def latent_size(size: int, geometry: Sequence[Sequence[int]]) -> int:
    """Spatial size of the latent for an input side of ``size`` pixels, through the encoder's convolutions
    (kernel, stride, padding)."""
    for kernel, stride, padding in geometry:
        size = (size + 2 * padding - kernel) // stride + 1
    return size


class LatentLimits:
    """The latent shapes a bundle's device graph can produce and its server graph takes.

    The channel count is the model's. Height and width lie between the bundle's exported latent side
    (``latent.shape``, what an image at the exported input size gives; the server graph is validated there and
    smaller latents can fail inside the graph runtime, some runtimes for every later request too) and the latent
    of an image ``MAX_INPUT_SCALE`` times the exported input side (a stream declaring more is refused before its
    payload is decoded, as no device of this bundle makes it).
    """

    def __init__(self, manifest: Mapping[str, Any]):
        try:
            latent, image = manifest["latent"], manifest["input"]
            self.channels, self.min_height, self.min_width = (int(n) for n in latent["shape"])
            geometry = [(int(k), int(s), int(p)) for k, s, p in latent["geometry"]]
            self.max_height = max(self.min_height, latent_size(MAX_INPUT_SCALE * int(image["height"]), geometry))
            self.max_width = max(self.min_width, latent_size(MAX_INPUT_SCALE * int(image["width"]), geometry))
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise BundleError(f"the manifest's latent or input section is malformed ({exc!r})") from None
        if min(self.channels, self.min_height, self.min_width) < 1 or self.max_height * self.max_width > MAX_SYMBOLS:
            raise BundleError(f"the manifest's latent shape {latent['shape']} or input size is out of range")

    def check(self, shape: tuple[int, ...], error: type[Sc2edgeError] = StreamError) -> None:
        channels, height, width = shape
        if channels != self.channels:
            raise error(f"latent has {channels} channels, this bundle's model has {self.channels}")
        if not (self.min_height <= height <= self.max_height and self.min_width <= width <= self.max_width):
            raise error(f"latent of {height} x {width} is outside what this bundle's model takes "
                        f"({self.min_height}..{self.max_height} x {self.min_width}..{self.max_width})")


class EntropyCodec(ABC):
    """One entropy model: device graph outputs <-> stream sections <-> server graph inputs, for one item.

    Args:
        spec (Mapping): the manifest's entropy section (v2 layout, see ``entropy_spec``).
        tables (Mapping[str, EntropyTables]): each section's tables, by section name, hashes already checked.
        limits (LatentLimits): the latent shapes the bundle takes.
        coder (str | None): the rANS coder ("native", "compressai"). Defaults to None (the first available).
    """

    kind: ClassVar[str]
    device_outputs: tuple[str, ...]  # device graph outputs consumed, in order
    server_inputs: tuple[str, ...]  # server graph inputs produced
    server_dtype: ClassVar[type[np.generic]] = np.int32  # their dtype (the symbols, or a float latent)
    coder_name: str  # the rANS coder at work ("native" or "compressai")

    def __init__(self, spec: Mapping[str, Any], tables: Mapping[str, EntropyTables], limits: LatentLimits,
                 coder: str | None = None):
        self.spec, self.tables, self.limits = spec, dict(tables), limits
        self.table_hashes = {name: table.hash for name, table in self.tables.items()}

    @classmethod
    def from_bundle(cls, bundle: Bundle, spec: Mapping[str, Any], coder: str | None = None) -> EntropyCodec:
        """The codec of ``bundle``; a codec that needs files beyond its sections' tables reads them here."""
        return cls(spec, section_tables(bundle, spec), LatentLimits(bundle.manifest), coder)

    @abstractmethod
    def encode_sections(self, outputs: Mapping[str, np.ndarray]) -> list[tuple[str, str, tuple[int, int, int],
                                                                              bytes]]:
        """One item's device outputs (no batch axis) -> (section name, table hash, shape, payload) in order."""

    @abstractmethod
    def decode_sections(self, shapes: Mapping[str, tuple[int, int, int]],
                        payloads: Mapping[str, bytes]) -> dict[str, np.ndarray]:
        """Each section's checked shape and payload -> one item's server inputs (no batch axis)."""

    @abstractmethod
    def section_symbols(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One item's device outputs -> the int32 symbols each section codes, by section name (what check-quant
        compares between precisions and the bench sizes)."""

    def compress(self, outputs: Mapping[str, np.ndarray]) -> bytes:
        """One item's device outputs -> a stream."""
        return pack_stream(self.kind, self.encode_sections(outputs))

    def decompress(self, stream: bytes) -> dict[str, np.ndarray]:
        """A stream -> one item's server inputs, after checking its container, codec, tables and latent shapes
        against this bundle (before any payload is decoded)."""
        header, payloads = unpack_stream(stream, codec=self.kind, tables=self.table_hashes)
        shapes = {section.name: section.shape for section in header.sections}
        return self.decode_sections(shapes, payloads)


class FactorizedCodec(EntropyCodec):
    """The factorized prior (CompressAI's EntropyBottleneck): one section whose symbols are the device output
    itself, each coded with its channel's CDF; the server graph takes the decoded symbols as they are."""

    kind = "factorized"

    def __init__(self, spec: Mapping[str, Any], tables: Mapping[str, EntropyTables], limits: LatentLimits,
                 coder: str | None = None):
        super().__init__(spec, tables, limits, coder)
        if len(spec["sections"]) != 1:
            raise BundleError(f"the factorized entropy model codes one section, the manifest lists "
                              f"{len(spec['sections'])}")
        section = spec["sections"][0]
        self.section, self.input = section["name"], section["input"]
        self.device_outputs = self.server_inputs = (self.input,)
        self.coder = RansCoder(self.tables[self.section], coder)
        self.coder_name = self.coder.name
        if self.coder.tables.channels != limits.channels:
            raise BundleError(f"entropy tables have {self.coder.tables.channels} channels, the latent "
                              f"{limits.channels}")

    def encode_sections(self, outputs: Mapping[str, np.ndarray]) -> list[tuple[str, str, tuple[int, int, int],
                                                                              bytes]]:
        symbols = outputs[self.input]
        return [(self.section, self.table_hashes[self.section], symbols.shape, self.coder.encode(symbols))]

    def section_symbols(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {self.section: outputs[self.input]}

    def decode_sections(self, shapes: Mapping[str, tuple[int, int, int]],
                        payloads: Mapping[str, bytes]) -> dict[str, np.ndarray]:
        shape = shapes[self.section]
        self.limits.check(shape)
        return {self.input: self.coder.decode(payloads[self.section], shape)}


CODECS: dict[str, type[EntropyCodec]] = {FactorizedCodec.kind: FactorizedCodec}


def section_tables(bundle: Bundle, spec: Mapping[str, Any]) -> dict[str, EntropyTables]:
    """Each section's tables: the bundle's own (already verified) where the hash matches, else read from the
    section's file and checked against its hash."""
    tables = {}
    for section in spec["sections"]:
        found = bundle.tables if bundle.tables and bundle.tables.hash == section["hash"] else EntropyTables.load(
            bundle.path / section["tables"])
        if found.hash != section["hash"]:
            raise BundleError(f"{bundle.path}: entropy tables {section['tables']} hash {found.hash}, the manifest "
                              f"says {section['hash']}")
        tables[section["name"]] = found
    return tables


def open_codec(bundle: Bundle, coder: str | None = None) -> EntropyCodec:
    """The entropy codec a bundle's manifest names, with its tables and latent limits."""
    import sc2edge.runtime.bq  # noqa: F401  (registers "bq"; it builds on this module)
    import sc2edge.runtime.hyperprior  # noqa: F401  (registers "hyperprior"; it builds on this module)

    spec = entropy_spec(bundle.manifest)
    codec = CODECS.get(spec.get("kind"))
    if codec is None:
        raise BundleError(f'{bundle.path}: entropy model "{spec.get("kind")}" is not known to this sc2edge '
                          f"(known: {', '.join(CODECS)}); upgrade sc2edge")
    return codec.from_bundle(bundle, spec, coder)
