"""``check_quant``: what INT8 did to a bundle's encoder, measured on held-out images through the runtime.

FP32 and INT8 device graphs run on the same images (never the calibration ones); both symbol sets are coded
with the bundle's rANS coder and decoded by the same server graph, so every difference in the report is
the encoder's quantization: the task's metric (with labels: top-1 accuracy, mean IoU, ...) and its agreement
measures with FP32 (``Task.agreement_scores``: top-1/top-5, pixels/mean IoU, ...), latent SQNR, symbols changed,
bytes per image. A dynamic-input bundle (segmentation) runs each image at its own size, its streams carrying the
image sizes its server graph takes. Without labels, a classification bundle that carries its reference model (the
teacher) is scored against pseudo-labels: the reference graph's FP32 top-1 on the same inputs (the metric the
models' figures report, "agreement with the teacher"); agreement with FP32 is reported beside it.

It also checks the kernels this CPU runs (``sc2edge.runtime.cpu``): the INT8 graph's real output against the
exact emulation of the same quantized model (ONNX Runtime: its x64 high-precision mode, exact integer sums;
OpenVINO: the IR with dequantized float weights, which the CPU plugin runs in float), reported as "kernel
saturation on this CPU". The worst layers come from the real kernels' intermediate outputs (each conv's
quantized output, kept as a graph output so ORT still fuses it), against FP32 and against the exact sums.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sc2edge._lazy import lazy_import
from sc2edge.calibrate.data import ImageSet, held_out_set
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle, create_runner
from sc2edge.runtime.backends import backend_info, canonical_backend, runner_class
from sc2edge.runtime.cpu import this_cpu
from sc2edge.runtime.entropy import open_codec
from sc2edge.runtime.halves import preprocess_sized
from sc2edge.runtime.preprocess import float_item
from sc2edge.runtime.reference import REFERENCE_INPUT, REFERENCE_OUTPUT, REFERENCE_ROLE, has_reference
from sc2edge.runtime.stream import unpack_stream
from sc2edge.tasks import ImageSizes, bundle_task

DEFAULT_IMAGES = 100
LAYER_IMAGES = 4  # per-layer SQNR holds every intermediate tensor in memory: a few images are enough
# ONNX Runtime session option: U8S8 on x86 without VNNI without the saturating int16 step (a no-op elsewhere).
ORT_EXACT_CONFIG = ("session.x64quantprecision", "1")
# What the accuracy is measured against: the user's labels, or the reference model's FP32 top-1 (pseudo-labels).
TRUTH_LABELS, TRUTH_TEACHER = "labels", "teacher"
TRUTH_TEXT = {TRUTH_LABELS: "labels", TRUTH_TEACHER: "pseudo-labels: the teacher's FP32 top-1 on the same inputs"}

Infer = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when identical)."""
    reference = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((reference - np.asarray(test, dtype=np.float64)) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(max(signal, np.finfo(np.float64).tiny) / noise)


@dataclass
class LayerError:
    """One conv output of the INT8 graph as the real kernels compute it: SQNR against the FP32 graph (error
    accumulated up to there) and the share of its quantized values that differ from the exact integer sums."""

    tensor: str
    sqnr_db: float
    kernel_mismatch_pct: float | None = None


@dataclass
class QuantReport:
    """FP32 vs INT8 encoder on held-out images. Truthy when the drop is within ``max_drop`` either way (or none was
    set).

    The drop is the drop of the task's metric (``metric_name``) with labels (``truth``: "labels", or "teacher"
    for the reference model's pseudo-labels), else ``1 - agreement`` (the first of ``agreements``).
    """

    bundle: str
    backend: str
    images: int
    calibration_images_excluded: int
    labelled: bool
    accuracy_fp32: float | None
    accuracy_int8: float | None
    agreements: dict[str, float]  # the task's agreement measures of INT8 with FP32 (``Task.agreement_scores``)
    latent_sqnr_db: float
    symbols_changed_pct: float
    bytes_fp32: float
    bytes_int8: float
    worst_layers: list[LayerError] = field(default_factory=list)
    max_drop: float | None = None
    trained: bool = True
    kernel_saturation_pct: float | None = None  # symbols where the real INT8 kernels differ from exact sums
    cpu: dict[str, Any] = field(default_factory=dict)  # model, ISA flags, INT8 kernel path (runtime.cpu)
    recipe: str | None = None
    crops: int = 1  # inputs per held-out image (``images`` counts inputs)
    truth: str | None = None  # TRUTH_LABELS, TRUTH_TEACHER or None (agreement with FP32)
    task: str = "classification"
    metric_name: str = "top-1 accuracy"

    @property
    def agreement(self) -> float:
        """The task's agreement of INT8 with FP32 (top-1 for classification, pixels for segmentation)."""
        return next(iter(self.agreements.values()), 0.0)

    @property
    def drop(self) -> float:
        if self.labelled and self.accuracy_fp32 is not None and self.accuracy_int8 is not None:
            return self.accuracy_fp32 - self.accuracy_int8
        return 1.0 - self.agreement

    @property
    def rate_change_pct(self) -> float:
        return 100.0 * (self.bytes_int8 / self.bytes_fp32 - 1.0) if self.bytes_fp32 else 0.0

    def __bool__(self) -> bool:
        # two-sided, as the export's budget (``budget.Int8Check``): INT8 far "better" than FP32 on a few hundred
        # inputs is a deviation too, and accuracy control keeps layers in float until the change is small either way
        return self.max_drop is None or abs(self.drop) <= self.max_drop + 1e-9

    def __str__(self) -> str:
        inputs = f"{self.images}" if self.crops == 1 else (f"{self.images} ({self.images // self.crops} images x "
                                                            f"{self.crops} crops)")
        rows = [("images (held out)", f"{inputs} ({self.calibration_images_excluded} calibration images excluded)"),
                ("backend", self.backend)]
        if self.labelled:
            rows += [(f"{self.metric_name} FP32", f"{100 * self.accuracy_fp32:.2f} %"),
                     (f"{self.metric_name} INT8", f"{100 * self.accuracy_int8:.2f} %"),
                     (f"{self.metric_name} against", TRUTH_TEXT.get(self.truth or TRUTH_LABELS, self.truth))]
        rows += [(f"agreement with FP32 ({name})", f"{100 * value:.2f} %") for name, value in self.agreements.items()]
        rows += [("latent SQNR (symbols + median)", f"{self.latent_sqnr_db:.2f} dB"),
                 ("symbols changed", f"{self.symbols_changed_pct:.3f} %"),
                 ("rANS bytes/image FP32", f"{self.bytes_fp32:.1f}"),
                 ("rANS bytes/image INT8", f"{self.bytes_int8:.1f} ({self.rate_change_pct:+.2f} %)")]
        if self.max_drop is not None:
            budgeted = self.metric_name if self.labelled else f"agreement with FP32 ({next(iter(self.agreements))})"
            rows.append((f"drop / max drop ({budgeted})", f"{100 * self.drop:.2f} % / {100 * self.max_drop:.2f} % "
                                                          f"-> {'PASS' if self else 'FAIL'}"))
        if self.cpu:
            rows += [("CPU", f"{self.cpu.get('cpu')}; ISA {' '.join(self.cpu.get('isa', [])) or 'unknown'}"),
                     ("INT8 kernel path", self.cpu.get("kernel_path", "unknown")),
                     ("INT8 recipe", self.recipe or "unrecorded (full 8-bit weights)")]
        width = max(len(name) for name, _ in rows)
        lines = [f"check-quant {self.bundle}", *(f"  {name:<{width}}  {value}" for name, value in rows)]
        if self.kernel_saturation_pct is not None:
            lines.append(f"kernel saturation on this CPU: {self.kernel_saturation_pct:.3f} % of symbols")
        if self.worst_layers:
            lines.append("  worst layers (real INT8 kernels: SQNR vs FP32, values differing from exact sums):")
            lines += [f"    {layer.sqnr_db:7.2f} dB  {layer.kernel_mismatch_pct or 0.0:7.3f} %  {layer.tensor}"
                      for layer in self.worst_layers]
        if not self.trained:
            lines.append("  note: UNTRAINED model (random weights): accuracy and bytes are not meaningful")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)  # plain str/float/bool/list fields already
        data.update(agreement=self.agreement, drop=self.drop, rate_change_pct=self.rate_change_pct, passed=bool(self))
        return data


