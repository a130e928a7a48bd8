"""Accuracy control: keep the most harmful convs in float until the INT8 encoder's drop is within a bound.

The drop is measured on a control set (``data.control_set``): random crops of the calibration images, never an
image of the held-out evaluation set, scored against the teacher's pseudo-labels when the bundle carries its
reference model, else top-1 agreement with FP32 (a labelled evaluation set's labels are of its test images, which
control must not see). The check on held-out images (export's INT8 validation, check-quant) is run afterwards,
separately, and reported as it is: it does not steer the choice.

ONNX Runtime: convs are ranked by measured sensitivity, the control drop when that conv alone is kept in float
(ties broken by the quantization noise at their input, per-tensor SQNR from ``qdq_loss_debug``), then excluded
one at a time and re-quantized from the ranges stored in the bundle (no new calibration run), until the measured
drop is small enough. The TensorRT Q/DQ graph gets the same
exclusions. OpenVINO: NNCF's ``quantize_with_accuracy_control`` with the drop measured the same way.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from sc2edge.calibrate.artifacts import ROLE_INPUT, stored_bias_shift, write_qdq_artifact
from sc2edge.calibrate.check import (
    LAYER_IMAGES,
    TRUTH_TEACHER,
    TRUTH_TEXT,
    QuantReport,
    check_max_drop,
    evaluate,
    sqnr_db,
    teacher_labels,
    truth_source,
)
from sc2edge.calibrate.config import CalibConfig
from sc2edge.calibrate.data import ImageSet, calibration_set, control_set, held_out_set
from sc2edge.calibrate.nncf_int8 import FLOAT_OP_TYPES, quantize_openvino
from sc2edge.calibrate.onnxrt import FeedReader, quantize_onnx
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle, create_runner
from sc2edge.runtime.backends import backend_info, canonical_backend, runner_class
from sc2edge.runtime.bundle_writer import BundleEditor
from sc2edge.runtime.manifest import PIXEL_GRAPH_INPUT
from sc2edge.tasks import bundle_task

CONTROL_BACKENDS = ("onnxruntime", "openvino")
CONTROL_ROLES = ("device", "server")
# ONNX Runtime: convs whose control drop alone in float is measured (one evaluation each); a deep server graph's
# other convs follow by input SQNR. The default student's device graph has 7 convs, its server 45.
MEASURED_CONVS = 8


def rank_convs(int8_onnx: Path, inputs: list[dict[str, np.ndarray]]) -> list[str]:
    """Quantized convs, most harmful first: lowest SQNR of their quantized input against the float tensor."""
    from onnxruntime.quantization.qdq_loss_debug import collect_activations, modify_model_output_intermediate_tensors

    graph = onnx.load(str(int8_onnx)).graph
    producers = {out: node for node in graph.node for out in node.output}
    with tempfile.TemporaryDirectory(prefix="sc2edge-rank-") as tmp:
        augmented = Path(tmp) / "int8.onnx"
        modify_model_output_intermediate_tensors(str(int8_onnx), str(augmented))
        acts = collect_activations(str(augmented), FeedReader(inputs))
    scores = []
    for node in graph.node:
        source = producers.get(node.input[0]) if node.op_type == "Conv" else None
        if source is None or source.op_type != "DequantizeLinear":
            continue
        quantizer = producers.get(source.input[0])
        if quantizer is None or quantizer.op_type != "QuantizeLinear":
            continue
        before, after = acts.get(quantizer.input[0]), acts.get(source.output[0])
        if before is not None and after is not None:
            scores.append((sqnr_db(np.concatenate(before), np.concatenate(after)), node.name))
    return [name for _, name in sorted(scores)]


def control_accuracy(bundle_path: str | Path, data: str | Path, max_drop: float, *,
                     labels: str | Path | None = None, backend: str = "onnxruntime", images: int = 100,
                     seed: int = 0, calib: str | Path | None = None, threads: int | None = None,
                     progress: bool = True, crops: int = 1, role: str = "device") -> tuple[QuantReport, list[str]]:
    """Rewrite the bundle's INT8 ``role`` graph ("device" or "server") so that the drop on the control set is at
    most ``max_drop`` either way (``QuantReport`` is two-sided, like the export's budget).

    The device graph is measured with the FP32 server, the server graph behind the FP32 device graph: each its
    own budget row, whose reference is then FP32 throughout (NNCF's accuracy control measures its drop against the
    model it is given, the FP32 server: behind the INT8 device graph, a drop the device made would not count).
    The control set (``control_set``) is crops of the calibration images
    ``calib``, minus every image of the held-out evaluation set (``data``, ``images``, ``seed``, as ``check_quant``
    chooses it), about as many inputs as that set (``images`` x ``crops``). Returns the report on the control set
    and the node names kept in float; the INT8 artifacts record which images the control used. Leaves the bundle
    unchanged when the drop already is within bounds. ``labels`` (of the held-out images) only shape the
    evaluation set: control never scores against them.
    """
    check_max_drop(max_drop)
    backend = canonical_backend(backend)
    if backend not in CONTROL_BACKENDS:
        raise Sc2edgeError(f'accuracy control supports {" and ".join(CONTROL_BACKENDS)}, not "{backend}"')
    if role not in CONTROL_ROLES:
        raise Sc2edgeError(f'accuracy control tunes the {" and ".join(CONTROL_ROLES)} graphs, not "{role}"')
    if calib is None:
        raise Sc2edgeError("accuracy control tunes on crops of the calibration images, never the held-out ones: "
                           "pass the calibration images (--calib DIR)")
    bundle = Bundle.open(bundle_path)
    unsupported = control_unsupported(bundle)
    if unsupported:
        raise Sc2edgeError(f"{unsupported}: export without --max-drop (check-quant reports what INT8 costs)")
    control, truth, source, record = control_inputs(bundle, data, calib, images, seed, crops, progress)
    fmt = backend_info(backend).artifact_format
    # the device graph the measured server runs behind (FP32), or None: the device is measured
    fp32_device = bundle.path / bundle.artifact("device", fmt, "fp32").path if role == "server" else None

    def measure(graph: Path) -> QuantReport:
        device, server = (fp32_device, graph) if fp32_device else (graph, None)
        return evaluate(bundle, control, truth, backend, device, threads=threads, max_drop=max_drop,
                        progress=progress, truth_source=source, server_graph=server)

    if backend == "openvino":
        return _control_openvino(bundle, role, control, truth, record, max_drop, calib, threads, progress, measure)
    artifact = bundle.artifact(role, "onnx", "int8")
    if "ranges" not in artifact.meta:
        raise Sc2edgeError(f"{artifact.path} has no stored calibration ranges: re-export with --int8")
    config = CalibConfig.from_json(artifact.meta["config"])
    fp32 = bundle.path / bundle.artifact(role, "onnx", "fp32").path
    ranges = bundle.path / artifact.meta["ranges"]
    current = bundle.path / artifact.path
    report = measure(current)
    excluded = list(config.exclude)
    with tempfile.TemporaryDirectory(prefix="sc2edge-control-") as tmp:

        def quantized_without(names: list[str], file: str) -> QuantReport:
            candidate = replace(config, exclude=tuple(names))
            return measure(quantize_onnx(fp32, Path(tmp) / file, ranges, candidate,
                                         bias_shift=stored_bias_shift(bundle.path, artifact.meta, candidate)))

        if not report:
            by_sqnr = rank_convs(current, graph_inputs(role, control, fp32_device, LAYER_IMAGES))
            # measured sensitivity: the control drop (either way) with that conv alone kept in float (ties: lower
            # input SQNR first), for the MEASURED_CONVS lowest-SQNR convs; the rest follow by SQNR. Input SQNR
            # alone floated 5 of the default model's 7 device convs; see docs/DESIGN.md
            measured = by_sqnr[:MEASURED_CONVS]
            alone = [abs(quantized_without([*excluded, name], f"alone{i}.onnx").drop)
                     for i, name in enumerate(measured)]
            candidates = [name for _, name in sorted(zip(alone, measured, strict=True), key=lambda pair: pair[0])]
            candidates += by_sqnr[MEASURED_CONVS:]
            while not report and candidates:
                excluded.append(candidates.pop(0))
                report = quantized_without(excluded, f"candidate{len(excluded)}.onnx")
    if excluded != list(config.exclude):
        final = replace(config, exclude=tuple(excluded))
        meta = {"calibration": artifact.meta.get("calibration", {}), "max_drop": max_drop,
                "control": {**record, "drop": report.drop, "passed": bool(report)},
                **({"bias_correction": artifact.meta["bias_correction"]} if "bias_correction" in artifact.meta else {})}
        with BundleEditor(bundle) as edit:  # both graphs or neither: the bundle stays valid if one fails
            for target in ("onnxruntime", "tensorrt"):
                write_qdq_artifact(edit, role, target, ranges, final, meta)
            edit.commit()
    return report, excluded


def control_unsupported(bundle: Bundle) -> str | None:
    """Why accuracy control cannot tune this bundle's INT8 graphs (None: it can), in one line. A dynamic input
    (segmentation, detection) is not supported: the control set is random crops at one fixed size, and the server
    graph is fed symbols only, never the image sizes such a server also reads; the export then skips control and
    records why (``Int8Validation.control_skipped``)."""
    if bundle.spec.entropy.kind != "factorized":
        return f"accuracy control supports factorized-prior bundles, not {bundle.spec.entropy.kind}"
    if bundle.spec.preprocess.dynamic:
        return ("accuracy control supports fixed-size inputs only (it tunes on random crops of one size and feeds "
                "the server graph symbols alone); this bundle's input follows the image and its server graph reads "
                "the image sizes")
    return None


def graph_inputs(role: str, control: ImageSet, fp32_device: Path | None, count: int) -> list[dict[str, np.ndarray]]:
    """The first ``count`` control inputs of the ``role`` graph: images, or the symbols the FP32 device graph
    ``fp32_device`` (ONNX) makes of them."""
    images = [{"image": x[None]} for x in control.arrays()[:count]]
    if role == "device" or fp32_device is None:
        return images
    with runner_class("onnxruntime")(fp32_device) as device:
        return [{ROLE_INPUT[role]: device.infer(x)[ROLE_INPUT[role]]} for x in images]


def control_inputs(bundle: Bundle, data: str | Path, calib: str | Path, images: int, seed: int, crops: int,
                   progress: bool) -> tuple[ImageSet, np.ndarray | None, str | None, dict]:
    """The control set (disjoint from the held-out images of ``data``), its truth (the teacher's pseudo-labels,
    or None: agreement with FP32), the truth's name, and the manifest record of which images it used."""
    calibration = bundle.manifest.get("calibration") or {}
    config = CalibConfig.from_json(calibration.get("config", {}))
    held = held_out_set(data, bundle.preprocess, images, seed, calibration.get("sha256", []), progress, crops)
    control = control_set(calib, bundle.preprocess, config.samples, config.seed, len(held), held.sha256(), progress)
    source = TRUTH_TEACHER if truth_source(bundle, None) == TRUTH_TEACHER else None
    truth = teacher_labels(bundle, control) if source == TRUTH_TEACHER else None
    record = {"source": str(calib), "images": len(control.paths), "crops_per_image": control.crops,
              "inputs": len(control), "crop_seed": control.crop_seed, "centre_crop": False,
              "held_out_images_excluded": control.excluded,
              "scored_against": TRUTH_TEXT[source] if source else "top-1 agreement with FP32",
              "sha256": control.sha256()}
    return control, truth, source, record


def _control_openvino(bundle: Bundle, role: str, held: ImageSet, truth: np.ndarray | None, record: dict,
                      max_drop: float, calib: str | Path, threads: int | None, progress: bool,
                      measure: Callable[[Path], QuantReport]) -> tuple[QuantReport, list[str]]:
    """NNCF's accuracy-aware quantization of the ``role`` graph, its validation metric computed on the control set
    ``held`` (the server's behind the FP32 device graph) and made two-sided: NNCF keeps layers in float
    while the metric drops more than ``max_drop``, and the metric it sees is FP32's minus the distance from it."""
    artifact = bundle.artifact(role, "openvino", "int8")
    config = CalibConfig.from_json(bundle.manifest.get("calibration", {}).get("config", {}))  # the export's
    images = calibration_set(calib, bundle.preprocess, config.samples, config.seed, progress)
    task = bundle_task(bundle)
    with create_runner("openvino", bundle, "device", "fp32", threads=threads) as device, \
            create_runner("openvino", bundle, "server", "fp32", threads=threads) as server:

        def predict(symbols: np.ndarray):
            return task.predictions(server.infer({"symbols": symbols}))[0]

        symbols = [device.infer({"image": x[None]})["symbols"] for x in held.arrays()]
        reference = [predict(s) for s in symbols]
        targets = list(truth) if truth is not None else reference
        score = (lambda predicted: task.metric(predicted, targets)) if truth is not None else (
            lambda predicted: task.agreement(targets, predicted))
        fp32_score = score(reference)
        if role == "device":
            inputs = [x[None] for x in held.arrays()]
            output = predict
        else:  # the server reads what the FP32 device graph sends
            inputs = symbols
            output = None

        def metric(compiled, items):  # items: (input, target) pairs; targets are labels or FP32 predictions
            predictions = []
            for x, _ in items:
                result = compiled({ROLE_INPUT[role]: x})
                predictions.append(output(result[0]) if output else task.predictions(
                    {port.get_any_name(): value for port, value in result.items()})[0])
            return fp32_score - abs(fp32_score - score(predictions))

        validation = ([(x, t) for x, t in zip(inputs, targets, strict=True)], metric)
        pixels = role == "device" and bundle.preprocess.get("graph_input") == PIXEL_GRAPH_INPUT
        source = bundle.path / bundle.artifact(role, "onnx" if pixels else "openvino", "fp32").path
        with tempfile.TemporaryDirectory(prefix="sc2edge-control-") as tmp:
            if role == "device":
                feeds = [{"image": x[None]} for x in images.arrays()]
            else:
                feeds = [{"symbols": device.infer({"image": x[None]})["symbols"]} for x in images.arrays()]
            out = quantize_openvino(source, Path(tmp) / f"{role}.int8.xml", feeds,
                                    replace(config, samples=len(images)), max_drop=max_drop, validation=validation,
                                    full_bias_correction=role == "device",
                                    preprocess=bundle.preprocess if role == "device" else None)
            with BundleEditor(bundle) as edit:
                for suffix in (".xml", ".bin"):
                    shutil.copy(out.with_suffix(suffix), (edit.staging / artifact.path).with_suffix(suffix))
                edit.add_artifact(role, "openvino", "int8", artifact.path,
                                  {**artifact.meta, "max_drop": max_drop, "float_op_types": list(FLOAT_OP_TYPES),
                                   "tool": "nncf.quantize_with_accuracy_control", "control": record})
                edit.commit()
    return measure(bundle.path / artifact.path), _float_convs(bundle.path / artifact.path)


def _float_convs(xml: Path) -> list[str]:
    """Convolutions of a saved NNCF IR whose weights are a float constant (quantized ones are stored as int8
    and dequantized by Convert -> Multiply)."""
    import openvino as ov

    return [op.get_friendly_name() for op in ov.Core().read_model(str(xml)).get_ordered_ops()
            if op.get_type_name() == "Convolution" and op.input_value(1).get_node().get_type_name() == "Constant"]
