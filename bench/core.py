"""``run_bench``: measure bundles on backends and precisions, one configuration per process, and report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sc2edge.bench import compute
from sc2edge.bench.distributed import check_ray, dispatch, dispatch_record
from sc2edge.bench.evaluation import check_held_out, held_out_photos
from sc2edge.bench.links import Link, load_links, select_links
from sc2edge.bench.machine import bundle_hash, files_hash, machine_record
from sc2edge.bench.size import ImageSize, image_size, summarize
from sc2edge.bench.timing import UNSTABLE_SPREAD, TimingConfig
from sc2edge.bench.worker import load_streams
from sc2edge.errors import Sc2edgeError
from sc2edge.photos import IMAGE_SUFFIXES, list_images, load_labels, read_file_list
from sc2edge.runtime import Bundle
from sc2edge.runtime.backends import backend_info, canonical_backend
from sc2edge.runtime.entropy import open_codec
from sc2edge.runtime.input_codecs import input_codec
from sc2edge.runtime.preprocess import graph_input_spec
from sc2edge.tasks import ImageSizes, Task, bundle_task

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_CODECS = (("jpeg", 75), ("webp", 80))  # Pillow's default qualities
DEFAULT_MAX_IMAGES = 8
QUICK_MAX_IMAGES = 2
WORKER_TIMEOUT_S = 1800
HELD_OUT_SOURCE = "the held-out offline photos (default; never training or calibration images)"
BUSY_LOAD_PER_CORE = 0.5  # 1-minute load average per usable core above this (before we start): a busy machine


@dataclass(frozen=True)
class BenchConfig:
    """What ``run_bench`` measures; ``validate()`` checks the combination and fills the defaults.

    Args:
        bundles (tuple[Path, ...]): bundle directories; several make a sweep (e.g. every beta).
        backends (tuple[str, ...]): runtimes. Defaults to ("onnxruntime",).
        precisions (tuple[str, ...]): graph precisions. Defaults to ("fp32",).
        threads (int | None): intra-op threads everywhere, recorded. Defaults to None (all cores).
        images (tuple[Path, ...]): image files, folders or file lists ("path [label]" lines); empty means
            the held-out offline photos (never training or calibration images). Defaults to ().
        links (tuple[str, ...]): link profile names; empty means all. Defaults to ().
        links_file (Path | None): link profiles instead of the packaged ``links.yaml``. Defaults to None.
        quick (bool): a few runs per stage, two images (CI smoke test). Defaults to False.
        out_dir (Path): where the reports go. Defaults to "bench-report".
        max_images (int | None): use at most this many images. Defaults to 8 (2 with ``quick``).
        torch_baseline (bool): measure the paper's PyTorch eager path too. Defaults to True.
        codecs (tuple[tuple[str, int], ...]): image codecs and qualities for the send-the-image alternative.
            Defaults to JPEG q75 and WebP q80.
        timing (TimingConfig): warm-up and repeats. Defaults to TimingConfig() (TimingConfig.quick() with quick).
        labels_file (Path | None): class labels of the images (JSON or "path label" lines). Defaults to None.
        ray (str | None): run the configurations as Ray tasks: "local" (a Ray started here, loopback) or a
            cluster address. Defaults to None (one after another, as timings on a quiet machine need).
        ray_workers (int): CPUs (parallel tasks) of a local Ray. Defaults to 2.
        allow_calibration_images (bool): measure even when images are a bundle's INT8 calibration images (the
            report flags it loudly) instead of refusing. Defaults to False.
    """

    bundles: tuple[Path, ...]
    backends: tuple[str, ...] = ("onnxruntime",)
    precisions: tuple[str, ...] = ("fp32",)
    threads: int | None = None
    images: tuple[Path, ...] = ()
    links: tuple[str, ...] = ()
    links_file: Path | None = None
    quick: bool = False
    out_dir: Path = Path("bench-report")
    max_images: int | None = None
    torch_baseline: bool = True
    codecs: tuple[tuple[str, int], ...] = DEFAULT_CODECS
    timing: TimingConfig = field(default_factory=TimingConfig)
    labels_file: Path | None = None
    allow_calibration_images: bool = False
    labels: tuple[int, ...] | None = None  # filled by validate() when the images carry labels
    ray: str | None = None
    ray_workers: int = 2

    def validate(self) -> BenchConfig:
        if not self.bundles:
            raise Sc2edgeError("name at least one bundle directory")
        backends = tuple(dict.fromkeys(canonical_backend(b) for b in self.backends))
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad:
            raise Sc2edgeError(f'unknown precision "{bad[0]}" (available: {", ".join(PRECISIONS)})')
        threads = self.threads or os.cpu_count() or 1
        if threads < 1:
            raise Sc2edgeError(f"--threads must be positive, got {threads}")
        if self.max_images is not None and self.max_images < 1:
            raise Sc2edgeError(f"--max-images must be positive, got {self.max_images}")
        limit = self.max_images or (QUICK_MAX_IMAGES if self.quick else DEFAULT_MAX_IMAGES)
        if Path(self.out_dir).exists() and not Path(self.out_dir).is_dir():  # found now, not after the measuring
            raise Sc2edgeError(f"report folder {self.out_dir} exists and is not a folder")
        images, labels = _resolve_images(self.images, self.labels_file)
        for name, quality in self.codecs:
            input_codec(name, quality)  # an unknown or unavailable codec or a bad quality stops here, not later
        check_ray(self.ray)
        if not 1 <= self.ray_workers <= 1024:
            raise Sc2edgeError(f"--ray-workers must be in 1..1024, got {self.ray_workers}")
        return BenchConfig(
            bundles=tuple(Path(b) for b in self.bundles), backends=backends,
            precisions=tuple(dict.fromkeys(self.precisions)), threads=threads, images=tuple(images[:limit]),
            labels=tuple(labels[:limit]) if labels else None, labels_file=self.labels_file,
            allow_calibration_images=self.allow_calibration_images,
            links=self.links, links_file=self.links_file, quick=self.quick, out_dir=Path(self.out_dir),
            max_images=limit, torch_baseline=self.torch_baseline, codecs=self.codecs,
            timing=TimingConfig.quick() if self.quick else self.timing, ray=self.ray, ray_workers=self.ray_workers)


def _resolve_images(images: tuple[Path, ...], labels_file: Path | None) -> tuple[list[Path], list[int] | None]:
    """Image paths from files, folders (searched recursively) and file lists, and their class labels when
    known: from a labels file, a labelled file list, or class-index folder names."""
    if not images:
        images = tuple(held_out_photos())  # raises, naming the packages, when they are not installed
    paths: list[Path] = []
    labels: dict[Path, int] = {}
    for item in map(Path, images):
        if item.is_dir():
            paths += list_images(item)
        elif item.is_file() and item.suffix.lower() in IMAGE_SUFFIXES:
            paths.append(item)
        elif item.is_file():  # a file list: "path [label]" per line, as calibration and check-quant take
            listed, listed_labels = read_file_list(item)
            paths += listed
            labels.update(listed_labels)
        else:
            raise Sc2edgeError(f"image file, folder or file list not found: {item}")
    if not paths:
        raise Sc2edgeError(f"no images found in {', '.join(map(str, images))}")
    if labels_file is not None:
        labels = load_labels(labels_file, paths, Path(images[0]))
    if labels and all(p in labels for p in paths):
        return paths, [labels[p] for p in paths]
    folders = [p.parent.name for p in paths]
    return paths, [int(n) for n in folders] if all(n.isdigit() for n in folders) else None


class Workers:
    """Runs worker processes, each with threads pinned: one after another (timings need a quiet machine), or
    several at once where the configurations are dispatched to Ray (each job in its own folder)."""

    def __init__(self, config: BenchConfig, work_dir: Path):
        self.config = config
        self.work_dir = work_dir
        self.count = 0
        n = str(config.threads)
        self.env = {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}

    def run(self, mode: str, **spec: Any) -> dict[str, Any]:
        self.count += 1
        job_dir = Path(tempfile.mkdtemp(prefix=f"{self.count:03d}-{mode}-", dir=self.work_dir))
        spec = {"mode": mode, "threads": self.config.threads, "timing": self.config.timing.to_json(),
                "images": [str(p) for p in self.config.images], "work_dir": str(job_dir), **spec}
        spec_path, result_path = job_dir / "spec.json", job_dir / "result.json"
        spec_path.write_text(json.dumps(spec))
        try:
            proc = subprocess.run([sys.executable, "-m", "sc2edge.bench.worker", str(spec_path), str(result_path)],
                                  capture_output=True, text=True, env=self.env, timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"mode": mode, "ok": False, "skipped": False, "error": f"worker ran over {WORKER_TIMEOUT_S} s"}
        if not result_path.is_file():
            return {"mode": mode, "ok": False, "skipped": False,
                    "error": f"worker exited with status {proc.returncode}: {proc.stderr.strip()[-2000:]}"}
        result = json.loads(result_path.read_text())
        result["work_dir"] = str(job_dir)
        return result


def _key(bundle: str, backend: str, precision: str) -> str:
    return f"{bundle}/{backend}/{precision}"


def bundle_ids(paths: list[Path]) -> dict[Path, str]:
    """The name each bundle's results are keyed by: its folder name, or its whole path where two benched bundles
    share a folder name (two bundles of one model, e.g. FP32-only and INT8, never overwrite each other)."""
    names = [p.name for p in paths]
    return {p: p.name if names.count(p.name) == 1 else str(p) for p in paths}


def _server_precision(bundle: Bundle, backend: str, precision: str) -> str:
    """The server graph runs at ``precision`` when the bundle has it, else FP32 (INT8 is often device-only)."""
    fmt = backend_info(backend).artifact_format
    have = {(a.role, a.format, a.precision) for a in bundle.artifacts}
    return precision if ("server", fmt, precision) in have else "fp32"


def compute_section(bundle: Bundle, warnings: list[str]) -> dict[str, Any]:
    """Per-stage MACs/params from PyTorch and ONNX side by side, activation memory, device fraction, file sizes."""
    manifest = bundle.manifest
    h, w = manifest["input"]["height"], manifest["input"]["width"]
    latent = tuple(manifest["latent"]["shape"])
    onnx_counts: dict[str, compute.StageCount] = {}
    notes: list[str] = []
    if compute.onnx_available():
        try:
            device = bundle.artifact("device", "onnx", "fp32")
            server = bundle.artifact("server", "onnx", "fp32")
            d = compute.count_onnx(bundle.path / device.path, {"image": graph_input_spec(bundle.preprocess, h, w)})
            codec = open_codec(bundle)
            extra = bundle_task(bundle).server_inputs(ImageSizes((h, w), (h, w)))  # e.g. a segmenter's image size
            s = compute.count_onnx(bundle.path / server.path,
                                   {codec.server_inputs[0]: ((1, *latent), codec.server_dtype), **extra},
                                   split=("decoder", "decoder", "tail"))
        except Exception as exc:  # noqa: BLE001 - a third-party profiler; its failure must not stop the bench
            notes.append(f"ONNX-side counts n/a: {type(exc).__name__}: {exc}")
        else:
            onnx_counts = {"device": d["all"], "server": s["all"]}
            onnx_counts.update({k: v for k, v in s.items() if k in ("decoder", "tail")})
            if "decoder" not in s:
                notes.append("the server graph's node names do not mark the decoder: decoder/tail split n/a on ONNX")
    else:
        notes.append("onnx-tool is not installed (pip install sc2edge[bench]): ONNX-side counts n/a")
    torch_counts: dict[str, compute.StageCount] = {}
    try:
        torch_counts = compute.count_torch(bundle.name, manifest["input"]["channels"], h, w)
        torch_counts["server"] = compute.StageCount(
            macs=torch_counts["decoder"].macs + torch_counts["tail"].macs,
            dense_macs=torch_counts["decoder"].dense_macs + torch_counts["tail"].dense_macs,
            params=torch_counts["decoder"].params + torch_counts["tail"].params)
    except (ImportError, Sc2edgeError) as exc:  # no torch here, or a model the registry does not know
        notes.append(f"PyTorch-side counts n/a: {exc}")
    stages = {}
    for stage in ("device", "decoder", "tail", "server"):
        t, o = torch_counts.get(stage), onnx_counts.get(stage)
        warning = compute.compare(t, o)
        if warning:
            warnings.append(f"{bundle.name} {stage}: PyTorch and ONNX counts disagree: {warning}")
        counted = o or t
        stages[stage] = {"torch": t.to_json() if t else None, "onnx": o.to_json() if o else None,
                         "warning": warning,
                         "kmac_per_pixel": compute.kmac_per_pixel(counted.macs, h, w) if counted else None}
    best = onnx_counts or torch_counts
    fraction = None
    if best:
        total = best["device"].macs + best["server"].macs
        fraction = {"macs": best["device"].macs / total,
                    "params": best["device"].params / (best["device"].params + best["server"].params)}
    artifacts = []
    for a in bundle.artifacts:
        files = [bundle.path / a.path]
        if a.path.endswith(".xml"):
            files.append((bundle.path / a.path).with_suffix(".bin"))
        artifacts.append({"role": a.role, "format": a.format, "precision": a.precision, "path": a.path,
                          "bytes": sum(f.stat().st_size for f in files if f.is_file())})
    artifacts += [{"role": "tables", "format": "npz", "precision": "-", "path": section.tables,
                   "bytes": (bundle.path / section.tables).stat().st_size}
                  for section in bundle.spec.entropy.sections]
    return {"stages": stages, "device_fraction": fraction, "artifacts": artifacts, "notes": notes,
            "counted_with": "onnx" if onnx_counts else ("torch" if torch_counts else None)}


def _sizes(bundle: Bundle, streams: list[bytes], symbols: list[np.ndarray],
           images: tuple[Path, ...]) -> list[ImageSize]:
    hw = (bundle.manifest["input"]["height"], bundle.manifest["input"]["width"])
    codec = open_codec(bundle)
    return [image_size(p.name, s, sym, bundle.tables, hw, codec=codec)
            for p, s, sym in zip(images, streams, symbols, strict=True)]


def run_bench(bundles, backends=("onnxruntime",), precisions=("fp32",), threads: int | None = None,
              images=None, links=None, quick: bool = False, out_dir: str | Path = "bench-report", **options: Any
              ) -> dict[str, Any]:
    """Benchmark bundles and write the report (JSON, CSV, Markdown, PNG, HTML) into ``out_dir``.

    Args:
        bundles: bundle directories (several = a sweep).
        backends: runtime names. Defaults to ("onnxruntime",).
        precisions: "fp32", "fp16", "int8". Defaults to ("fp32",).
        threads (int | None): threads for every runtime. Defaults to None (all cores).
        images: image files or folders. Defaults to None (the offline photos).
        links: link profile names. Defaults to None (all in links.yaml).
        quick (bool): CI smoke-test mode. Defaults to False.
        out_dir (str | Path): report folder. Defaults to "bench-report".
        **options: further BenchConfig fields (links_file, labels_file, max_images, torch_baseline, codecs,
            timing).

    Returns:
        dict: the report (also written as report.json), with "files" listing what was written.
    """
    from sc2edge.bench.report import write_reports

    config = BenchConfig(bundles=tuple(Path(b) for b in ([bundles] if isinstance(bundles, (str, Path)) else bundles)),
                         backends=tuple(backends), precisions=tuple(precisions), threads=threads,
                         images=tuple(Path(p) for p in (images if isinstance(images, (list, tuple)) else
                                                        ([images] if images else []))),
                         links=tuple(links or ()), quick=quick, out_dir=Path(out_dir), **options).validate()
    link_profiles = select_links(load_links(config.links_file), list(config.links))
    opened = [Bundle.open(b) for b in config.bundles]
    calibration_flag = check_held_out(list(config.images), opened, config.allow_calibration_images)
    ids = bundle_ids([b.path for b in opened])
    machine = machine_record(config.threads)
    report: dict[str, Any] = {
        "schema": "sc2edge-bench", "schema_version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {"bundles": [str(b) for b in config.bundles], "backends": list(config.backends),
                   "precisions": list(config.precisions), "threads": config.threads, "quick": config.quick,
                   "timing": config.timing.to_json(), "codecs": [list(c) for c in config.codecs],
                   "torch_baseline": config.torch_baseline,
                   "dispatch": dispatch_record(config.ray, config.ray_workers)},
        "machine": machine,
        "inputs": {"images": [str(p) for p in config.images], "images_hash": files_hash(config.images),
                   "images_source": "given (--data)" if images else HELD_OUT_SOURCE,
                   "calibration_images_used": calibration_flag is not None,
                   "bundles": [{"id": ids[b.path], "path": str(b.path), "model": b.name, "beta": b.spec.model.beta,
                                "trained": b.spec.model.trained, "hash": bundle_hash(b.path)}
                               for b in opened]},
        "links": [link.to_json() for link in link_profiles],
        "warnings": [w for w in (calibration_flag, busy_warning(machine["load_average_at_start"], "start")) if w],
        "skipped": [],
    }
    with tempfile.TemporaryDirectory(prefix="sc2edge-bench-") as tmp:
        _measure(config, opened, ids, link_profiles, report, Workers(config, Path(tmp)))
    report["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    end_warning = busy_warning(report["machine"]["load_average_at_end"], "end")
    if end_warning:
        report["warnings"].append(end_warning)
    report["files"] = write_reports(report, config.out_dir)
    return report


def measure_configuration(workers: Workers, bundle: str, backend: str, precision: str,
                          server_precision: str) -> dict[str, Any]:
    """One configuration's jobs, in order: device (its streams feed the rest), server, memory of both sides.
    A module-level function so that Ray can run it as a task."""
    base = {"bundle": bundle, "backend": backend}
    device = workers.run("device", **base, precision=precision)
    if not device["ok"]:
        return {"device": device}
    streams_path = str(Path(device["work_dir"]) / "streams.npz")
    return {"device": device, "server_precision": server_precision,
            "server": workers.run("server", **base, precision=server_precision, streams=streams_path),
            "memory": {side: workers.run("memory", **base, side=side, engine="runtime", streams=streams_path,
                                         precision=precision if side == "device" else server_precision)
                       for side in ("device", "server")}}


def busy_warning(load: list[float] | None, when: str) -> str | None:
    """A warning when other work competed for the CPU (1-minute load average per usable core above
    ``BUSY_LOAD_PER_CORE``): latencies are then inflated and unsteady."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not load or load[0] <= BUSY_LOAD_PER_CORE * cores:
        return None
    return (f"BUSY MACHINE at the {when}: load average {load[0]:.2f} on {cores} usable cores; latencies are "
            "inflated and unstable, compare ratios from one run only")