def _ort_session(graph: str | Path, threads: int | None, *, exact: bool) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if exact:
        options.add_session_config_entry(*ORT_EXACT_CONFIG)
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def _float_weights_ir(xml: Path, out: Path) -> Path:
    """The NNCF IR with every conv's int8 weights (Constant -> Convert -> [Subtract] -> Multiply) replaced by the
    float constant they dequantize to: the CPU plugin then runs the convs (and FakeQuantize) in float."""
    ov = lazy_import("openvino")
    from openvino import opset13

    def value(output: Any) -> np.ndarray:
        node = output.get_node()
        kind = node.get_type_name()
        if kind == "Constant":
            return np.array(node.get_data())
        if kind == "Convert":
            return value(node.input_value(0)).astype(np.float32)
        if kind in ("Multiply", "Subtract"):
            a, b = value(node.input_value(0)), value(node.input_value(1))
            return a * b if kind == "Multiply" else a - b
        raise Sc2edgeError(f"{xml.name}: unexpected {kind} in a conv's weights")

    model = ov.Core().read_model(str(xml))
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Convolution" and op.input_value(1).get_node().get_type_name() != "Constant":
            weights = value(op.input_value(1)).astype(np.float32)
            op.input(1).replace_source_output(opset13.constant(weights).output(0))
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


