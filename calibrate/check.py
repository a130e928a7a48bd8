"""``check_quant``: what INT8 did to a bundle's encoder, measured on held-out images through the runtime.

FP32 and INT8 device graphs run on the same images (never the calibration ones); both symbol sets are coded
with the bundle's rANS coder and classified by the same server graph, so every difference in the report is
the encoder's quantization: task accuracy (with labels) or top-1/top-5 agreement with FP32, latent SQNR,
symbols changed, bytes per image, and the per-layer SQNR of the worst layers (ONNX Runtime's qdq_loss_debug).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sc2edge.calibrate.data import ImageSet, held_out_set, load_labels
from sc2edge.calibrate.onnxrt import FeedReader
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle, Decoder, Encoder
from sc2edge.runtime.backends import backend_info, canonical_backend

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
            lines.append("  worst layers (SQNR of INT8 vs FP32 activation, ONNX Runtime QDQ graph):")
            lines += [f"    {layer.sqnr_db:7.2f} dB  {layer.tensor}" for layer in self.worst_layers]
        if not self.trained:
            lines.append("  note: UNTRAINED model (random weights): accuracy and bytes are not meaningful")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(drop=self.drop, rate_change_pct=self.rate_change_pct, passed=bool(self))
        return json.loads(json.dumps(data, default=str).replace("Infinity", "1e999"))


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
        worst_layers (int): how many layers to list by SQNR (0: skip). Defaults to 5.
        progress (bool): progress bar. Defaults to True.
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    backend = canonical_backend(backend)
    fmt = backend_info(backend).artifact_format
    bundle.artifact("device", fmt, "int8")  # a clear error when the bundle has no INT8 graph for this backend
    if max_drop is not None and not 0.0 <= max_drop <= 1.0:
        raise Sc2edgeError(f"max_drop is a fraction in [0, 1], got {max_drop}")
    calibration = bundle.manifest.get("calibration", {}).get("sha256", [])
    held = held_out_set(data, bundle.preprocess, images, seed, calibration, progress)
    truth = None
    if labels is not None:
        found = load_labels(labels, held.paths, data)
        truth = np.array([found[p] for p in held.paths])
    stats = _compare(bundle, held, backend, threads, progress)
    top1_fp32, top1_int8 = stats["logits_fp32"].argmax(1), stats["logits_int8"].argmax(1)
    top5_int8 = np.argsort(-stats["logits_int8"], axis=1)[:, :5]
    layers: list[LayerError] = []
    if worst_layers and any(a.role == "device" and a.format == "onnx" and a.precision == "int8"
                            for a in bundle.artifacts):
        inputs = [{"image": x[None]} for x in held.arrays()[:LAYER_IMAGES]]
        layers = layer_errors(bundle.path / bundle.artifact("device", "onnx", "fp32").path,
                              bundle.path / bundle.artifact("device", "onnx", "int8").path, inputs, worst_layers)
    return QuantReport(
        bundle=str(bundle.path), backend=backend, images=len(held),
        calibration_images_excluded=held.excluded,
        labelled=truth is not None,
        accuracy_fp32=float(np.mean(top1_fp32 == truth)) if truth is not None else None,
        accuracy_int8=float(np.mean(top1_int8 == truth)) if truth is not None else None,
        top1_agreement=float(np.mean(top1_fp32 == top1_int8)),
        top5_agreement=float(np.mean([t in row for t, row in zip(top1_fp32, top5_int8, strict=True)])),
        latent_sqnr_db=sqnr_db(stats["latent_fp32"], stats["latent_int8"]),
        symbols_changed_pct=100.0 * stats["changed"] / stats["symbols"],
        bytes_fp32=float(np.mean(stats["bytes_fp32"])), bytes_int8=float(np.mean(stats["bytes_int8"])),
        worst_layers=layers, max_drop=max_drop, trained=bool(bundle.manifest["model"].get("trained", True)))


def _compare(bundle: Bundle, held: ImageSet, backend: str, threads: int | None, progress: bool) -> dict[str, Any]:
    medians = bundle.tables.medians.reshape(-1, 1, 1)
    out: dict[str, Any] = {k: [] for k in ("logits_fp32", "logits_int8", "latent_fp32", "latent_int8",
                                           "bytes_fp32", "bytes_int8")}
    out.update(changed=0, symbols=0)
    with Encoder(bundle, backend, "fp32", threads=threads) as enc_fp32, \
            Encoder(bundle, backend, "int8", threads=threads) as enc_int8, \
            Decoder(bundle, backend, "fp32", threads=threads) as decoder:
        for x in tqdm(held.arrays(), desc="FP32 vs INT8", unit="img", disable=not progress, leave=False):
            for precision, encoder in (("fp32", enc_fp32), ("int8", enc_int8)):
                symbols = encoder.symbols(x[None])
                out[f"bytes_{precision}"].append(len(encoder.coder.encode(symbols[0])))  # raw rANS payload
                out[f"logits_{precision}"].append(decoder.predict(symbols)[0])
                out[f"latent_{precision}"].append(symbols[0] + medians)
                out[precision] = symbols
            out["changed"] += int(np.count_nonzero(out["fp32"] != out["int8"]))
            out["symbols"] += out["fp32"].size
    return {k: np.stack(v) if k.startswith(("logits", "latent")) else v for k, v in out.items()}
