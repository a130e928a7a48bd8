"""Rate-accuracy comparison: methods over labelled (or teacher-labelled) data, accuracy against bytes per image.

A *method* is a curve. Split bundles of one model family (same builder, e.g. an Entropic Student at each beta, a
BQ or E2E baseline, a learned image codec) make one curve, one point per bundle; an input codec (``jpeg``,
``webp``, ``avif``, any ``register_input_codec`` name) at a list of qualities, in front of the bundle's reference
model (the teacher), makes another. Every point runs through the deployed runtime: the split path is
``Encoder.encode_batch`` -> stream bytes -> ``Decoder.decode``, the codec path is the codec's bytes ->
``decode_input`` -> the reference graph, so what is measured is what ships.

All methods see the same items: the model's input crops (uint8, the pixels an input codec would compress),
either of image files (resize + centre crop) or the held-out photo protocol of ``models.yaml`` (each held-out
photo's centre crop plus 15 random crops of 25-100 % of it, seed 0). The score is the task's metric against
labels when the items carry them, else agreement with the teacher's prediction on the uncompressed crop.

Summary per curve: BD-rate style average bytes saved against JPEG at equal accuracy (see ``bd_rate``), mean and
worst-case bytes per image, and the device-side time per image (median over the items, one pass).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sc2edge.bench.core import _resolve_images, _server_precision
from sc2edge.bench.evaluation import check_held_out, held_out_photos
from sc2edge.bench.machine import machine_record
from sc2edge.bench.timing import Stats
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle, Decoder, Encoder, unpack_stream
from sc2edge.runtime.backends import canonical_backend
from sc2edge.runtime.cpu import this_cpu
from sc2edge.runtime.input_codecs import InputCodec, input_codec, list_input_codecs
from sc2edge.runtime.preprocess import crop_image, crop_input, normalize_image
from sc2edge.runtime.reference import ReferenceGraph, decode_input, has_reference
from sc2edge.tasks import Prediction, Task, bundle_task

DEFAULT_QUALITIES = (5, 10, 20, 30, 50, 70, 90)
ANCHOR_CODEC = "jpeg"
CROPS_PER_PHOTO = 16
CROP_SEED = 0
BD_SAMPLES = 200


@dataclass(frozen=True)
class Method:
    """One curve: split bundles of one model family, or an input codec at several qualities."""

    name: str
    kind: str  # "split" | "codec"
    bundles: tuple[Bundle, ...] = ()
    codec: str | None = None
    qualities: tuple[int, ...] = ()


@dataclass
class EvalItems:
    """The items every method is scored on: model input crops, their labels (or None), and where they came from."""

    crops: list[Image.Image]
    labels: list[int] | None
    source: str
    protocol: str
    files: list[str] = field(default_factory=list)


_RATE_SETTING = re.compile(r"(_beta[0-9.e+-]+|_b[0-9]+ch)$")


def family_name(bundle: Bundle) -> str:
    """A curve's name for a bundle: the model name without its rate setting (``..._beta0.4``; a CR+BQ width
    ``..._b2ch``)."""
    return _RATE_SETTING.sub("", bundle.name)


def rate_setting(bundle: Bundle) -> str:
    """What sets a bundle's rate, as the points name it: its beta, or a CR+BQ model's bottleneck width."""
    width = _RATE_SETTING.search(bundle.name)
    if bundle.spec.model.beta is None and width is not None:
        return width.group(0).lstrip("_")
    return f"beta {bundle.spec.model.beta}"


def parse_methods(specs: Sequence[str | Path]) -> list[Method]:
    """Method specs -> curves. A spec is a bundle directory, or ``CODEC[:Q1/Q2/...]`` (an input codec name, at
    the given qualities or ``DEFAULT_QUALITIES``). Bundles of one family (``family_name``) join one curve."""
    codecs = set(list_input_codecs())
    families: dict[str, list[Bundle]] = {}
    methods: list[Method] = []
    for spec in specs:
        text = str(spec)
        name, _, qualities = text.partition(":")
        if name.lower() in codecs and not Path(text).is_dir():
            try:
                levels = tuple(sorted({int(q) for q in qualities.split("/")})) if qualities else DEFAULT_QUALITIES
            except ValueError as exc:
                raise Sc2edgeError(f"codec method must be NAME[:Q1/Q2/...], e.g. jpeg:10/50/90, got {text!r}") from exc
            for q in levels:
                input_codec(name.lower(), q)  # unknown, unavailable or out of range: refused before any work
            methods.append(Method(name.lower(), "codec", codec=name.lower(), qualities=levels))
        elif Path(text).is_dir():
            bundle = Bundle.open(text)
            families.setdefault(family_name(bundle), []).append(bundle)
        else:
            raise Sc2edgeError(f"method {text!r} is neither a bundle directory nor an input codec "
                               f"({', '.join(sorted(codecs))}[:Q1/Q2/...])")
    for name, bundles in families.items():
        methods.insert(0, Method(name, "split", bundles=tuple(bundles)))
    if not any(m.kind == "split" for m in methods):
        raise Sc2edgeError("name at least one bundle: the codecs run its reference model and its preprocessing")
    return methods


def _preprocess_of(methods: Sequence[Method]) -> dict[str, Any]:
    """The one preprocessing all methods share (the crop every method sees); refuse a mix."""
    bundles = [b for m in methods for b in m.bundles]
    first = bundles[0].preprocess
    for b in bundles[1:]:
        if (b.preprocess["crop"], bool(b.preprocess.get("grayscale"))) != (first["crop"],
                                                                             bool(first.get("grayscale"))):
            raise Sc2edgeError(f"{b.path} sees {b.preprocess['crop']} px crops, {bundles[0].path} "
                               f"{first['crop']} px: compare bundles of one input size")
    return first


def file_items(images: Sequence[Path], labels_file: Path | None, preprocess: dict[str, Any],
               max_images: int | None) -> EvalItems:
    """Image files, folders or labelled file lists -> the model's centre crops (and labels when known)."""
    paths, labels = _resolve_images(tuple(map(Path, images)), labels_file)
    paths = paths[:max_images]
    return EvalItems([crop_image(p, preprocess) for p in paths], labels[:max_images] if labels else None,
                     source=", ".join(map(str, images)), protocol="centre crop of each image",
                     files=[str(p) for p in paths])


