"""One benchmark configuration in a fresh process: ``python -m sc2edge.bench.worker SPEC.json RESULT.json``.

A fresh process per configuration keeps one backend's threads, caches and allocations out of another's
figures, and makes its peak RSS the memory that side really needs. The runtime modes ("device", "server",
"local", "roofline") must not import torch: the worker checks ``sys.modules`` at the end and fails if it was.
The "torch-device"/"torch-server" modes are the paper's eager path (encoder + ``EntropyBottleneck.compress``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sc2edge.bench.machine import proc_kib_field
from sc2edge.bench.timing import TimingConfig, measure
from sc2edge.errors import Sc2edgeError
from sc2edge.tasks import Prediction, bundle_task

TORCH_FREE_MODES = ("device", "server", "local", "roofline")


def _images(spec: dict[str, Any]) -> list[np.ndarray]:
    """The images decoded once, up front, as uint8 H x W x 3 frames: a device encodes frames it already holds in
    memory, as a camera gives them (``preprocess_file`` times the same images from their files)."""
    from sc2edge.runtime.preprocess import load_image

    return [np.asarray(load_image(p)) for p in spec["images"]]


def _timing(spec: dict[str, Any]) -> TimingConfig:
    return TimingConfig(**spec["timing"])


def _save_streams(path: Path, streams: list[bytes], symbols: list[np.ndarray] | None = None) -> None:
    arrays = {f"stream{i}": np.frombuffer(s, dtype=np.uint8) for i, s in enumerate(streams)}
    arrays.update({f"symbols{i}": s for i, s in enumerate(symbols or [])})
    np.savez(path, **arrays)


def load_streams(path: Path) -> tuple[list[bytes], list[np.ndarray]]:
    """Streams (and symbols, when saved) written by a device worker; plain npz, no pickle."""
    with np.load(path, allow_pickle=False) as npz:
        n = sum(1 for k in npz.files if k.startswith("stream"))
        streams = [npz[f"stream{i}"].tobytes() for i in range(n)]
        symbols = [npz[f"symbols{i}"] for i in range(n) if f"symbols{i}" in npz.files]
    return streams, symbols


def run_device(spec: dict[str, Any]) -> dict[str, Any]:
    """Image -> stream on the device: preprocess, encoder graph, entropy encode, and the whole path."""
    from sc2edge.runtime import Encoder

    timing = _timing(spec)
    images = _images(spec)
    with Encoder(spec["bundle"], spec["backend"], spec["precision"], threads=spec["threads"]) as encoder:
        batches = [encoder.preprocess(im)[None] for im in images]
        items = [encoder.item_outputs(b)[0] for b in batches]
        # a dynamic input's streams carry the image sizes (the segmentation and detection tails take them)
        sized = [(item, encoder.preprocess_sized(im)[1] if encoder.codec.limits.dynamic else None)
                 for item, im in zip(items, images, strict=True)]
        # the latent's symbols: the section the manifest declares last (the codec's latent_section)
        symbols = [encoder.codec.section_symbols(item)[encoder.codec.latent_section] for item in items]
        stages = {
            "preprocess": measure(encoder.preprocess, images, timing),
            "preprocess_file": measure(encoder.preprocess, spec["images"], timing),
            "encoder_graph": measure(encoder.device_outputs, batches, timing),
        }
        index_path = getattr(encoder.codec, "index_path", None)
        if index_path is not None:  # a hyperprior's side network + index selection, its own stage
            stages["index_path"] = measure(index_path, items, timing)
        stages.update({
            # (a hyperprior's: with the index path)
            "entropy_encode": measure(lambda item: encoder.compress_outputs(*item), sized, timing),
            "device_total": measure(lambda im: encoder.encode([im]), images, timing),
        })
        streams = encoder.encode(images)
    _save_streams(Path(spec["work_dir"]) / "streams.npz", streams, symbols)
    return {"stages": {k: v.to_json() for k, v in stages.items()}, "coder": encoder.codec.coder_name}


def run_server(spec: dict[str, Any]) -> dict[str, Any]:
    """Stream -> prediction on the server: entropy decode, server graph, and the whole path."""
    from sc2edge.runtime import Decoder

    timing = _timing(spec)
    streams, _ = load_streams(Path(spec["streams"]))
    with Decoder(spec["bundle"], spec["backend"], spec["precision"], threads=spec["threads"]) as decoder:
        received = [decoder.decode_sized(s) for s in streams]  # server inputs and image sizes (dynamic input)
        stages = {
            "entropy_decode": measure(decoder.decode_sized, streams, timing),
            "server_graph": measure(lambda item: decoder.predict_outputs(item[0][None], item[1]), received, timing),
            "server_total": measure(decoder.decode, streams, timing),
        }
        predictions = [decoder.decode(s).to_json() for s in streams]
    return {"stages": {k: v.to_json() for k, v in stages.items()}, "predictions": predictions}


def _whole_model(spec: dict[str, Any], bundle, stack: ExitStack) -> tuple[
        Callable[[Any], dict[str, np.ndarray]], Callable[[Image.Image], dict[str, np.ndarray]], dict[str, Any]]:
    """The unmodified model the split replaces, as (image -> named outputs, model-size crop -> named outputs): the
    bundle's reference graph when it has one (at the configuration's precision if exported, else FP32), else the
    student's device then server graph."""
    from sc2edge.runtime import Decoder, Encoder, ReferenceGraph
    from sc2edge.runtime.preprocess import crop_input, normalize_image
    from sc2edge.runtime.reference import REFERENCE_OUTPUT, has_reference

    pre = bundle.preprocess
    if has_reference(bundle, spec["backend"]):
        precision = spec["precision"] if has_reference(bundle, spec["backend"], spec["precision"]) else "fp32"
        graph = stack.enter_context(ReferenceGraph(bundle, spec["backend"], precision, threads=spec["threads"]))
        name = (bundle.manifest.get("reference") or {}).get("name", "reference")
        return ((lambda image: {REFERENCE_OUTPUT: graph.predict(graph.preprocess(image)[None])}),
                (lambda crop: {REFERENCE_OUTPUT: graph.predict(normalize_image(crop, pre)[None])}), {
            "model": "reference", "reference": name, "precision": precision,
            "full_model_method": f"the reference graph ({name}), one graph"})
    encoder = stack.enter_context(Encoder(bundle, spec["backend"], spec["precision"], threads=spec["threads"]))
    decoder = stack.enter_context(Decoder(bundle, spec["backend"], spec["server_precision"],
                                          threads=spec["threads"]))
    # a hyperprior's server input comes out of its index path; a dynamic input's server graph takes the image sizes
    # its streams carry
    if encoder.codec.device_outputs != ("symbols",) or encoder.codec.limits.dynamic:
        def through_stream(batch: np.ndarray) -> dict[str, np.ndarray]:
            (received, sizes), = [decoder.decode_sized(s) for s in encoder.encode_batch(batch)]  # batch 1
            return decoder.predict_outputs(received[None], sizes)

        return ((lambda image: through_stream(encoder.preprocess(image)[None])),
                (lambda crop: through_stream(crop_input(crop, pre)[None])), {
            "model": "student", "reference": None, "precision": spec["precision"],
            "full_model_method": "no reference in the bundle: the student's device graph, entropy coding (and a "
                                 "hyperprior's index path), then server graph, in one process"})
    return ((lambda image: decoder.predict_outputs(encoder.symbols(encoder.preprocess(image)[None]))),
            (lambda crop: decoder.predict_outputs(encoder.symbols(crop_input(crop, pre)[None]))), {
        "model": "student", "reference": None, "precision": spec["precision"],
        "full_model_method": "no reference in the bundle: the student's device graph then server graph, in one "
                             "process"})


