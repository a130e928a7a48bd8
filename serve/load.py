"""A bounded load test: concurrent v2 clients send streams to a served model; every answer is checked bit for bit
against the in-process ``Decoder`` (decode + tail), and latency percentiles and throughput are reported beside the
same work done in process by as many threads.

``python -m sc2edge.serve.load BUNDLE --url 127.0.0.1:8000 --model sc2edge_onnxruntime [--clients 8 --requests 300]``
(the streams are the bundle's encodings of the offline photos). Loopback or your own servers only.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sc2edge._files import atomic_write_text
from sc2edge.runtime import Decoder
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
    return {"streams": len(streams), "served": asdict(served), "in_process": asdict(in_process)}


def main(argv: Sequence[str] | None = None) -> int:
    from sc2edge.photos import system_photos
    from sc2edge.runtime import Encoder

    parser = argparse.ArgumentParser(prog="python -m sc2edge.serve.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--protocol", choices=("http", "grpc"), default=None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=300, help="requests per client")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    with Encoder(args.bundle) as encoder:
        streams = encoder.encode(system_photos())
    report = load_test(args.bundle, streams, args.url, args.model, protocol=args.protocol, clients=args.clients,
                       requests_per_client=args.requests)
    print(markdown(report))
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    return 0


def markdown(report: dict) -> str:
    """The load test's figures as a Markdown table."""
    rows = ["| side | clients | requests | p50 ms | p99 ms | requests/s | mismatches | errors |",
            "|---|---|---|---|---|---|---|---|"]
    for side in (report["served"], report["in_process"]):
        rows.append(f"| {side['label']} | {side['clients']} | {side['requests']} | {side['p50_ms']:.2f} | "
                    f"{side['p99_ms']:.2f} | {side['throughput_rps']:.1f} | {side['mismatches']} | {side['errors']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