def photo_crop_items(preprocess: dict[str, Any], photos: Sequence[Path] | None = None,
                     per_photo: int = CROPS_PER_PHOTO, seed: int = CROP_SEED) -> EvalItems:
    """The held-out photo protocol of ``models.yaml``: each photo's centre crop, then ``per_photo - 1`` random
    crops of 25-100 % of it (the same seeded crops ``zoo.datasets.evaluation_crops`` normalises)."""
    from sc2edge.zoo.datasets import load_rgb, random_resized_crop

    photos = list(photos) if photos is not None else held_out_photos()
    rng = np.random.default_rng(seed)
    mode = "L" if preprocess.get("grayscale") else "RGB"
    crops: list[Image.Image] = []
    for path in photos:
        crops.append(crop_image(path, preprocess))
        img = load_rgb(path, max_side=1024)
        crops += [Image.fromarray(random_resized_crop(img, preprocess["crop"], rng, scale=(0.25, 1.0))).convert(mode)
                  for _ in range(per_photo - 1)]
    return EvalItems(crops, None, source=f"{len(photos)} held-out photos",
                     protocol=f"{per_photo} crops per photo (centre + {per_photo - 1} random, 25-100 %, seed {seed})",
                     files=[str(p) for p in photos])


def _timed_map(fn, inputs) -> tuple[list, list[float]]:
    """``fn`` over ``inputs`` once, in order: the outputs and each call's wall time in seconds."""
    outputs, seconds = [], []
    for x in inputs:
        t0 = time.perf_counter()
        outputs.append(fn(x))
        seconds.append(time.perf_counter() - t0)
    return outputs, seconds


def _score(task: Task, predictions: list[Prediction], labels: list[int] | None,
           teacher: list[Prediction]) -> float:
    return task.metric(predictions, labels) if labels is not None else task.agreement(teacher, predictions)


