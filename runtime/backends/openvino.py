"""OpenVINO backend: an IR (``.xml`` + ``.bin``) or ONNX file compiled for CPU (default), GPU, NPU or AUTO."""

from __future__ import annotations

import queue
import threading

import numpy as np

from sc2edge._lazy import lazy_import
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.backends.base import BaseRunner

_DEVICES = ("CPU", "GPU", "NPU", "AUTO")


class OpenVinoRunner(BaseRunner):
    """Runs a graph with OpenVINO. Each request owns its input tensors: a call copies the caller's arrays into them
    (OpenVINO never sees, let alone writes, the caller's memory) and copies the outputs out (the request is reused
    by the next call). The tensors are set on the request once and kept while the input shape stays, so a call is
    two copies around ``InferRequest.infer()``, benchmark_app's loop: ``infer(dict)`` allocated a tensor per call
    for a read-only array (a decoded photo is one) and went through OpenVINO's generic input dispatch, 57 us more
    per call than this on the default model (a ~1.1 ms graph here unloaded).

    Safe to share between threads: an ``InferRequest`` serves one call at a time (a shared one raises "Infer
    Request is busy" or hands one caller another's outputs), so each call borrows a request from a pool that grows
    on demand up to ``max_requests`` and waits for a free one beyond that.

    Args:
        precision_hint (str | None): INFERENCE_PRECISION_HINT on CPU/GPU. "f32" (the default) keeps float ops
            in float32, so symbols match the other backends; OpenVINO's own default may pick bf16/f16 where the
            hardware has it. None leaves OpenVINO's choice. Defaults to "f32".
        max_requests (int): infer requests kept at most (each holds its own intermediate buffers); calls beyond
            that many in flight wait for a free one. Defaults to 16.

    PERFORMANCE_HINT is LATENCY (one image at a time, as a device encodes; measured here it was as fast as or
    faster than OpenVINO's default and used less CPU time per image at 2 threads); ``cache_dir`` is OpenVINO's
    CACHE_DIR: the compiled model is kept there and loaded by later processes (session time about half, peak RSS
    about 10 MB lower, measured on the default model).
    """

    name = "openvino"

    def __init__(self, model_path, *, threads: int | None = None, device: str | None = None, spin: bool = False,
                 cache_dir=None, quiet: bool = False, precision_hint: str | None = "f32", max_requests: int = 16):
        super().__init__(model_path, threads=threads, device=device, spin=spin, cache_dir=cache_dir, quiet=quiet)
        self.precision_hint = precision_hint
        if max_requests < 1:
            raise Sc2edgeError(f"openvino: max_requests must be at least 1, got {max_requests}")
        self.max_requests = max_requests

    def load_impl(self) -> None:
        ov = lazy_import("openvino")
        device = (self.device or "CPU").upper()
        kind = device.split(":")[0].split(".")[0]
        if kind not in _DEVICES:
            raise Sc2edgeError(f'openvino: unknown device "{self.device}" (use one of {", ".join(_DEVICES)})')
        core = ov.Core()
        present = {d.split(".")[0] for d in core.available_devices}
        if kind != "AUTO" and kind not in present:
            raise Sc2edgeError(f'openvino: device "{device}" is not present here (found: {", ".join(sorted(present))})')
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if self.cache_dir is not None:
            config["CACHE_DIR"] = str(self.cache_dir)
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self.precision_hint and kind in ("CPU", "GPU"):
            config["INFERENCE_PRECISION_HINT"] = self.precision_hint
        try:
            declared = core.read_model(str(self.model_path))
            self.compiled = core.compile_model(declared, device, config)
        except RuntimeError as exc:
            raise Sc2edgeError(f"openvino cannot load {self.model_path} on {device}: {exc}") from exc
        self._idle: queue.SimpleQueue = queue.SimpleQueue()  # requests not in use by any call
        self._created = 0
        self._pool_lock = threading.Lock()
        self._input_types = [port.get_element_type() for port in self.compiled.inputs]
        self._idle.put(self._new_request())  # one up front, so a broken graph fails at load time
        # The graph's own names: compiling merges an input with the Cast after it (an image size cast for a
        # Resize), and the compiled port may then answer to the Cast's name first.
        self.input_names = [port.get_any_name() for port in declared.inputs]
        self.output_names = [port.get_any_name() for port in declared.outputs]

    def _new_request(self) -> tuple:
        """A request and its input arrays (views of the tensors set on it; None until the first call)."""
        self._created += 1
        return self.compiled.create_infer_request(), [None] * len(self._input_types)

    def _borrow(self) -> tuple:
        """An idle request, a new one while the pool is below ``max_requests``, else the next one returned."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._pool_lock:
            if self._created < self.max_requests:
                return self._new_request()
        return self._idle.get()

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ov = lazy_import("openvino")
        slot = self._borrow()
        request, arrays = slot
        try:
            for index, name in enumerate(self.input_names):
                value = np.asarray(feed[name])
                if arrays[index] is None or arrays[index].shape != value.shape:
                    tensor = ov.Tensor(self._input_types[index], value.shape)
                    request.set_input_tensor(index, tensor)
                    arrays[index] = tensor.data  # the view keeps its tensor alive
                np.copyto(arrays[index], value, casting="unsafe")  # converts as infer(share_inputs=False) does
            request.infer()
            return {name: request.get_output_tensor(index).data.copy()
                    for index, name in enumerate(self.output_names)}
        finally:
            self._idle.put(slot)

    def close_impl(self) -> None:
        del self._idle, self.compiled