def run_local(spec: dict[str, Any]) -> dict[str, Any]:
    """The two alternatives to splitting: the whole model on the device, and an input codec + the whole model
    on the server (codec encode time and size measured on the model's input crop)."""
    from sc2edge.runtime import Bundle
    from sc2edge.runtime.input_codecs import input_codec
    from sc2edge.runtime.preprocess import crop_image
    from sc2edge.runtime.reference import decode_crop

    timing = _timing(spec)
    images = _images(spec)
    bundle = Bundle.open(spec["bundle"])
    pre, task = bundle.preprocess, bundle_task(bundle)
    with ExitStack() as stack:
        from_image, from_crop, described = _whole_model(spec, bundle, stack)

        def full_model(image: np.ndarray) -> Prediction:
            return task.predictions(from_image(image))[0]

        result: dict[str, Any] = {"stages": {"full_model": measure(full_model, images, timing).to_json()},
                                  **described, "codecs": {},
                                  "predictions": [full_model(im).to_json() for im in images]}
        crops = [crop_image(im, pre) for im in images]
        for name, quality in spec["codecs"]:
            codec = input_codec(name, quality)
            encoded = [codec.encode(c) for c in crops]

            def server(data: bytes, codec=codec) -> Prediction:
                return task.predictions(from_crop(decode_crop(codec, data, pre)))[0]

            result["codecs"][codec.label] = {
                "codec": codec.name, "quality": codec.quality, "bytes": [len(e) for e in encoded],
                "encode": measure(codec.encode, crops, timing).to_json(),
                "server_total": measure(server, encoded, timing).to_json(),
                "predictions": [server(e).to_json() for e in encoded],
            }
    return result