def _point(method: Method, setting: str, precision: str, sizes: list[int], payloads: list[int] | None,
           device_s: list[float], server_s: list[float], score: float, pixels: int, **extra: Any) -> dict[str, Any]:
    sizes_arr = np.asarray(sizes, dtype=np.float64)
    return {"method": method.name, "kind": method.kind, "setting": setting, "precision": precision,
            "bytes_mean": float(sizes_arr.mean()), "bytes_max": int(sizes_arr.max()),
            "bytes_min": int(sizes_arr.min()), "bpp": float(8 * sizes_arr.mean() / pixels),
            "payload_bytes_mean": float(np.mean(payloads)) if payloads else None,
            "score": score, "device_ms": Stats.from_samples(device_s).to_json(),
            "server_ms": Stats.from_samples(server_s).to_json(), **extra}


def _split_points(method: Method, items: EvalItems, teacher: list[Prediction], backend: str,
                  precisions: Sequence[str], threads: int | None, skipped: list[dict[str, str]]) -> list[dict]:
    points = []
    for bundle in method.bundles:
        task = bundle_task(bundle)
        pre = bundle.preprocess
        inputs = [crop_input(c, pre)[None] for c in items.crops]
        pixels = pre["crop"] * pre["crop"]
        for precision in precisions:
            try:
                encoder = Encoder(bundle, backend, precision, threads=threads)
            except Sc2edgeError as exc:
                skipped.append({"what": f"{method.name} {rate_setting(bundle)} {precision}",
                                "reason": str(exc)})
                continue
            server_precision = _server_precision(bundle, backend, precision)
            with encoder, Decoder(bundle, backend, server_precision, threads=threads) as decoder:
                streams, device_s = _timed_map(lambda x, enc=encoder: enc.encode_batch(x)[0], inputs)
                predictions, server_s = _timed_map(decoder.decode, streams)
            payloads = [sum(len(p) for p in unpack_stream(s)[1].values()) for s in streams]
            points.append(_point(method, rate_setting(bundle), precision, [len(s) for s in streams],
                                 payloads, device_s, server_s, _score(task, predictions, items.labels, teacher), pixels,
                                 beta=bundle.spec.model.beta, bundle=str(bundle.path),
                                 trained=bundle.spec.model.trained, server_precision=server_precision))
    return points


def _codec_points(method: Method, reference: Bundle, items: EvalItems, teacher: list[Prediction], backend: str,
                  precisions: Sequence[str], threads: int | None, skipped: list[dict[str, str]]) -> list[dict]:
    """Each quality's bytes, encoded once, through the reference graph (the teacher) at each precision that the
    bundle carries for ``backend`` (INT8: the teacher quantized, as the split models' INT8 halves are)."""
    task = bundle_task(reference)
    pre = reference.preprocess
    pixels = pre["crop"] * pre["crop"]
    available = []
    for precision in precisions:
        if has_reference(reference, backend, precision):
            available.append(precision)
        else:
            skipped.append({"what": f"{method.name} {precision}",
                            "reason": f"{reference.path} has no {precision} reference graph for {backend}"})
    points = []
    with ExitStack() as stack:
        graphs = {precision: stack.enter_context(ReferenceGraph(reference, backend, precision, threads=threads))
                  for precision in available}
        for quality in method.qualities:
            codec: InputCodec = input_codec(method.codec, quality)
            encoded, device_s = _timed_map(codec.encode, items.crops)
            for precision, graph in graphs.items():
                def server(data: bytes, codec=codec, graph=graph) -> Prediction:
                    return task.predictions({"logits": graph.predict(decode_input(codec, data, pre)[None])})[0]

                predictions, server_s = _timed_map(server, encoded)
                points.append(_point(method, f"q{quality}", precision, [len(e) for e in encoded], None,
                                     device_s, server_s, _score(task, predictions, items.labels, teacher), pixels,
                                     quality=quality, trained=reference.manifest["reference"].get("trained", True)))
    return points


