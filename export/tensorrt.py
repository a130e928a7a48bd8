"""TensorRT-ready ONNX (FP16, and symmetric INT8 Q/DQ), its conformance check, and the engine builder.

TensorRT 11 has no weak typing: no FP16/INT8 builder flags and no INT8 calibrators. Precision lives in the
graph: an FP16 graph for FP16, Q/DQ nodes (explicit quantization) for INT8. TensorRT 10 builds the same
graphs as strongly typed networks, so one set of files serves both. Engines are built on the target GPU
(``sc2edge build-engine``), because an engine only runs on the GPU model and TensorRT version that built it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sc2edge._files import sha256_file
from sc2edge._lazy import lazy_import
from sc2edge.errors import BundleError, Sc2edgeError

ENGINE_FORMAT = "trt-engine"
TRT_ONNX_FORMAT = "onnx-trt"
MIN_OPSET = 13  # per-axis QuantizeLinear/DequantizeLinear

# ONNX ops the TensorRT 10/11 ONNX parser supports that these graphs may contain (a deliberately short list:
# a new op in an export must be checked against TensorRT's operator support matrix before it is added).
TRT_SUPPORTED_OPS = frozenset({
    "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "Conv",
    "ConstantOfShape", "ConvTranspose", "DequantizeLinear", "Div", "Erf", "Exp", "Expand", "Flatten", "Gather", "Gemm",
    "GlobalAveragePool", "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "Log", "MatMul", "Max", "MaxPool",
    "Min", "Mul", "Neg", "Pad", "Pow", "PRelu", "QuantizeLinear", "Reciprocal", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSum", "Relu", "Reshape", "Resize", "Round", "Shape", "Sigmoid", "Slice",
    "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze",
})


# ---------------------------------------------------------------------------------------------- FP16 graph
def to_fp16(model: Any) -> Any:
    """An ONNX model with float32 weights and computation turned into float16, keeping float32 inputs/outputs.

    TensorRT 11 builds strongly typed networks only, so FP16 must be in the graph itself.
    """
    onnx = lazy_import("onnx")
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
            elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
    casts_in, casts_out = [], []
    for value in graph.input:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            half = f"{value.name}_fp16"
            for node in graph.node:
                node.input[:] = [half if name == value.name else name for name in node.input]
            casts_in.append(helper.make_node("Cast", [value.name], [half], to=TensorProto.FLOAT16,
                                             name=f"{value.name}_to_fp16"))
    for value in graph.output:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            half = f"{value.name}_fp16"
            for node in graph.node:
                node.output[:] = [half if name == value.name else name for name in node.output]
            casts_out.append(helper.make_node("Cast", [half], [value.name], to=TensorProto.FLOAT,
                                              name=f"{value.name}_to_fp32"))
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def write_fp16_onnx(fp32_path: str | Path, out: str | Path) -> Path:
    """The FP16 TensorRT-ready graph of an FP32 ONNX file."""
    onnx = lazy_import("onnx")
    onnx.save(to_fp16(onnx.load(str(fp32_path))), str(out))
    return Path(out)


# ----------------------------------------------------------------------------------------- conformance
@dataclass
class TrtConformance:
    """Whether a Q/DQ ONNX graph follows TensorRT's explicit-quantization rules. Truthy when it does.

    Attributes:
        violations (list[str]): one line per broken rule.
        quantized_convs (list[str]): convs whose input and weights come through DequantizeLinear.
        float_convs (list[str]): convs left in float (excluded on purpose, e.g. by accuracy control).
    """

    violations: list[str] = field(default_factory=list)
    quantized_convs: list[str] = field(default_factory=list)
    float_convs: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.violations

    def __str__(self) -> str:
        head = (f"TensorRT Q/DQ conformance: {'PASS' if self else 'FAIL'} ({len(self.quantized_convs)} INT8 convs, "
                f"{len(self.float_convs)} float convs)")
        return "\n".join([head, *(f"  - {v}" for v in self.violations)])


def check_trt_qdq(model: Any, *, allowed_ops: Iterable[str] = TRT_SUPPORTED_OPS) -> TrtConformance:
    """Check an ONNX model (path or ModelProto) against TensorRT's Q/DQ rules.

    Rules: opset >= 13; every QuantizeLinear/DequantizeLinear is int8 with all zero points 0 and positive
    scales; weight DequantizeLinear is per-channel on axis 0 (one scale per output channel) over an int8
    initializer; each quantized Conv takes both its input and its weights from DequantizeLinear (the pattern
    TensorRT fuses into an INT8 kernel), with a float bias; QuantizeLinear feeds only DequantizeLinear; and
    every op is on ``allowed_ops``.
    """
    onnx = lazy_import("onnx")
    from onnx import TensorProto, numpy_helper

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    report = TrtConformance()
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < MIN_OPSET:
        report.violations.append(f"opset {opset} < {MIN_OPSET}: per-channel Q/DQ needs opset 13")
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    allowed = set(allowed_ops)

    def const(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = producers.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    for node in graph.node:
        label = node.name or f"{node.op_type}->{node.output[0]}"
        if node.domain not in ("", "ai.onnx") or node.op_type not in allowed:
            report.violations.append(f"{label}: op {node.domain + '.' if node.domain else ''}{node.op_type} is not "
                                     "on the TensorRT allow-list")
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale = const(node.input[1])
        if scale is None or not np.all(scale > 0):
            report.violations.append(f"{label}: scale must be a positive constant")
        if len(node.input) < 3 or not node.input[2]:
            report.violations.append(f"{label}: no zero point (defaults to uint8); TensorRT needs an int8 zero point 0")
        else:
            zp_init = inits.get(node.input[2])
            zero_point = const(node.input[2])
            dtype = zp_init.data_type if zp_init is not None else (zero_point.dtype if zero_point is not None else None)
            if dtype not in (TensorProto.INT8, np.dtype(np.int8)):
                report.violations.append(f"{label}: zero point type must be int8 (symmetric), got {dtype}")
            if zero_point is None or np.any(zero_point != 0):
                report.violations.append(f"{label}: zero point must be 0 (TensorRT quantization is symmetric)")
        if node.op_type == "QuantizeLinear":
            users = consumers.get(node.output[0], [])
            if not users or any(u.op_type != "DequantizeLinear" for u in users):
                report.violations.append(f"{label}: QuantizeLinear must feed DequantizeLinear only")
        elif node.input[0] in inits:  # weight DequantizeLinear
            weight = inits[node.input[0]]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if weight.data_type != TensorProto.INT8:
                report.violations.append(f"{label}: quantized weights must be int8")
            if scale is not None and scale.size > 1 and (axis != 0 or scale.size != weight.dims[0]):
                report.violations.append(f"{label}: per-channel weight scales must lie on axis 0 "
                                         f"(axis {axis}, {scale.size} scales for {weight.dims[0]} channels)")

    for node in graph.node:
        if node.op_type != "Conv":
            continue
        label = node.name or node.output[0]
        sources = [producers.get(name) for name in node.input[:2]]
        from_dq = [s is not None and s.op_type == "DequantizeLinear" for s in sources]
        if all(from_dq):
            report.quantized_convs.append(label)
            if len(node.input) > 2 and node.input[2] and producers.get(node.input[2]) is not None \
                    and producers[node.input[2]].op_type == "DequantizeLinear":
                report.violations.append(f"{label}: bias must stay float (TensorRT adds it in float)")
        elif any(from_dq):
            which = "input" if from_dq[0] else "weights"
            report.violations.append(f"{label}: only its {which} come through DequantizeLinear; TensorRT fuses "
                                     "INT8 convs only when both input and weights do")
        else:
            report.float_convs.append(label)
    if not report.quantized_convs:
        report.violations.append("no quantized Conv: this is not an INT8 Q/DQ graph")
    return report


# ------------------------------------------------------------------------------------------- engines
def gpu_description() -> dict[str, str]:
    """What an engine is tied to: GPU name, compute capability and driver (or the Jetson board model)."""
    found: dict[str, str] = {"host": platform.node(), "machine": platform.machine()}
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, check=False).stdout.strip().splitlines()
        if out:
            name, cap, driver = (part.strip() for part in (out[0].split(",") + ["", ""])[:3])
            found.update(gpu=name, compute_capability=cap, driver=driver)
    board = Path("/proc/device-tree/model")
    if board.is_file():
        found["board"] = board.read_text(errors="replace").strip("\x00\n ")
    return found


@dataclass(frozen=True)
class EngineConfig:
    """How to build an engine.

    Args:
        precision (str): "fp16" or "int8" (the bundle's TensorRT-ready graph of that precision). Defaults to "fp16".
        role (str): "device" or "server". Defaults to "device".
        min_batch (int): smallest batch of the optimization profile. Defaults to 1.
        opt_batch (int): batch the kernels are tuned for. Defaults to 1.
        max_batch (int): largest batch. Defaults to 1.
        workspace_mib (int): builder workspace limit. Defaults to 1024.
    """

    precision: str = "fp16"
    role: str = "device"
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    workspace_mib: int = 1024

    def validate(self) -> EngineConfig:
        if self.precision not in ("fp16", "int8"):
            raise Sc2edgeError(f'engine precision "{self.precision}" is not available (choose fp16 or int8)')
        if self.role not in ("device", "server"):
            raise Sc2edgeError(f'role "{self.role}" is not available (choose device or server)')
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise Sc2edgeError(f"need 1 <= min_batch <= opt_batch <= max_batch, got "
                               f"{self.min_batch}, {self.opt_batch}, {self.max_batch}")
        if self.workspace_mib < 16:
            raise Sc2edgeError(f"workspace_mib must be at least 16, got {self.workspace_mib}")
        return self


def _input_shape(manifest: dict[str, Any], role: str, batch: int) -> tuple[str, tuple[int, ...]]:
    if role == "device":
        spec = manifest["input"]
        return "image", (batch, spec["channels"], spec["height"], spec["width"])
    return "symbols", (batch, *manifest["latent"]["shape"])


def build_engine(bundle_path: str | Path, config: EngineConfig = EngineConfig()) -> Path:
    """Build a TensorRT engine from a bundle's TensorRT-ready ONNX and record it in the bundle.

    Runs on the target GPU (TensorRT 10 or 11). The engine is written into the bundle as
    ``<role>.<precision>.engine`` with the GPU, compute capability, driver and TensorRT version it was
    built with, and the manifest's file hashes are updated.

    Args:
        bundle_path (str | Path): the bundle directory (written in place).
        config (EngineConfig): precision, role, batch range and workspace. Defaults to EngineConfig().
    """
    from sc2edge.runtime.bundle import Bundle

    config = config.validate()
    bundle = Bundle.open(bundle_path)
    source = bundle.artifact(config.role, TRT_ONNX_FORMAT, config.precision)
    trt = lazy_import("tensorrt")
    major = int(trt.__version__.split(".")[0])
    if major < 10:
        raise Sc2edgeError(f"TensorRT {trt.__version__} is too old: sc2edge builds with the TensorRT 10/11 API")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Strong typing: precision comes from the graph (FP16 tensors, Q/DQ). Required in 11 (where the flag is
    # accepted and ignored), opt-in in 10.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(bundle.path / source.path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise Sc2edgeError(f"TensorRT cannot parse {source.path}: {errors}")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mib << 20)
    profile = builder.create_optimization_profile()
    name, _ = _input_shape(bundle.manifest, config.role, 1)
    profile.set_shape(name, *(_input_shape(bundle.manifest, config.role, b)[1]
                              for b in (config.min_batch, config.opt_batch, config.max_batch)))
    builder_config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise Sc2edgeError(f"TensorRT failed to build an engine from {source.path} (see the log above)")
    engine_name = f"{config.role}.{config.precision}.engine"
    (bundle.path / engine_name).write_bytes(bytes(serialized))
    meta = {"tensorrt": trt.__version__, "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": source.path, "batch": [config.min_batch, config.opt_batch, config.max_batch],
            **gpu_description()}
    record_artifact(bundle.path, config.role, ENGINE_FORMAT, config.precision, engine_name, meta)
    return bundle.path / engine_name


def record_artifact(bundle_path: str | Path, role: str, fmt: str, precision: str, name: str,
                    meta: dict[str, Any]) -> None:
    """Add (or replace) one artifact of an existing bundle in its manifest, with fresh hashes of every file
    it lists (an IR's ``.bin`` included), written atomically. For files made after export: engines built on
    the target GPU, graphs rewritten by accuracy control."""
    from sc2edge.runtime.bundle import MANIFEST, Artifact

    bundle_path = Path(bundle_path)
    manifest_path = bundle_path / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    if not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{manifest_path} has no file list")
    for extra in (name, meta.get("weights"), meta.get("ranges")):
        if extra:
            manifest["files"][extra] = sha256_file(bundle_path / extra)
    digest = manifest["files"][name]
    manifest["artifacts"] = [a for a in manifest["artifacts"]
                             if (a["role"], a["format"], a["precision"]) != (role, fmt, precision)]
    manifest["artifacts"].append(Artifact(role, fmt, precision, name, digest, meta).to_json())
    tmp = manifest_path.with_name(f".{manifest_path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(manifest_path)
