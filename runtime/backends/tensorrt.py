"""TensorRT backend (TensorRT 10/11 tensor API): deserialize an engine, bind buffers by tensor name,
``execute_async_v3`` on a CUDA stream. CUDA memory is handled through the CUDA runtime library with ctypes,
so the runner needs nothing beyond ``tensorrt`` and the driver (no torch, no pycuda).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

import numpy as np

from sc2edge._lazy import lazy_import
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.backends.base import BaseRunner

_H2D, _D2H = 1, 2  # cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost


class _Cuda:
    """The few CUDA runtime calls a runner needs."""

    def __init__(self) -> None:
        names = [ctypes.util.find_library("cudart"), "libcudart.so", "libcudart.so.12", "libcudart.so.13",
                 "libcudart.so.11.0"]
        for name in filter(None, names):
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise Sc2edgeError("tensorrt: the CUDA runtime library (libcudart) cannot be loaded; install the CUDA "
                               "runtime that matches your TensorRT")

    def check(self, status: int, what: str) -> None:
        if status != 0:
            raise Sc2edgeError(f"tensorrt: CUDA {what} failed with error {status}")

    def malloc(self, nbytes: int) -> int:
        pointer = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(ctypes.byref(pointer), ctypes.c_size_t(max(nbytes, 1))), "cudaMalloc")
        return int(pointer.value or 0)

    def free(self, pointer: int) -> None:
        self.lib.cudaFree(ctypes.c_void_p(pointer))

    def stream(self) -> int:
        stream = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(ctypes.byref(stream)), "cudaStreamCreate")
        return int(stream.value or 0)

    def copy(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        self.check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(dst), ctypes.c_void_p(src), ctypes.c_size_t(nbytes),
                                            ctypes.c_int(kind), ctypes.c_void_p(stream)), "cudaMemcpyAsync")

    def synchronize(self, stream: int) -> None:
        self.check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")

    def destroy(self, stream: int) -> None:
        self.lib.cudaStreamDestroy(ctypes.c_void_p(stream))


class TensorRTRunner(BaseRunner):
    """Runs a serialized TensorRT engine (built on this GPU by ``sc2edge build-engine``).

    One execution context, one CUDA stream and one set of device buffers serve every call, so calls from several
    threads take turns (a lock); a server wanting parallel GPU work opens one runner per thread.
    """

    name = "tensorrt"

    def load_impl(self) -> None:
        trt = lazy_import("tensorrt")
        self.trt = trt
        self.cuda = _Cuda()
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.model_path.read_bytes())
        if self.engine is None:
            raise Sc2edgeError(f"tensorrt cannot deserialize {self.model_path}: engines only run on the GPU model "
                               f"and TensorRT version that built them (this is TensorRT {trt.__version__})")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        self.stream = self.cuda.stream()
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, capacity in bytes)
        self._call_lock = threading.Lock()  # context, stream and buffers serve one call at a time

    def _buffer(self, name: str, nbytes: int) -> int:
        pointer, capacity = self.buffers.get(name, (0, 0))
        if nbytes > capacity:
            if pointer:
                self.cuda.free(pointer)
            pointer, capacity = self.cuda.malloc(nbytes), nbytes
            self.buffers[name] = (pointer, capacity)
        return pointer

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._call_lock:
            return self._infer_locked(feed)

    def _infer_locked(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        trt = self.trt
        for name in self.input_names:
            expected = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            array = np.ascontiguousarray(feed[name], dtype=expected)
            if not self.context.set_input_shape(name, array.shape):
                raise Sc2edgeError(f"tensorrt: input {name} shape {array.shape} is outside the engine's profile")
            pointer = self._buffer(name, array.nbytes)
            self.cuda.copy(pointer, array.ctypes.data, array.nbytes, _H2D, self.stream)
            self.context.set_tensor_address(name, pointer)
            feed = {**feed, name: array}  # keep the host copy alive until the stream has run
        outputs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = np.empty(shape, dtype=np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))))
            self.context.set_tensor_address(name, self._buffer(name, outputs[name].nbytes))
        if not self.context.execute_async_v3(self.stream):
            raise Sc2edgeError("tensorrt: execute_async_v3 failed")
        for name, array in outputs.items():
            self.cuda.copy(array.ctypes.data, self.buffers[name][0], array.nbytes, _D2H, self.stream)
        self.cuda.synchronize(self.stream)
        return outputs

    def close_impl(self) -> None:
        for pointer, _ in self.buffers.values():
            self.cuda.free(pointer)
        self.buffers.clear()
        self.cuda.destroy(self.stream)
        del self.context, self.engine, self.runtime
