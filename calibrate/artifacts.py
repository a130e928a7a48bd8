"""The INT8 part of an export: one calibration image set, every INT8 graph a bundle carries.

``add_int8_artifacts`` is called by ``sc2edge.export.export_bundle`` (``--int8 --calib DIR``) after the FP32
ONNX graphs (and, for OpenVINO, the FP32 IR) are staged. Per role (device, server, and the reference model when
the bundle carries one) it writes:

- ``<role>.int8.onnx``       ONNX Runtime QDQ (uint8 activations, per-channel 7-bit/8-bit weights) [onnxruntime]
- ``<role>.int8.bias.json``  its bias correction: per-channel shifts per conv (``bias_correction``) [onnxruntime]
- ``<role>.int8.trt.onnx``   TensorRT Q/DQ from the same ranges (symmetric int8)              [always]
- ``<role>.fp16.trt.onnx``   TensorRT FP16 graph (strongly typed)                              [always]
- ``<role>.int8.xml/.bin``   OpenVINO INT8 by NNCF                                            [openvino]

The server graph is calibrated on the symbols the FP32 device graph produces for the same images. The record
names the weight recipe (``CalibConfig.recipe``), why, and the CPU it was made and validated on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from sc2edge.calibrate.bias_correction import correct_biases, shifts_from_json, shifts_to_json
from sc2edge.calibrate.config import RECIPES, CalibConfig
from sc2edge.calibrate.data import ImageSet, at_export_size, calibration_set
from sc2edge.calibrate.nncf_int8 import CONV_OP_TYPES, FLOAT_OP_TYPES, quantize_openvino
from sc2edge.calibrate.onnxrt import collect_ranges, quantize_onnx
from sc2edge.calibrate.trt_onnx import check_trt_qdq, write_fp16_onnx
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.backends.onnxrt import OnnxRuntimeRunner
from sc2edge.runtime.cpu import this_cpu
from sc2edge.runtime.manifest import PIXEL_GRAPH_INPUT, TRT_ONNX_FORMAT
from sc2edge.runtime.preprocess import float_item
from sc2edge.tasks import ImageSizes, Task

ROLE_INPUT = {"device": "image", "server": "symbols"}  # a factorized-prior bundle's graph inputs
IMAGE_ROLES = ("device", "reference")  # graphs that read the image; the server reads the device graph's output
# ONNX Runtime's INT8 device and server graphs get sequential bias correction (``bias_correction``), one pass of
# the calibration inputs per conv. The deep server graph (45 convs on the default student) is corrected on the
# first SERVER_BIAS_SAMPLES calibration images: 16 took 88 s on 2 loaded AVX2 cores, all 59 took 337 s, and both
# brought the default student's server INT8 (behind the FP32 device graph; 12 held-out photos x 16 crops, teacher
# agreement) from 65.10 % to 67.19 % (16) and 66.67 % (59), FP32 67.19 %. NNCF gives the server its fast correction.
BIAS_CORRECTED_ROLES = ("device", "server")
SERVER_BIAS_SAMPLES = 16
BIAS_CORRECTION = ("ONNX Runtime device and server graphs: per-channel conv biases shifted so that each quantized "
                   "conv keeps its FP32 output mean on the calibration images (sequential, in graph order; the "
                   f"server on the first {SERVER_BIAS_SAMPLES})")


def _graph_input(graph: Path) -> str:
    """The (first) input name of an ONNX graph: ``symbols``, or a CR+BQ server's ``z_hat``."""
    with OnnxRuntimeRunner(graph) as runner:
        return runner.activate().input_names[0]


