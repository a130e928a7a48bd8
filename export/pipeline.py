"""``export_bundle``: a registered model (+ checkpoint) -> a validated bundle directory."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from sc2edge._files import package_versions
from sc2edge.calibrate.accuracy import control_accuracy, control_unsupported
from sc2edge.calibrate.artifacts import add_int8_artifacts
from sc2edge.calibrate.budget import BOTH_ROW, DEVICE_ROW, SERVER_ROW, Int8Budget, Int8Validation, validate_int8
from sc2edge.calibrate.config import RECIPES, CalibConfig
from sc2edge.errors import Sc2edgeError
from sc2edge.export.bq import DEVICE_IO as BQ_DEVICE_IO
from sc2edge.export.bq import SERVER_INPUT as BQ_SERVER_INPUT
from sc2edge.export.bq import BqDeviceGraph, bq_server_graph, is_bq, validate_bq_bundle, write_quantizer
from sc2edge.export.hyperprior import (
    hyperprior_entropy,
    is_hyperprior,
    model_means,
    stage_hyperprior,
    validate_hyperprior_bundle,
)
from sc2edge.export.limits import declared_largest_side, measure_input_limits
from sc2edge.export.onnx import (
    DEFAULT_OPSET,
    DEVICE_IO,
    MAX_OPSET,
    MIN_OPSET,
    PIXEL_AXES,
    REFERENCE_IO,
    SERVER_INPUT,
    dynamic_empty_branches,
    export_onnx,
    replace_scalar,
)
from sc2edge.export.openvino import add_openvino_artifacts
from sc2edge.export.validate import (
    ReferenceValidationResult,
    SymbolTolerance,
    ValidationResult,
    validate_bundle,
    validate_reference,
)
from sc2edge.photos import list_images, system_photos
from sc2edge.runtime import Bundle
from sc2edge.runtime.backends import canonical_backend
from sc2edge.runtime.bundle_writer import BundleBuilder
from sc2edge.runtime.entropy import FactorizedCodec
from sc2edge.runtime.manifest import LABELS_FILE, MAX_IMAGE_SIDE, PIXEL_GRAPH_INPUT, TABLES_FILE, PreprocessSpec
from sc2edge.runtime.preprocess import float_input
from sc2edge.runtime.rans import PRECISION, EntropyTables, coder_label
from sc2edge.tasks import Task, create_task
from sc2edge.zoo import LoadedModel, ReferenceModel, class_names, get_model, get_reference, get_spec, latent_size
from sc2edge.zoo.graphs import DeviceGraph, PixelInput, ServerGraph

VALIDATION_IMAGES = 4
OFFLINE_PHOTOS = "offline photos (sc2edge.photos.system_photos)"  # the INT8 checks' source without check images
TRACE_SCORE_CUT = 2.0 ** -17  # a detector's score cut while traced: tiny, and a value no other constant has
# The graph accuracy control tunes for a budget row over budget (``calibrate.budget``)
CONTROLLED_ROLE = {DEVICE_ROW: "device", SERVER_ROW: "server", BOTH_ROW: "server"}
_VERSIONED_PACKAGES = ("torch", "torchvision", "compressai", "onnx", "onnxruntime", "openvino", "nncf", "numpy")


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how strictly to check it.

    Args:
        backends (tuple[str, ...]): runtimes to export for ("onnxruntime", "openvino"). Defaults to ONNX Runtime.
        int8 (bool): also calibrate INT8 graphs (needs ``calib``). Defaults to False.
        calib (Path | None): calibration images (folder, class-folder tree or file list). Defaults to None.
        calib_samples (int): calibration images to use. Defaults to 300.
        calib_method (str): ONNX Runtime range estimation: "percentile", "entropy" or "minmax" (NNCF, for
            OpenVINO, has its own). Defaults to "percentile".
        opset (int): ONNX opset, 13..20. Defaults to 17.
        validation_images (Path | None): images for the PyTorch comparison. Defaults to offline photos.
        tolerance (SymbolTolerance): symbols allowed to differ from PyTorch (the outputs' tolerances are the
            task's). Defaults to SymbolTolerance().
        allow_failed_validation (bool): write the bundle even if validation fails. Defaults to False.
        overwrite (bool): replace an existing bundle. Defaults to False.
        progress (bool): progress bars while calibrating. Defaults to True.
        int8_recipe (str): INT8 weights, "portable" (7-bit, the same integers on every CPU) or "vnni" (8-bit,
            for a known VNNI/AMX/ARM-dot-product target). Defaults to "portable".
        int8_check_images (Path | None): held-out images for the INT8 validation (calibration images are
            skipped). Defaults to ``validation_images``, else the offline photos.
        int8_check_labels (Path | None): integer labels of those images: the budget is then on accuracy,
            else on top-1 agreement with FP32. Defaults to None.
        int8_check_count (int): held-out images for the INT8 validation. Defaults to 100.
        int8_check_crops (int): inputs per held-out image for the INT8 validation: the centre crop, then seeded
            random crops of 25-100 % of the image (the zoo's evaluation protocol), so that a dozen photos can
            resolve a 1-point budget. Defaults to 1.
        int8_budget (Int8Budget): the largest drop (fraction) and bytes change (%). Defaults to 0.01 and 2 %.
        int8_accuracy_control (bool): over budget, keep the most harmful layers of the device graph (device row)
            and of the server graph (server or both-halves rows) in float until the drop is within budget
            (``sc2edge.calibrate.control_accuracy``, tuned on crops of the calibration images, never the check
            images). A bundle control cannot tune (dynamic input, hyperprior: ``control_unsupported``) is checked
            as it is, the reason recorded (``accuracy_control_skipped``). Defaults to False.
        allow_int8_over_budget (bool): write INT8 artifacts that are over budget (recorded as failed).
            Defaults to False: an INT8 export over budget writes no bundle.
        reference (bool | None): also export the reference model (the unmodified teacher, image -> logits) for
            the input-codec baselines; None exports it when it has trained weights. Defaults to None.
        reference_checkpoint (Path | None): the reference's weights instead of its builder's. Defaults to None.
        int8_reference (bool): with ``int8``, also quantize the reference graph (what the input-codec baselines'
            INT8 points run; it costs a calibration of the whole teacher). Defaults to False.
        pixel_input (bool | None): the device graph takes uint8 NHWC pixels and normalizes in-graph
            (``zoo.graphs.PixelInput``) instead of a float32 NCHW image, INT8 graphs included (OpenVINO's is
            quantized on the float part and gets the front back: ``calibrate.nncf_int8``). None: pixels where the
            model supports them. Defaults to None.
        resize (int | None): for a model with a dynamic input (no crop: segmentation, detection), the shorter side
            images are resized to instead of the registry's (smaller is faster; the bundle records it). Defaults to
            None.
        max_input (int | None): the largest input side a stream may come from (the runtime refuses a larger
            latent before decoding it). A classifier that is to decode the streams of its encoder's detector
            needs the detector's side (1344). Defaults to None: 4x the exported side, at most 4096.
    """

    backends: tuple[str, ...] = ("onnxruntime",)
    int8: bool = False
    calib: Path | None = None
    calib_samples: int = 300
    calib_method: str = "percentile"
    opset: int = DEFAULT_OPSET
    validation_images: Path | None = None
    tolerance: SymbolTolerance = field(default_factory=SymbolTolerance)
    allow_failed_validation: bool = False
    overwrite: bool = False
    progress: bool = True
    int8_recipe: str = "portable"
    int8_check_images: Path | None = None
    int8_check_labels: Path | None = None
    int8_check_count: int = 100
    pixel_input: bool | None = None
    int8_check_crops: int = 1
    int8_budget: Int8Budget = field(default_factory=Int8Budget)
    int8_accuracy_control: bool = False
    allow_int8_over_budget: bool = False
    reference: bool | None = None
    reference_checkpoint: Path | None = None
    int8_reference: bool = False
    resize: int | None = None
    max_input: int | None = None

    def validate(self) -> ExportConfig:
        backends = tuple(dict.fromkeys(canonical_backend(b) for b in self.backends))
        if not backends:
            raise Sc2edgeError("no backend to export for: give at least one, e.g. --backend onnxruntime")
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise Sc2edgeError(f"ONNX opset {self.opset} is not supported: use {MIN_OPSET}..{MAX_OPSET} "
                               f"(default {DEFAULT_OPSET})")
        if "tensorrt" in backends:
            raise Sc2edgeError("TensorRT engines are built on the target GPU: export with --backend onnxruntime "
                               "(the TensorRT-ready ONNX is written with --int8), then run sc2edge build-engine there")
        if self.int8 and self.calib is None:
            raise Sc2edgeError("--int8 needs calibration images: pass --calib DIR")
        if self.calib is not None and not Path(self.calib).exists():
            raise Sc2edgeError(f"calibration data not found: {self.calib}")
        if self.reference_checkpoint is not None and self.reference is False:
            raise Sc2edgeError("--reference-checkpoint needs the reference model: drop --no-reference")
        if self.calib_samples < 1:
            raise Sc2edgeError(f"--calib-samples must be positive, got {self.calib_samples}")
        if self.int8_recipe not in RECIPES:
            raise Sc2edgeError(f'unknown INT8 recipe "{self.int8_recipe}" (available: {", ".join(RECIPES)})')
        CalibConfig(method=self.calib_method).validate()  # an unknown method is refused before any work
        if self.int8_check_count < 1:
            raise Sc2edgeError(f"--int8-check-count must be positive, got {self.int8_check_count}")
        if self.int8_check_crops < 1:
            raise Sc2edgeError(f"--int8-check-crops must be positive, got {self.int8_check_crops}")
        for name, path in (("--int8-check-images", self.int8_check_images),
                           ("--int8-check-labels", self.int8_check_labels)):
            if path is not None and not Path(path).exists():
                raise Sc2edgeError(f"{name} not found: {path}")
        if self.resize is not None and not 1 <= self.resize <= MAX_IMAGE_SIDE:
            raise Sc2edgeError(f"--resize must be 1..{MAX_IMAGE_SIDE}, got {self.resize}")
        if self.max_input is not None and not 1 <= self.max_input <= MAX_IMAGE_SIDE:
            raise Sc2edgeError(f"--max-input must be 1..{MAX_IMAGE_SIDE}, got {self.max_input}")
        self.int8_budget.validate()
        return ExportConfig(**{**self.__dict__, "backends": backends})


