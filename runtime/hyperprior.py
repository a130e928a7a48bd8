"""The hyperprior's deterministic index path: z symbols -> h_s -> Gaussian scale indexes (and means), torch-free.

A mean-scale hyperprior codes each symbol of y with the CDF row ``index = build_indexes(scale)``, where the
scales (and the means) come from the side network h_s applied to the decoded side latent z_hat. Device and
server both run h_s; one index that differs desynchronises the rANS decoder (CompressAI issues #279, #320). So
h_s never runs in a graph runtime here: both ends run ``IndexPath``, a fixed sequence of IEEE-754 binary32
operations (the order is spelled out atop ``runtime/_hyperprior.c``) that gives the same bits on every machine.

Two implementations of that one order, checked against each other bit for bit by the tests:
* "native": ``sc2edge.runtime._hyperprior`` (C, built by ``pip install``; no FMA contraction, the FP environment
  reset to IEEE defaults during each call). The default.
* "numpy": the same operations as numpy element-wise float32 ufuncs (each correctly rounded; no reductions,
  whose order numpy does not fix). Used where the extension was not compiled; about ten times slower. Unlike
  the native path it inherits the thread's flush-to-zero setting, which only matters for denormal values.

The stream carries ``index_checksum(indexes)`` so that a server whose indexes differ anyway (a modified
runtime, another model) stops with a clear error instead of decoding garbage.
"""

from __future__ import annotations

import functools
import importlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from sc2edge.errors import BundleError, Sc2edgeError, StreamError
from sc2edge.runtime.rans import (
    MAX_ABS_SYMBOL,
    MAX_SYMBOLS,
    MIN_SYMBOLS,
    RANS64_L,
    EntropyTables,
    RansCoder,
    _ans_module,
    _decoder_padding_words,
    max_payload_bytes,
)

IMPLEMENTATIONS = ("native", "numpy")
LAYER_KINDS = ("conv2d", "conv_transpose2d", "leaky_relu")
MAX_CHANNELS = 4096
MAX_KERNEL = 15


@functools.cache
def _native_module() -> ModuleType | None:
    try:
        return importlib.import_module("sc2edge.runtime._hyperprior")
    except ImportError:
        return None


def available_implementations() -> list[str]:
    """The index-path implementations usable here, preferred first (both give the same bits)."""
    return [name for name in IMPLEMENTATIONS if name == "numpy" or _native_module() is not None]


@dataclass(frozen=True, eq=False)
class SideLayer:
    """One layer of h_s: a convolution (weight float32 (Co, Ci, K, K)), a transposed one (weight (Ci, Co, K, K)),
    or a leaky ReLU (``slope`` 0 is a ReLU)."""

    kind: str
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    slope: float = 0.0

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        channels, height, width = shape
        if self.kind == "leaky_relu":
            return shape
        k = self.weight.shape[2]
        if self.kind == "conv2d":
            out = self.weight.shape[0]
            size = [(n + 2 * self.padding - k) // self.stride + 1 for n in (height, width)]
        else:
            out = self.weight.shape[1]
            size = [(n - 1) * self.stride - 2 * self.padding + k + self.output_padding for n in (height, width)]
        if min(size) < 1:
            raise StreamError(f"side latent of {height} x {width} is too small for the hyperprior's h_s")
        return out, size[0], size[1]

    def spec(self) -> dict[str, object]:
        """The layer's hyperparameters as JSON (the weights travel as arrays)."""
        return {"kind": self.kind, "stride": self.stride, "padding": self.padding,
                "output_padding": self.output_padding, "slope": self.slope, "bias": self.bias is not None}


def _run_native(layer: SideLayer, x: np.ndarray, out_shape: tuple[int, int, int]) -> np.ndarray:
    native = _native_module()
    if layer.kind == "leaky_relu":
        x = x.copy()
        native.leaky_relu(x, layer.slope)
        return x
    out = np.empty(out_shape, np.float32)
    if layer.kind == "conv2d":
        native.conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding, out)
    else:
        native.conv_transpose2d(x, layer.weight, layer.bias, layer.stride, layer.padding, layer.output_padding, out)
    return out


