"""The baselines' deployable halves: send the image through an input codec, run the unmodified model on it.

A bundle exported with a ``reference`` role carries the model the split model replaces (its teacher) as one
graph, image -> logits. ``CodecEncoder`` (device) crops an image to the model's view and encodes it with an
input codec; ``CodecDecoder`` (server) decodes the bytes, normalizes them and runs the reference graph.
``ReferenceGraph`` alone is the "whole model on the device" alternative. They use the same backends as the
split halves (``create_runner`` with role "reference"), so a baseline deploys like the split path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sc2edge.errors import BundleError, Sc2edgeError
from sc2edge.runtime.backends import backend_info
from sc2edge.runtime.bundle import Bundle
from sc2edge.runtime.halves import BundleGraph, open_bundle
from sc2edge.runtime.input_codecs import InputCodec, InputCodecError, parse_codec_spec
from sc2edge.runtime.preprocess import ImageLike, crop_image, float_input, normalize_image

REFERENCE_ROLE = "reference"
REFERENCE_INPUT, REFERENCE_OUTPUT = "image", "logits"


def _codec(codec: InputCodec | str) -> InputCodec:
    return codec if isinstance(codec, InputCodec) else parse_codec_spec(codec)


def has_reference(bundle: Bundle, backend: str | None = None, precision: str | None = None) -> bool:
    """Whether the bundle carries a reference graph (for ``backend`` and ``precision``, when given)."""
    fmt = backend_info(backend).artifact_format if backend else None
    return any(a.role == REFERENCE_ROLE and fmt in (None, a.format) and precision in (None, a.precision)
               for a in bundle.artifacts)


def encode_input(codec: InputCodec, image: ImageLike, preprocess: Mapping[str, Any]) -> bytes:
    """Device side: an image -> the model's crop -> the codec's bytes."""
    return codec.encode(crop_image(image, preprocess))


def decode_crop(codec: InputCodec, data: bytes, preprocess: Mapping[str, Any]) -> Image.Image:
    """Server side: the codec's bytes -> the crop the device sent (checked to be the model's crop size; for a
    dynamic input, the resized image, checked by its shorter side)."""
    image = codec.decode(data)
    if preprocess.get("crop") is None:
        side = int(preprocess["resize"])
        if min(image.size) != side:
            raise InputCodecError(f"{codec.name}: decoded a {image.width} x {image.height} image; this model's input "
                                  f"is the image resized to a shorter side of {side}, as its device sends it")
        return image
    crop = int(preprocess["crop"])
    if image.size != (crop, crop):
        raise InputCodecError(f"{codec.name}: decoded a {image.width} x {image.height} image; this model's "
                              f"input is the {crop} x {crop} crop its device sends")
    return image


def decode_input(codec: InputCodec, data: bytes, preprocess: Mapping[str, Any]) -> np.ndarray:
    """Server side: the codec's bytes -> the crop the device sent -> the model's float32 CHW input."""
    return normalize_image(decode_crop(codec, data, preprocess), preprocess)


class ReferenceGraph(BundleGraph):
    """The bundle's reference model on a backend: ``predict(batch) -> logits``, ``classify(image) -> logits``.

    Args:
        bundle (Bundle | str | Path): a bundle exported with the reference role.
        backend (str): "onnxruntime", "openvino" or "tensorrt". Defaults to "onnxruntime".
        precision (str): as exported. Defaults to "fp32".
        threads (int | None): intra-op threads of the graph runtime. Defaults to None (runtime's choice).
        device (str | None): the runtime's device name. Defaults to None (CPU).
    """

    role = REFERENCE_ROLE

    def _before_runner(self) -> None:
        if not has_reference(self.bundle):
            raise BundleError(f"{self.bundle.path} has no reference model: export it with --reference")

    def preprocess(self, image: ImageLike) -> np.ndarray:
        return float_input(image, self.bundle.preprocess)  # the reference graph takes float32 NCHW

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW images -> logits (the reference graph)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        channels = self.bundle.manifest["input"]["channels"]
        if batch.ndim != 4 or batch.shape[1] != channels:
            raise Sc2edgeError(f"expected a float32 batch N x {channels} x H x W, got shape {batch.shape}")
        return self.runner.infer({REFERENCE_INPUT: batch})[REFERENCE_OUTPUT]

    def classify(self, image: ImageLike) -> np.ndarray:
        """One image -> its logits, the whole model in one place (the "all on device" alternative)."""
        return self.predict(self.preprocess(image)[None])[0]

class CodecEncoder:
    """Device side of a baseline: ``encode(images)`` returns the codec's bytes per image. Needs no graph runtime.

    Args:
        bundle (Bundle | str | Path): the bundle (its preprocessing gives the crop the model sees).
        codec (InputCodec | str): an input codec, or "NAME[:QUALITY]" such as "jpeg:75".
    """

    def __init__(self, bundle: Bundle | str | Path, codec: InputCodec | str):
        self.bundle = open_bundle(bundle)
        self.codec = _codec(codec)

    def encode(self, images: Iterable[ImageLike]) -> list[bytes]:
        return [encode_input(self.codec, image, self.bundle.preprocess) for image in images]


class CodecDecoder(ReferenceGraph):
    """Server side of a baseline: ``decode(bytes)`` returns the reference model's logits for one image.

    Same arguments as ReferenceGraph, plus ``codec`` (InputCodec | str) after the bundle.
    """

    def __init__(self, bundle: Bundle | str | Path, codec: InputCodec | str, backend: str = "onnxruntime",
                 precision: str = "fp32", *, threads: int | None = None, device: str | None = None):
        self.codec = _codec(codec)  # before the runner: a bad codec leaves nothing open
        super().__init__(bundle, backend, precision, threads=threads, device=device)

    def decode_image(self, data: bytes) -> np.ndarray:
        """The codec's bytes -> the model's float32 CHW input."""
        return decode_input(self.codec, data, self.bundle.preprocess)

    def decode(self, data: bytes) -> np.ndarray:
        return self.predict(self.decode_image(data)[None])[0]


__all__ = ["REFERENCE_ROLE", "CodecDecoder", "CodecEncoder", "ReferenceGraph", "decode_input", "encode_input",
           "has_reference"]