def run_roofline(spec: dict[str, Any]) -> dict[str, Any]:
    from sc2edge.bench.roofline import measure_peak

    return measure_peak(spec["backend"], spec["threads"], _timing(spec))


def _torch_model(spec: dict[str, Any]):
    import torch

    from sc2edge.zoo import get_model

    torch.set_num_threads(spec["threads"])
    loaded = get_model(spec["model"])
    return torch, loaded


def _paper_transform(spec: dict[str, Any]):
    """torchvision's Resize -> CenterCrop -> ToTensor -> Normalize, as the paper's evaluation runs it."""
    from torchvision import transforms

    pre = spec["preprocess"]
    gray = [transforms.Grayscale()] if pre.get("grayscale") else []
    return transforms.Compose([*gray, transforms.Resize(pre["resize"]), transforms.CenterCrop(pre["crop"]),
                               transforms.ToTensor(), transforms.Normalize(pre["mean"], pre["std"])])


def run_torch_device(spec: dict[str, Any]) -> dict[str, Any]:
    """The paper's device path: torchvision preprocessing, eager encoder, ``EntropyBottleneck.compress``."""
    torch, loaded = _torch_model(spec)
    transform = _paper_transform(spec)
    bottleneck = loaded.model.bottleneck_layer
    if hasattr(bottleneck, "gaussian_conditional"):
        raise Sc2edgeError("the PyTorch eager baseline covers factorized-prior models; not run for a hyperprior")
    timing = _timing(spec)
    images = [Image.fromarray(frame) for frame in _images(spec)]  # torchvision's transforms take PIL images
    with torch.no_grad():
        batches = [transform(im).unsqueeze(0) for im in images]
        latents = [bottleneck.encoder(b) for b in batches]
        stages = {
            "preprocess": measure(lambda im: transform(im).unsqueeze(0), images, timing),
            "encoder_graph": measure(bottleneck.encoder, batches, timing),
            "entropy_encode": measure(bottleneck.entropy_bottleneck.compress, latents, timing),
            "device_total": measure(
                lambda im: bottleneck.entropy_bottleneck.compress(bottleneck.encoder(transform(im).unsqueeze(0))),
                images, timing),
        }
        payloads = [bottleneck.entropy_bottleneck.compress(y)[0] for y in latents]
    _save_streams(Path(spec["work_dir"]) / "torch-payloads.npz", payloads)
    return {"stages": {k: v.to_json() for k, v in stages.items()}, "latent_hw": list(latents[0].shape[-2:]),
            "trained": loaded.trained, "checkpoint_sha256": loaded.checkpoint_sha256}


def run_torch_server(spec: dict[str, Any]) -> dict[str, Any]:
    """The paper's server path: ``EntropyBottleneck.decompress``, eager decoder and tail."""
    torch, loaded = _torch_model(spec)
    model = loaded.model
    bottleneck = model.bottleneck_layer
    payloads, _ = load_streams(Path(spec["streams"]))
    size = tuple(spec["latent_hw"])
    timing = _timing(spec)
    with torch.no_grad():
        latents = [bottleneck.entropy_bottleneck.decompress([p], size) for p in payloads]
        stages = {
            "entropy_decode": measure(lambda p: bottleneck.entropy_bottleneck.decompress([p], size), payloads, timing),
            "server_graph": measure(lambda y: model.forward_tail(bottleneck.decoder(y)), latents, timing),
            "server_total": measure(
                lambda p: model.forward_tail(bottleneck.decoder(bottleneck.entropy_bottleneck.decompress([p], size))),
                payloads, timing),
        }
    return {"stages": {k: v.to_json() for k, v in stages.items()}}