def _record_failure(report: dict[str, Any], what: str, result: dict[str, Any]) -> None:
    entry = {"what": what, "reason": result.get("error", "unknown")}
    (report["skipped"] if result.get("skipped") else report["warnings"]).append(
        entry if result.get("skipped") else f"{what} failed: {entry['reason']}")


def _measure(config: BenchConfig, bundles: list[Bundle], ids: dict[Path, str], links: list[Link],
             report: dict[str, Any], workers: Workers) -> None:
    """Every measurement, in the order that lets later ones reuse earlier outputs (streams, FLOPs)."""
    configs = [(b, be, p) for b in bundles for be in config.backends for p in config.precisions]
    jobs = len(config.backends) + 3 * len(configs) + len(config.backends) * len(config.precisions) + len(bundles)
    jobs += 3 if config.torch_baseline else 0
    progress = tqdm(total=jobs, desc="bench", unit="job", disable=None)

    def step(label: str) -> None:
        progress.set_postfix_str(label)
        progress.update(1)

    report["compute"] = {}
    for bundle in bundles:
        report["compute"][ids[bundle.path]] = compute_section(bundle, report["warnings"])
        step(f"compute {ids[bundle.path]}")

    report["roofline"] = {}
    for backend in config.backends:
        result = workers.run("roofline", backend=backend)
        if result["ok"]:
            report["roofline"][backend] = result["result"]
        else:
            _record_failure(report, f"roofline {backend}", result)
        step(f"roofline {backend}")

    report["latency"], report["memory"], report["size"], report["predictions"] = {}, [], {}, {}
    if config.ray is not None:
        report["warnings"].append(f"configurations ran side by side on {config.ray_workers} Ray workers "
                                  f"({config.ray}): latencies were not measured on a quiet machine")
    jobs = dispatch(measure_configuration, [(workers, str(b.path), be, p, _server_precision(b, be, p))
                                            for b, be, p in configs],
                    ray_address=config.ray, workers=config.ray_workers)
    for (bundle, backend, precision), results in zip(configs, jobs, strict=True):
        key = _key(ids[bundle.path], backend, precision)
        device = results["device"]
        step(f"device {key}")
        if not device["ok"]:
            _record_failure(report, f"device {key}", device)
            progress.update(2)
            continue
        streams, symbols = load_streams(Path(device["work_dir"]) / "streams.npz")
        server, memory, server_precision = results["server"], results["memory"], results["server_precision"]
        step(f"server {key}")
        step(f"memory {key}")
        entry = {"bundle": ids[bundle.path], "backend": backend, "precision": precision,
                 "server_precision": server_precision, "coder": device["result"]["coder"],
                 "stages": dict(device["result"]["stages"])}
        if server["ok"]:
            entry["stages"].update(server["result"]["stages"])
            report["predictions"][key] = server["result"]["predictions"]
        else:
            _record_failure(report, f"server {key}", server)
        report["latency"][key] = entry
        for side, result in memory.items():
            report["memory"].append({"config": key, "side": side, "engine": "runtime", "ok": result["ok"],
                                     "peak_rss_bytes": result["peak_rss_bytes"],
                                     "torch_imported": result["torch_imported"],
                                     "timing_process_peak_rss_bytes": (device if side == "device" else server)[
                                         "peak_rss_bytes"],
                                     "cold_start": (result.get("result") or {}).get("cold_start")})
            if not result["ok"]:
                _record_failure(report, f"memory {side} {key}", result)
        sizes = _sizes(bundle, streams, symbols, config.images)
        report["size"][key] = {"per_image": [s.to_json() for s in sizes], "summary": summarize(sizes)}

    report["alternatives"] = {}
    first = bundles[0]
    for backend in config.backends:
        for precision in config.precisions:
            key = _key(ids[first.path], backend, precision)
            if key not in report["latency"]:
                step(f"local {key}")
                continue
            local = workers.run("local", bundle=str(first.path), backend=backend, precision=precision,
                                server_precision=report["latency"][key]["server_precision"],
                                codecs=[list(c) for c in config.codecs])
            step(f"local {key}")
            if local["ok"]:
                report["alternatives"][key] = local["result"]
            else:
                _record_failure(report, f"all-on-device/codecs {key}", local)

    report["baseline"] = None
    if config.torch_baseline:
        report["baseline"] = _paper_path(config, first, ids[first.path], workers, report, step)
    progress.close()
    _derive(config, report, links, {ids[b.path]: bundle_task(b) for b in bundles})


