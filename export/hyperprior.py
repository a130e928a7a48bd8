"""Hyperprior students for deployment: device and server graphs, the side network h_s and the Gaussian tables.

The device graph stops at y and the z symbols; h_s and the index selection never enter a graph runtime: both
ends run the runtime's deterministic ``IndexPath`` instead (see ``sc2edge.runtime.hyperprior``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from sc2edge.errors import Sc2edgeError
from sc2edge.export.onnx import DEFAULT_OPSET, export_onnx
from sc2edge.export.validate import SymbolTolerance, ValidationResult, named_outputs
from sc2edge.runtime import Bundle, Decoder, Encoder
from sc2edge.runtime.bundle_writer import BundleBuilder
from sc2edge.runtime.hyperprior import HyperpriorCodec, IndexPath, SideLayer
from sc2edge.runtime.rans import PRECISION, EntropyTables, coder_label
from sc2edge.runtime.stream import unpack_stream
from sc2edge.tasks import Task
from sc2edge.zoo.graphs import LatentServerGraph, fold_gdn

SPATIAL_AXES = {0: "batch", 2: "height", 3: "width"}


def side_layers(h_s: nn.Sequential) -> tuple[SideLayer, ...]:
    """h_s's Conv2d / ConvTranspose2d / (Leaky)ReLU layers as runtime ``SideLayer``s (float32 copies)."""
    layers = []
    for i, module in enumerate(h_s):
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            transposed = isinstance(module, nn.ConvTranspose2d)
            pairs = (module.kernel_size, module.stride, module.padding, module.dilation,
                     module.output_padding if transposed else (0, 0))
            plain = module.dilation[0] == 1 and module.groups == 1 and module.padding_mode == "zeros"
            if not plain or any(a != b for a, b in pairs):
                raise Sc2edgeError(f"h_s layer {i} ({module}) is not a plain square convolution")
            layers.append(SideLayer(
                kind="conv_transpose2d" if transposed else "conv2d",
                weight=module.weight.detach().cpu().numpy().astype(np.float32),
                bias=None if module.bias is None else module.bias.detach().cpu().numpy().astype(np.float32),
                stride=module.stride[0], padding=module.padding[0],
                output_padding=module.output_padding[0] if transposed else 0))
        elif isinstance(module, nn.LeakyReLU):
            layers.append(SideLayer(kind="leaky_relu", slope=float(module.negative_slope)))
        elif isinstance(module, nn.ReLU):
            layers.append(SideLayer(kind="leaky_relu", slope=0.0))
        else:
            raise Sc2edgeError(f"h_s layer {i} ({type(module).__name__}) has no deterministic implementation")
    return tuple(layers)


def index_path_of(bottleneck: nn.Module, *, means: bool = True) -> IndexPath:
    """The deterministic index path of a hyperprior bottleneck (h_s, z medians, scale table and bound)."""
    conditional = bottleneck.gaussian_conditional
    if conditional.scale_table.numel() == 0:
        raise Sc2edgeError("the Gaussian conditional has no scale table yet: run update() first")
    return IndexPath(
        layers=side_layers(bottleneck.h_s),
        z_medians=bottleneck.entropy_bottleneck._get_medians().detach().cpu().numpy().reshape(-1).astype(np.float32),
        scale_table=conditional.scale_table.detach().cpu().numpy().astype(np.float32),
        scale_bound=float(conditional.lower_bound_scale.bound.item()),
        means=means)


def gaussian_tables(conditional: nn.Module) -> EntropyTables:
    """A GaussianConditional's quantized CDFs, one row per scale-table entry, exactly as the model holds them
    (a checkpoint's tables are final; medians are unused by a conditional model and stored as zeros)."""
    if conditional._offset.numel() == 0:
        raise Sc2edgeError("the Gaussian conditional has no CDF tables yet: run update() first")
    offset = conditional._offset.detach().cpu().numpy().astype(np.int32).reshape(-1)
    return EntropyTables(
        quantized_cdf=conditional._quantized_cdf.detach().cpu().numpy().astype(np.int32),
        cdf_length=conditional._cdf_length.detach().cpu().numpy().astype(np.int32).reshape(-1),
        offset=offset, medians=np.zeros(offset.shape, np.float32))


DEVICE_OUTPUTS = ("y", "z_symbols")
SERVER_INPUT = "y_hat"


