"""CR+BQ: a narrow bottleneck sent as 8-bit per-tensor affine quantized values, with no entropy coding (the
channel-reduction + bottleneck-quantization baseline of Matsubara et al., WACV 2022; sc2bench's "bq" models).

Per item the device graph's float latent ``z`` (C x h x w) is quantized with its own range:
``scale = (max - min) / 255``, ``zero_point = clip(round(-min / scale), 0, 255)``,
``q = clip(round(z / scale + zero_point), 0, 255)`` (float32 arithmetic, round half to even; a constant latent
gets scale 1). The receiver computes ``(q - zero_point) * scale``. The stream (codec kind "bq") holds one section
"z" whose payload is the scale (float32), the zero point (uint8) and the C*h*w uint8 values, little-endian::

    {"kind": "bq", "coder": "none", "precision": 8, "server_input": "z_hat",
     "sections": [{"name": "z", "input": "z", "tables": "quantizer.json", "hash": "<16 hex>"}]}

``quantizer.json`` names the scheme and the model it belongs to; its sha256 prefix is the section's table hash, so
a stream decodes only with the bundle whose model made it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sc2edge.errors import BundleError, Sc2edgeError, StreamError
from sc2edge.runtime.entropy import CODECS, EntropyCodec, LatentLimits
from sc2edge.runtime.manifest import UNCODED
from sc2edge.runtime.rans import EntropyTables

if TYPE_CHECKING:
    from sc2edge.runtime.bundle import Bundle

BITS = 8
LEVELS = (1 << BITS) - 1
SCHEME = "affine-per-tensor"
QUANTIZER_FILE = "quantizer.json"
_HEADER = struct.Struct("<fB")  # scale, zero point
MAX_QUANTIZER_BYTES = 64 << 10


@dataclass(frozen=True)
class QuantizedLatent:
    """One item's latent as sent: uint8 values (C x h x w), the scale and the zero point."""

    values: np.ndarray
    scale: np.float32
    zero_point: int


def quantize(latent: np.ndarray) -> QuantizedLatent:
    """A float latent (C x h x w) -> its 8-bit per-tensor affine quantization (see the module docstring)."""
    z = np.asarray(latent, dtype=np.float32)
    if not np.all(np.isfinite(z)):
        raise Sc2edgeError("the device graph gave a latent with NaN or infinite values; nothing to send")
    low, high = np.float32(z.min()), np.float32(z.max())
    scale = np.float32((high - low) / np.float32(LEVELS))
    if not (np.isfinite(scale) and scale > 0):
        scale = np.float32(1.0)
    zero_point = int(np.clip(np.rint(-low / scale), 0, LEVELS))
    values = np.clip(np.rint(z / scale + np.float32(zero_point)), 0, LEVELS).astype(np.uint8)
    return QuantizedLatent(values, scale, zero_point)


def dequantize(quantized: QuantizedLatent) -> np.ndarray:
    """What the receiver feeds the server graph: ``(q - zero_point) * scale`` as float32."""
    return (quantized.values.astype(np.float32) - np.float32(quantized.zero_point)) * quantized.scale


def pack(quantized: QuantizedLatent) -> bytes:
    return _HEADER.pack(float(quantized.scale), quantized.zero_point) + quantized.values.tobytes()


def unpack(payload: bytes, shape: tuple[int, int, int]) -> QuantizedLatent:
    """A section payload -> the quantized latent of ``shape``, refusing any length or scale that does not fit."""
    count = shape[0] * shape[1] * shape[2]
    if len(payload) != _HEADER.size + count:
        raise StreamError(f"bq section holds {len(payload)} bytes, a {shape} latent needs {_HEADER.size + count}")
    scale, zero_point = _HEADER.unpack_from(payload)
    scale = np.float32(scale)
    if not (np.isfinite(scale) and scale > 0):
        raise StreamError(f"bq section has scale {scale}; it must be a positive finite number")
    values = np.frombuffer(payload, dtype=np.uint8, offset=_HEADER.size).reshape(shape)
    return QuantizedLatent(values, scale, zero_point)


def quantizer_record(model: str, checkpoint_sha256: str | None) -> bytes:
    """The bytes of ``quantizer.json`` for a model: the scheme and the weights it belongs to."""
    record = {"scheme": SCHEME, "bits": BITS, "rounding": "half-to-even", "model": model,
              "checkpoint_sha256": checkpoint_sha256}
    return (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()


def record_hash(data: bytes) -> str:
    """The table hash of a quantizer record: 16 hex digits of its sha256."""
    return hashlib.sha256(data).hexdigest()[:16]


class BqCodec(EntropyCodec):
    """8-bit per-tensor quantization behind the entropy-codec interface: device output ``z`` (float32) -> stream
    section "z" (scale, zero point, uint8 values; no rANS) -> server input ``z_hat`` (float32)."""

    kind = "bq"
    server_dtype: ClassVar[type[np.generic]] = np.float32
    coder_name = UNCODED

    def __init__(self, spec: Mapping[str, Any], tables: Mapping[str, EntropyTables], limits: LatentLimits,
                 coder: str | None = None, quantizer_hash: str | None = None):
        super().__init__(spec, tables, limits, coder)
        if len(spec["sections"]) != 1 or quantizer_hash is None:
            raise BundleError(f"the bq entropy model codes one section with a quantizer record; the manifest lists "
                              f"{len(spec['sections'])} section(s)")
        section = spec["sections"][0]
        self.section, self.input = section["name"], section["input"]
        self.device_outputs = (self.input,)
        self.server_inputs = (str(spec.get("server_input", "z_hat")),)
        self.table_hashes = {self.section: quantizer_hash}

    @classmethod
    def from_bundle(cls, bundle: Bundle, spec: Mapping[str, Any], coder: str | None = None) -> BqCodec:
        section = spec["sections"][0]
        path = Path(bundle.path) / section["tables"]
        try:
            data = path.read_bytes()
            if len(data) > MAX_QUANTIZER_BYTES:
                raise ValueError(f"{len(data)} bytes")
            record = json.loads(data)
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path}: not a readable quantizer record ({exc})") from None
        if not isinstance(record, dict) or record.get("scheme") != SCHEME or record.get("bits") != BITS:
            raise BundleError(f"{path}: quantizer scheme {record.get('scheme') if isinstance(record, dict) else None}"
                              f" is not the {BITS}-bit {SCHEME} quantization this sc2edge implements")
        digest = record_hash(data)
        if digest != section["hash"]:
            raise BundleError(f"{path}: quantizer record hash {digest}, the manifest says {section['hash']}")
        return cls(spec, {}, LatentLimits(bundle.manifest), coder, digest)

    def encode_sections(self, outputs: Mapping[str, np.ndarray]) -> list[tuple[str, str, tuple[int, int, int],
                                                                              bytes]]:
        quantized = quantize(outputs[self.input])
        return [(self.section, self.table_hashes[self.section], quantized.values.shape, pack(quantized))]

    def decode_sections(self, shapes: Mapping[str, tuple[int, int, int]],
                        payloads: Mapping[str, bytes]) -> dict[str, np.ndarray]:
        shape = tuple(shapes[self.section])
        self.limits.check(shape)
        return {self.server_inputs[0]: dequantize(unpack(payloads[self.section], shape))}

    def section_symbols(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The uint8 values each item sends, as int32 (what precisions are compared on)."""
        return {self.section: quantize(outputs[self.input]).values.astype(np.int32)}


CODECS[BqCodec.kind] = BqCodec