def _run_numpy(layer: SideLayer, x: np.ndarray, out_shape: tuple[int, int, int]) -> np.ndarray:
    """The same operations in the same order as ``_hyperprior.c``, as element-wise float32 numpy ufuncs."""
    if layer.kind == "leaky_relu":
        negative = np.float32(0.0) if layer.slope == 0 else x * np.float32(layer.slope)
        return np.where(x > 0, x, negative).astype(np.float32)
    channels, out_h, out_w = out_shape
    weight, s, k = layer.weight, layer.stride, layer.weight.shape[2]
    out = np.zeros(out_shape, np.float32)
    if layer.kind == "conv2d":
        p = layer.padding
        xp = np.pad(x, ((0, 0), (p, p), (p, p)))
        for ci in range(x.shape[0]):
            for kh in range(k):
                for kw in range(k):
                    window = xp[ci, kh:kh + (out_h - 1) * s + 1:s, kw:kw + (out_w - 1) * s + 1:s]
                    out += weight[:, ci, kh, kw, None, None] * window[None]
    else:
        p = layer.padding
        for ci in range(x.shape[0]):
            for kh in range(k):
                rows = _transposed_span(x.shape[1], out_h, s, kh - p)
                if rows is None:
                    continue
                for kw in range(k):
                    cols = _transposed_span(x.shape[2], out_w, s, kw - p)
                    if cols is None:
                        continue
                    (i0, i1, o0, o1), (j0, j1, q0, q1) = rows, cols
                    out[:, o0:o1:s, q0:q1:s] += weight[ci, :, kh, kw, None, None] * x[ci, i0:i1, j0:j1][None]
    if layer.bias is not None:
        out += layer.bias[:, None, None]
    return out