def _envelope(points: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray] | None:
    """(accuracy, log bytes) of the best accuracy reachable at each rate: points sorted by bytes, accuracy made
    non-decreasing (a larger setting that scores lower is dominated), equal accuracies kept at their fewest
    bytes. None with fewer than two distinct accuracies."""
    ordered = sorted(points)
    acc, logb = [], []
    best = -np.inf
    for nbytes, score in ordered:
        if score > best:
            best = score
            acc.append(score)
            logb.append(np.log(nbytes))
    return (np.asarray(acc), np.asarray(logb)) if len(acc) >= 2 else None


def bd_rate(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]]) -> float | None:
    """Bjøntegaard-style rate difference in %: the average of log(bytes) of ``test`` minus ``anchor`` at equal
    accuracy, over the accuracy range both reach; negative = ``test`` needs fewer bytes. Points are (bytes,
    accuracy). Piecewise-linear on each curve's accuracy envelope, instead of Bjøntegaard's cubic fit of PSNR:
    accuracies over a few hundred images are noisy and need not be monotone. None when the ranges do not overlap."""
    a, t = _envelope(anchor), _envelope(test)
    if a is None or t is None:
        return None
    low, high = max(a[0][0], t[0][0]), min(a[0][-1], t[0][-1])
    if high <= low:
        return None
    grid = np.linspace(low, high, BD_SAMPLES)
    diff = np.interp(grid, t[0], t[1]) - np.interp(grid, a[0], a[1])
    return float((np.exp(diff.mean()) - 1) * 100)