@contextlib.contextmanager
def exact_int8(backend: str, int8_graph: Path, threads: int | None = None) -> Iterator[Infer]:
    """Run the INT8 graph's exact emulation: the same quantized model without any int16 saturation."""
    if backend == "onnxruntime":
        session = _ort_session(int8_graph, threads, exact=True)
        names = [o.name for o in session.get_outputs()]
        yield lambda feed: dict(zip(names, session.run(names, feed), strict=True))
        return
    with tempfile.TemporaryDirectory(prefix="sc2edge-exact-") as tmp, \
            runner_class(backend)(_float_weights_ir(int8_graph, Path(tmp) / "exact.xml"), threads=threads) as runner:
        yield runner.infer


def kernel_layer_errors(fp32_onnx: str | Path, int8_onnx: str | Path, inputs: Sequence[dict[str, np.ndarray]],
                        worst: int = 5, threads: int | None = None) -> list[LayerError]:
    """The ``worst`` conv outputs of an ONNX Runtime QDQ graph as its real (fused) kernels compute them, by SQNR
    against the FP32 graph, each with the share of quantized values that differ from the exact integer sums."""
    import onnx

    model = onnx.load(str(int8_onnx))
    producers = {out: node for node in model.graph.node for out in node.output}
    inits = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    layers = [(node.input[0], node.output[0], inits[node.input[1]], inits[node.input[2]])
              for node in model.graph.node
              if node.op_type == "QuantizeLinear" and getattr(producers.get(node.input[0]), "op_type", "") == "Conv"]
    if not layers:
        return []
    fp32 = onnx.load(str(fp32_onnx))
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(q) for _, q, _, _ in layers)
    fp32.graph.output.extend(onnx.helper.make_empty_tensor_value_info(f) for f, _, _, _ in layers)
    with tempfile.TemporaryDirectory(prefix="sc2edge-layers-") as tmp:
        onnx.save(model, str(Path(tmp) / "int8.onnx"))
        onnx.save(fp32, str(Path(tmp) / "fp32.onnx"))
        real = _ort_session(Path(tmp) / "int8.onnx", threads, exact=False)
        exact = _ort_session(Path(tmp) / "int8.onnx", threads, exact=True)
        reference = _ort_session(Path(tmp) / "fp32.onnx", threads, exact=False)
        quantized, floats = [q for _, q, _, _ in layers], [f for f, _, _, _ in layers]
        runs = [(real.run(quantized, feed), exact.run(quantized, feed), reference.run(floats, feed))
                for feed in inputs]
    errors = []
    for i, (name, _, scale, zero_point) in enumerate(layers):
        got = [r[0][i] for r in runs]
        mismatch = sum(int(np.count_nonzero(r[0][i] != r[1][i])) for r in runs) / sum(g.size for g in got)
        # raveled: the inputs of a dynamic-input bundle differ in size
        dequantized = np.concatenate([((g.astype(np.float32) - zero_point.astype(np.float32)) * scale).ravel()
                                      for g in got])
        errors.append(LayerError(name, sqnr_db(np.concatenate([r[2][i].ravel() for r in runs]), dequantized),
                                 100.0 * mismatch))
    return sorted(errors, key=lambda layer: layer.sqnr_db)[:worst]


