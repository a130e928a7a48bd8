"""The deployable halves: ``Encoder`` (device: image -> stream) and ``Decoder`` (server: stream -> the task's
prediction).

Both run an exported graph through a named backend and code its outputs with the bundle's entropy codec
(``runtime/entropy.py``) and tables, so a stream made by any backend and precision decodes with any other (the
factorized prior's indexes never depend on the data; a hyperprior's come from the deterministic index path,
``runtime/hyperprior.py``, on both ends).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.backends import BaseRunner, backend_info, canonical_backend, create_runner
from sc2edge.runtime.bundle import Bundle
from sc2edge.runtime.entropy import EntropyCodec, open_codec
from sc2edge.runtime.manifest import PIXEL_GRAPH_INPUT
from sc2edge.runtime.preprocess import ImageLike, load_image, preprocess_image, resized_size
from sc2edge.tasks import ImageSizes, Prediction, Task, bundle_task


def open_bundle(bundle: Bundle | str | Path) -> Bundle:
    return bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)


def preprocess_sized(image: ImageLike, bundle: Bundle, *, fast: bool = True) -> tuple[np.ndarray, ImageSizes]:
    """An image -> a dynamic-input bundle's float32 CHW input for it and its sizes (original, as the model sees it,
    and the content inside any padding), from the whole decoded image: what ``Encoder.encode`` sends, and what
    check-quant evaluates."""
    picture = load_image(image, bundle.spec.preprocess.grayscale)
    x = preprocess_image(picture, bundle.preprocess, fast=fast)
    width, height = resized_size(picture.size, bundle.preprocess)  # inside the padding, if any
    content = None if (height, width) == x.shape[1:] else (height, width)
    return x, ImageSizes((picture.height, picture.width), (x.shape[1], x.shape[2]), content)


class BundleGraph:
    """One of a bundle's graphs (its ``role``) on a named backend, closed with this object (a context manager)."""

    role = ""

    def __init__(self, bundle: Bundle | str | Path, backend: str = "onnxruntime", precision: str = "fp32", *,
                 threads: int | None = None, device: str | None = None, spin: bool = False,
                 cache_dir: str | Path | None = None, quiet: bool = False):
        # A path is opened without hashing every file: only the files this graph's runtime reads are checked, so a
        # device does not hash the server's (and the reference's) graphs to start: 0.6 s of the default model's cold
        # start, 2.6 s of ES ResNet-50's (server graph 106 MB), on the shared 2-core machine.
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle, verify=False)
        self.backend = canonical_backend(backend)
        self.precision = precision
        if not isinstance(bundle, Bundle):
            artifact = self.bundle.artifact(self.role, backend_info(self.backend).artifact_format, precision)
            self.bundle.verify_files(self.bundle.graph_files(artifact))
        self._before_runner()
        self.runner: BaseRunner = create_runner(self.backend, self.bundle, self.role, precision, threads=threads,
                                                device=device, spin=spin, cache_dir=cache_dir,
                                                quiet=quiet).activate()

    def _before_runner(self) -> None:
        """What must succeed before the runner opens, so that a refusal leaves nothing open."""

    def close(self) -> None:
        self.runner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Half(BundleGraph):
    def _before_runner(self) -> None:
        self.codec: EntropyCodec = open_codec(self.bundle)


