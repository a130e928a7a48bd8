"""ONNX Runtime backend (CPU by default; CUDA where the GPU build is installed)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.backends.base import BaseRunner

_PROVIDERS = {"CPU": "CPUExecutionProvider", "CUDA": "CUDAExecutionProvider", "GPU": "CUDAExecutionProvider"}


class OnnxRuntimeRunner(BaseRunner):
    name = "onnxruntime"

    def load_impl(self) -> None:
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        device = (self.device or "CPU").upper()
        if device not in _PROVIDERS:
            raise Sc2edgeError(f'onnxruntime: unknown device "{self.device}" (available: {", ".join(_PROVIDERS)})')
        provider = _PROVIDERS[device]
        if provider not in ort.get_available_providers():
            raise Sc2edgeError(f"onnxruntime: {provider} is not available here ({ort.get_available_providers()})")
        try:
            self.session = ort.InferenceSession(str(self.model_path), options, providers=[provider])
        except Exception as exc:  # ORT raises its own exception types for unreadable graphs
            raise Sc2edgeError(f"onnxruntime cannot load {self.model_path}: {exc}") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, {name: feed[name] for name in self.input_names})
        return dict(zip(self.output_names, values, strict=True))

    def close_impl(self) -> None:
        del self.session
