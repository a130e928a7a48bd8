"""``check_quant``: what INT8 did to a bundle's encoder, measured on held-out images through the runtime.

FP32 and INT8 device graphs run on the same images (never the calibration ones); both symbol sets are coded
with the bundle's rANS coder and classified by the same server graph, so every difference in the report is
the encoder's quantization: task accuracy (with labels) or top-1/top-5 agreement with FP32, latent SQNR,
symbols changed, bytes per image, and the per-layer SQNR of the worst layers (ONNX Runtime's qdq_loss_debug).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sc2edge.calibrate.data import ImageSet, held_out_set
from sc2edge.calibrate.onnxrt import FeedReader
from sc2edge.errors import Sc2edgeError
from sc2edge.photos import load_labels
from sc2edge.runtime import Bundle, RansCoder, create_runner
from sc2edge.runtime.backends import backend_info, canonical_backend, runner_class
from sc2edge.tasks import bundle_task

DEFAULT_IMAGES = 100
LAYER_IMAGES = 4  # per-layer SQNR holds every intermediate tensor in memory: a few images are enough


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
    """SQNR of one activation of the INT8 graph against the FP32 graph (accumulated error up to there)."""

    tensor: str
    sqnr_db: float


@dataclass
class QuantReport:
    """FP32 vs INT8 encoder on held-out images. Truthy when the drop is within ``max_drop`` (or none was set).

    The drop is the accuracy drop with labels, else ``1 - top1_agreement``.
    """

    bundle: str
    backend: str
    images: int
    calibration_images_excluded: int
    labelled: bool
    accuracy_fp32: float | None
    accuracy_int8: float | None
    top1_agreement: float
    top5_agreement: float
    latent_sqnr_db: float
    symbols_changed_pct: float
    bytes_fp32: float
    bytes_int8: float
    worst_layers: list[LayerError] = field(default_factory=list)
    max_drop: float | None = None
    trained: bool = True

    @property
    def drop(self) -> float:
        if self.labelled and self.accuracy_fp32 is not None and self.accuracy_int8 is not None:
            return self.accuracy_fp32 - self.accuracy_int8
        return 1.0 - self.top1_agreement

    @property
    def rate_change_pct(self) -> float:
        return 100.0 * (self.bytes_int8 / self.bytes_fp32 - 1.0) if self.bytes_fp32 else 0.0

    def __bool__(self) -> bool:
        return self.max_drop is None or self.drop <= self.max_drop

    def __str__(self) -> str:
        rows = [("images (held out)", f"{self.images} ({self.calibration_images_excluded} calibration images "
                                      "excluded)"),
                ("backend", self.backend)]
        if self.labelled:
            rows += [("top-1 accuracy FP32", f"{100 * self.accuracy_fp32:.2f} %"),
                     ("top-1 accuracy INT8", f"{100 * self.accuracy_int8:.2f} %")]
        rows += [("top-1 agreement with FP32", f"{100 * self.top1_agreement:.2f} %"),
                 ("top-5 agreement (FP32 top-1 in INT8 top-5)", f"{100 * self.top5_agreement:.2f} %"),
                 ("latent SQNR (symbols + median)", f"{self.latent_sqnr_db:.2f} dB"),
                 ("symbols changed", f"{self.symbols_changed_pct:.3f} %"),
                 ("rANS bytes/image FP32", f"{self.bytes_fp32:.1f}"),
                 ("rANS bytes/image INT8", f"{self.bytes_int8:.1f} ({self.rate_change_pct:+.2f} %)")]
        if self.max_drop is not None:
            rows.append(("drop / max drop", f"{100 * self.drop:.2f} % / {100 * self.max_drop:.2f} % -> "
                                            f"{'PASS' if self else 'FAIL'}"))
        width = max(len(name) for name, _ in rows)
        lines = [f"check-quant {self.bundle}", *(f"  {name:<{width}}  {value}" for name, value in rows)]
        if self.worst_layers:
            lines.append("  worst layers (SQNR of INT8 vs FP32 activation):")
            lines += [f"    {layer.sqnr_db:7.2f} dB  {layer.tensor}" for layer in self.worst_layers]
        if not self.trained:
            lines.append("  note: UNTRAINED model (random weights): accuracy and bytes are not meaningful")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)  # plain str/float/bool/list fields already
        data.update(drop=self.drop, rate_change_pct=self.rate_change_pct, passed=bool(self))
        return data


def layer_errors(fp32_onnx: str | Path, int8_onnx: str | Path, inputs: Sequence[dict[str, np.ndarray]],
                 worst: int = 5) -> list[LayerError]:
    """The ``worst`` activations of a QDQ graph by SQNR against its FP32 graph (onnxruntime qdq_loss_debug)."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    with tempfile.TemporaryDirectory(prefix="sc2edge-sqnr-") as tmp:
        aug_fp32, aug_int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        modify_model_output_intermediate_tensors(str(fp32_onnx), str(aug_fp32))
        modify_model_output_intermediate_tensors(str(int8_onnx), str(aug_int8))
        float_acts = collect_activations(str(aug_fp32), FeedReader(inputs))
        qdq_acts = collect_activations(str(aug_int8), FeedReader(inputs))
    matched = create_activation_matching(qdq_acts, float_acts)
    errors = compute_activation_error(matched, err_func=lambda a, b: sqnr_db(np.concatenate(a), np.concatenate(b)))
    layers = [LayerError(name, e["xmodel_err"]) for name, e in errors.items() if "xmodel_err" in e]
    return sorted(layers, key=lambda layer: layer.sqnr_db)[:worst]