def _paper_path(config: BenchConfig, bundle: Bundle, bundle_id: str, workers: Workers, report: dict[str, Any],
                step) -> Any:
    """The paper's eager PyTorch path on the same images, threads and machine."""
    common = {"model": bundle.name, "preprocess": bundle.preprocess}
    device = workers.run("torch-device", **common)
    step("paper path device")
    if not device["ok"]:
        _record_failure(report, "PyTorch eager baseline", device)
        step("paper path server")
        step("paper path memory")
        return None
    payloads = str(Path(device["work_dir"]) / "torch-payloads.npz")
    server = workers.run("torch-server", **common, streams=payloads, latent_hw=device["result"]["latent_hw"])
    step("paper path server")
    memory = workers.run("memory", **common, side="device", engine="torch")
    step("paper path memory")
    stages = dict(device["result"]["stages"])
    if server["ok"]:
        stages.update(server["result"]["stages"])
    else:
        _record_failure(report, "PyTorch eager baseline (server)", server)
    manifest_model = bundle.manifest["model"]
    same_weights = (device["result"]["trained"] == manifest_model.get("trained")
                    and device["result"]["checkpoint_sha256"] == manifest_model.get("checkpoint_sha256"))
    paper_payloads, _ = load_streams(Path(payloads))
    ours = [s["payload_bytes"] for s in report["size"].get(_key(bundle_id, "onnxruntime", "fp32"), {})
            .get("per_image", [])]
    return {"model": bundle.name, "stages": stages, "same_weights_as_bundle": same_weights,
            "payload_bytes": [len(p) for p in paper_payloads],
            "payload_bytes_equal_to_ours": ours == [len(p) for p in paper_payloads] if ours else None,
            "device_peak_rss_bytes": memory["peak_rss_bytes"] if memory["ok"] else None,
            "device_timing_process_peak_rss_bytes": device["peak_rss_bytes"]}


