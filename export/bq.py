"""CR+BQ bundles: the device graph stops at the float latent, the runtime's ``BqCodec`` quantizes it (8 bits per
tensor, no rANS), and the server graph takes the dequantized latent.

Validation follows the factorized path's: the bundle's latent and quantized values against PyTorch's on the same
images, payloads against the ones the PyTorch model's own quantizer makes, and the server outputs within the task's
tolerance on the same dequantized input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sc2edge.export.validate import SymbolTolerance, ValidationResult, named_outputs
from sc2edge.runtime import Bundle, Decoder, Encoder
from sc2edge.runtime.bq import BITS, QUANTIZER_FILE, BqCodec, dequantize, pack, quantize, quantizer_record, record_hash
from sc2edge.runtime.manifest import UNCODED
from sc2edge.runtime.stream import unpack_stream
from sc2edge.zoo import LoadedModel
from sc2edge.zoo.bq import BottleneckQuantizedClassifier
from sc2edge.zoo.graphs import LatentServerGraph, fold_gdn

DEVICE_OUTPUT, SERVER_INPUT = "z", "z_hat"
DEVICE_IO = (["image"], [DEVICE_OUTPUT])


def is_bq(model: nn.Module) -> bool:
    return isinstance(model, BottleneckQuantizedClassifier)


class BqDeviceGraph(nn.Module):
    """Image -> the float latent z (the runtime quantizes it per item)."""

    def __init__(self, model: BottleneckQuantizedClassifier):
        super().__init__()
        self.encoder = fold_gdn(model.bottleneck_layer.encoder)

    def forward(self, image: Tensor) -> Tensor:
        return self.encoder(image)


def bq_server_graph(model: BottleneckQuantizedClassifier) -> LatentServerGraph:
    """The dequantized latent z_hat -> decoder -> task tail."""
    return LatentServerGraph(model, model.bottleneck_layer.decoder)


def write_quantizer(loaded: LoadedModel, staging: Path) -> dict[str, Any]:
    """Write ``quantizer.json`` and return the manifest's entropy section for it."""
    data = quantizer_record(loaded.spec.name, loaded.checkpoint_sha256)
    (staging / QUANTIZER_FILE).write_bytes(data)
    return {"kind": BqCodec.kind, "coder": UNCODED, "precision": BITS, "server_input": SERVER_INPUT,
            "sections": [{"name": "z", "input": DEVICE_OUTPUT, "tables": QUANTIZER_FILE, "hash": record_hash(data)}]}


@torch.no_grad()
def validate_bq_bundle(model: BottleneckQuantizedClassifier, bundle: Bundle | str | Path, images: list[Path], *,
                       backend: str = "onnxruntime", precision: str = "fp32",
                       tolerance: SymbolTolerance | None = None) -> ValidationResult:
    """Compare the bundle run by ``backend`` with the PyTorch model on ``images``: quantized values ("symbols"),
    payloads identical to PyTorch's latent quantized by the same rule ("streams"), server outputs."""
    result = ValidationResult(backend, precision, len(images), tolerance=tolerance or SymbolTolerance())
    with Encoder(bundle, backend, precision) as encoder, Decoder(encoder.bundle, backend, precision) as decoder:
        task = decoder.task
        result.task = task.kind
        for path in images:
            x = encoder.preprocess(path)[None]
            z = model.bottleneck_layer.encoder(torch.from_numpy(x)).numpy()[0]
            expected = quantize(z)
            z_hat = dequantize(expected)
            reference = task.items(named_outputs(task, model.forward_tail(
                model.bottleneck_layer.decoder(torch.from_numpy(z_hat[None])))))[0]

            latent = encoder.device_outputs(x)[DEVICE_OUTPUT][0]
            got, stream = quantize(latent), encoder.compress_symbols(latent)
            outputs = task.items(decoder.predict_outputs(z_hat[None]))[0]  # same input: isolates the server graph

            result.symbols_total += expected.values.size
            result.symbols_different += int(np.count_nonzero(got.values != expected.values))
            result.streams_identical += int(list(unpack_stream(stream)[1].values()) == [pack(expected)])
            result.add(task.compare(reference, outputs))
            result.predictions_agree += int(task.agree(task.predict(reference), task.predict(outputs)))
    return result