def _transposed_span(size: int, out_size: int, stride: int, shift: int) -> tuple[int, int, int, int] | None:
    """Input indexes i0 <= i < i1 whose output i * stride + shift lies in [0, out_size), and that output range."""
    i0 = max(0, (stride - 1 - shift) // stride)
    i1 = min(size, (out_size - 1 - shift) // stride + 1)
    if i1 <= i0:
        return None
    return i0, i1, i0 * stride + shift, (i1 - 1) * stride + shift + 1


@dataclass(frozen=True, eq=False)
class IndexPath:
    """z symbols -> (scale indexes, means) of y, bit-identical on every machine (see the module docstring).

    Args:
        layers (tuple[SideLayer, ...]): h_s.
        z_medians (np.ndarray): float32 (Cz,), z_hat = z symbols + medians (the factorized prior's).
        scale_table (np.ndarray): float32 (L,), CompressAI's GaussianConditional.scale_table.
        scale_bound (float): the GaussianConditional's lower bound on scales (0.11).
        means (bool): h_s emits scales then means (mean-scale hyperprior); else scales only.
    """

    layers: tuple[SideLayer, ...]
    z_medians: np.ndarray
    scale_table: np.ndarray
    scale_bound: float
    means: bool = True

    def __post_init__(self) -> None:
        if not any(layer.kind != "leaky_relu" for layer in self.layers):
            raise BundleError("hyperprior: h_s has no convolution")
        for i, layer in enumerate(self.layers):
            _check_layer(i, layer)
        for name, value in (("z_medians", self.z_medians), ("scale_table", self.scale_table)):
            if value.dtype != np.float32 or value.ndim != 1 or not np.isfinite(value).all():
                raise BundleError(f"hyperprior: {name} must be a finite 1-d float32 array")
        if not 2 <= self.scale_table.size <= 256 or (np.diff(self.scale_table) <= 0).any():
            raise BundleError("hyperprior: the scale table must hold 2..256 increasing scales")
        if not np.isfinite(self.scale_bound) or self.scale_bound <= 0:
            raise BundleError(f"hyperprior: scale bound {self.scale_bound} must be positive")

    @property
    def latent_channels(self) -> int:
        last = next(layer for layer in reversed(self.layers) if layer.kind != "leaky_relu")
        channels = last.weight.shape[0] if last.kind == "conv2d" else last.weight.shape[1]
        return channels // 2 if self.means else channels

    def params(self, z_symbols: np.ndarray, implementation: str = "native") -> np.ndarray:
        """int32 (Cz, h, w) z symbols -> float32 h_s(z_hat), the Gaussian parameters (scales [+ means])."""
        if implementation not in available_implementations():
            raise Sc2edgeError(f'index path "{implementation}" is not available here '
                               f'(available: {", ".join(available_implementations())})')
        if z_symbols.dtype != np.int32 or z_symbols.ndim != 3 or z_symbols.shape[0] != self.z_medians.size:
            raise Sc2edgeError(f"z symbols must be int32 ({self.z_medians.size}, h, w), got "
                               f"{z_symbols.dtype} {z_symbols.shape}")
        z_symbols = np.ascontiguousarray(z_symbols)
        if implementation == "native":
            x = np.empty(z_symbols.shape, np.float32)
            _native_module().dequantize(z_symbols, self.z_medians, x)
        else:
            x = z_symbols.astype(np.float32) + self.z_medians[:, None, None]
        run = _run_native if implementation == "native" else _run_numpy
        for layer in self.layers:
            x = run(layer, x, layer.output_shape(x.shape))
        return x

    def indexes(self, scales: np.ndarray, implementation: str = "native") -> np.ndarray:
        """float32 scales -> int32 CDF indexes, CompressAI's ``GaussianConditional.build_indexes``."""
        scales = np.ascontiguousarray(scales, dtype=np.float32)
        if implementation == "native":
            out = np.empty(scales.shape, np.int32)
            _native_module().build_indexes(scales, self.scale_table, self.scale_bound, out)
            return out
        bounded = np.where(scales < np.float32(self.scale_bound), np.float32(self.scale_bound), scales)
        below = (bounded[..., None] <= self.scale_table[:-1]).sum(axis=-1, dtype=np.int32)
        return (np.int32(self.scale_table.size - 1) - below).astype(np.int32)

    def __call__(self, z_symbols: np.ndarray, implementation: str = "native") -> tuple[np.ndarray, np.ndarray | None]:
        """int32 z symbols -> (int32 indexes (C, H, W), float32 means (C, H, W) or None) of y."""
        params = self.params(z_symbols, implementation)
        channels = self.latent_channels
        scales, means = (params[:channels], params[channels:]) if self.means else (params, None)
        return self.indexes(scales, implementation), means

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The npz arrays that ``from_arrays`` reads back (the layer specs as one JSON string)."""
        arrays = {"z_medians": self.z_medians, "scale_table": self.scale_table,
                  "scale_bound": np.array([self.scale_bound], np.float32),
                  "layers": np.array(json.dumps({"means": self.means, "layers": [x.spec() for x in self.layers]}))}
        for i, layer in enumerate(self.layers):
            if layer.weight is not None:
                arrays[f"h_s.{i}.weight"] = layer.weight
            if layer.bias is not None:
                arrays[f"h_s.{i}.bias"] = layer.bias
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> IndexPath:
        try:
            spec = json.loads(str(arrays["layers"]))
            layers = []
            for i, entry in enumerate(spec["layers"]):
                conv = entry["kind"] != "leaky_relu"
                layers.append(SideLayer(
                    kind=entry["kind"], weight=arrays[f"h_s.{i}.weight"] if conv else None,
                    bias=arrays[f"h_s.{i}.bias"] if entry["bias"] else None, stride=int(entry["stride"]),
                    padding=int(entry["padding"]), output_padding=int(entry["output_padding"]),
                    slope=float(entry["slope"])))
            return cls(layers=tuple(layers), z_medians=arrays["z_medians"], scale_table=arrays["scale_table"],
                       scale_bound=float(arrays["scale_bound"][0]), means=bool(spec["means"]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BundleError(f"hyperprior side network is malformed ({type(exc).__name__}: {exc})") from None


def _check_layer(i: int, layer: SideLayer) -> None:
    if layer.kind not in LAYER_KINDS:
        raise BundleError(f"hyperprior: h_s layer {i} has unknown kind {layer.kind!r} (known: {LAYER_KINDS})")
    if layer.kind == "leaky_relu":
        if not np.isfinite(layer.slope):
            raise BundleError(f"hyperprior: h_s layer {i} has a non-finite slope")
        return
    weight = layer.weight
    if (not isinstance(weight, np.ndarray) or weight.dtype != np.float32 or weight.ndim != 4
            or weight.shape[2] != weight.shape[3] or not 1 <= weight.shape[2] <= MAX_KERNEL
            or max(weight.shape[:2]) > MAX_CHANNELS or not np.isfinite(weight).all()):
        raise BundleError(f"hyperprior: h_s layer {i} needs a finite float32 (C, C, K, K) weight, K <= {MAX_KERNEL}")
    out_channels = weight.shape[0] if layer.kind == "conv2d" else weight.shape[1]
    if layer.bias is not None and (layer.bias.dtype != np.float32 or layer.bias.shape != (out_channels,)):
        raise BundleError(f"hyperprior: h_s layer {i} bias must be float32 ({out_channels},)")
    if not (1 <= layer.stride <= 16 and 0 <= layer.padding <= 16 and 0 <= layer.output_padding < layer.stride):
        raise BundleError(f"hyperprior: h_s layer {i} has stride {layer.stride}, padding {layer.padding}, "
                          f"output padding {layer.output_padding}")


def index_checksum(indexes: np.ndarray) -> int:
    """CRC32 of the int32 little-endian index map: streams carry it, decoders compare it before decoding y."""
    return zlib.crc32(np.ascontiguousarray(indexes, dtype="<i4").tobytes())


def check_indexes(indexes: np.ndarray, expected: int) -> None:
    """Raise StreamError when this end's index map is not the one the encoder coded y with."""
    got = index_checksum(indexes)
    if got != expected:
        raise StreamError(f"hyperprior index map mismatch (stream {expected:08x}, computed here {got:08x}): this "
                          "decoder's side network differs from the encoder's; decoding would give garbage")


def load_index_path(path: str | Path) -> IndexPath:
    """Read an ``IndexPath`` from an npz written with ``np.savez(path, **path.to_arrays())`` (no pickle)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: cannot read the hyperprior side network ({exc})") from exc
    return IndexPath.from_arrays(arrays)


class IndexedCoder:
    """rANS with one CDF row per symbol (CompressAI's ``encode_with_indexes`` semantics) over ``tables``' rows.

    Interim: it drives CompressAI's compiled coder (loaded without torch, its decoder kept inside a zero-padded
    buffer as in ``rans._CompressAICoder``) until the native coder's ``encode_with_indexes`` lands on main.
    """

    def __init__(self, tables: EntropyTables):
        ans = _ans_module()
        self.tables = tables
        self._encoder, self._decoder = ans.RansEncoder(), ans.RansDecoder()
        self._cdfs = tables.quantized_cdf.tolist()
        self._lengths = tables.cdf_length.tolist()
        self._offsets = tables.offset.tolist()

    def _check(self, shape: tuple[int, ...], indexes: np.ndarray) -> int:
        if indexes.shape != tuple(shape) or indexes.dtype != np.int32:
            raise Sc2edgeError(f"indexes must be int32 {tuple(shape)}, got {indexes.dtype} {indexes.shape}")
        if indexes.size and (indexes.min() < 0 or indexes.max() >= self.tables.channels):
            raise Sc2edgeError(f"indexes must lie in 0..{self.tables.channels - 1}")
        count = int(np.prod(shape, dtype=np.int64))
        if not MIN_SYMBOLS <= count <= MAX_SYMBOLS:
            raise Sc2edgeError(f"{count} symbols; the coder takes {MIN_SYMBOLS} to {MAX_SYMBOLS}")
        return count

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        """int32 symbols and their int32 CDF indexes (same shape) -> CompressAI's rANS bytes."""
        self._check(symbols.shape, indexes)
        if symbols.dtype != np.int32 or (symbols.size and np.abs(symbols.astype(np.int64)).max() > MAX_ABS_SYMBOL):
            raise Sc2edgeError(f"symbols must be int32 within +-{MAX_ABS_SYMBOL}")
        return self._encoder.encode_with_indexes(symbols.ravel().tolist(), indexes.ravel().tolist(), self._cdfs,
                                                 self._lengths, self._offsets)

    def decode(self, payload: bytes, indexes: np.ndarray) -> np.ndarray:
        """rANS bytes + the indexes they were coded with -> int32 symbols of the indexes' shape."""
        count = self._check(indexes.shape, indexes)
        payload = bytes(payload)
        if len(payload) < 8 or len(payload) % 4 or len(payload) > max_payload_bytes(count):
            raise StreamError(f"rANS payload of {len(payload)} bytes is impossible for {count} symbols")
        if int.from_bytes(payload[:8], "little") < RANS64_L:
            raise StreamError("rANS payload is corrupt: its initial coder state is below 2**31")
        padded = payload + bytes(4 * _decoder_padding_words(count, len(payload) // 4))
        values = self._decoder.decode_with_indexes(padded, indexes.ravel().tolist(), self._cdfs, self._lengths,
                                                   self._offsets)
        return np.fromiter(values, dtype=np.int32, count=count).reshape(indexes.shape)


@dataclass(frozen=True)
class HyperpriorPayload:
    """What one image's hyperprior stream carries: the z and y rANS payloads, their shapes, the index checksum."""

    z: bytes
    y: bytes
    z_shape: tuple[int, int, int]
    y_shape: tuple[int, int, int]
    index_crc32: int


class HyperpriorCoder:
    """y (float, from the device graph) and z symbols <-> z and y payloads, through the deterministic index path.

    Args:
        z_tables (EntropyTables): the factorized prior of z (channel indexes, medians).
        y_tables (EntropyTables): the GaussianConditional's CDF rows, one per scale-table entry (medians unused).
        index_path (IndexPath): h_s + index selection, run identically by both ends.
        implementation (str): "native" or "numpy" index path (same bits). Defaults to "native" where built.
    """

    def __init__(self, z_tables: EntropyTables, y_tables: EntropyTables, index_path: IndexPath,
                 implementation: str | None = None):
        if y_tables.channels != index_path.scale_table.size:
            raise BundleError(f"the Gaussian tables have {y_tables.channels} rows, the scale table "
                              f"{index_path.scale_table.size} entries")
        self.z_coder = RansCoder(z_tables)
        self.y_coder = IndexedCoder(y_tables)
        self.index_path = index_path
        self.implementation = implementation or available_implementations()[0]

    def side_info(self, z_symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indexes, means) of y from z symbols; the means are zeros for a scale-only hyperprior."""
        indexes, means = self.index_path(z_symbols, self.implementation)
        return indexes, np.zeros(indexes.shape, np.float32) if means is None else means

    def encode(self, y: np.ndarray, z_symbols: np.ndarray) -> HyperpriorPayload:
        """float32 y (C, H, W) and int32 z symbols -> payloads; y symbols are round(y - means), CompressAI's."""
        indexes, means = self.side_info(z_symbols)
        if y.shape != indexes.shape:
            raise Sc2edgeError(f"latent y {y.shape} does not match h_s's output {indexes.shape}: this input size does "
                               "not suit the hyperprior (use the bundle's input size)")
        y_symbols = np.rint(y.astype(np.float32) - means).astype(np.int32)
        return HyperpriorPayload(z=self.z_coder.encode(z_symbols), y=self.y_coder.encode(y_symbols, indexes),
                                 z_shape=tuple(z_symbols.shape), y_shape=tuple(y.shape),
                                 index_crc32=index_checksum(indexes))

    def decode_symbols(self, payload: HyperpriorPayload) -> tuple[np.ndarray, np.ndarray]:
        """Payloads -> (int32 y symbols, float32 means); the index map is checked against the stream's CRC first."""
        z_symbols = self.z_coder.decode(payload.z, payload.z_shape)
        indexes, means = self.side_info(z_symbols)
        if indexes.shape != tuple(payload.y_shape):
            raise StreamError(f"stream says y is {payload.y_shape}, h_s gives {indexes.shape}")
        check_indexes(indexes, payload.index_crc32)
        return self.y_coder.decode(payload.y, indexes), means

    def decode(self, payload: HyperpriorPayload) -> np.ndarray:
        """Payloads -> y_hat = y symbols + means (float32), what the server graph's g_s reads."""
        y_symbols, means = self.decode_symbols(payload)
        return y_symbols.astype(np.float32) + means
