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

import struct
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sc2edge.errors import BundleError, Sc2edgeError, StreamError
from sc2edge.runtime.manifest import v2_entropy
from sc2edge.runtime.rans import MAX_SYMBOLS, EntropyTables, RansCoder
from sc2edge.runtime.stream import MAX_SECTIONS, StreamHeader, pack_stream, read_header, unpack_stream
from sc2edge.tasks.base import ImageSizes

if TYPE_CHECKING:
    from sc2edge.runtime.bundle import Bundle

_SECTION_KEYS = ("name", "input", "tables", "hash")
MAX_INPUT_SCALE = 4  # a stream's latent may come from an image up to 4x the exported input side, no larger


def entropy_spec(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's ``entropy`` section in the v2 layout (kind + sections), whichever layout it was written in,
    checked for shape (BundleError names what is off).

    A format-1 section is read through the manifest's own adapter (``manifest.v2_entropy``).
    """
    entropy = v2_entropy(manifest.get("entropy"))
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


def smallest_input_side(geometry: Sequence[Sequence[int]]) -> int:
    """The smallest input side whose latent has at least one row through the encoder's convolutions."""
    side = 1
    while latent_size(side, geometry) < 1:
        side += 1
    return side


class LatentLimits:
    """The latent shapes a bundle's device graph can produce and its server graph takes.

    The channel count is the model's. Height and width lie between ``latent.min_shape`` (the smallest latent both
    graphs ran on at export, measured on every exported runtime; smaller latents can fail inside the graph runtime,
    some runtimes for every later request too) and ``latent.max_shape`` (the latent of an image
    ``MAX_INPUT_SCALE`` times the exported input side: a stream declaring more is refused before its payload is
    decoded, as no device of this bundle makes it). Bundles written before the minimum was measured use the
    exported latent (``latent.shape``) as the lower bound. ``dynamic``: the bundle's input follows the image
    (no crop), so its streams carry the image sizes.
    """

    def __init__(self, manifest: Mapping[str, Any]):
        try:
            latent, image = manifest["latent"], manifest["input"]
            self.channels, exported_height, exported_width = (int(n) for n in latent["shape"])
            self.geometry = [(int(k), int(s), int(p)) for k, s, p in latent["geometry"]]
            _, self.min_height, self.min_width = (int(n) for n in latent.get("min_shape") or latent["shape"])
            if latent.get("max_shape"):
                _, self.max_height, self.max_width = (int(n) for n in latent["max_shape"])
            else:
                self.max_height = max(exported_height, latent_size(MAX_INPUT_SCALE * int(image["height"]),
                                                                   self.geometry))
                self.max_width = max(exported_width, latent_size(MAX_INPUT_SCALE * int(image["width"]), self.geometry))
            self.dynamic = bool(image.get("dynamic", False))
        except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
            raise BundleError(f"the manifest's latent or input section is malformed ({exc!r})") from None
        if (min(self.channels, self.min_height, self.min_width) < 1 or self.min_height > self.max_height
                or self.min_width > self.max_width or self.max_height * self.max_width > MAX_SYMBOLS):
            raise BundleError(f"the manifest's latent shape {latent['shape']} or input size is out of range")

    def check(self, shape: tuple[int, ...], error: type[Sc2edgeError] = StreamError) -> None:
        channels, height, width = shape
        if channels != self.channels:
            raise error(f"latent has {channels} channels, this bundle's model has {self.channels}")
        if not (self.min_height <= height <= self.max_height and self.min_width <= width <= self.max_width):
            raise error(f"latent of {height} x {width} is outside what this bundle's model takes "
                        f"({self.min_height}..{self.max_height} x {self.min_width}..{self.max_width})")

    def latent_of(self, height: int, width: int) -> tuple[int, int]:
        """The latent's height and width for an input of ``height`` x ``width`` pixels."""
        return latent_size(height, self.geometry), latent_size(width, self.geometry)


# The image sizes travel in a stream section of their own (never entropy coded): "image", its shape
# (1, input height, input width), its payload the original height and width (2 x uint16), then, only where the input
# is padded (detection: to a multiple of 32), the resized image's height and width inside it (2 more uint16), its
# "table hash" a fixed tag. Only bundles with a dynamic input write it; every bundle reads streams with or without it.
IMAGE_SECTION = "image"
IMAGE_SECTION_TAG = b"imgsize1".hex()
_ORIGINAL_SIZE = struct.Struct("<2H")
_PADDED_SIZES = struct.Struct("<4H")


def image_section(sizes: ImageSizes) -> tuple[str, str, tuple[int, int, int], bytes]:
    """The stream section that carries an image's original and input sizes (and its resized size, if padded)."""
    (height, width), (input_height, input_width) = sizes.original, sizes.input
    if not (0 < height <= 0xFFFF and 0 < width <= 0xFFFF):
        raise StreamError(f"image of {height} x {width} pixels does not fit a stream (sides 1..65535)")
    payload = _ORIGINAL_SIZE.pack(height, width)
    if sizes.content is not None and tuple(sizes.content) != tuple(sizes.input):
        payload = _PADDED_SIZES.pack(height, width, *sizes.content)
    return IMAGE_SECTION, IMAGE_SECTION_TAG, (1, int(input_height), int(input_width)), payload


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

    @property
    def latent_section(self) -> str:
        """The section that codes the latent (the server graph's input size follows it; the bench sizes and compares
        its symbols): the last one the manifest declares, as side information comes before what it describes (a
        hyperprior's "z" before "y"; the factorized prior's one "y"; CR+BQ's one "z")."""
        return self.spec["sections"][-1]["name"]

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

    def compress(self, outputs: Mapping[str, np.ndarray], sizes: ImageSizes | None = None) -> bytes:
        """One item's device outputs (and, for a dynamic input, the image's sizes) -> a stream."""
        sections = self.encode_sections(outputs)
        if self.limits.dynamic:
            if sizes is None:
                raise Sc2edgeError("this bundle's input is dynamic: its streams carry the image sizes, give them")
            sections.append(image_section(sizes))
        return pack_stream(self.kind, sections)

    def decompress(self, stream: bytes) -> dict[str, np.ndarray]:
        """A stream -> one item's server inputs, after checking its container, codec, tables and latent shapes
        against this bundle (before any payload is decoded)."""
        return self.decompress_sized(stream)[0]

    def decompress_sized(self, stream: bytes) -> tuple[dict[str, np.ndarray], ImageSizes | None]:
        """A stream -> one item's server inputs and the image sizes it carries (None when it carries none)."""
        tables = dict(self.table_hashes)
        if any(section.name == IMAGE_SECTION for section in read_header(stream).sections):
            tables[IMAGE_SECTION] = IMAGE_SECTION_TAG
        header, payloads = unpack_stream(stream, codec=self.kind, tables=tables)
        sizes = self._image_sizes(header, payloads.pop(IMAGE_SECTION, None))
        shapes = {section.name: section.shape for section in header.sections if section.name != IMAGE_SECTION}
        return self.decode_sections(shapes, payloads), sizes

    def _image_sizes(self, header: StreamHeader, payload: bytes | None) -> ImageSizes | None:
        """The image section's sizes, checked against the latent they must have given."""
        if payload is None:
            return None
        section = next(s for s in header.sections if s.name == IMAGE_SECTION)
        if len(payload) not in (_ORIGINAL_SIZE.size, _PADDED_SIZES.size) or section.shape[0] != 1:
            raise StreamError("the stream's image section is malformed")
        original, content = (_ORIGINAL_SIZE.unpack(payload), None) if len(payload) == _ORIGINAL_SIZE.size else (
            _PADDED_SIZES.unpack(payload)[:2], _PADDED_SIZES.unpack(payload)[2:])
        input_size = section.shape[1:]
        if content is not None and not (0 < content[0] <= input_size[0] and 0 < content[1] <= input_size[1]):
            raise StreamError(f"the stream's image section puts a {content[0]} x {content[1]} image in a "
                              f"{input_size[0]} x {input_size[1]} input")
        latent = self.limits.latent_of(*input_size)
        for other in header.sections:
            if other.name == self.latent_section and tuple(other.shape[1:]) != latent:
                raise StreamError(f"the stream's image section says {input_size[0]} x {input_size[1]} pixels, "
                                  f"which give a {latent[0]} x {latent[1]} latent, not its {other.shape[1]} x "
                                  f"{other.shape[2]}")
        if min(original) < 1:
            raise StreamError("the stream's image section declares an empty image")
        return ImageSizes((original[0], original[1]), (input_size[0], input_size[1]),
                          None if content is None else (content[0], content[1]))


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