class HyperpriorDeviceGraph(nn.Module):
    """Image -> (y float32, z symbols int32 ``round(h_a(y) - median)``): what EntropyBottleneck.compress codes.
    A scale hyperprior (no means) takes h_a of |y|, as CompressAI's ScaleHyperprior."""

    def __init__(self, model: nn.Module):
        super().__init__()
        bottleneck = model.bottleneck_layer
        self.g_a = fold_gdn(bottleneck.g_a)
        self.h_a = bottleneck.h_a
        self.means = model_means(model)
        medians = bottleneck.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1).clone()
        self.register_buffer("z_medians", medians)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        y = self.g_a(image)
        z = self.h_a(y if self.means else torch.abs(y))
        return y, torch.round(z - self.z_medians).to(torch.int32)


GAUSSIAN_FILE, SIDE_FILE = "gaussian.npz", "side.npz"


def is_hyperprior(model: nn.Module) -> bool:
    """Whether a zoo model codes its latent with a hyperprior (a GaussianConditional driven by h_s)."""
    return hasattr(model.bottleneck_layer, "gaussian_conditional")


def write_hyperprior_graphs(model: nn.Module, out_dir: Path, example: Tensor, output_names: list[str], *,
                            output_axes: dict[str, dict[int, str]] | None = None, opset: int = DEFAULT_OPSET,
                            means: bool = True) -> dict[str, Path]:
    """Write device.fp32.onnx (image -> y, z symbols), server.fp32.onnx (y_hat -> ``output_names``), the
    Gaussian tables and side.npz (the IndexPath) for a hyperprior model; both graphs take any batch and size."""
    out_dir = Path(out_dir)
    device = HyperpriorDeviceGraph(model).eval()
    server = LatentServerGraph(model, model.bottleneck_layer.g_s).eval()  # y_hat -> g_s -> the task tail
    with torch.no_grad():
        y, _ = device(example)
    export_onnx(device, example, out_dir / "device.fp32.onnx", (["image"], list(DEVICE_OUTPUTS)), opset=opset,
                output_axes={name: SPATIAL_AXES for name in DEVICE_OUTPUTS})
    export_onnx(server, y, out_dir / "server.fp32.onnx", ([SERVER_INPUT], list(output_names)), opset=opset,
                output_axes=output_axes)
    bottleneck = model.bottleneck_layer
    gaussian_tables(bottleneck.gaussian_conditional).save(out_dir / GAUSSIAN_FILE)
    np.savez(out_dir / SIDE_FILE, **index_path_of(bottleneck, means=means).to_arrays())
    return {"device": out_dir / "device.fp32.onnx", "server": out_dir / "server.fp32.onnx",
            "gaussian": out_dir / GAUSSIAN_FILE, "side": out_dir / SIDE_FILE}


def export_hyperprior_graphs(model: nn.Module, out_dir: Path, size: int, *, opset: int = DEFAULT_OPSET
                             ) -> dict[str, Path]:
    """The graphs and side files of a classification hyperprior student at ``size`` x ``size`` (see
    ``write_hyperprior_graphs``)."""
    return write_hyperprior_graphs(model, out_dir, torch.zeros(1, 3, size, size), ["logits"],
                                   output_axes={"logits": {0: "batch"}}, opset=opset, means=model_means(model))


def hyperprior_entropy(model: nn.Module, z_tables: EntropyTables, z_tables_file: str, *, means: bool = True
                       ) -> dict[str, object]:
    """The manifest's entropy section of a hyperprior bundle (``runtime.hyperprior.HyperpriorCodec``)."""
    bottleneck = model.bottleneck_layer
    return {"kind": HyperpriorCodec.kind, "coder": coder_label(), "precision": PRECISION,
            "sections": [{"name": "z", "input": DEVICE_OUTPUTS[1], "tables": z_tables_file, "hash": z_tables.hash},
                         {"name": "y", "input": DEVICE_OUTPUTS[0], "tables": GAUSSIAN_FILE,
                          "hash": gaussian_tables(bottleneck.gaussian_conditional).hash}],
            "side_network": {"file": SIDE_FILE, "hash": index_path_of(bottleneck, means=means).hash},
            "server_input": SERVER_INPUT}


@dataclass
class HyperpriorValidationResult(ValidationResult):
    """``ValidationResult`` plus how many Gaussian indexes of y the deterministic index path picks differently
    from PyTorch's float h_s (symbols count y's and z's)."""

    indexes_total: int = 0
    indexes_different: int = 0

    def __str__(self) -> str:
        return (f"{super().__str__()}, {self.indexes_different}/{self.indexes_total} Gaussian indexes differ from "
                "PyTorch's float ones")