def _derive(config: BenchConfig, report: dict[str, Any], links: list[Link], tasks: dict[str, Task]) -> None:
    """Figures computed from the measurements: roofline ratios, paper ratios, end-to-end, rate-accuracy."""
    baseline = report.get("baseline")
    headline = []
    for key, entry in report["latency"].items():
        stages = entry["stages"]
        device_counts = report["compute"][entry["bundle"]]["stages"]["device"]
        device_count = device_counts["onnx"] or device_counts["torch"]
        peak = report["roofline"].get(entry["backend"], {}).get("peak_gflops")
        row: dict[str, Any] = {"config": key, **{s: stages[s]["p50"] for s in stages}}
        if peak and device_count:
            roofline_ms = device_count["flops"] / (peak * 1e9) * 1e3
            row.update(roofline_ms=roofline_ms, pct_of_roofline=100 * roofline_ms / stages["encoder_graph"]["p50"],
                       x_of_roofline=stages["encoder_graph"]["p50"] / roofline_ms)
        if baseline and "device_total" in baseline["stages"]:
            paper = baseline["stages"]["device_total"]
            row["paper_over_ours_device"] = paper["p50"] / stages["device_total"]["p50"]
            row["paper_over_ours_device_min"] = paper["min"] / stages["device_total"]["min"]  # robust to load
            # The paper's own timed path starts from the preprocessed tensor: encoder + EntropyBottleneck.compress.
            coded = ("encoder_graph", "entropy_encode")
            if all(s in stages and s in baseline["stages"] for s in coded):
                row["paper_over_ours_tensor_to_bytes"] = (sum(baseline["stages"][s]["p50"] for s in coded)
                                                          / sum(stages[s]["p50"] for s in coded))
        size = report["size"][key]["summary"]
        row["bytes_mean"] = size["stream_bytes"]["mean"]
        row["payload_bytes_mean"] = size["payload_bytes"]["mean"]
        row["bpp"] = size["bpp"]["mean"]
        row["paper_kb"] = size["paper_kb"]["mean"]
        row["device_kmac_per_pixel"] = report["compute"][entry["bundle"]]["stages"]["device"].get("kmac_per_pixel")
        row.update(_stability(key, stages, report["warnings"]))
        headline.append(row)
    report["headline"] = headline
    report["end_to_end"] = _end_to_end(report, links)
    report["end_to_end_verdicts"] = end_to_end_verdicts(report["end_to_end"])
    report["rate_accuracy"] = _rate_accuracy(config, report, tasks)