def check_quant(bundle: Bundle | str | Path, data: str | Path, labels: str | Path | None = None, *,
                backend: str = "onnxruntime", images: int = DEFAULT_IMAGES, seed: int = 0,
                max_drop: float | None = None, threads: int | None = None, worst_layers: int = 5,
                progress: bool = True, crops: int = 1) -> QuantReport:
    """Compare a bundle's INT8 device graph with its FP32 one on held-out images.

    Args:
        bundle (Bundle | str | Path): a bundle exported with ``--int8``.
        data (str | Path): images (folder, class-folder tree or file list); calibration images are skipped.
        labels (str | Path | None): the task's labels (``Task.load_labels``: integer labels as "path label"
            lines or JSON for classification, a folder of masks for segmentation). Defaults to None: pseudo-labels
            from the bundle's reference model (classification), else agreement with FP32.
        backend (str): runtime of both graphs ("onnxruntime" or "openvino"). Defaults to "onnxruntime".
        images (int): held-out images to use. Defaults to 100.
        seed (int): seed of the held-out selection. Defaults to 0.
        max_drop (float | None): allowed drop (fraction, e.g. 0.01); decides the report's truth. Defaults to None.
        threads (int | None): runtime threads. Defaults to None.
        worst_layers (int): how many conv outputs of the real kernels to list by SQNR (0: skip; ONNX Runtime
            only). Defaults to 5.
        progress (bool): progress bar. Defaults to True.
        crops (int): inputs per image: its centre crop, then random crops of 25-100 % of it (seeded by
            ``seed``), so that a few held-out photos can resolve a small drop. Defaults to 1.
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    held, truth = held_out(bundle, data, labels, images, seed, progress, crops)
    backend = canonical_backend(backend)
    int8 = bundle.path / bundle.artifact("device", backend_info(backend).artifact_format, "int8").path
    report = evaluate(bundle, held, truth, backend, int8, threads=threads, max_drop=max_drop, progress=progress,
                      truth_source=truth_source(bundle, labels))
    report.kernel_saturation_pct = kernel_saturation_pct(backend, int8, held, threads)
    if worst_layers and backend == "onnxruntime":
        inputs = [{"image": x[None]} for x in held.arrays()[:LAYER_IMAGES]]
        report.worst_layers = kernel_layer_errors(bundle.path / bundle.artifact("device", "onnx", "fp32").path,
                                                  int8, inputs, worst_layers, threads)
    return report


def kernel_saturation_pct(backend: str, int8_graph: Path, held: ImageSet, threads: int | None = None) -> float:
    """Percent of symbols where the runtime's real INT8 kernels differ from the exact emulation on ``held``."""
    differ = total = 0
    with runner_class(backend)(int8_graph, threads=threads) as real, exact_int8(backend, int8_graph, threads) as exact:
        for x in held.arrays():
            feed = {"image": x[None]}
            got, want = real.infer(feed), exact(feed)
            for name, value in got.items():  # symbols; a hyperprior's float y counts as its rounded values
                differ += int(np.count_nonzero(np.rint(value) != np.rint(want[name])))
                total += value.size
    return 100.0 * differ / max(total, 1)


def held_out(bundle: Bundle, data: str | Path, labels: str | Path | None, images: int, seed: int,
             progress: bool = True, crops: int = 1) -> tuple[ImageSet, list | np.ndarray | None]:
    """Held-out images of ``data`` (never the bundle's calibration images), ``crops`` inputs each, and their
    labels (one per input): ``labels`` if given (read by the bundle's task), else the reference model's
    pseudo-labels (``truth_source``)."""
    if crops > 1 and bundle.spec.preprocess.dynamic:
        raise Sc2edgeError("crops are for a cropped (fixed-size) input: this bundle's input follows the image, "
                           "use --crops 1 and more images")
    calibration = bundle.manifest.get("calibration", {}).get("sha256", [])
    held = held_out_set(data, bundle.preprocess, images, seed, calibration, progress, crops)
    source = truth_source(bundle, labels)
    if source == TRUTH_TEACHER:
        return held, teacher_labels(bundle, held)
    if source is None:
        return held, None
    found = bundle_task(bundle).load_labels(labels, held.paths, data)
    return held, found if crops == 1 else np.repeat(found, crops)


def truth_source(bundle: Bundle, labels: str | Path | None) -> str | None:
    """What INT8 accuracy is measured against: real labels win; without them, a classification bundle with its
    reference model (the teacher) gives pseudo-labels; else None (top-1 agreement with FP32)."""
    if labels is not None:
        return TRUTH_LABELS
    if bundle.manifest["task"]["kind"] == "classification" and has_reference(bundle, "onnxruntime", "fp32"):
        return TRUTH_TEACHER
    return None


def teacher_labels(bundle: Bundle, held: ImageSet) -> np.ndarray:
    """The reference graph's FP32 top-1 (ONNX Runtime) on every held-out input: one pseudo-label each."""
    with create_runner("onnxruntime", bundle, REFERENCE_ROLE, "fp32") as reference:
        return np.array([int(np.argmax(reference.infer({REFERENCE_INPUT: float_item(x[None], bundle.preprocess)})[
            REFERENCE_OUTPUT][0])) for x in held.arrays()])


def check_max_drop(max_drop: float | None) -> None:
    """Reject a drop bound that is not a fraction, before any image is run."""
    if max_drop is not None and not 0.0 <= max_drop <= 1.0:
        raise Sc2edgeError(f"max_drop is a fraction in [0, 1], got {max_drop}")