def model_task(loaded: LoadedModel) -> Task:
    """The zoo spec's task (kind, classes and their names) as the runtime will rebuild it from the manifest."""
    spec = loaded.spec
    options = getattr(loaded.model, "task_options", {})  # e.g. a detector's score threshold
    return create_task({"kind": spec.task, "num_classes": spec.num_classes, **options}, class_names(spec))


def takes_pixels(config: ExportConfig) -> bool:
    """Whether the device graph takes uint8 pixels (``ExportConfig.pixel_input``; None: yes)."""
    return True if config.pixel_input is None else config.pixel_input


def export_preprocess(loaded: LoadedModel, config: ExportConfig) -> PreprocessSpec:
    """The model's preprocessing, with ``config.resize`` for a dynamic input."""
    preprocess = loaded.spec.preprocess
    if config.resize is None:
        return preprocess
    if not preprocess.dynamic:
        raise Sc2edgeError(f"--resize is for models whose input size follows the image; {loaded.spec.name} crops "
                           f"{preprocess.crop} x {preprocess.crop}")
    # A longer-side bound (detection's min 800 / max 1333) keeps its ratio to the shorter side.
    max_size = None if preprocess.max_size is None else max(config.resize, round(
        preprocess.max_size * config.resize / preprocess.resize))
    return dataclasses.replace(preprocess, resize=config.resize, max_size=max_size)


