"""Entropy tables and the rANS coder, without torch.

``RansCoder(tables).encode_with_indexes(symbols, indexes)`` codes symbol i with CDF row ``indexes[i]``, as
CompressAI's ``RansEncoder.encode_with_indexes`` does; ``encode(symbols)`` is the factorized prior's case (the
index of a symbol is its channel) and returns exactly the bytes of ``EntropyBottleneck.compress``, so streams
stay compatible with the paper's code. Two coders write and read these same bytes (``STREAM_FORMAT``, what
bundles record):

* "native": ``runtime/_rans.c`` (module ``sc2edge.runtime._rans``, built by ``pip install``), a re-implementation
  of CompressAI 1.2.8's coder that checks every read, takes numpy buffers directly and releases the GIL. It
  differs from CompressAI only where CompressAI fails: it codes any count >= 1 of any int32 values (escapes of up
  to 9 nibbles, 64-bit arithmetic), and its decoder raises StreamError for a truncated or corrupt payload,
  including unread words or a final state other than rANS's start (see the comment atop ``_rans.c``). A stream
  with a value CompressAI cannot code (``|symbol|`` near 2**27 and beyond) is not CompressAI-decodable.
* "compressai": CompressAI's compiled extension ``compressai/ans*.so``, a plain pybind11 module loaded straight
  from the installed compressai files, never through ``compressai/__init__.py`` (which imports torch).

CompressAI's C++ coder trusts its input. Everything it is handed here is checked first, and every limit below
comes from reading ``compressai/cpp_exts/rans/rans_interface.cpp`` (1.2.8) and ryg's ``rans64.h``:

* The tables must be valid CDFs (``cdf[0] == 0``, ``cdf[len - 1] == 1 << 16``, strictly increasing), or the
  decoder's CDF search and ``cdf[s + 1]`` run past a row.
* Encoding: the encoder's output buffer holds one 32-bit word per coded item (symbols plus bypass nibbles);
  rANS writes at most 16 bits per item plus the 2-word flush, which overflows the buffer below 3 symbols
  (``MIN_SYMBOLS``; CompressAI corrupts the heap with 1 symbol). An escaped value needs ``raw < 2**28``: at 8
  nibbles its ``raw >> 32`` is undefined and the encoder loops forever, hence ``MAX_ABS_SYMBOL``.
* Decoding reads the payload without bounds checks; see ``_decoder_padding_words`` for the proof of how far a
  crafted payload can make it read, and the zero padding that keeps every read inside our buffer.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import math
import sys
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from sc2edge.errors import BundleError, Sc2edgeError, StreamError

PRECISION = 16  # CompressAI's fixed probability precision: every CDF ends at 1 << 16.
MIN_SYMBOLS = 3  # below this CompressAI's encoder writes before its output buffer (see the module docstring)
MAX_SYMBOLS = 1 << 22  # C*h*w; 24 x 418 x 418 (a 1672 x 1672 image); detection at 800 x 1333 needs 1.6 M
MAX_ABS_SYMBOL = 1 << 24  # CompressAI's limit: every escaped value below 2**28 (7 nibbles), see the docstring
MAX_ABS_OFFSET = 1 << 20  # table offsets are -ceil(median - lower quantile): tens in practice
MAX_TABLE_BYTES = 16 << 20  # per array of tables.npz: 65535 CDFs of 64 entries; real tables are kilobytes
MAX_PAYLOAD_BYTES = 16 << 20  # also bounds the decoder's int32 bypass arithmetic (see _decoder_padding_words)
RANS64_L = 1 << 31  # rans64.h's lower bound of a valid coder state
STREAM_FORMAT = "compressai-rans64"  # recorded in bundles: both coders write and read these bytes

_CODERS = ("native", "compressai")  # in order of preference
_ARRAYS = (("quantized_cdf", np.int32, 2), ("cdf_length", np.int32, 1), ("offset", np.int32, 1),
           ("medians", np.float32, 1))
_INSTALL_HINT = 'install it with "pip install --no-deps compressai" (its coder needs no torch)'


def available_coders() -> list[str]:
    """Names of the entropy coders this runtime can use, preferred first: "native", "compressai"."""
    return [name for name in _CODERS if _coder_error(name) is None]


def coder_label(name: str | None = None) -> str:
    """The stream format written into a bundle manifest: "compressai-rans64", whichever coder writes it."""
    if name is not None and name not in _CODERS:
        raise Sc2edgeError(f'Unknown entropy coder "{name}" (known: {", ".join(_CODERS)})')
    return STREAM_FORMAT


def _coder_error(name: str) -> Sc2edgeError | None:
    """Why the coder ``name`` cannot be used here, or None when it can."""
    try:
        _native_module() if name == "native" else _ans_module()
    except Sc2edgeError as exc:
        return exc
    return None


@functools.cache
def _native_module() -> ModuleType:
    """The native coder ``sc2edge.runtime._rans``: compiled by ``pip install``, absent where that had no C compiler."""
    try:
        return importlib.import_module("sc2edge.runtime._rans")
    except ImportError as exc:
        raise Sc2edgeError(f"the native rANS coder sc2edge.runtime._rans is not built ({exc}); reinstall sc2edge "
                           "with a C compiler present, or use the CompressAI coder") from exc


@functools.cache
def _ans_module() -> ModuleType:
    """CompressAI's compiled ``ans`` extension, loaded from its file: compressai (and torch) stay unimported.

    It is loaded under its own name ``compressai.ans``: pybind11 registers its classes once per process, and
    Python's extension cache keys on (file, name), so a later ``import compressai`` gets this same module
    instead of initialising the extension twice (which fails with "type already registered").
    """
    if "compressai.ans" in sys.modules:
        return sys.modules["compressai.ans"]
    spec = importlib.util.find_spec("compressai")  # locates the package without executing it
    folders = list(spec.submodule_search_locations or []) if spec else []
    candidates = [Path(folder) / f"ans{suffix}" for folder in folders
                  for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        where = f"in {', '.join(folders)}" if folders else "(compressai is not installed)"
        raise Sc2edgeError(f"CompressAI's compiled rANS coder (compressai/ans*.so) was not found {where}; "
                           f"{_INSTALL_HINT}")
    loader = importlib.machinery.ExtensionFileLoader("compressai.ans", str(path))
    module_spec = importlib.util.spec_from_file_location("compressai.ans", path, loader=loader)
    try:
        module = importlib.util.module_from_spec(module_spec)
        loader.exec_module(module)
    except ImportError as exc:
        raise Sc2edgeError(f"cannot load CompressAI's rANS coder {path} ({exc}); {_INSTALL_HINT}") from exc
    return module


@dataclass(frozen=True, eq=False)
class EntropyTables:
    """The factorized prior's quantized CDFs: shipped as computed at export, never recomputed on a device
    (``update()`` uses floating point, so two machines could disagree and corrupt every stream).

    Args:
        quantized_cdf (np.ndarray): int32 (C, L), row c valid up to ``cdf_length[c]``, then zeros.
        cdf_length (np.ndarray): int32 (C,).
        offset (np.ndarray): int32 (C,), the symbol value of each row's first entry.
        medians (np.ndarray): float32 (C,), added back to the symbols on the server.
    """

    quantized_cdf: np.ndarray
    cdf_length: np.ndarray
    offset: np.ndarray
    medians: np.ndarray

    def __post_init__(self) -> None:
        for name, dtype, ndim in _ARRAYS:
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.dtype != dtype or value.ndim != ndim:
                got = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value)
                raise BundleError(f"entropy tables: {name} must be a {ndim}-d {np.dtype(dtype)} array, "
                                  f"got {got}")
            frozen = np.array(value, dtype=np.dtype(dtype).newbyteorder("<"), order="C")
            frozen.flags.writeable = False
            object.__setattr__(self, name, frozen)
        self._validate()

    def _validate(self) -> None:
        channels, width = self.quantized_cdf.shape
        if not 1 <= channels <= 0xFFFF or width < 3:
            raise BundleError(f"entropy tables: quantized_cdf has shape {self.quantized_cdf.shape}; "
                              f"expected 1..65535 channels and at least 3 entries per CDF")
        for name in ("cdf_length", "offset", "medians"):
            if getattr(self, name).shape != (channels,):
                raise BundleError(f"entropy tables: {name} has shape {getattr(self, name).shape}, "
                                  f"expected ({channels},) like quantized_cdf")
        lengths = self.cdf_length.astype(np.int64)
        if lengths.min() < 3 or lengths.max() > width:
            raise BundleError(f"entropy tables: cdf_length must lie in 3..{width} (the CDF width), "
                              f"got {lengths.min()}..{lengths.max()}")
        if np.abs(self.offset.astype(np.int64)).max() > MAX_ABS_OFFSET:
            raise BundleError(f"entropy tables: offsets beyond +-{MAX_ABS_OFFSET}")
        if not np.isfinite(self.medians).all():
            raise BundleError("entropy tables: medians must be finite")
        cdf = self.quantized_cdf.astype(np.int64)
        inside = np.arange(width)[None, :] < lengths[:, None]
        rising = np.diff(cdf, axis=1) > 0
        bad = np.flatnonzero((cdf[:, 0] != 0) | (cdf[np.arange(channels), lengths - 1] != 1 << PRECISION)
                             | ~np.where(inside[:, 1:], rising, True).all(axis=1))
        if bad.size:
            raise BundleError(f"entropy tables: CDF of channel {bad[0]} is not a valid {PRECISION}-bit CDF "
                              f"(must start at 0, rise strictly and end at {1 << PRECISION})")

    @property
    def channels(self) -> int:
        return self.quantized_cdf.shape[0]

    @functools.cached_property
    def hash(self) -> str:
        """16 hex digits identifying the tables; streams carry it so they never decode with other tables.

        sha256 over, for each array in the order quantized_cdf, cdf_length, offset, medians:
        ``name + "\\0" + dtype.str + "\\0" + ",".join(shape) + "\\0"`` (ASCII; dtype.str is "<i4" or "<f4"),
        then the array's C-order little-endian bytes.
        """
        digest = hashlib.sha256()
        for name, _, _ in _ARRAYS:
            value = getattr(self, name)
            shape = ",".join(str(n) for n in value.shape)
            digest.update(f"{name}\0{value.dtype.str}\0{shape}\0".encode("ascii"))
            digest.update(value.tobytes(order="C"))
        return digest.hexdigest()[:16]

    @classmethod
    def from_bottleneck(cls, bottleneck: object) -> EntropyTables:
        """The tables of an updated CompressAI ``EntropyBottleneck`` (duck-typed: no torch import here)."""
        if bottleneck._offset.numel() == 0:
            raise Sc2edgeError("the entropy bottleneck has no CDF tables yet: run update() first")
        return cls(
            quantized_cdf=bottleneck._quantized_cdf.cpu().numpy().astype(np.int32),
            cdf_length=bottleneck._cdf_length.cpu().numpy().astype(np.int32).reshape(-1),
            offset=bottleneck._offset.cpu().numpy().astype(np.int32).reshape(-1),
            medians=bottleneck.quantiles[:, 0, 1].detach().cpu().numpy().astype(np.float32),
        )

    @classmethod
    def load(cls, path: str | Path) -> EntropyTables:
        """Read and validate ``tables.npz`` (no pickle); anything missing or off raises BundleError."""
        try:
            archive = np.load(path, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise BundleError(f"{path}: cannot read entropy tables (a single array, not an npz archive)")
            with archive as npz:
                names = {name for name, _, _ in _ARRAYS}
                if set(npz.files) != names:
                    raise BundleError(f"{path}: expected arrays {sorted(names)}, found {sorted(npz.files)}")
                for name in names:
                    _check_declared_size(npz, name, path)
                arrays = {name: npz[name] for name in names}
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:  # missing, truncated, not a zip, pickle
            raise BundleError(f"{path}: cannot read entropy tables ({exc})") from exc
        try:
            return cls(**arrays)
        except BundleError as exc:
            raise BundleError(f"{path}: {exc}") from None

    def save(self, path: str | Path) -> None:
        """Write the four arrays as an uncompressed npz (``load`` reads it back bit for bit)."""
        with open(path, "wb") as f:
            np.savez(f, **{name: getattr(self, name) for name, _, _ in _ARRAYS})


def _check_declared_size(npz: np.lib.npyio.NpzFile, name: str, path: str | Path) -> None:
    """Refuse an array whose ``.npy`` header declares more than MAX_TABLE_BYTES, before numpy allocates it
    (a compressed member of a few kilobytes can declare gigabytes)."""
    with npz.zip.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
    size = math.prod(shape) * dtype.itemsize
    if size > MAX_TABLE_BYTES:
        raise BundleError(f"{path}: {name} declares shape {shape} of {dtype} ({size} bytes), over the "
                          f"{MAX_TABLE_BYTES}-byte limit for entropy tables")


def _decoder_padding_words(symbols: int, payload_words: int) -> int:
    """Zero words to append so that CompressAI's decoder cannot read past the buffer, whatever the payload.

    Proof sketch (state x is rans64's 64-bit state; a "read" takes the next 32-bit word):
    1. ``decode`` refuses payloads whose first 8 bytes give x < 2**31 (no encoder writes such a state).
       From then on x stays in [2**31, 2**64) for any data: DecAdvance leaves x' >= freq*(x >> 16) >= 2**15
       and reads only when x' < 2**31, giving x' * 2**32 >= 2**47; DecGetBits leaves x >> 4 >= 2**27 and
       reads only when that is < 2**31, giving >= 2**59. Every read is an ``if``, never a loop: at most one
       word per call.
    2. With x >= 2**31, a read multiplies x by at least 2**32 (+32 bits of log2 x), a DecAdvance divides it
       by at most 2**16 * (1 + 2**-15) and a DecGetBits by at most 16 * (1 + 2**-27). As log2 x stays in
       [31, 64), reads <= (33 + 16.0001 * symbols + 4.00001 * G) / 32, G = the number of DecGetBits calls.
    3. G comes only from escapes: 1 + r + n_bypass calls, where r is the run of 15-nibbles that extends
       n_bypass = 15 * r + (last nibble <= 14). Before an escape's first read, its nibbles come from x
       (< 2**64, so a read happens by the 9th call); after it, each group of 8 calls returns exactly one
       stream word's nibbles. A zero padding word ends the run, so r <= 9 + 8 * p, p = payload words read
       in that run, and G <= sum(15 + 16 * r) <= 159 * symbols + 128 * payload_words.
    4. So reads <= 1.04 + 20.38 * symbols + 16.0001 * payload_words; with the 2 words of DecInit, at most
       3.04 + 20.38 * symbols + 15.0001 * payload_words of them lie past the payload: padding it with
       21 * symbols + 16 * payload_words + 4 zero words covers every possible read
       (tests/runtime/test_rans.py checks that 0xFF words right after this padding never change a decode).
    Also, n_bypass <= 149 + 120 * payload_words < 2**29 under MAX_PAYLOAD_BYTES, so the decoder's
    ``j * 4`` shift counts never overflow int32 (shifts past 31 give garbage symbols, not memory accesses).
    """
    return 21 * symbols + 16 * payload_words + 4


def max_payload_bytes(symbols: int) -> int:
    """The longest payload either encoder can produce for this many symbols (escapes included).

    Each symbol codes one rANS item (<= 16 bits) plus at most 10 bypass nibbles (count + 9 value nibbles for
    the native coder's int32 range; CompressAI stops at 8), i.e. <= 56.0001 bits: floor(1.75 * symbols) words
    plus the 2 flush words, with a little slack (the proof is above ``max_words`` in ``_rans.c``).
    """
    return min(MAX_PAYLOAD_BYTES, 4 * (7 * symbols // 4 + symbols // 65536 + 3))


class _NativeCoder:
    """``sc2edge.runtime._rans``: numpy buffers in and out, every read bounds-checked, GIL released."""

    min_symbols = 1
    max_abs_symbol = None  # every int32 value codes

    def __init__(self, tables: EntropyTables):
        self._rans = _native_module()
        self._tables = (tables.quantized_cdf, tables.cdf_length, tables.offset)

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        return self._rans.encode_with_indexes(np.ascontiguousarray(symbols), np.ascontiguousarray(indexes),
                                              *self._tables)

    def decode(self, payload: bytes, indexes: np.ndarray) -> np.ndarray:
        values = np.empty(indexes.shape, np.int32)
        try:
            self._rans.decode_with_indexes(payload, values, np.ascontiguousarray(indexes), *self._tables)
        except ValueError as exc:
            raise StreamError(str(exc)) from None
        return values


class _CompressAICoder:
    """CompressAI's compiled coder: tables converted to lists once; decoding pads the payload with zeros."""

    min_symbols = MIN_SYMBOLS
    max_abs_symbol = MAX_ABS_SYMBOL

    def __init__(self, tables: EntropyTables):
        ans = _ans_module()
        self._encoder = ans.RansEncoder()
        self._decoder = ans.RansDecoder()
        # What EntropyBottleneck.compress passes, converted once instead of on every call.
        self.cdfs = tables.quantized_cdf.tolist()
        self.cdf_lengths = tables.cdf_length.tolist()
        self.offsets = tables.offset.tolist()
        self._lock = threading.Lock()  # guards the reusable decode buffer below
        self._buffer = bytearray()

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        return self._encoder.encode_with_indexes(symbols.ravel().tolist(), indexes.ravel().tolist(),
                                                 self.cdfs, self.cdf_lengths, self.offsets)

    def decode(self, payload: bytes, indexes: np.ndarray) -> np.ndarray:
        size = len(payload) + 4 * _decoder_padding_words(indexes.size, len(payload) // 4)
        index_list = indexes.ravel().tolist()
        with self._lock:
            # One zero-padded buffer, reused (pybind11 copies all of it into a std::string on each call).
            if not size <= len(self._buffer) <= 2 * size:
                self._buffer = bytearray(size)
            self._buffer[:len(payload)] = payload
            try:
                values = self._decoder.decode_with_indexes(self._buffer, index_list, self.cdfs, self.cdf_lengths,
                                                           self.offsets)
            finally:
                self._buffer[:len(payload)] = bytes(len(payload))  # the padding must stay zero
        return np.fromiter(values, dtype=np.int32, count=indexes.size).reshape(indexes.shape)


class RansCoder:
    """Symbols <-> CompressAI rANS bytes (``STREAM_FORMAT``) with the tables' CDF rows, with either coder.

    ``encode_with_indexes`` / ``decode_with_indexes`` have the semantics of CompressAI's ``RansEncoder`` /
    ``RansDecoder`` methods of those names: symbol i is coded with CDF row ``indexes[i]``. ``encode`` /
    ``decode`` are the factorized prior's case, where a symbol's index is its channel.

    Args:
        tables (EntropyTables): the bundle's tables.
        name (str | None): "native" or "compressai" (see ``available_coders()``). Defaults to the first
            available: both write the same bytes, so a stream from one decodes with the other.
    """

    def __init__(self, tables: EntropyTables, name: str | None = None):
        if name is None:  # the first that loads: CompressAI's extension stays unloaded when the native one is here
            name = next((candidate for candidate in _CODERS if _coder_error(candidate) is None), None)
            if name is None:
                raise Sc2edgeError("no rANS coder is available: " + "; ".join(str(_coder_error(n)) for n in _CODERS))
        self.label = coder_label(name)  # raises for an unknown name
        self.name = name
        self.tables = tables
        self.impl = _NativeCoder(tables) if name == "native" else _CompressAICoder(tables)
        self._channel_indexes: dict[tuple[int, int, int], np.ndarray] = {}

    def __getstate__(self) -> dict[str, object]:
        return {"tables": self.tables, "name": self.name}  # the coder is named, never pickled

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["tables"], state["name"])

    def channel_indexes(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The factorized prior's indexes: every symbol of a (C, h, w) latent uses its channel's row (cached)."""
        indexes = self._channel_indexes.get(shape)
        if indexes is None:
            channels, height, width = shape
            indexes = np.repeat(np.arange(channels, dtype=np.int32), height * width).reshape(shape)
            indexes.flags.writeable = False
            if len(self._channel_indexes) >= 8:
                self._channel_indexes.clear()
            self._channel_indexes[shape] = indexes
        return indexes

    def _check_count(self, shape: tuple[int, ...], error: type[Sc2edgeError]) -> int:
        count = int(np.prod(shape, dtype=np.int64))
        if not self.impl.min_symbols <= count <= MAX_SYMBOLS:
            raise error(f"latent {tuple(shape)} has {count} symbols; the {self.name} coder takes "
                        f"{self.impl.min_symbols} to {MAX_SYMBOLS}")
        return count

    def _check_shape(self, shape: tuple[int, ...], error: type[Sc2edgeError]) -> tuple[int, int, int]:
        if len(shape) != 3 or shape[0] != self.tables.channels:
            raise error(f"expected a latent of shape ({self.tables.channels}, h, w), got {tuple(shape)}")
        self._check_count(shape, error)
        return tuple(int(n) for n in shape)

    def _check_indexes(self, indexes: np.ndarray, error: type[Sc2edgeError]) -> None:
        if not isinstance(indexes, np.ndarray) or indexes.dtype != np.int32:
            got = indexes.dtype if isinstance(indexes, np.ndarray) else type(indexes).__name__
            raise error(f"indexes must be an int32 numpy array, got {got}")
        self._check_count(indexes.shape, error)
        low, high = int(indexes.min()), int(indexes.max())
        if low < 0 or high >= self.tables.channels:
            raise error(f"indexes span {low}..{high}; these tables have CDF rows 0..{self.tables.channels - 1}")

    def encode(self, symbols: np.ndarray) -> bytes:
        """int32 (C, h, w) symbols ``round(y - median)`` -> the bytes ``EntropyBottleneck.compress`` makes."""
        self._check_symbols(symbols)
        return self._encode(symbols, self.channel_indexes(self._check_shape(symbols.shape, Sc2edgeError)))

    def encode_with_indexes(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        """int32 symbols of any shape, each coded with CDF row ``indexes[i]`` (int32, the same shape) -> bytes."""
        self._check_symbols(symbols)
        self._check_indexes(indexes, Sc2edgeError)
        if indexes.shape != symbols.shape:
            raise Sc2edgeError(f"indexes of shape {indexes.shape} for symbols of shape {symbols.shape}")
        return self._encode(symbols, indexes)

    @staticmethod
    def _check_symbols(symbols: np.ndarray) -> None:
        if not isinstance(symbols, np.ndarray) or symbols.dtype != np.int32:
            got = symbols.dtype if isinstance(symbols, np.ndarray) else type(symbols).__name__
            raise Sc2edgeError(f"symbols must be an int32 numpy array, got {got}")

    def _encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        self._check_count(symbols.shape, Sc2edgeError)
        limit = self.impl.max_abs_symbol
        if limit is not None:
            low, high = int(symbols.min()), int(symbols.max())
            if max(-low, high) > limit:
                raise Sc2edgeError(f"latent symbols span {low}..{high}, beyond the +-{limit} that CompressAI's "
                                   "rANS coder can escape-code; the device graph's output is broken")
        return self.impl.encode(symbols, indexes)

    def decode(self, payload: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """rANS bytes -> int32 (C, h, w) symbols; a crafted payload gives StreamError (native) or garbage
        (compressai), never a bad read."""
        return self._decode(payload, self.channel_indexes(self._check_shape(tuple(shape), StreamError)))

    def decode_with_indexes(self, payload: bytes, indexes: np.ndarray) -> np.ndarray:
        """rANS bytes -> int32 symbols of the shape of ``indexes``, symbol i read with CDF row ``indexes[i]``;
        indexes naming no row give StreamError before any decoding."""
        self._check_indexes(indexes, StreamError)
        return self._decode(payload, indexes)

    def _decode(self, payload: bytes, indexes: np.ndarray) -> np.ndarray:
        count = indexes.size
        payload = bytes(payload)
        limit = max_payload_bytes(count)
        if len(payload) < 8 or len(payload) % 4 or len(payload) > limit:
            raise StreamError(f"rANS payload of {len(payload)} bytes is impossible for {count} symbols "
                              f"(a multiple of 4 bytes from 8 to {limit})")
        if int.from_bytes(payload[:8], "little") < RANS64_L:
            raise StreamError("rANS payload is corrupt: its initial coder state is below 2**31")
        return self.impl.decode(payload, indexes)