def run_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """A deployment loop for peak RSS: one image (or stream) at a time, read, processed and dropped.

    ``engine`` "runtime" is our device/server; "torch" is the paper's path, which loads the whole model. The
    device's cold start (import, session, first stream) is reported; ``cache_dir`` is the runtime's compiled-graph
    cache (``Encoder(cache_dir=)``), empty for a first start, filled by an earlier process for a later one.
    """
    side, engine = spec["side"], spec["engine"]
    if engine == "torch":
        torch, loaded = _torch_model(spec)
        transform = _paper_transform(spec)
        bottleneck = loaded.model.bottleneck_layer
        from sc2edge.runtime.preprocess import load_image

        with torch.no_grad():
            for path in spec["images"]:
                bottleneck.entropy_bottleneck.compress(bottleneck.encoder(transform(load_image(path)).unsqueeze(0)))
        return {"images": len(spec["images"])}
    if side == "device":
        start = time.perf_counter()
        from sc2edge.runtime import Encoder

        imported = time.perf_counter()
        with Encoder(spec["bundle"], spec["backend"], spec["precision"], threads=spec["threads"],
                     cache_dir=spec.get("cache_dir")) as encoder:
            opened = time.perf_counter()
            encoder.encode(spec["images"][:1])
            first = time.perf_counter()
            since_exec = _seconds_since_process_start()
            cpu = os.times()
            for path in spec["images"][1:]:
                encoder.encode([path])
        return {"images": len(spec["images"]), "cold_start": {
            "import_s": imported - start, "session_s": opened - imported, "first_stream_s": first - opened,
            "process_start_to_first_stream_s": since_exec, "cpu_s": cpu.user + cpu.system}}
    from sc2edge.runtime import Decoder

    streams, _ = load_streams(Path(spec["streams"]))
    with Decoder(spec["bundle"], spec["backend"], spec["precision"], threads=spec["threads"]) as decoder:
        for stream in streams:
            decoder.decode(stream)
    return {"streams": len(streams)}


MODES = {"device": run_device, "server": run_server, "local": run_local, "roofline": run_roofline,
         "torch-device": run_torch_device, "torch-server": run_torch_server, "memory": run_memory}


def _seconds_since_process_start() -> float | None:
    """Wall time since this process was created (psutil, 10 ms resolution): interpreter start and every import
    included, the cold start a device application sees. None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    return time.time() - psutil.Process().create_time()


def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    Linux's ``ru_maxrss`` survives ``exec``: a worker started from a big parent would report the parent's peak.
    ``VmHWM`` belongs to the current address space, so it is the worker's own.
    """
    peak = proc_kib_field("/proc/self/status", "VmHWM")
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux; other systems differ


def main(argv: list[str] | None = None) -> int:
    spec_path, result_path = argv if argv is not None else sys.argv[1:]
    spec = json.loads(Path(spec_path).read_text())
    out: dict[str, Any] = {"mode": spec["mode"]}
    try:
        out["result"] = MODES[spec["mode"]](spec)
        out["ok"] = True
    except (Sc2edgeError, ImportError) as exc:  # a missing artifact or runtime: skipped, with the reason
        out.update(ok=False, skipped=True, error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - any other failure is reported, with its traceback
        out.update(ok=False, skipped=False, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    out["peak_rss_bytes"] = peak_rss_bytes()
    out["torch_imported"] = "torch" in sys.modules
    torch_free = spec["mode"] in TORCH_FREE_MODES or (spec["mode"] == "memory" and spec["engine"] == "runtime")
    if torch_free and out["torch_imported"]:
        out.update(ok=False, skipped=False, error="the runtime imported torch in a device-side process")
    Path(result_path).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