def _stability(key: str, stages: dict[str, dict[str, float]], warnings: list[str]) -> dict[str, Any]:
    """Flags for one configuration: stages whose repeated runs spread (p90 / p50 above ``UNSTABLE_SPREAD``), and
    end-to-end totals (each timed as one call per image, not summed) below one of their own stages, which only
    noise can cause."""
    unstable = sorted(s for s, st in stages.items() if st["p50"] > 0 and st["p90"] / st["p50"] > UNSTABLE_SPREAD)
    inconsistent = [f"{total} {stages[total]['p50']:.3g} ms < {part} {stages[part]['p50']:.3g} ms"
                    for total, parts in (("device_total", ("preprocess", "encoder_graph", "entropy_encode")),
                                         ("server_total", ("entropy_decode", "server_graph")))
                    if total in stages for part in parts
                    if part in stages and stages[total]["p50"] < stages[part]["p50"]]
    if unstable:
        warnings.append(f"UNSTABLE {key}: repeated runs spread (p90/p50 > {UNSTABLE_SPREAD}) in "
                        f"{', '.join(unstable)}; rerun on a quiet machine before trusting these latencies")
    if inconsistent:
        warnings.append(f"INCONSISTENT {key}: {'; '.join(inconsistent)} (stages are timed separately, the totals "
                        "end to end: the difference is noise; trust the totals)")
    return {"stable": not unstable, "unstable_stages": unstable, "totals_consistent": not inconsistent}


