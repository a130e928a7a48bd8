"""A bounded load test: concurrent v2 clients send streams to a served model; every answer is checked bit for bit
against the in-process ``Decoder`` (decode + tail), and latency percentiles and throughput are reported beside the
same work done in process by as many threads.

``python -m sc2edge.serve.load BUNDLE --url 127.0.0.1:8000 --model sc2edge_onnxruntime [--clients 8 --requests 300]``
(the streams are the bundle's encodings of the offline photos). Loopback or your own servers only. ``--serve``
instead of ``--url``/``--model``: write the bundle's repository to a temporary folder and start a tritonserver on
loopback for the test (its Python variant: the one the pytriton build runs). ``--markdown FILE`` writes the figures
with the machine they came from (CPU, ISA, cores, load average).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sc2edge._files import atomic_write_text
from sc2edge.runtime import Decoder
from sc2edge.runtime.cpu import this_cpu
from sc2edge.serve.client import InferenceClient


@dataclass
class LoadFigures:
    """One side of the load test: per-request latency percentiles (ms), requests per second, mismatches."""

    label: str
    clients: int
    requests: int
    p50_ms: float
    p99_ms: float
    throughput_rps: float
    mismatches: int
    errors: int


def _run(label: str, clients: int, requests_per_client: int, call: Callable[[int, int], bool]) -> LoadFigures:
    """``call(client, i)`` -> matched, from ``clients`` threads at once; times each call and the whole."""
    latencies: list[float] = []
    mismatches = errors = 0
    lock = threading.Lock()

    def worker(client: int) -> None:
        nonlocal mismatches, errors
        for i in range(requests_per_client):
            start = time.perf_counter()
            try:
                matched = call(client, i)
            except Exception:  # counted and reported: a load test measures failures, it does not stop at one
                matched, failed = False, True
            else:
                failed = False
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors += failed
                mismatches += not matched and not failed

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1e3
    return LoadFigures(label, clients, len(latencies), float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
                       len(latencies) / wall, mismatches, errors)


def load_test(bundle: str | Path, streams: Sequence[bytes], url: str, model: str, *, protocol: str | None = None,
              clients: int = 8, requests_per_client: int = 40) -> dict:
    """``clients`` threads x ``requests_per_client`` requests of one stream each (cycling through ``streams``)
    against the server, then the same against an in-process Decoder shared by as many threads. Every server
    answer is compared bit for bit with the in-process outputs of its stream."""
    load_at_start = os.getloadavg()
    with Decoder(bundle) as decoder:
        expected = [decoder.outputs(s) for s in streams]
        names = decoder.task.output_names
        connections = [InferenceClient(url, model, names, protocol=protocol) for _ in range(clients)]

        def remote(client: int, i: int) -> bool:
            index = (client + i * clients) % len(streams)
            got = connections[client].infer([streams[index]])[0]
            return all(np.array_equal(got[n], expected[index][n]) for n in names)

        def local(client: int, i: int) -> bool:
            index = (client + i * clients) % len(streams)
            got = decoder.outputs(streams[index])
            return all(np.array_equal(got[n], expected[index][n]) for n in names)

        try:
            served = _run(f"{connections[0].protocol} {model}", clients, requests_per_client, remote)
        finally:
            for connection in connections:
                connection.close()
        in_process = _run("in-process Decoder (decode + tail)", clients, requests_per_client, local)
        manifest = decoder.bundle.manifest
    cpu = this_cpu()
    return {"bundle": manifest["model"]["name"], "trained": manifest["model"].get("trained"),
            "entropy": manifest["entropy"]["kind"], "task": manifest["task"]["kind"], "streams": len(streams),
            "stream_bytes_mean": float(np.mean([len(s) for s in streams])),
            "machine": {"cpu": cpu.model, "isa": list(cpu.isa), "cores": os.cpu_count(),
                        "load_average_start": list(load_at_start), "load_average_end": list(os.getloadavg())},
            "served": asdict(served), "in_process": asdict(in_process)}


def main(argv: Sequence[str] | None = None) -> int:
    from sc2edge.photos import system_photos
    from sc2edge.runtime import Encoder
    from sc2edge.serve.repository import write_triton_repository
    from sc2edge.serve.server import TritonServer

    parser = argparse.ArgumentParser(prog="python -m sc2edge.serve.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--url", help="the server (with --model)")
    parser.add_argument("--model", help="the served model taking STREAM (with --url)")
    parser.add_argument("--serve", action="store_true",
                        help="start a tritonserver on loopback for the bundle's repository (Python variant)")
    parser.add_argument("--protocol", choices=("http", "grpc"), default=None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=300, help="requests per client")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--markdown", type=Path, default=None, help="also write them as Markdown to this file")
    args = parser.parse_args(argv)
    if args.serve == bool(args.url or args.model) or (args.url is None) != (args.model is None):
        parser.error("give --url and --model, or --serve")
    with Encoder(args.bundle) as encoder:
        streams = encoder.encode(system_photos())
    if args.serve:
        with tempfile.TemporaryDirectory(prefix="sc2edge-load-") as folder:
            repo = write_triton_repository(args.bundle, Path(folder) / "repo")
            with TritonServer(repo.path, repo.load_list("python")) as server:
                url = server.grpc_url if args.protocol == "grpc" else server.http_url
                report = load_test(args.bundle, streams, url, repo.ensemble("python"), protocol=args.protocol,
                                   clients=args.clients, requests_per_client=args.requests)
    else:
        report = load_test(args.bundle, streams, args.url, args.model, protocol=args.protocol, clients=args.clients,
                           requests_per_client=args.requests)
    print(markdown(report))
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, markdown(report) + "\n")
    return 0


def markdown(report: dict) -> str:
    """The load test's figures as a Markdown table, under a line saying what was served on which machine."""
    machine = report.get("machine")
    rows = []
    if machine:
        load = "/".join(f"{x:.1f}" for x in (machine["load_average_start"][0], machine["load_average_end"][0]))
        rows += [f"{report['bundle']}{'' if report['trained'] else ' (UNTRAINED)'}: {report['entropy']} entropy "
                 f"model, {report['task']}, {report['streams']} streams of {report['stream_bytes_mean']:.0f} bytes "
                 f"on average; {machine['cpu']} ({' '.join(machine['isa']) or 'ISA unknown'}), {machine['cores']} "
                 f"cores shared by the server and the clients, 1-minute load average {load} (start/end).", ""]
    rows += ["| side | clients | requests | p50 ms | p99 ms | requests/s | mismatches | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for side in (report["served"], report["in_process"]):
        rows.append(f"| {side['label']} | {side['clients']} | {side['requests']} | {side['p50_ms']:.2f} | "
                    f"{side['p99_ms']:.2f} | {side['throughput_rps']:.1f} | {side['mismatches']} | {side['errors']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