def model_inputs(bundle: Bundle, held: ImageSet) -> list[tuple[np.ndarray, ImageSizes | None]]:
    """Per held-out input, the device graph's input and the image sizes a dynamic-input bundle's streams carry
    (None for a fixed input). A dynamic input is preprocessed from the whole decoded image, as ``Encoder.encode``
    does (no reduced-scale JPEG decoding), so its figures are the deployed encoder's."""
    if not bundle.spec.preprocess.dynamic:
        return [(x, None) for x in held.arrays()]
    return [preprocess_sized(path, bundle) for path in held.paths]


def evaluate(bundle: Bundle, held: ImageSet, truth: list | np.ndarray | None, backend: str, int8_graph: Path, *,
             threads: int | None = None, max_drop: float | None = None, progress: bool = True,
             truth_source: str | None = TRUTH_LABELS, server_graph: Path | None = None) -> QuantReport:
    """FP32 (both halves) vs the device graph ``int8_graph`` (a bundle file or a candidate) with the server graph
    ``server_graph`` (default: the FP32 server; an INT8 server behind the FP32 device graph measures the server
    alone); ``truth_source`` names what ``truth`` is (labels or the teacher's pseudo-labels)."""
    check_max_drop(max_drop)
    medians = bundle.tables.medians.reshape(-1, 1, 1) if bundle.spec.entropy.kind == "factorized" else 0
    codec = open_codec(bundle)  # any entropy model: its device outputs, sections and server input
    server_input = codec.server_inputs[0]
    task = bundle_task(bundle)
    out: dict[str, list] = {k: [] for k in ("predictions_fp32", "predictions_int8", "latent_fp32", "latent_int8",
                                            "bytes_fp32", "bytes_int8", "symbols_fp32", "symbols_int8")}
    with create_runner(backend, bundle, "device", "fp32", threads=threads) as fp32, \
            runner_class(backend)(int8_graph, threads=threads) as int8, \
            create_runner(backend, bundle, "server", "fp32", threads=threads) as server, \
            (runner_class(backend)(server_graph, threads=threads) if server_graph else contextlib.nullcontext(
                server)) as int8_server:
        for x, sizes in tqdm(model_inputs(bundle, held), desc="FP32 vs INT8", unit="img",
                             disable=None if progress else True, leave=False):
            for precision, runner, decoder in (("fp32", fp32, server), ("int8", int8, int8_server)):
                outputs = runner.infer({"image": x[None]})
                item = {name: outputs[name][0] for name in codec.device_outputs}
                sections = codec.section_symbols(item)
                out[f"symbols_{precision}"].append(np.concatenate([v.ravel() for v in sections.values()]))
                stream = codec.compress(item, sizes)
                payloads = unpack_stream(stream)[1]
                out[f"bytes_{precision}"].append(sum(len(payloads[n]) for n in sections))  # raw rANS payloads
                received = codec.decompress(stream)[server_input][None]
                feed = {server_input: received, **task.server_inputs(sizes)}
                out[f"predictions_{precision}"] += task.predictions(decoder.infer(feed))
                out[f"latent_{precision}"].append(received[0] + medians)
    fp32_predictions, int8_predictions = out["predictions_fp32"], out["predictions_int8"]
    changed = sum(int(np.count_nonzero(a != b)) for a, b in zip(out["symbols_fp32"], out["symbols_int8"], strict=True))
    return QuantReport(
        bundle=str(bundle.path), backend=backend, images=len(held), calibration_images_excluded=held.excluded,
        labelled=truth is not None,
        accuracy_fp32=task.metric(fp32_predictions, truth) if truth is not None else None,
        accuracy_int8=task.metric(int8_predictions, truth) if truth is not None else None,
        agreements=task.agreement_scores(fp32_predictions, int8_predictions),
        latent_sqnr_db=sqnr_db(*(np.concatenate([v.ravel() for v in out[f"latent_{p}"]]) for p in ("fp32", "int8"))),
        symbols_changed_pct=100.0 * changed / sum(s.size for s in out["symbols_fp32"]),
        bytes_fp32=float(np.mean(out["bytes_fp32"])), bytes_int8=float(np.mean(out["bytes_int8"])),
        max_drop=max_drop, trained=bool(bundle.manifest["model"].get("trained", True)), cpu=this_cpu().to_json(),
        recipe=(bundle.manifest.get("calibration") or {}).get("recipe"), crops=held.crops,
        truth=truth_source if truth is not None else None, task=task.kind, metric_name=task.metric_name)
