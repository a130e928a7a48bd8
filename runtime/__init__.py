"""The deployable layer: exported graph + CompressAI-compatible rANS + a safe, versioned stream container.

Torch-free by design (a test checks it): a device needs numpy, Pillow and its graph runtime. The rANS coder
is sc2edge's own bounds-checked C extension (``_rans``), byte-identical to CompressAI's; where it was not
compiled, CompressAI's compiled coder is used instead (``pip install --no-deps compressai``).
"""

from sc2edge.runtime.backends import available_backends, create_runner
from sc2edge.runtime.bundle import Artifact, Bundle
from sc2edge.runtime.entropy import CODECS, EntropyCodec, FactorizedCodec, open_codec
from sc2edge.runtime.halves import Decoder, Encoder
from sc2edge.runtime.preprocess import preprocess_image
from sc2edge.runtime.rans import (
    MAX_PAYLOAD_BYTES,
    MAX_SYMBOLS,
    EntropyTables,
    RansCoder,
    available_coders,
    coder_label,
    max_payload_bytes,
)
from sc2edge.runtime.stream import FORMAT_VERSION, Section, StreamHeader, pack_stream, read_header, unpack_stream

__all__ = [
    "CODECS", "FORMAT_VERSION", "MAX_PAYLOAD_BYTES", "MAX_SYMBOLS", "EntropyCodec", "FactorizedCodec", "Section",
    "StreamHeader", "coder_label", "open_codec",
    "max_payload_bytes", "Artifact", "Bundle", "Decoder", "Encoder", "EntropyTables", "RansCoder", "available_backends",
    "available_coders", "create_runner", "pack_stream", "preprocess_image", "read_header", "unpack_stream",
]