def _manifest(loaded: LoadedModel, task: Task, tables: EntropyTables | None, config: ExportConfig,
              pixels: bool) -> dict[str, Any]:
    spec, model = loaded.spec, loaded.model
    labels_file = LABELS_FILE if task.labels else None
    preprocess = export_preprocess(loaded, config)
    size = preprocess.resize if preprocess.dynamic else preprocess.crop  # a dynamic input is traced square
    geometry = model.encoder_geometry()
    channels = 1 if spec.preprocess.grayscale else 3
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": spec.name, "builder": spec.builder, "beta": spec.beta, "trained": loaded.trained,
                  "checkpoint": str(loaded.checkpoint_path) if loaded.checkpoint_path else None,
                  "checkpoint_sha256": loaded.checkpoint_sha256, "description": spec.description},
        "task": task.to_json(labels_file),
        "preprocess": ({**preprocess.to_json(), "graph_input": PIXEL_GRAPH_INPUT} if pixels
                       else preprocess.to_json()),
        "input": {"channels": channels, "height": size, "width": size,
                  **({"dynamic": True} if preprocess.dynamic else {})},
        "latent": {"channels": model.latent_channels, "geometry": [list(g) for g in geometry],
                   "shape": [model.latent_channels, latent_size(size, geometry), latent_size(size, geometry)]},
        "entropy": None if tables is None else {  # None: the model's own section (CR+BQ: export/bq.py)
            "kind": FactorizedCodec.kind, "coder": coder_label(), "precision": PRECISION,
            "sections": [{"name": "y", "input": "symbols", "tables": TABLES_FILE, "hash": tables.hash}]},
        "opset": config.opset,
        "versions": {k: v for k, v in package_versions(_VERSIONED_PACKAGES).items() if v is not None},
    }


