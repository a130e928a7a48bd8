"""Compressed size: raw bytes, bits per pixel, the model's own information content and the coder's overhead.

The information content is -log2 p(symbol) under the bundle's quantized CDF tables, i.e. what an ideal coder
using exactly these tables would spend; out-of-range values cost the escape symbol plus the bypass bits that
CompressAI's rANS writes for them (4-bit chunks, and the chunk count in 4-bit chunks of at most 15). The gap
between that and the stream's real size is the rANS coder's own overhead (state flush, 32-bit words).
"""

from __future__ import annotations

import pickle
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sc2edge.runtime.stream import unpack_stream

PRECISION_BITS = 16  # CompressAI's rANS CDF precision
_BYPASS_BITS = 4
_MAX_BYPASS = (1 << _BYPASS_BITS) - 1


def information_bits(symbols: np.ndarray, quantized_cdf: np.ndarray, cdf_length: np.ndarray,
                     offset: np.ndarray) -> float:
    """Ideal code length in bits of int32 CHW ``symbols`` under the per-channel quantized CDFs."""
    channels = symbols.shape[0]
    values = symbols.reshape(channels, -1).astype(np.int64) - offset.astype(np.int64)[:, None]
    max_value = (cdf_length.astype(np.int64) - 2)[:, None]
    below, above = values < 0, values >= max_value
    escape = below | above
    index = np.where(escape, max_value, values)
    cdf = quantized_cdf.astype(np.int64)
    freq = np.take_along_axis(cdf, index + 1, axis=1) - np.take_along_axis(cdf, index, axis=1)
    bits = float(np.sum(PRECISION_BITS - np.log2(freq)))
    if escape.any():
        raw = np.where(below, -2 * values - 1, 2 * (values - max_value))[escape]
        n_bypass = np.zeros(raw.shape, dtype=np.int64)
        remaining = raw.copy()
        while (remaining > 0).any():
            n_bypass += remaining > 0
            remaining >>= _BYPASS_BITS
        bits += float(np.sum(_BYPASS_BITS * (n_bypass // _MAX_BYPASS + 1 + n_bypass)))
    return bits


def paper_kb(payload: bytes, shape: tuple[int, int]) -> float:
    """sc2bench's reported "KB": the size of a pickled {'strings', 'shape'} dict (our own data; never unpickled)."""
    return sys.getsizeof(pickle.dumps({"strings": [[payload]], "shape": tuple(shape)})) / 1024


@dataclass(frozen=True)
class ImageSize:
    """One image's compressed size, every way it is commonly reported."""

    image: str
    stream_bytes: int  # what is sent: container header + payload
    payload_bytes: int  # the rANS payloads alone, byte-identical to CompressAI's compress()
    bpp: float  # payload bits per pixel of the model's input
    information_bits: float
    coder_overhead: float  # payload bits / information bits - 1
    paper_kb: float
    section_bytes: dict[str, int] = field(default_factory=dict)  # each coded section's payload ("y"; "z", "y")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def image_size(image: str, stream: bytes, symbols: np.ndarray, tables, input_hw: tuple[int, int], *,
               codec: Any = None) -> ImageSize:
    """Sizes of one image's stream; ``tables`` is the bundle's EntropyTables, ``symbols`` the latent's (for sc2bench's
    "KB"). With the bundle's entropy ``codec``, each coded section is counted (a hyperprior's z and y, under the
    Gaussian row its index path picks for each y symbol), else the factorized prior's one section."""
    _, payloads = unpack_stream(stream)
    sections = {name: payload for name, payload in payloads.items() if codec is None or name in codec.tables}
    payload = b"".join(sections.values())
    if codec is not None and codec.kind == "hyperprior":
        info = hyperprior_information_bits(codec, stream)
    else:
        info = information_bits(symbols, tables.quantized_cdf, tables.cdf_length, tables.offset)
    return ImageSize(
        image=image, stream_bytes=len(stream), payload_bytes=len(payload),
        bpp=8 * len(payload) / (input_hw[0] * input_hw[1]), information_bits=info,
        coder_overhead=8 * len(payload) / info - 1 if info > 0 else float("nan"),
        paper_kb=paper_kb(payload, symbols.shape[-2:]),
        section_bytes={name: len(p) for name, p in sections.items()},
    )


def hyperprior_information_bits(codec: Any, stream: bytes) -> float:
    """Ideal code length of a hyperprior stream: z under its channels' CDFs, y under the row of each symbol."""
    header, payloads = unpack_stream(stream)
    shapes = {section.name: tuple(section.shape) for section in header.sections}
    coder = codec.coder
    z = coder.z_coder.decode(payloads["z"], shapes["z"])
    indexes, _ = coder.side_info(z)
    y = coder.y_coder.decode_with_indexes(payloads["y"], indexes)
    zt, yt, rows = coder.z_coder.tables, coder.y_coder.tables, indexes.ravel()
    return (information_bits(z, zt.quantized_cdf, zt.cdf_length, zt.offset)
            + information_bits(y.reshape(-1, 1), yt.quantized_cdf[rows], yt.cdf_length[rows], yt.offset[rows]))


def summarize(sizes: list[ImageSize]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of every numeric field over a folder."""
    out = {}
    for key in ("stream_bytes", "payload_bytes", "bpp", "information_bits", "coder_overhead", "paper_kb"):
        values = np.array([getattr(s, key) for s in sizes], dtype=np.float64)
        out[key] = {"mean": float(values.mean()), "std": float(values.std())} if values.size else {}
    for name in dict.fromkeys(n for s in sizes for n in s.section_bytes):  # e.g. "section_bytes.z"
        values = np.array([s.section_bytes.get(name, 0) for s in sizes], dtype=np.float64)
        out[f"section_bytes.{name}"] = {"mean": float(values.mean()), "std": float(values.std())}
    return out
