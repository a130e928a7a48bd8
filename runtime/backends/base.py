"""A backend is a small runner: load once, infer many times, close. The base class owns the state checks."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import TracebackType

import numpy as np

from sc2edge.errors import Sc2edgeError


class BaseRunner:
    """Runs one exported graph. Subclasses implement ``load_impl``, ``infer_impl`` and ``close_impl``.

    One runner may be shared by threads: loading happens once (under a lock), and every ``infer_impl`` must be
    safe to call concurrently (ONNX Runtime's ``run`` is; OpenVINO borrows a request per call; TensorRT locks).

    Args:
        model_path (Path): the graph file (format per backend).
        threads (int | None): intra-op threads; None lets the runtime decide. Defaults to None.
        device (str | None): runtime device name (e.g. OpenVINO "CPU", "GPU"). Defaults to None.
        spin (bool): let idle worker threads spin-wait for the next call (ONNX Runtime): lower latency on an idle
            machine, but they keep cores busy; off, measured here, halved the CPU time per image at 2 threads and
            was also faster on a shared CPU. Defaults to False.
        cache_dir (str | Path | None): where a runtime keeps what it compiled from the graph, so the next process
            starts faster (ONNX Runtime: the optimized graph; OpenVINO: its CACHE_DIR). Defaults to None.
        quiet (bool): the runtime logs only fatal errors (ONNX Runtime logs a failing run as an error of its own):
            for a caller that expects failures and reports them itself, like export's input-size probe. A failure
            still raises. Defaults to False.
    """

    name = "base"

    def __init__(self, model_path: Path, *, threads: int | None = None, device: str | None = None,
                 spin: bool = False, cache_dir: str | Path | None = None, quiet: bool = False):
        self.model_path = Path(model_path)
        self.threads = threads
        self.device = device
        self.spin = spin
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.quiet = quiet
        self.is_active = False
        self.inference_time: float | None = None  # seconds spent in the last infer() call (of any thread)
        self._state_lock = threading.Lock()  # one load or close at a time
        self.input_names: list[str] = []
        self.output_names: list[str] = []

    def load_impl(self) -> None:
        raise NotImplementedError

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close_impl(self) -> None:
        """Release the runtime's resources; the default has nothing to release."""

    def activate(self) -> BaseRunner:
        with self._state_lock:
            if not self.is_active:
                if not self.model_path.is_file():
                    raise Sc2edgeError(f"{self.name}: graph file not found: {self.model_path}")
                self.load_impl()
                self.is_active = True
        return self

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on ``feed`` (input name -> array); returns output name -> array."""
        if not self.is_active:
            self.activate()
        missing = set(self.input_names) - set(feed)
        if missing:
            raise Sc2edgeError(f"{self.name}: missing inputs {sorted(missing)} (graph inputs: {self.input_names})")
        start = time.perf_counter()
        outputs = self.infer_impl(feed)
        self.inference_time = time.perf_counter() - start
        return outputs

    def close(self) -> None:
        with self._state_lock:
            if self.is_active:
                self.close_impl()
                self.is_active = False

    def __enter__(self) -> BaseRunner:
        return self.activate()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