def end_to_end_verdicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration and link: which path is fastest end to end, and the split path against the best other."""
    verdicts = []
    for config, link in dict.fromkeys((r["config"], r["link"]) for r in rows):
        paths = {r["path"]: r["total_ms"] for r in rows if (r["config"], r["link"]) == (config, link)}
        split = paths.pop("split", None)
        if split is None:
            continue
        best_other = min(paths, key=paths.get) if paths else None
        if best_other is None:
            verdict = f"split only ({split:.1f} ms): no alternative measured"
        elif split <= paths[best_other]:
            verdict = (f"split wins: {split:.1f} ms, {paths[best_other] / split:.2f}x faster than {best_other} "
                       f"({paths[best_other]:.1f} ms)")
        else:
            verdict = (f"{best_other} wins: {paths[best_other]:.1f} ms; split {split:.1f} ms is "
                       f"{split / paths[best_other]:.2f}x slower")
        verdicts.append({"config": config, "link": link, "split_ms": split, "best_other": best_other,
                         "best_other_ms": paths.get(best_other), "split_wins": best_other is None
                         or split <= paths[best_other], "verdict": verdict})
    return verdicts


def _end_to_end(report: dict[str, Any], links: list[Link]) -> list[dict[str, Any]]:
    rows = []
    for key, entry in report["latency"].items():
        stages = entry["stages"]
        if "server_total" not in stages:
            continue
        nbytes = report["size"][key]["summary"]["stream_bytes"]["mean"]
        local = report["alternatives"].get(key)  # measured on the first bundle: the same whole model
        for link in links:
            rows.append({"config": key, "link": link.name, "path": "split", "device_ms": stages["device_total"]["p50"],
                         "bytes": nbytes, "transfer_ms": link.transfer_ms(nbytes), "rtt_ms": link.rtt_ms,
                         "server_ms": stages["server_total"]["p50"],
                         "total_ms": link.end_to_end_ms(stages["device_total"]["p50"], nbytes,
                                                        stages["server_total"]["p50"])})
            if not local:
                continue
            full = local["stages"]["full_model"]["p50"]
            rows.append({"config": key, "link": link.name, "path": "all on device", "device_ms": full, "bytes": 0,
                         "transfer_ms": 0.0, "rtt_ms": 0.0, "server_ms": 0.0, "total_ms": full})
            for name, codec in local["codecs"].items():
                size = float(np.mean(codec["bytes"]))
                device_ms = stages["preprocess"]["p50"] + codec["encode"]["p50"]
                rows.append({"config": key, "link": link.name, "path": name, "device_ms": device_ms, "bytes": size,
                             "transfer_ms": link.transfer_ms(size), "rtt_ms": link.rtt_ms,
                             "server_ms": codec["server_total"]["p50"],
                             "total_ms": link.end_to_end_ms(device_ms, size, codec["server_total"]["p50"])})
    return rows


def _rate_accuracy(config: BenchConfig, report: dict[str, Any], tasks: dict[str, Task]) -> dict[str, Any]:
    """Mean bytes vs agreement with a reference (the task's, e.g. top-1 equal), and the task's metric (e.g. top-1
    accuracy) when the images carry labels. The reference is the unmodified model (the teacher, uncompressed) when
    the bundle carries one; the codec rows (its input through an image codec) are points too. Without a teacher it
    is the FP32 configuration with the most bytes, which agrees with itself by construction."""
    predictions = {key: [tasks[report["latency"][key]["bundle"]].parse(p) for p in raw]
                   for key, raw in report["predictions"].items()}
    teacher_key = next((k for k, alt in report["alternatives"].items()
                        if alt.get("model") == "reference" and alt.get("precision") == "fp32"), None)
    if teacher_key:
        task = tasks[report["latency"][teacher_key]["bundle"]]
        reference_predictions = [task.parse(p) for p in report["alternatives"][teacher_key]["predictions"]]
        reference = f"the whole model ({report['alternatives'][teacher_key]['reference']}) on the uncompressed input"
        rule = "the unmodified model the split replaces (the bundle's reference role), FP32"
    else:
        fp32 = [k for k in report["predictions"] if k.endswith("/fp32")]
        reference = max(fp32 or report["predictions"],
                        key=lambda k: report["size"][k]["summary"]["stream_bytes"]["mean"], default=None)
        reference_predictions = predictions.get(reference, [])
        rule = "FP32 configuration with the most bytes per image (no teacher in the bundle: 100 % by construction)"
    labels = config.labels
    points = []
    for key, parsed in predictions.items():
        entry = report["latency"][key]
        task = tasks[entry["bundle"]]
        beta = next((b["beta"] for b in report["inputs"]["bundles"] if b["id"] == entry["bundle"]), None)
        points.append({"config": key, "bundle": entry["bundle"], "beta": beta, "backend": entry["backend"],
                       "precision": entry["precision"], "path": "split",
                       "bytes_mean": report["size"][key]["summary"]["stream_bytes"]["mean"],
                       "agreement": task.agreement(reference_predictions, parsed) if reference_predictions else None,
                       "accuracy": task.metric(parsed, labels) if labels else None})
    for key, alt in report["alternatives"].items():
        if alt.get("model") != "reference" or not key.endswith(f"/{alt['precision']}"):
            continue  # no teacher, or an INT8 configuration whose codec rows ran the FP32 teacher again
        task = tasks[report["latency"][key]["bundle"]]
        for name, codec in alt["codecs"].items():
            parsed = [task.parse(p) for p in codec["predictions"]]
            points.append({"config": key, "bundle": report["latency"][key]["bundle"], "beta": None,
                           "backend": report["latency"][key]["backend"], "precision": alt["precision"],
                           "path": name, "bytes_mean": float(np.mean(codec["bytes"])),
                           "agreement": task.agreement(reference_predictions, parsed) if reference_predictions
                           else None, "accuracy": task.metric(parsed, labels) if labels else None})
    return {"reference": reference, "reference_rule": rule, "labels": len(labels) if labels else None,
            "points": points}