def _feeds(role: str, images: ImageSet, batch: int, device_graph: Path,
           input_name: str = "image", task: Task | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Calibration inputs of a role: image batches, or the FP32 device graph's output for them (its symbols; a
    CR+BQ device graph's float latent z, a fine range proxy for the 8-bit z_hat the server reads). A server graph
    with inputs beside the latent (``task.extra_inputs``: a dynamic input's image sizes) gets one image per feed
    with its sizes: a calibration input is the whole image at the export's size (``at_export_size``)."""
    if role in IMAGE_ROLES:  # the reference reads the float image even where the device graph takes uint8 pixels
        for x in images.batches(batch):
            yield {input_name: float_item(x, images.preprocess) if role == "reference" else x}
        return
    sized = task is not None and bool(task.extra_inputs)
    with OnnxRuntimeRunner(device_graph) as runner:
        for x in images.batches(1 if sized else batch):
            outputs = runner.infer({"image": x})
            feed = {input_name: outputs[input_name] if input_name in outputs else next(iter(outputs.values()))}
            if sized:
                size = tuple(int(d) for d in x.shape[-2:])
                feed.update(task.server_inputs(ImageSizes(original=size, input=size)))
            yield feed


def stored_bias_shift(folder: Path, meta: dict[str, Any], config: CalibConfig) -> dict[str, np.ndarray] | None:
    """The bias correction an artifact's ``meta`` names (a file in ``folder``), without the convs ``config``
    keeps in float."""
    corrections = meta.get("bias_correction")
    if not corrections:
        return None
    shifts = shifts_from_json(json.loads((Path(folder) / corrections).read_text()))
    return {name: value for name, value in shifts.items() if name not in config.exclude}


def write_qdq_artifact(builder: Any, role: str, target: str, cache: Path, config: CalibConfig,
                       meta: dict[str, Any]) -> Path:
    """Quantize ``<role>.fp32.onnx`` in the staging directory for ``target`` and record it (TensorRT graphs
    must pass the conformance check)."""
    staging = Path(builder.staging)
    fp32 = staging / f"{role}.fp32.onnx"
    meta = {**meta, "ranges": cache.name, "config": config.to_json(), "excluded": list(config.exclude)}
    if target == "onnxruntime":
        out = quantize_onnx(fp32, staging / f"{role}.int8.onnx", cache, config, target=target,
                            bias_shift=stored_bias_shift(staging, meta, config))
        weights = "7-bit weights" if config.seven_bit_weights else "8-bit weights"
        builder.add_artifact(role, "onnx", "int8", out.name, {**meta, "form": f"QDQ U8S8 per-channel, {weights}"})
        return out
    meta.pop("bias_correction", None)  # measured for ONNX Runtime's U8S8 arithmetic, not TensorRT's
    out = quantize_onnx(fp32, staging / f"{role}.int8.trt.onnx", cache, config, target=target)
    conformance = check_trt_qdq(out)
    if not conformance:
        raise Sc2edgeError(f"{out.name} breaks TensorRT's Q/DQ rules:\n{conformance}")
    builder.add_artifact(role, TRT_ONNX_FORMAT, "int8", out.name,
                         {**meta, "form": "QDQ S8S8 symmetric, per-channel axis 0",
                          "quantized_convs": len(conformance.quantized_convs)})
    return out


def add_int8_artifacts(builder: Any, preprocess: dict[str, Any], calib: str | Path, *,
                       config: CalibConfig | None = None, backends: Sequence[str] = ("onnxruntime",),
                       roles: Sequence[str] = ("device", "server"), progress: bool = True,
                       task: Task | None = None) -> dict[str, Any]:
    """Calibrate on ``calib`` and stage the INT8 (and TensorRT FP16) graphs of ``roles``; returns the
    calibration record for the manifest (method, seed, images' sha256: check-quant holds these out).

    Args:
        builder (BundleBuilder): the export's builder; ``<role>.fp32.onnx`` must be staged.
        preprocess (dict): the manifest's ``preprocess`` record.
        calib (str | Path): calibration images (folder, class-folder tree or file list).
        config (CalibConfig | None): calibration settings. Defaults to CalibConfig().
        backends (Sequence[str]): canonical backend names being exported. Defaults to ("onnxruntime",).
        roles (Sequence[str]): graphs to quantize. Defaults to ("device", "server").
        progress (bool): progress bars. Defaults to True.
        task (Task | None): the bundle's task; where its server graph takes image sizes (segmentation, detection),
            the server is calibrated one image at a time and quantized in its convolutions only, its
            post-processing (resize and argmax; anchor decoding and NMS) left in float. Defaults to None.
    """
    config = (config or CalibConfig()).validate()
    staging = Path(builder.staging)
    images = calibration_set(calib, at_export_size(preprocess), config.samples, config.seed, progress)
    device_graph = staging / "device.fp32.onnx"
    record = {**images.describe(calib, config.seed), "config": config.to_json(), "recipe": config.recipe,
              "recipe_reason": RECIPES[config.recipe], "validated_on": this_cpu().to_json()}
    meta = {"calibration": {"method": config.method, "samples": len(images), "seed": config.seed}}
    for role in roles:
        fp32 = staging / f"{role}.fp32.onnx"
        if not fp32.is_file():
            raise Sc2edgeError(f"{fp32.name} must be exported before its INT8 graphs")
        batches = -(-len(images) // config.batch)
        # The ranges stay in the bundle (ORT's JSON calibration cache): accuracy control re-quantizes from them.
        name = _graph_input(fp32)
        cache = collect_ranges(fp32, _feeds(role, images, config.batch, device_graph, name, task), config,
                               staging / f"{role}.int8.ranges.json", total=batches)
        role_meta = dict(meta)
        # A server graph fed image sizes ends in post-processing TensorRT's Q/DQ rules refuse (ArgMax, NMS): it gets
        # ONNX Runtime and OpenVINO INT8 only, convolutions only, and no bias correction (its INT8 is budgeted
        # against the FP32 server at export instead: ``calibrate.budget.validate_int8``'s server and both rows).
        sized = role == "server" and task is not None and bool(task.extra_inputs)
        if role in BIAS_CORRECTED_ROLES and "onnxruntime" in backends and not sized:
            subset = images if role == "device" else replace(
                images, paths=images.paths[:SERVER_BIAS_SAMPLES], _arrays=images.arrays()[:SERVER_BIAS_SAMPLES])
            shifts = correct_biases(fp32, cache, config,
                                    partial(_feeds, role, subset, config.batch, device_graph, name),
                                    in_place=role != "device")
            corrections = staging / f"{role}.int8.bias.json"
            corrections.write_text(json.dumps(shifts_to_json(shifts)))
            role_meta["bias_correction"] = corrections.name
            record["bias_correction"] = BIAS_CORRECTION
        for target in (["onnxruntime"] if "onnxruntime" in backends else []) + ([] if sized else ["tensorrt"]):
            write_qdq_artifact(builder, role, target, cache, config, role_meta)
        if not sized:
            fp16 = write_fp16_onnx(fp32, staging / f"{role}.fp16.trt.onnx")
            builder.add_artifact(role, TRT_ONNX_FORMAT, "fp16", fp16.name, {"source": fp32.name})
        if "openvino" in backends:
            feeds = [{**f, name: f[name][i:i + 1]} for f in _feeds(role, images, config.batch, device_graph, name, task)
                     for i in range(len(f[name]))]
            source = staging / f"{role}.fp32.xml"
            pixels = role == "device" and preprocess.get("graph_input") == PIXEL_GRAPH_INPUT  # cut from the ONNX graph
            xml = quantize_openvino(source if source.is_file() and not pixels else fp32, staging / f"{role}.int8.xml",
                                    feeds, config, full_bias_correction=role == "device",
                                    preprocess=preprocess if role == "device" else None,
                                    quantize_types=CONV_OP_TYPES if sized else None)
            builder.add_artifact(role, "openvino", "int8", xml.name,
                                 {**meta, "weights": xml.with_suffix(".bin").name, "tool": "nncf",
                                  "preset": config.nncf_preset, "float_op_types": list(FLOAT_OP_TYPES),
                                  "overflow_fix": "enable" if config.seven_bit_weights else "disable"})
    return record
