"""The main job, end to end on one model: export (ONNX + OpenVINO, FP32 + INT8 calibrated on real photos),
encode/decode held-out photos through the runtime, check-quant, bench, and a short summary."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sc2edge.errors import Sc2edgeError

BACKENDS = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "int8")
LABELLED_MODEL = "entropic_student_fashion_mnist_beta0.1"
LABELLED_CALIBRATION, LABELLED_TEST = 300, 1000
# The default model's INT8 check: each held-out photo's centre crop + 15 seeded random crops (the protocol of
# its figures in models.yaml): 192 inputs, where one flip is 0.5 points instead of 8.3 on 12 photos.
HELD_OUT_CROPS = 16


@dataclass
class DemoSummary:
    """What the demo measured, per backend and precision, and where its outputs are."""

    model: str
    trained: bool
    bundle: Path
    held_out: int
    calibration: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    check_quant: dict[str, str] = field(default_factory=dict)
    labelled: dict[str, Any] = field(default_factory=dict)
    int8_budget: list[str] = field(default_factory=list)  # one line per INT8 validation that failed its budget
    deployed: list[str] = field(default_factory=list)  # table rows: each model's budgeted INT8 combinations
    budget_metric: str = ""  # what the default model's INT8 budget measured
    report: Path | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """False when any INT8 artifact of the demo is over its export budget."""
        return not self.int8_budget

    def __str__(self) -> str:
        lines = [f"model {self.model}{'' if self.trained else ' (UNTRAINED: random weights)'}; bundle {self.bundle}",
                 f"{self.calibration} calibration photos, {self.held_out} held-out photos (INT8 budget: the "
                 f"held-out photos x {HELD_OUT_CROPS} crops; {self.budget_metric})", "",
                 "| backend | precision | bytes/image | bits/pixel | top-1 = FP32 ORT | device ms (median) | "
                 "INT8 budget |", "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r['backend']} | {r['precision']} | {r['bytes']:.0f} | {r['bpp']:.4f} | "
                         f"{r['agreement']:.0%} | {r['device_ms']:.2f} | {r.get('budget', '')} |")
        if self.deployed:
            lines += ["", "INT8 as deployed (the export's budget rows; the rest of each pipeline in FP32):",
                      "| model | backend | INT8 graphs | budgeted metric FP32 -> INT8 | bytes | INT8 budget |",
                      "|---|---|---|---|---|---|",
                      *self.deployed]
        for backend, text in self.check_quant.items():
            lines += ["", f"check-quant ({backend}):", text]
        if self.labelled:
            lines += ["", f"labelled check: {self.labelled['model']} on {self.labelled['images']} Fashion-MNIST "
                      "test images (calibrated on training images)",
                      "| backend | accuracy FP32 | accuracy INT8 | bytes FP32 | bytes INT8 | INT8 budget |",
                      "|---|---|---|---|---|---|"]
            for backend, r in self.labelled["rows"].items():
                lines.append(f"| {backend} | {r['accuracy_fp32']:.2%} | {r['accuracy_int8']:.2%} | "
                             f"{r['bytes_fp32']:.1f} | {r['bytes_int8']:.1f} | {r['budget']} |")
        lines += ["", "INT8 budget: " + ("PASS, every INT8 artifact within its export budget" if self.passed else
                                         "FAIL\n" + "\n".join(f"  {line}" for line in self.int8_budget))]
        if self.report:
            lines += ["", f"bench report: {self.report}"]
        lines.append(f"done in {self.seconds / 60:.1f} min")
        return "\n".join(lines)


def _write_list(path: Path, images: list[Path]) -> Path:
    path.write_text("".join(f"{p}\n" for p in images))
    return path


def run_demo(out: str | Path, *, model: str | None = None, quick: bool = False, threads: int | None = None,
             calib_samples: int = 300) -> DemoSummary:
    """Run the whole pipeline on ``model`` (default: the registry's default) into ``out``.

    Args:
        out (str | Path): output folder (bundle, streams, check-quant JSON, bench report).
        model (str | None): a registered model. Defaults to the registry's default.
        quick (bool): fewer timing repeats (for smoke tests). Defaults to False.
        threads (int | None): runtime threads. Defaults to None (all cores).
        calib_samples (int): calibration images. Defaults to 300 (all available photos if fewer).
    """
    from sc2edge.bench import run_bench
    from sc2edge.calibrate import check_quant
    from sc2edge.export import ExportConfig, export_bundle
    from sc2edge.runtime import Bundle, Decoder, Encoder
    from sc2edge.zoo import default_model_name
    from sc2edge.zoo.datasets import split_photos

    start = time.perf_counter()
    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    model = model or default_model_name()
    calibration, held_out = split_photos()
    if not calibration or not held_out:
        raise Sc2edgeError("no offline photos found: run scripts/setup-env.sh")
    calib_list = _write_list(out / "data" / "calibration.txt", calibration)
    held_out_list = _write_list(out / "data" / "held_out.txt", held_out)

    print(f"[1/5] export {model}: ONNX + OpenVINO, FP32 + INT8 calibrated on {len(calibration)} photos", flush=True)
    # Over budget, accuracy control keeps the most harmful device convs in float (named in the summary), tuned on
    # random crops of the calibration photos (never the held-out ones); still over budget: written, shown as FAIL.
    bundle_dir = export_bundle(model, out / "bundle", config=ExportConfig(
        backends=BACKENDS, int8=True, calib=calib_list, calib_samples=calib_samples, overwrite=True,
        int8_check_images=held_out_list, int8_check_crops=HELD_OUT_CROPS, int8_accuracy_control=True,
        allow_int8_over_budget=True))

    print(f"[2/5] encode/decode {len(held_out)} held-out photos with every backend and precision", flush=True)
    summary = DemoSummary(model, trained=False, bundle=bundle_dir, held_out=len(held_out),
                          calibration=len(calibration))
    budget = _budget_verdicts(bundle_dir, summary)
    summary.budget_metric = budget_metric(Bundle.open(bundle_dir).manifest["calibration"]["int8_validation"])
    reference: list | None = None  # the first configuration's predictions (ONNX Runtime FP32)
    for backend in BACKENDS:
        for precision in PRECISIONS:
            streams_dir = out / "streams" / f"{backend}-{precision}"
            streams_dir.mkdir(parents=True, exist_ok=True)
            with Encoder(bundle_dir, backend, precision, threads=threads) as encoder, \
                    Decoder(bundle_dir, backend, "fp32", threads=threads) as decoder:
                summary.trained = bool(encoder.bundle.manifest["model"]["trained"])
                sizes, predictions, device_ms = [], [], []
                for path in held_out:
                    batch = encoder.preprocess(path)[None]
                    t0 = time.perf_counter()
                    stream = encoder.encode_batch(batch)[0]
                    device_ms.append(1e3 * (time.perf_counter() - t0))
                    (streams_dir / f"{path.stem}.sc2").write_bytes(stream)
                    sizes.append(len(stream))
                    predictions.append(decoder.decode(stream))
            reference = reference or predictions
            pixels = encoder.bundle.manifest["input"]["height"] * encoder.bundle.manifest["input"]["width"]
            summary.rows.append({"backend": backend, "precision": precision, "bytes": float(np.mean(sizes)),
                                 "bpp": float(np.mean(sizes)) * 8 / pixels,
                                 "agreement": decoder.task.agreement(reference, predictions),
                                 "device_ms": float(np.median(device_ms)),
                                 "budget": budget.get(backend, "") if precision == "int8" else ""})

    print(f"[3/5] check-quant: what INT8 costs on the held-out photos x {HELD_OUT_CROPS} crops", flush=True)
    for backend in BACKENDS:
        report = check_quant(bundle_dir, held_out_list, backend=backend, threads=threads, crops=HELD_OUT_CROPS)
        (out / f"check-quant-{backend}.json").write_text(json.dumps(report.to_json(), indent=2))
        summary.check_quant[backend] = str(report)

    print(f"[4/5] labelled check: {LABELLED_MODEL}, FP32 vs INT8 accuracy and bytes on Fashion-MNIST", flush=True)
    summary.labelled = _labelled_check(out / "fashion-mnist", threads, summary)

    print("[5/5] bench", flush=True)
    bench = run_bench([bundle_dir], backends=BACKENDS, precisions=PRECISIONS, threads=threads,
                      images=[held_out_list], quick=quick, out_dir=out / "report")
    summary.report = Path(bench["files"]["html"]) if "html" in bench.get("files", {}) else out / "report"
    summary.seconds = time.perf_counter() - start
    return summary


def _budget_verdicts(bundle_dir: Path, summary: DemoSummary) -> dict[str, str]:
    """PASS/FAIL per backend from the export's INT8 validation; failures go into ``summary.int8_budget``."""
    from sc2edge.runtime import Bundle

    bundle = Bundle.open(bundle_dir)
    kept = {}
    for role in ("device", "server"):
        if any(a.role == role and a.format == "onnx" and a.precision == "int8" for a in bundle.artifacts):
            excluded = bundle.artifact(role, "onnx", "int8").meta.get("excluded", [])
            kept["onnxruntime" if role == "device" else f"onnxruntime {role}"] = excluded
    return budget_verdicts(bundle.manifest["calibration"]["int8_validation"], bundle_dir, summary, kept,
                           model=bundle.manifest["model"]["name"])


# What each budget row runs in INT8 (``calibrate.budget.ROW_TEXT``, repeated: the summary reads manifests only)
DEPLOYED_GRAPHS = {"device": "device", "server": "server", "both": "device + server", "reference": "reference"}


def budget_verdicts(validation: dict[str, Any], bundle_dir: Path, summary: DemoSummary,
                    kept_float: dict[str, list[str]] | None = None, *, model: str) -> dict[str, str]:
    """PASS/FAIL per backend of a manifest's ``calibration.int8_validation`` (its device row: INT8 device graph,
    FP32 server); every row goes into the summary's INT8-as-deployed table under ``model``'s short name (the
    demo budgets two models into one table), failures into its budget lines.
    ``kept_float``: per backend, the device convs accuracy control kept in float ("BACKEND server": the server's)."""
    verdicts = {}
    for result in validation["results"]:
        graph = result.get("graph", "device")
        convs = {role: (kept_float or {}).get(result["backend"] if role == "device" else f"{result['backend']} {role}")
                 for role in ("device", "server") if role in DEPLOYED_GRAPHS[graph]}
        figures = (f"{result['metric']} {100 * result['fp32']:.2f} -> {100 * result['int8']:.2f} %"
                   + _agreement_beside(result) + f", bytes {result['rate_change_pct']:+.2f} %"
                   + "".join(f", {len(names)} {role} convs kept float by accuracy control ({', '.join(names)})"
                             for role, names in convs.items() if names))
        verdict = f"{'PASS' if result['passed'] else 'FAIL'}: {figures}"
        if graph == "device":
            verdicts[result["backend"]] = verdict
        summary.deployed.append(f"| {short_model_name(model)} | {result['backend']} | {DEPLOYED_GRAPHS[graph]} | "
                                f"{result['metric']} {100 * result['fp32']:.2f} -> {100 * result['int8']:.2f} % | "
                                f"{result['rate_change_pct']:+.2f} % | {verdict.split(':')[0]} |")
        if not result["passed"]:
            summary.int8_budget.append(
                f"{bundle_dir} {result['backend']}/int8{'' if graph == 'device' else f' ({DEPLOYED_GRAPHS[graph]})'}: "
                f"{figures} on "
                f"{validation['images']} held-out {_inputs(validation)} (budget "
                f"{100 * validation['budget']['max_drop']:.2f} points, {validation['budget']['max_bytes_pct']:.2f} % "
                "bytes)")
    return verdicts


def short_model_name(name: str) -> str:
    """A registry name without the Entropic Student family prefix (both demo models are students):
    ``efficientnet_lite0_beta1.6``, ``fashion_mnist_beta0.1``; other families keep theirs."""
    return name.removeprefix("entropic_student_")


def budget_metric(validation: dict[str, Any]) -> str:
    """What an ``int8_validation`` budgeted, in words."""
    budgeted_on = validation.get("budgeted_on", "")
    if budgeted_on.startswith("pseudo-labels"):
        return (f"budgeted: top-1 accuracy against {budgeted_on} (agreement with the teacher), within "
                f"{100 * validation['budget']['max_drop']:.0f} point of FP32's; top-1 = FP32 shown, not budgeted")
    return f"budgeted: {budgeted_on or 'see the manifest'}"


def _agreement_beside(result: dict[str, Any]) -> str:
    if result["metric"] == "agreement" or result.get("agreement_fp32") is None:
        return ""
    return f" (top-1 = FP32 {100 * result['agreement_fp32']:.2f} %, not budgeted)"


def _inputs(validation: dict[str, Any]) -> str:
    crops = validation.get("crops", 1)
    return "images" if crops == 1 else f"inputs ({validation['images'] // crops} photos x {crops} crops)"


def _labelled_check(out: Path, threads: int | None, summary: DemoSummary) -> dict[str, Any]:
    """Real accuracy, not only agreement: the Fashion-MNIST student, INT8-calibrated on training images and
    checked on held-out test images with their labels (the export's INT8 budget is on the same images)."""
    from sc2edge.calibrate import check_quant
    from sc2edge.export import ExportConfig, export_bundle
    from sc2edge.zoo.datasets import write_fashion_mnist_images

    calibration = write_fashion_mnist_images("train", out / "calibration", LABELLED_CALIBRATION)
    test = write_fashion_mnist_images("test", out / "test", LABELLED_TEST)
    bundle = export_bundle(LABELLED_MODEL, out / "bundle", config=ExportConfig(
        backends=BACKENDS, int8=True, calib=calibration.parent, calib_samples=LABELLED_CALIBRATION,
        validation_images=test.parent, int8_check_labels=test, int8_check_count=LABELLED_TEST, overwrite=True,
        int8_accuracy_control=True, allow_int8_over_budget=True))
    budget = _budget_verdicts(bundle, summary)
    rows = {}
    for backend in BACKENDS:
        report = check_quant(bundle, test.parent, test, backend=backend, images=LABELLED_TEST, threads=threads)
        (out / f"check-quant-{backend}.json").write_text(json.dumps(report.to_json(), indent=2))
        rows[backend] = {"accuracy_fp32": report.accuracy_fp32, "accuracy_int8": report.accuracy_int8,
                         "bytes_fp32": report.bytes_fp32, "bytes_int8": report.bytes_int8, "budget": budget[backend]}
    return {"model": LABELLED_MODEL, "images": LABELLED_TEST, "bundle": str(bundle), "rows": rows}
