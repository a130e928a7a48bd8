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
import hashlib
import importlib
import json
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from sc2edge.errors import BundleError, Sc2edgeError, StreamError
from sc2edge.runtime.entropy import CODECS, EntropyCodec, LatentLimits, section_tables
from sc2edge.runtime.manifest import bundle_path
from sc2edge.runtime.rans import EntropyTables, RansCoder

if TYPE_CHECKING:
    from sc2edge.runtime.bundle import Bundle

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
        channels = self.z_medians.shape[0] if isinstance(self.z_medians, np.ndarray) else -1
        for i, layer in enumerate(self.layers):
            if layer.kind != "leaky_relu":
                inputs, outputs = layer.weight.shape[:2] if layer.kind == "conv_transpose2d" else \
                    layer.weight.shape[1::-1]
                if inputs != channels:
                    raise BundleError(f"hyperprior: h_s layer {i} takes {inputs} channels, gets {channels}")
                channels = outputs
        for name, value in (("z_medians", self.z_medians), ("scale_table", self.scale_table)):
            if value.dtype != np.float32 or value.ndim != 1 or not np.isfinite(value).all():
                raise BundleError(f"hyperprior: {name} must be a finite 1-d float32 array")
        if not 2 <= self.scale_table.size <= 256 or (np.diff(self.scale_table) <= 0).any():
            raise BundleError("hyperprior: the scale table must hold 2..256 increasing scales")
        if not np.isfinite(self.scale_bound) or self.scale_bound <= 0:
            raise BundleError(f"hyperprior: scale bound {self.scale_bound} must be positive")

    def output_shape(self, z_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The shape of y (scales only) that h_s gives for a side latent of ``z_shape``."""
        shape = tuple(int(n) for n in z_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return self.latent_channels, shape[1], shape[2]

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

    @functools.cached_property
    def hash(self) -> str:
        """16 hex digits identifying the side network (streams carry it beside the index-map CRC): sha256 over
        each array of ``to_arrays()`` in name order, as ``name \\0 dtype.str \\0 shape \\0`` then its bytes."""
        digest = hashlib.sha256()
        for name, value in sorted(self.to_arrays().items()):
            value = np.ascontiguousarray(value)
            shape = ",".join(str(n) for n in value.shape)
            digest.update(f"{name}\0{value.dtype.str}\0{shape}\0".encode("ascii"))
            digest.update(value.tobytes())
        return digest.hexdigest()[:16]

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
        implementation (str | None): "native" or "numpy" index path (same bits). Defaults to "native" where built.
        coder (str | None): the rANS coder ("native", "compressai"). Defaults to None (the first available).
    """

    def __init__(self, z_tables: EntropyTables, y_tables: EntropyTables, index_path: IndexPath,
                 implementation: str | None = None, coder: str | None = None):
        if y_tables.channels != index_path.scale_table.size:
            raise BundleError(f"the Gaussian tables have {y_tables.channels} rows, the scale table "
                              f"{index_path.scale_table.size} entries")
        self.z_coder = RansCoder(z_tables, coder)
        self.y_coder = RansCoder(y_tables, coder)
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
        return HyperpriorPayload(z=self.z_coder.encode(z_symbols),
                                 y=self.y_coder.encode_with_indexes(y_symbols, indexes),
                                 z_shape=tuple(z_symbols.shape), y_shape=tuple(y.shape),
                                 index_crc32=index_checksum(indexes))

    def decode_symbols(self, payload: HyperpriorPayload) -> tuple[np.ndarray, np.ndarray]:
        """Payloads -> (int32 y symbols, float32 means); the index map is checked against the stream's CRC first."""
        z_symbols = self.z_coder.decode(payload.z, payload.z_shape)
        indexes, means = self.side_info(z_symbols)
        if indexes.shape != tuple(payload.y_shape):
            raise StreamError(f"stream says y is {payload.y_shape}, h_s gives {indexes.shape}")
        check_indexes(indexes, payload.index_crc32)
        return self.y_coder.decode_with_indexes(payload.y, indexes), means

    def decode(self, payload: HyperpriorPayload) -> np.ndarray:
        """Payloads -> y_hat = y symbols + means (float32), what the server graph's g_s reads."""
        y_symbols, means = self.decode_symbols(payload)
        return y_symbols.astype(np.float32) + means


class HyperpriorCodec(EntropyCodec):
    """The hyperprior behind the entropy-codec interface: device outputs ``y`` and ``z_symbols`` -> stream sections
    "z", "y" and "index" -> server input ``y_hat``.

    The manifest's entropy section lists "z" (factorized tables) and "y" (Gaussian rows) and names the side network::

        {"kind": "hyperprior", "coder": ..., "precision": 16,
         "sections": [{"name": "z", "input": "z_symbols", "tables": "tables.npz", "hash": ...},
                      {"name": "y", "input": "y", "tables": "gaussian.npz", "hash": ...}],
         "side_network": {"file": "side.npz", "hash": "<IndexPath.hash>"}, "server_input": "y_hat"}

    The stream's third section "index" has the side network's hash as its table hash, the shape of y, and a
    4-byte payload: the CRC32 of the index map (``index_checksum``), compared before y is decoded.
    """

    kind = "hyperprior"
    INDEX_SECTION = "index"
    server_dtype = np.float32

    def __init__(self, spec: Mapping[str, Any], tables: Mapping[str, EntropyTables], limits: LatentLimits,
                 coder: str | None = None, index_path: IndexPath | None = None):
        super().__init__(spec, tables, limits, coder)
        names = [section["name"] for section in spec["sections"]]
        if names != ["z", "y"] or index_path is None:
            raise BundleError(f'the hyperprior codes sections "z" then "y" with a side network; the manifest lists '
                              f"{', '.join(names)}{'' if index_path else ' and no side network'}")
        self.z_input, self.y_input = (section["input"] for section in spec["sections"])
        self.device_outputs = (self.y_input, self.z_input)
        self.server_inputs = (str(spec.get("server_input", "y_hat")),)
        self.coder = HyperpriorCoder(self.tables["z"], self.tables["y"], index_path, coder=coder)
        self.coder_name = self.coder.y_coder.name
        if index_path.latent_channels != limits.channels:
            raise BundleError(f"the side network gives {index_path.latent_channels} channels, the latent "
                              f"{limits.channels}")
        self.table_hashes[self.INDEX_SECTION] = index_path.hash

    @classmethod
    def from_bundle(cls, bundle: Bundle, spec: Mapping[str, Any], coder: str | None = None) -> HyperpriorCodec:
        side = spec.get("side_network")
        if not isinstance(side, Mapping) or not all(isinstance(side.get(k), str) for k in ("file", "hash")):
            raise BundleError(f"{bundle.path}: the hyperprior's entropy section names no side network file and hash")
        name = bundle_path(side["file"], "entropy.side_network.file")
        if name not in bundle.spec.files:
            raise BundleError(f"{bundle.path}: side network {name} is not listed in the manifest's files")
        index_path = load_index_path(bundle.path / name)
        if index_path.hash != side["hash"]:
            raise BundleError(f"{bundle.path}: side network {side['file']} hash {index_path.hash}, the manifest says "
                              f"{side['hash']}")
        return cls(spec, section_tables(bundle, spec), LatentLimits(bundle.manifest), coder, index_path)

    def encode_sections(self, outputs: Mapping[str, np.ndarray]) -> list[tuple[str, str, tuple[int, int, int],
                                                                              bytes]]:
        payload = self.coder.encode(outputs[self.y_input], outputs[self.z_input])
        return [("z", self.table_hashes["z"], payload.z_shape, payload.z),
                ("y", self.table_hashes["y"], payload.y_shape, payload.y),
                (self.INDEX_SECTION, self.table_hashes[self.INDEX_SECTION], payload.y_shape,
                 struct.pack("<I", payload.index_crc32))]

    def section_symbols(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """z symbols as the device graph gives them, y symbols ``round(y - means)`` with this end's index path."""
        z_symbols = outputs[self.z_input]
        _, means = self.coder.side_info(z_symbols)
        return {"z": z_symbols, "y": np.rint(outputs[self.y_input].astype(np.float32) - means).astype(np.int32)}

    def index_path(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The side network alone on one item's device outputs: (indexes, means) of y (the bench times it)."""
        return self.coder.side_info(outputs[self.z_input])

    def decode_sections(self, shapes: Mapping[str, tuple[int, int, int]],
                        payloads: Mapping[str, bytes]) -> dict[str, np.ndarray]:
        y_shape, z_shape = shapes["y"], shapes["z"]
        self.limits.check(y_shape)
        if shapes[self.INDEX_SECTION] != y_shape or len(payloads[self.INDEX_SECTION]) != 4:
            raise StreamError("the stream's index section does not describe its y section")
        expected = self.coder.index_path.output_shape(z_shape)
        if expected != tuple(y_shape):
            raise StreamError(f"stream sections disagree: z {z_shape} gives y {expected} through h_s, y is {y_shape}")
        (crc,) = struct.unpack("<I", payloads[self.INDEX_SECTION])
        payload = HyperpriorPayload(z=payloads["z"], y=payloads["y"], z_shape=tuple(z_shape),
                                    y_shape=tuple(y_shape), index_crc32=crc)
        return {self.server_inputs[0]: self.coder.decode(payload)}


CODECS[HyperpriorCodec.kind] = HyperpriorCodec
