"""Heavy load: one Encoder and one Decoder shared by many threads must give each caller its own answer.

Each request encodes one of a few images and decodes the stream it got; its stream and the server graph's raw
outputs are compared bit for bit with what the same objects return serially. A mismatch means a runner handed a
caller another request's output (what one shared OpenVINO ``InferRequest`` did); an error is counted, not
raised, so one run reports every failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sc2edge.runtime import Decoder, Encoder


@dataclass
class LoadResult:
    backend: str
    precision: str
    threads: int
    requests: int  # encode + decode pairs, all threads together
    mismatches: int = 0
    errors: int = 0
    seconds: float = 0.0
    first_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.requests > 0 and self.mismatches == 0 and self.errors == 0

    def __str__(self) -> str:
        rate = self.requests / self.seconds if self.seconds else 0.0
        text = (f"{self.backend}/{self.precision}: {self.threads} threads x {self.requests // self.threads} requests: "
                f"{self.mismatches} mismatches, {self.errors} errors, {self.seconds:.1f} s ({rate:.1f} req/s)")
        return text + "".join(f"\n  error: {e}" for e in self.first_errors)


def hammer(bundle: str | Path, backend: str, precision: str, batches: Sequence[np.ndarray], *, threads: int = 16,
           requests_per_thread: int = 4, runtime_threads: int | None = 1) -> LoadResult:
    """Share one Encoder and one Decoder between ``threads`` threads, each making ``requests_per_thread``
    encode+decode requests over ``batches`` (preprocessed 1xCxHxW images), and count wrong or failed answers."""
    result = LoadResult(backend, precision, threads, threads * requests_per_thread)
    options = {"backend": backend, "precision": precision, "threads": runtime_threads}
    with Encoder(bundle, **options) as encoder, Decoder(bundle, **options) as decoder:
        expected = []
        for batch in batches:
            stream = encoder.encode_batch(batch)[0]
            expected.append((stream, decoder.outputs(stream)))
        lock = threading.Lock()

        def worker(index: int) -> None:
            for step in range(requests_per_thread):
                item = (index + step) % len(batches)
                want_stream, want_outputs = expected[item]
                try:
                    stream = encoder.encode_batch(batches[item])[0]
                    outputs = decoder.outputs(stream)
                    wrong = stream != want_stream or outputs.keys() != want_outputs.keys() or not all(
                        np.array_equal(outputs[name], want) for name, want in want_outputs.items())
                    problem = None
                except Exception as exc:  # counted and reported: the run must see every failure
                    wrong, problem = False, f"{type(exc).__name__}: {exc}"
                with lock:
                    result.mismatches += int(wrong)
                    if problem:
                        result.errors += 1
                        if len(result.first_errors) < 3:
                            result.first_errors.append(problem)

        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(worker, range(threads)))
        result.seconds = time.perf_counter() - start
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sc2edge.bench.concurrency BUNDLE [--backend a,b] [--precision fp32,int8] [--threads 16]
    [--requests 1000]``: the long run; exit status 1 on any mismatch or error."""
    import argparse

    from sc2edge.photos import system_photos
    from sc2edge.runtime import Bundle, preprocess_image

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--backend", default="onnxruntime,openvino")
    parser.add_argument("--precision", default="fp32,int8")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--requests", type=int, default=1000, help="per thread (default: %(default)s)")
    args = parser.parse_args(argv)
    spec = Bundle.open(args.bundle).preprocess
    batches = [preprocess_image(p, spec)[None] for p in system_photos()[:4]]
    failed = False
    for backend in args.backend.split(","):
        for precision in args.precision.split(","):
            result = hammer(args.bundle, backend, precision, batches, threads=args.threads,
                            requests_per_thread=args.requests)
            print(result, flush=True)
            failed |= not result.ok
    return int(failed)


if __name__ == "__main__":
    raise SystemExit(main())