def summarize(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per curve (method x precision): range of bytes and score, worst bytes, device time, BD-rate vs JPEG FP32."""
    anchor = [(p["bytes_mean"], p["score"]) for p in points if p["method"] == ANCHOR_CODEC
              and p["precision"] == "fp32"]
    curves: dict[tuple[str, str], list[dict]] = {}
    for p in points:
        curves.setdefault((p["method"], p["precision"]), []).append(p)
    rows = []
    for (name, precision), pts in curves.items():
        rate = [(p["bytes_mean"], p["score"]) for p in pts]
        rows.append({
            "method": name, "precision": precision, "kind": pts[0]["kind"], "points": len(pts),
            "bytes_mean_range": [min(p["bytes_mean"] for p in pts), max(p["bytes_mean"] for p in pts)],
            "bytes_worst": max(p["bytes_max"] for p in pts),
            "score_range": [min(p["score"] for p in pts), max(p["score"] for p in pts)],
            "device_ms_p50_range": [min(p["device_ms"]["p50"] for p in pts), max(p["device_ms"]["p50"] for p in pts)],
            "bd_rate_vs_jpeg_pct": bd_rate(anchor, rate) if anchor and name != ANCHOR_CODEC else None,
            "untrained": any(not p.get("trained", True) for p in pts),
        })
    return rows


def keep_points(previous: dict[str, Any], report: dict[str, Any]) -> list[dict[str, Any]]:
    """The points of an earlier compare ``previous`` whose methods ``report`` did not measure, each marked with
    the run it comes from: one retrained method need not re-measure the others (their bytes and scores do not
    change; their times are the earlier run's). Refuses a report of other items, runtime or teacher."""
    if previous.get("schema") != "sc2edge-compare":
        raise Sc2edgeError("--keep-from needs a compare.json written by sc2edge compare")
    for what, key in (("items", lambda r: r["items"]["files"]), ("crop protocol", lambda r: r["items"]["protocol"]),
                      ("runtime", lambda r: r["backend"]), ("teacher", lambda r: r["teacher"]["name"]),
                      ("metric", lambda r: r["metric"])):
        if key(previous) != key(report):
            raise Sc2edgeError(f"--keep-from: that report has other {what} than this run: its points would not "
                               "compare")
    measured = {p["method"] for p in report["points"]}
    return [{**p, "measured": p.get("measured", previous["created"])} for p in previous["points"]
            if p["method"] not in measured]


def run_compare(methods: Sequence[str | Path], *, images: Sequence[Path] = (), labels_file: Path | None = None,
                backend: str = "onnxruntime", precisions: Sequence[str] = ("fp32",), threads: int | None = 1,
                max_images: int | None = None, allow_calibration_images: bool = False,
                out_dir: Path | None = None, keep_from: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every method over the same items and return (and with ``out_dir``, write) the comparison.

    Args:
        methods: bundle directories and ``CODEC[:Q1/Q2/...]`` specs (see ``parse_methods``).
        images: image files, folders or labelled file lists; empty = the held-out photo protocol
            (16 crops per held-out photo, scored as agreement with the teacher). Defaults to ().
        labels_file (Path | None): labels for ``images``. Defaults to None.
        backend (str): the runtime. Defaults to "onnxruntime".
        precisions: graph precisions; a missing artifact is reported as skipped. Defaults to ("fp32",).
        threads (int | None): intra-op threads. Defaults to 1.
        max_images (int | None): use at most this many images (not crops). Defaults to None (all).
        allow_calibration_images (bool): measure even when images are INT8 calibration images (flagged in the
            report) instead of refusing. Defaults to False.
        out_dir (Path | None): write compare.json, compare.md and rate_accuracy.png there. Defaults to None.
        keep_from (dict | None): an earlier compare report of the same items; its points of methods not run here
            join this report (``keep_points``). Defaults to None.
    """
    parsed = parse_methods(methods)
    backend = canonical_backend(backend)
    bundles = [b for m in parsed for b in m.bundles]
    preprocess = _preprocess_of(parsed)
    # the teacher of the bundle that has it at the most of the asked precisions (INT8 too, for the codecs' INT8 rows)
    reference = max((b for b in bundles if has_reference(b, backend)), default=None,
                    key=lambda b: sum(has_reference(b, backend, p) for p in precisions))
    if reference is None:
        raise Sc2edgeError("no bundle carries a reference model (the teacher) for this backend: export one "
                           "with --reference")
    if images:
        items = file_items(images, labels_file, preprocess, max_images)
    else:
        photos = held_out_photos()[:max_images]
        items = photo_crop_items(preprocess, photos)
    warning = check_held_out([Path(f) for f in items.files], bundles, allow_calibration_images)
    task = bundle_task(reference)
    with ReferenceGraph(reference, backend, "fp32", threads=threads) as graph:
        teacher = [task.predictions({"logits": graph.predict(normalize_image(c, preprocess)[None])})[0]
                   for c in items.crops]
    skipped: list[dict[str, str]] = []
    points: list[dict[str, Any]] = []
    for method in parsed:
        if method.kind == "split":
            points += _split_points(method, items, teacher, backend, precisions, threads, skipped)
        else:
            points += _codec_points(method, reference, items, teacher, backend, precisions, threads, skipped)
    metric = task.metric_name if items.labels is not None else "top-1 agreement with the teacher"
    cpu = this_cpu()
    report = {
        "schema": "sc2edge-compare", "schema_version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metric": metric, "backend": backend, "precisions": list(precisions), "threads": threads,
        "isa": f"{', '.join(cpu.isa) or 'unknown ISA'}{'' if any('vnni' in f for f in cpu.isa) else ', no VNNI'}; "
               f"INT8 kernel path {cpu.kernel_path}",
        "machine": machine_record(threads or 1),
        "items": {"count": len(items.crops), "source": items.source, "protocol": items.protocol,
                  "labelled": items.labels is not None, "files": items.files,
                  "calibration_images_excluded_by_check": warning is None},
        "teacher": {"name": (reference.manifest.get("reference") or {}).get("name"), "bundle": str(reference.path),
                    "score": task.metric(teacher, items.labels) if items.labels is not None else 1.0},
        "points": points, "summary": summarize(points), "skipped": skipped,
        "warnings": [warning] if warning else [],
    }
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    if keep_from is not None:
        kept = keep_points(keep_from, report)
        report["kept_from"] = {"created": keep_from["created"], "methods": sorted({p["method"] for p in kept}),
                               "load_average_at_end": keep_from["machine"].get("load_average_at_end")}
        report["points"] = kept + points
        report["summary"] = summarize(report["points"])
    if out_dir is not None:
        from sc2edge.bench.report import write_compare_reports

        report["files"] = write_compare_reports(report, Path(out_dir))
    return report