class Encoder(_Half):
    """Device side. ``encode(images)`` returns one self-describing stream (bytes) per image.

    Args:
        bundle (Bundle | str | Path): the exported bundle.
        backend (str): "onnxruntime", "openvino" or "tensorrt". Defaults to "onnxruntime".
        precision (str): "fp32", "fp16" or "int8", as exported. Defaults to "fp32".
        threads (int | None): intra-op threads of the graph runtime. Defaults to None (runtime's choice).
        device (str | None): the runtime's device name. Defaults to None (CPU).
        spin (bool): idle runtime threads spin-wait (costs CPU time, see ``BaseRunner``). Defaults to False.
        cache_dir (str | Path | None): the runtime's compiled-graph cache, for faster later starts. Defaults to None.
        quiet (bool): the runtime logs only fatal errors; failures still raise (see ``BaseRunner``). Defaults to
            False.
    """

    role = "device"

    def preprocess(self, image: ImageLike, *, fast: bool = True) -> np.ndarray:
        """An image file, PIL image or uint8 frame (H x W x 3) -> the device graph's input for it: uint8 HWC pixels
        (bundles whose graph normalizes) or float32 CHW. ``fast``: see ``preprocess.crop_image``."""
        return preprocess_image(image, self.bundle.preprocess, fast=fast)

    def device_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """A batch of graph inputs (``preprocess`` per item, stacked) -> the device graph's outputs, by name."""
        pre = self.bundle.spec.preprocess
        pixels = pre.graph_input == PIXEL_GRAPH_INPUT
        batch = np.asarray(batch) if pixels else np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[3 if pixels else 1] != pre.channels or (pixels and batch.dtype != np.uint8):
            expected = (f"uint8 N x H x W x {pre.channels}" if pixels else f"float32 N x {pre.channels} x H x W")
            raise Sc2edgeError(f"this bundle's device graph takes a {expected} batch (Encoder.preprocess makes its "
                               f"items), got {batch.dtype} with shape {batch.shape}")
        return self.runner.infer({"image": np.ascontiguousarray(batch)})

    def symbols(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW images -> int32 NCHW symbols (the device graph of a factorized prior, whose one output
        is its symbols; a hyperprior's device graph gives y and z symbols: use ``device_outputs``)."""
        if self.codec.device_outputs != ("symbols",):
            raise Sc2edgeError(f'this bundle\'s device graph gives {", ".join(self.codec.device_outputs)}, not one '
                               "symbols tensor (use device_outputs and compress_outputs)")
        return self.device_outputs(batch)["symbols"]

    def preprocess_sized(self, image: ImageLike, *, fast: bool = True) -> tuple[np.ndarray, ImageSizes]:
        """An image -> its float32 CHW input and its sizes (original, and as the model sees it): a dynamic input's
        (whose device graphs take float images)."""
        return preprocess_sized(image, self.bundle, fast=fast)

    def _sizes(self, batch: np.ndarray, sizes: ImageSizes | None) -> ImageSizes | None:
        """The sizes a dynamic bundle's streams carry (the batch's own when the caller has no original size)."""
        if not self.codec.limits.dynamic:
            return None
        return sizes or ImageSizes((batch.shape[-2], batch.shape[-1]), (batch.shape[-2], batch.shape[-1]))

    def compress_symbols(self, symbols: np.ndarray, sizes: ImageSizes | None = None) -> bytes:
        """One item's int32 CHW symbols -> a stream (container + rANS payloads; + ``sizes``, which a bundle with a
        dynamic input needs)."""
        return self.compress_outputs({self.codec.device_outputs[0]: symbols}, sizes)

    def compress_outputs(self, outputs: dict[str, np.ndarray], sizes: ImageSizes | None = None) -> bytes:
        """One item's device outputs (no batch axis), by name -> a stream (any entropy model; + ``sizes``, which a
        bundle with a dynamic input needs)."""
        return self.codec.compress(outputs, sizes)  # the codec adds the sizes only where the input is dynamic

    def item_outputs(self, batch: np.ndarray) -> list[dict[str, np.ndarray]]:
        """A batch of graph inputs -> per item, the device outputs the entropy codec consumes (no batch axis)."""
        outputs = self.device_outputs(batch)
        return [{name: outputs[name][item] for name in self.codec.device_outputs} for item in range(len(batch))]

    def encode_batch(self, batch: np.ndarray, sizes: ImageSizes | None = None) -> list[bytes]:
        """A batch of graph inputs (``preprocess`` per item, stacked) -> one stream per item, from the device
        outputs the entropy codec consumes (``sizes``: the items' original and input sizes, for a bundle with a
        dynamic input)."""
        sizes = self._sizes(batch, sizes)
        return [self.codec.compress(item, sizes) for item in self.item_outputs(batch)]

    def encode(self, images: Iterable[ImageLike]) -> list[bytes]:
        """Images (paths, PIL images or uint8 H x W x 3 frames) -> streams, one image at a time (batch 1 is the
        device's case)."""
        streams = []
        for image in images:  # only a dynamic input needs the original size (and loads the image whole for it)
            x, sizes = self.preprocess_sized(image) if self.codec.limits.dynamic else (self.preprocess(image), None)
            streams.append(self.encode_batch(x[None], sizes)[0])
        return streams


class Decoder(_Half):
    """Server side. ``decode(stream)`` returns the bundle task's prediction for one stream; ``outputs(stream)`` the
    server graph's raw named outputs. Same arguments as Encoder."""

    role = "server"

    def _before_runner(self) -> None:
        super()._before_runner()
        self.task: Task = bundle_task(self.bundle)  # a task this sc2edge does not know opens nothing

    def decode_symbols(self, stream: bytes) -> np.ndarray:
        """A stream -> the server graph's CHW input (int32 symbols of a factorized prior, float32 y_hat of a
        hyperprior), after checking the container against this bundle's codec, tables and latent shapes (before
        any payload is decoded or any graph runs)."""
        return self.codec.decompress(stream)[self.codec.server_inputs[0]]

    def decode_sized(self, stream: bytes) -> tuple[np.ndarray, ImageSizes | None]:
        """A stream -> the server graph's CHW input and the image sizes it carries (None if it carries none),
        checked."""
        inputs, sizes = self.codec.decompress_sized(stream)
        return inputs[self.codec.server_inputs[0]], sizes

    def predict_outputs(self, symbols: np.ndarray, sizes: ImageSizes | None = None) -> dict[str, np.ndarray]:
        """NCHW server input (int32 symbols, or a hyperprior's float32 y_hat) (+ the image sizes, for a task whose
        server graph needs them) -> the server graph's raw outputs, by name (the task's outputs)."""
        inputs = {self.codec.server_inputs[0]: np.ascontiguousarray(symbols, dtype=self.codec.server_dtype),
                  **self.task.server_inputs(sizes)}
        outputs = self.runner.infer(inputs)
        return {name: outputs[name] for name in self.task.output_names}

    def predict(self, symbols: np.ndarray, sizes: ImageSizes | None = None) -> list[Prediction]:
        """NCHW server input (see ``predict_outputs``) -> one task prediction per item."""
        return self.task.predictions(self.predict_outputs(symbols, sizes))

    def outputs(self, stream: bytes) -> dict[str, np.ndarray]:
        """One stream -> the server graph's raw named outputs for its item (batch axis removed)."""
        symbols, sizes = self.decode_sized(stream)
        return self.task.items(self.predict_outputs(symbols[None], sizes))[0]

    def decode(self, stream: bytes) -> Prediction:
        """One stream -> the task's prediction (e.g. top-k classes with probabilities)."""
        return self.task.predict(self.outputs(stream))