def check_quant(bundle: Bundle | str | Path, data: str | Path, labels: str | Path | None = None, *,
                backend: str = "onnxruntime", images: int = DEFAULT_IMAGES, seed: int = 0,
                max_drop: float | None = None, threads: int | None = None, worst_layers: int = 5,
                progress: bool = True) -> QuantReport:
    """Compare a bundle's INT8 device graph with its FP32 one on held-out images.

    Args:
        bundle (Bundle | str | Path): a bundle exported with ``--int8``.
        data (str | Path): images (folder, class-folder tree or file list); calibration images are skipped.
        labels (str | Path | None): integer labels ("path label" lines or JSON). Defaults to None (agreement).
        backend (str): runtime of both graphs ("onnxruntime" or "openvino"). Defaults to "onnxruntime".
        images (int): held-out images to use. Defaults to 100.
        seed (int): seed of the held-out selection. Defaults to 0.
        max_drop (float | None): allowed drop (fraction, e.g. 0.01); decides the report's truth. Defaults to None.
        threads (int | None): runtime threads. Defaults to None.
        worst_layers (int): how many layers to list by SQNR (0: skip; ONNX Runtime only). Defaults to 5.
        progress (bool): progress bar. Defaults to True.
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    held, truth = held_out(bundle, data, labels, images, seed, progress)
    backend = canonical_backend(backend)
    int8 = bundle.path / bundle.artifact("device", backend_info(backend).artifact_format, "int8").path
    report = evaluate(bundle, held, truth, backend, int8, threads=threads, max_drop=max_drop, progress=progress)
    if worst_layers and backend == "onnxruntime":  # qdq_loss_debug matches tensors of ORT's QDQ graph
        inputs = [{"image": x[None]} for x in held.arrays()[:LAYER_IMAGES]]
        report.worst_layers = layer_errors(bundle.path / bundle.artifact("device", "onnx", "fp32").path,
                                           bundle.path / bundle.artifact("device", "onnx", "int8").path, inputs,
                                           worst_layers)
    return report


def held_out(bundle: Bundle, data: str | Path, labels: str | Path | None, images: int, seed: int,
             progress: bool = True) -> tuple[ImageSet, np.ndarray | None]:
    """Held-out images of ``data`` (never the bundle's calibration images) and their labels, if given."""
    calibration = bundle.manifest.get("calibration", {}).get("sha256", [])
    held = held_out_set(data, bundle.preprocess, images, seed, calibration, progress)
    if labels is None:
        return held, None
    found = load_labels(labels, held.paths, data)
    return held, np.array([found[p] for p in held.paths])


def check_max_drop(max_drop: float | None) -> None:
    """Reject a drop bound that is not a fraction, before any image is run."""
    if max_drop is not None and not 0.0 <= max_drop <= 1.0:
        raise Sc2edgeError(f"max_drop is a fraction in [0, 1], got {max_drop}")


def evaluate(bundle: Bundle, held: ImageSet, truth: np.ndarray | None, backend: str, int8_graph: Path, *,
             threads: int | None = None, max_drop: float | None = None, progress: bool = True) -> QuantReport:
    """FP32 vs the INT8 device graph ``int8_graph`` (a bundle file or a candidate), both with the FP32 server."""
    check_max_drop(max_drop)
    medians = bundle.tables.medians.reshape(-1, 1, 1)
    coder = RansCoder(bundle.tables)
    task = bundle_task(bundle)
    out: dict[str, list] = {k: [] for k in ("predictions_fp32", "predictions_int8", "latent_fp32", "latent_int8",
                                            "bytes_fp32", "bytes_int8", "symbols_fp32", "symbols_int8")}
    with create_runner(backend, bundle, "device", "fp32", threads=threads) as fp32, \
            runner_class(backend)(int8_graph, threads=threads) as int8, \
            create_runner(backend, bundle, "server", "fp32", threads=threads) as server:
        for x in tqdm(held.arrays(), desc="FP32 vs INT8", unit="img", disable=not progress, leave=False):
            for precision, runner in (("fp32", fp32), ("int8", int8)):
                symbols = runner.infer({"image": x[None]})["symbols"]
                out[f"symbols_{precision}"].append(symbols[0])
                out[f"bytes_{precision}"].append(len(coder.encode(symbols[0])))  # raw rANS payload
                out[f"predictions_{precision}"] += task.predictions(server.infer({"symbols": symbols}))
                out[f"latent_{precision}"].append(symbols[0] + medians)
    fp32_predictions, int8_predictions = out["predictions_fp32"], out["predictions_int8"]
    checks = [task.agreement_checks(f, i) for f, i in zip(fp32_predictions, int8_predictions, strict=True)]
    changed = sum(int(np.count_nonzero(a != b)) for a, b in zip(out["symbols_fp32"], out["symbols_int8"], strict=True))
    return QuantReport(
        bundle=str(bundle.path), backend=backend, images=len(held), calibration_images_excluded=held.excluded,
        labelled=truth is not None,
        accuracy_fp32=task.metric(fp32_predictions, truth) if truth is not None else None,
        accuracy_int8=task.metric(int8_predictions, truth) if truth is not None else None,
        top1_agreement=float(np.mean([c["top1"] for c in checks])),
        top5_agreement=float(np.mean([c["top5"] for c in checks])),
        latent_sqnr_db=sqnr_db(np.stack(out["latent_fp32"]), np.stack(out["latent_int8"])),
        symbols_changed_pct=100.0 * changed / sum(s.size for s in out["symbols_fp32"]),
        bytes_fp32=float(np.mean(out["bytes_fp32"])), bytes_int8=float(np.mean(out["bytes_int8"])),
        max_drop=max_drop, trained=bool(bundle.manifest["model"].get("trained", True)))