def validation_images(config: ExportConfig) -> list[Path]:
    images = list_images(config.validation_images) if config.validation_images else system_photos()
    if not images:
        raise Sc2edgeError("no validation images: pass --validation-images DIR")
    step = max(1, len(images) // VALIDATION_IMAGES)
    return images[::step][:VALIDATION_IMAGES]


def export_bundle(model: str | LoadedModel, out: str | Path, *, checkpoint: str | Path | None = None,
                  trust_checkpoint: bool = False, config: ExportConfig = ExportConfig()) -> Path:
    """Export ``model`` to a bundle directory at ``out``, validated against PyTorch.

    Args:
        model (str | LoadedModel): a registered model name, or a model already built (``get_model``'s result, or
            a registered builder's model built at another size or class count, as the tests do).
        out (str | Path): the bundle directory to write.
        checkpoint (str | Path | None): weights to load instead of the registry's. Defaults to None.
        trust_checkpoint (bool): allow unpickling a checkpoint the safe loader refuses. Defaults to False.
        config (ExportConfig): what to export. Defaults to ExportConfig().

    Returns:
        Path: the bundle directory.
    """
    config = config.validate()
    images = validation_images(config)  # before the slow steps: a wrong --validation-images fails at once
    loaded = model if isinstance(model, LoadedModel) else get_model(model, checkpoint=checkpoint,
                                                                     trust_checkpoint=trust_checkpoint)
    bq = is_bq(loaded.model)
    tables = None if bq else EntropyTables.from_bottleneck(loaded.model.bottleneck_layer.entropy_bottleneck)
    task = model_task(loaded)
    hyperprior = is_hyperprior(loaded.model)  # its z is the factorized prior of TABLES_FILE
    # CR+BQ, hyperprior and dynamic-input (segmentation) device graphs take float images for now
    pixels = takes_pixels(config) and not (bq or hyperprior or loaded.spec.preprocess.dynamic)
    manifest = _manifest(loaded, task, tables, config, pixels)
    if (bq or hyperprior) and config.max_input is not None:
        raise Sc2edgeError("--max-input is for factorized-prior models (a hyperprior or CR+BQ bundle takes its "
                           "exported latent only): export without it")
    declared_largest_side(max(int(manifest["input"]["height"]), int(manifest["input"]["width"])),
                          config.max_input)  # refused before any work
    if hyperprior and config.int8_accuracy_control:
        raise Sc2edgeError("accuracy control (--max-drop) supports factorized-prior models; export this hyperprior "
                           "without it")
    if hyperprior:
        manifest["entropy"] = hyperprior_entropy(loaded.model, tables, TABLES_FILE, means=model_means(loaded.model))
    size = manifest["input"]["height"]
    channels = manifest["input"]["channels"]
    example = torch.zeros(1, channels, size, size)
    # A detector is traced with a tiny score cut (an untrained one has no box above its real cut, and a tracer
    # follows the branch taken); the real cut is then set in the graph (``set_score_cut``).
    def tracing(model: torch.nn.Module) -> contextlib.AbstractContextManager[None]:
        return model.score_cut(TRACE_SCORE_CUT) if task.kind == "detection" else contextlib.nullcontext()

    if task.kind == "detection":
        with tracing(loaded.model):
            example = detection_example(loaded, manifest["preprocess"], images)
    with BundleBuilder(out, overwrite=config.overwrite) as builder, torch.no_grad():
        if bq:
            manifest["entropy"] = write_quantizer(loaded, builder.staging)
        else:
            tables.save(builder.staging / TABLES_FILE)
        if task.labels:
            (builder.staging / LABELS_FILE).write_text(json.dumps(task.labels))
        if hyperprior:
            stage_hyperprior(builder, loaded.model, example, task, opset=config.opset)
            validate = validate_hyperprior_bundle
        else:
            if bq:
                device_graph, server_graph = BqDeviceGraph(loaded.model).eval(), bq_server_graph(loaded.model).eval()
                device_io, server_input, validate = BQ_DEVICE_IO, BQ_SERVER_INPUT, validate_bq_bundle
            else:
                device_graph, server_graph = DeviceGraph(loaded.model).eval(), ServerGraph(loaded.model).eval()
                device_io, server_input, validate = DEVICE_IO, SERVER_INPUT, validate_bundle
            device_example, device_axes = example, None
            if pixels:
                pre = loaded.spec.preprocess
                device_graph = PixelInput(device_graph, pre.mean, pre.std).eval()
                device_example, device_axes = torch.zeros(1, size, size, channels, dtype=torch.uint8), PIXEL_AXES
            export_onnx(device_graph, device_example, builder.staging / "device.fp32.onnx", device_io,
                        opset=config.opset, input_axes=device_axes)
            builder.add_artifact("device", "onnx", "fp32", "device.fp32.onnx")
            with tracing(server_graph.tail):  # the server graph's own copy of the model
                export_onnx(server_graph, (device_graph(device_example), *loaded.model.tail_inputs(example)),
                            builder.staging / "server.fp32.onnx",
                            ([server_input, *task.extra_inputs], task.output_names),
                            opset=config.opset, output_axes={o.name: o.dynamic_axes() for o in task.outputs})
            if task.kind == "detection":
                set_score_cut(builder.staging / "server.fp32.onnx", loaded.model.score_threshold)
                dynamic_empty_branches(builder.staging / "server.fp32.onnx")  # OpenVINO's zero-box output
            builder.add_artifact("server", "onnx", "fp32", "server.fp32.onnx")
        reference = _reference(loaded.spec.name, config, trust_checkpoint)
        if reference is not None:
            export_onnx(reference.module, example, builder.staging / "reference.fp32.onnx", REFERENCE_IO,
                        opset=config.opset)
            builder.add_artifact("reference", "onnx", "fp32", "reference.fp32.onnx")
        if "openvino" in config.backends:
            add_openvino_artifacts(builder, ("device", "server", "reference") if reference else ("device", "server"))
        if config.int8:
            # A hyperprior quantizes its device graph (g_a, h_a) only: the server graph reads a float y_hat, and the
            # index path (h_s) runs in sc2edge's deterministic float32 code on both ends, never in a graph. A
            # dynamic-input model (segmentation, detection) is calibrated at the export's size
            # (``calibrate.data.at_export_size``); its server graph is quantized in its convolutions only, the
            # post-processing in float; ``validate_int8`` budgets it behind the FP32 device graph and with the
            # INT8 one, each held-out image at its own size.
            # The reference (the teacher) gets INT8 graphs when asked: the input-codec baselines' INT8 points run it.
            roles = ("device",) if hyperprior else ("device", "server")
            manifest["calibration"] = add_int8_artifacts(
                builder, manifest["preprocess"], config.calib,
                config=CalibConfig(samples=config.calib_samples, recipe=config.int8_recipe,
                                   method=config.calib_method),
                backends=config.backends,
                roles=(*roles, "reference") if reference is not None and config.int8_reference else roles,
                progress=config.progress, task=task)

        builder.write_manifest(manifest)
        limits = measure_input_limits(builder.staging, config.backends, config.max_input)
        if limits is not None:
            limits.apply(manifest)
        builder.write_manifest(manifest)
        staged = Bundle.open(builder.staging, verify=False)  # every file was hashed just now
        results = [validate(loaded.model, staged, images, backend=backend, tolerance=config.tolerance)
                   for backend in config.backends]
        manifest["validation"] = [r.to_json() for r in results]
        reference_results: list[ReferenceValidationResult] = []
        if reference is not None:
            reference_results = [validate_reference(reference.module, staged, images, backend=backend)
                                 for backend in config.backends]
            manifest["reference"] = _reference_record(reference, reference_results)
        _check([*results, *reference_results], config)
        if config.int8:
            manifest["calibration"]["int8_validation"] = _validate_int8(builder, config).to_json()
        builder.write_manifest(manifest)
        return builder.commit()


def set_score_cut(graph: Path, cut: float) -> None:
    """Put the detector's real score cut in place of the ``TRACE_SCORE_CUT`` the graph was traced with."""
    if not replace_scalar(graph, TRACE_SCORE_CUT, cut):
        raise Sc2edgeError(f"{graph.name}: the score cut {TRACE_SCORE_CUT} it was traced with is not a constant of "
                           "the graph, so its real cut cannot be set")


@torch.no_grad()
def detection_example(loaded: LoadedModel, preprocess: dict[str, Any], images: list[Path]) -> torch.Tensor:
    """The first validation image the detector finds something in (at the trace's score cut), as the input to
    trace: tracing follows Python branches, and torchvision's NMS takes an early return on zero boxes, which a
    blank image would bake in."""
    for path in images:
        image = torch.from_numpy(float_input(path, preprocess, fast=False))[None]
        if len(loaded.model(image)[0]):
            return image
    raise Sc2edgeError(f"{loaded.spec.name} detects nothing in any validation image, so its NMS cannot be traced "
                       "(the graph would always return no boxes): pass --validation-images with photos of objects")


def _validate_int8(builder: BundleBuilder, config: ExportConfig) -> Int8Validation:
    """The INT8 hook: each runtime's INT8 encoder against FP32 on held-out images, within ``int8_budget``
    (accuracy control first, when asked); over budget, no bundle is written unless explicitly allowed."""
    with tempfile.TemporaryDirectory(prefix="sc2edge-int8-check-") as tmp:
        data = _int8_check_data(config, Path(tmp))

        def check() -> Int8Validation:
            return validate_int8(Bundle.open(builder.staging, verify=False), data, config.int8_check_labels,
                                 backends=config.backends, budget=config.int8_budget,
                                 images=config.int8_check_count, progress=False, crops=config.int8_check_crops)

        verdict = check()
        if not verdict and config.int8_accuracy_control:
            # a bundle control cannot tune (a dynamic input, a hyperprior) is checked as it is, the reason recorded
            verdict.control_skipped = control_unsupported(Bundle.open(builder.staging, verify=False))
        if not verdict and config.int8_accuracy_control and not verdict.control_skipped:
            # the device graph on its row, the server on its own (behind the FP32 device graph), which also
            # serves a both-halves row over budget. The reference (the teacher) gets no control: over budget, it is
            # refused or written as failed.
            failed = [(c.backend, CONTROLLED_ROLE[c.graph]) for c in verdict.checks if not c and c.graph in
                      CONTROLLED_ROLE]
            for backend, role in sorted(dict.fromkeys(failed), key=lambda pair: pair[1] != "device"):
                control_accuracy(builder.staging, data, config.int8_budget.max_drop, labels=config.int8_check_labels,
                                 backend=backend, images=config.int8_check_count, calib=config.calib,
                                 progress=False, crops=config.int8_check_crops, role=role)
            builder.reload_staged()  # control rewrote graphs and hashed them afresh
            verdict = check()
    if config.int8_check_images is None and config.validation_images is None:
        verdict.source = OFFLINE_PHOTOS
    if not verdict and not config.allow_int8_over_budget:
        remedy = (f"accuracy control skipped: {verdict.control_skipped}" if verdict.control_skipped
                  else "even after accuracy control" if config.int8_accuracy_control
                  else "pass --max-drop X for accuracy control")
        raise Sc2edgeError(f"{verdict.summary()}: no bundle written ({remedy}; --allow-int8-over-budget writes it "
                           "anyway; or export without --int8)")
    return verdict


def _int8_check_data(config: ExportConfig, tmp: Path) -> Path:
    """The INT8 checks' held-out images: ``int8_check_images``, else ``validation_images``, else the offline photos
    (as a file list in ``tmp``)."""
    data = config.int8_check_images or config.validation_images
    if data is None:
        data = tmp / "photos.txt"
        data.write_text("".join(f"{p}\n" for p in system_photos()))
    return Path(data)


def _reference(model: str, config: ExportConfig, trust_checkpoint: bool) -> ReferenceModel | None:
    """The reference model to export: asked for, or (by default) whenever it has trained weights.

    Random reference weights (ResNet-50 here: torchvision's weights are not shipped) compare nothing and would
    add 100 MB, so the default leaves them out; ``--reference`` writes them anyway, marked untrained.
    """
    if config.reference is False:
        return None
    if get_spec(model).task != "classification":
        if config.reference:
            raise Sc2edgeError(f"the reference model is exported for classifiers only; {model} is a "
                               f"{get_spec(model).task} model: drop --reference")
        return None
    reference = get_reference(model, checkpoint=config.reference_checkpoint, trust_checkpoint=trust_checkpoint)
    return reference if config.reference or reference.trained else None


def _reference_record(reference: ReferenceModel, results: list[ReferenceValidationResult]) -> dict[str, Any]:
    return {"name": reference.name, "description": reference.description, "trained": reference.trained,
            "weights": reference.weights.name if reference.weights else None,
            "weights_sha256": reference.weights_sha256, "validation": [r.to_json() for r in results]}


def _check(results: list[ValidationResult | ReferenceValidationResult], config: ExportConfig) -> None:
    failed = [r for r in results if not r]
    if failed and not config.allow_failed_validation:
        raise Sc2edgeError("export does not match PyTorch, no bundle written: " + "; ".join(map(str, failed))
                           + " (pass --allow-failed-validation to write it anyway)")
