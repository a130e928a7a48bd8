"""The roofline: how fast this machine's runtime can go at best, measured with the runtime itself.

A single large 3x3 convolution is the densest work a CNN runtime does; its measured throughput is the
"peak" against which the encoder's FLOPs are divided. A Relu over a tensor the size of an encoder's activations
(1-4 MB: in cache here, as the layers' are) is the plainest memory-bound work: its bytes read and written per
second are the bandwidth of the per-layer roofline, where each layer takes at least max(FLOPs / peak, bytes /
bandwidth) (depthwise and few-channel convolutions can never reach the dense peak). The graphs are written as ONNX
protobuf bytes here, by hand, because the device environment has the graph runtime but not the ``onnx`` package.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from sc2edge.bench.timing import Stats, TimingConfig, measure

BANDWIDTH_MB = (1, 2, 4)  # Relu tensor sizes: the default model's and ES ResNet-50's activations are 0.4-4.8 MB
# (channels, spatial size): 3x3 convolutions of ~0.9 and ~1.2 GFLOP, big enough to reach peak on a small CPU
ROOFLINE_SHAPES = ((128, 56), (256, 28))
_OPSET = 17
_IR_VERSION = 8


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | int | str) -> bytes:
    """One protobuf field: varint for ints, length-delimited for bytes/str/messages."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, shape: tuple[int, ...]) -> bytes:
    dims = b"".join(_field(1, _field(1, d)) for d in shape)  # TensorShapeProto.dim.dim_value
    tensor_type = _field(1, 1) + _field(2, dims)  # elem_type FLOAT, shape
    return _field(1, name) + _field(2, _field(1, tensor_type))  # ValueInfoProto(name, TypeProto.tensor_type)


def _ints_attribute(name: str, values: tuple[int, ...]) -> bytes:
    return _field(1, name) + b"".join(_field(8, v) for v in values) + _field(20, 7)  # type INTS


def conv_model(channels: int, size: int, kernel: int = 3, seed: int = 0) -> tuple[bytes, int]:
    """ONNX bytes of one Conv (channels -> channels, ``kernel``x``kernel``, same padding, no bias) and its FLOPs."""
    weight = np.random.default_rng(seed).standard_normal((channels, channels, kernel, kernel)).astype("<f4")
    pad = kernel // 2
    node = (_field(1, "x") + _field(1, "w") + _field(2, "y") + _field(3, "conv") + _field(4, "Conv")
            + _field(5, _ints_attribute("kernel_shape", (kernel, kernel)))
            + _field(5, _ints_attribute("pads", (pad, pad, pad, pad)))
            + _field(5, _ints_attribute("strides", (1, 1))))
    initializer = (b"".join(_field(1, d) for d in weight.shape) + _field(2, 1) + _field(8, "w")
                   + _field(9, weight.tobytes()))
    graph = (_field(1, node) + _field(2, "roofline") + _field(5, initializer)
             + _field(11, _value_info("x", (1, channels, size, size)))
             + _field(12, _value_info("y", (1, channels, size, size))))
    model = (_field(1, _IR_VERSION) + _field(2, "sc2edge-bench") + _field(7, graph)
             + _field(8, _field(1, "") + _field(2, _OPSET)))
    flops = 2 * channels * channels * kernel * kernel * size * size
    return model, flops


def relu_model(elements: int) -> bytes:
    """ONNX bytes of one Relu over a float32 [1, elements] tensor: ``8 * elements`` bytes read and written."""
    node = _field(1, "x") + _field(2, "y") + _field(3, "relu") + _field(4, "Relu")
    graph = (_field(1, node) + _field(2, "bandwidth") + _field(11, _value_info("x", (1, elements)))
             + _field(12, _value_info("y", (1, elements))))
    return (_field(1, _IR_VERSION) + _field(2, "sc2edge-bench") + _field(7, graph)
            + _field(8, _field(1, "") + _field(2, _OPSET)))


def measure_bandwidth(backend: str, threads: int | None, timing: TimingConfig) -> dict:
    """Memory bandwidth of ``backend`` here: the best of the Relu sizes, per second and per CPU second (the
    call's own copies in and out count against it, so it is a floor of what the runtime streams inside a graph).

    Returns:
        dict: ``bandwidth_gbs``, ``bandwidth_gb_per_cpu_s`` and, per size, its bytes and latency statistics.
    """
    from sc2edge.runtime.backends import runner_class

    sizes = []
    with tempfile.TemporaryDirectory(prefix="sc2edge-bandwidth-") as tmp:
        for megabytes in BANDWIDTH_MB:
            elements = megabytes * 2**20 // 4
            path = Path(tmp) / f"relu{megabytes}.onnx"
            path.write_bytes(relu_model(elements))
            x = np.random.default_rng(2).standard_normal((1, elements)).astype(np.float32)
            with runner_class(backend)(path, threads=threads) as runner:
                stats: Stats = measure(runner.infer, [{"x": x}], timing)
            moved = 8 * elements
            sizes.append({"op": f"Relu over {megabytes} MB", "bytes": moved, "latency_ms": stats.to_json(),
                          "gbs": moved / stats.p50 / 1e6,
                          "gb_per_cpu_s": moved / stats.cpu / 1e6 if stats.cpu else None})
    per_cpu = [s["gb_per_cpu_s"] for s in sizes if s["gb_per_cpu_s"]]
    return {"bandwidth_gbs": max(s["gbs"] for s in sizes), "bandwidth_gb_per_cpu_s": max(per_cpu, default=None),
            "sizes": sizes}


def layer_roofline_ms(layers: list, peak_gflops: float, bandwidth_gbs: float) -> dict:
    """The per-layer roofline of ``layers`` (``compute.DenseLayer``): each at least max(FLOPs / peak, bytes /
    bandwidth), summed; and how many layers (and what share of that time) the bandwidth bounds."""
    bounds = [(layer.flops / (peak_gflops * 1e6), layer.bytes / (bandwidth_gbs * 1e6)) for layer in layers]
    total = sum(max(b) for b in bounds)
    memory = [max(b) for b in bounds if b[1] > b[0]]
    return {"ms": total, "layers": len(layers), "memory_bound": len(memory),
            "memory_bound_share": sum(memory) / total if total else 0.0,
            "dense_peak_ms": sum(b[0] for b in bounds)}


def measure_peak(backend: str, threads: int | None, timing: TimingConfig) -> dict:
    """Peak FLOP/s of ``backend`` here: the best of the roofline convolutions, run by the runtime's own runner.

    Returns:
        dict: ``peak_gflops`` and, per shape, its FLOPs, latency statistics and GFLOP/s at the median; and
        ``measure_bandwidth``'s figures under ``bandwidth``.
    """
    from sc2edge.runtime.backends import runner_class

    shapes = []
    with tempfile.TemporaryDirectory(prefix="sc2edge-roofline-") as tmp:
        for channels, size in ROOFLINE_SHAPES:
            data, flops = conv_model(channels, size)
            path = Path(tmp) / f"conv{channels}x{size}.onnx"
            path.write_bytes(data)
            x = np.random.default_rng(1).standard_normal((1, channels, size, size)).astype(np.float32)
            with runner_class(backend)(path, threads=threads) as runner:
                stats: Stats = measure(runner.infer, [{"x": x}], timing)
            shapes.append({"op": f"Conv 3x3 {channels}->{channels} at {size}x{size}", "flops": flops,
                           "latency_ms": stats.to_json(), "gflops": flops / stats.p50 / 1e6})
    return {"peak_gflops": max(s["gflops"] for s in shapes), "shapes": shapes,
            "bandwidth": measure_bandwidth(backend, threads, timing)}