def torch_hyperprior_reference(bottleneck: nn.Module, image: Tensor, *, means: bool = True) -> dict[str, object]:
    """sc2bench's / CompressAI's encode path in PyTorch float: the strings ``compress()`` gives, the symbols, the
    float indexes and the y_hat its ``decompress()`` gives. ``means=False``: a scale hyperprior (h_a on |y|)."""
    y = bottleneck.g_a(image)
    z = bottleneck.h_a(y if means else torch.abs(y))
    eb, gc = bottleneck.entropy_bottleneck, bottleneck.gaussian_conditional
    z_strings = eb.compress(z)
    z_hat = eb.decompress(z_strings, z.shape[-2:])
    params = bottleneck.h_s(z_hat)
    scales, mu = params.chunk(2, 1) if means else (params, None)
    indexes = gc.build_indexes(scales)
    y_strings = gc.compress(y, indexes, means=mu)
    y_hat = gc.decompress(y_strings, indexes, means=mu)
    medians = eb._get_medians().reshape(1, -1, 1, 1)
    y_symbols = torch.round(y - (0 if mu is None else mu))
    return {"z_strings": z_strings, "y_strings": y_strings, "y_hat": y_hat, "indexes": indexes.int().numpy(),
            "z_symbols": torch.round(z - medians).int().numpy(), "y_symbols": y_symbols.int().numpy()}


@torch.no_grad()
def validate_hyperprior_bundle(model: nn.Module, bundle: Bundle | str | Path, images: list[Path], *,
                               backend: str = "onnxruntime", precision: str = "fp32",
                               tolerance: SymbolTolerance | None = None) -> HyperpriorValidationResult:
    """Compare a hyperprior bundle run by ``backend`` with PyTorch's compress path on ``images``: y and z symbols,
    streams against CompressAI's strings, the Gaussian indexes, and the server outputs on PyTorch's y_hat."""
    bottleneck = model.bottleneck_layer
    result = HyperpriorValidationResult(backend, precision, len(images), tolerance=tolerance or SymbolTolerance())
    with Encoder(bundle, backend, precision) as encoder, Decoder(encoder.bundle, backend, precision) as decoder:
        task, codec = decoder.task, encoder.codec
        means = codec.coder.index_path.means
        result.task = task.kind
        for path in images:
            x = encoder.preprocess(path)[None]
            ref = torch_hyperprior_reference(bottleneck, torch.from_numpy(x), means=means)
            expected = task.items(named_outputs(task, model.forward_tail(bottleneck.g_s(ref["y_hat"]))))[0]
            outputs = encoder.item_outputs(x)[0]
            symbols = codec.section_symbols(outputs)
            indexes, _ = codec.index_path(outputs)
            payloads = unpack_stream(encoder.compress_outputs(outputs))[1]
            for name in ("z", "y"):
                result.symbols_total += symbols[name].size
                result.symbols_different += int(np.count_nonzero(symbols[name] != ref[f"{name}_symbols"][0]))
            result.indexes_total += indexes.size
            result.indexes_different += int(np.count_nonzero(indexes != ref["indexes"][0]))
            result.streams_identical += int(payloads["z"] == ref["z_strings"][0]
                                            and payloads["y"] == ref["y_strings"][0])
            outputs = task.items(decoder.predict_outputs(ref["y_hat"].numpy()))[0]  # isolates the server graph
            result.add(task.compare(expected, outputs))
            result.predictions_agree += int(task.agree(task.predict(expected), task.predict(outputs)))
    return result


def stage_hyperprior(builder: BundleBuilder, model: nn.Module, example: Tensor, task: Task, *,
                     opset: int = DEFAULT_OPSET) -> None:
    """Hook for ``export_bundle``: write a hyperprior model's graphs, Gaussian tables and side network into the
    staging directory and record the graphs (the manifest's entropy section is ``hyperprior_entropy``)."""
    write_hyperprior_graphs(model, builder.staging, example, task.output_names, opset=opset,
                            output_axes={o.name: o.dynamic_axes() for o in task.outputs},
                            means=model_means(model))
    builder.add_artifact("device", "onnx", "fp32", "device.fp32.onnx")
    builder.add_artifact("server", "onnx", "fp32", "server.fp32.onnx")


def model_means(model: nn.Module) -> bool:
    """Mean-scale hyperprior (h_s gives scales and means) unless the model says it is scale-only."""
    return bool(getattr(model.bottleneck_layer, "predicts_means", True))
