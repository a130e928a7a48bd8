"""ONNX Runtime backend (CPU by default; CUDA where the GPU build is installed).

Settings measured on a 2-core AVX2 CPU (docs/DESIGN.md, "Runtime settings"): ORT_ENABLE_ALL (its NCHWc layout
transform made the encoders 10-20x faster than ORT_ENABLE_EXTENDED); worker threads do not spin by default;
with ``cache_dir`` the optimized graph is saved once and later sessions load it without optimizing again. The
memory pattern (pre-planned activation blocks) is off: peak RSS 84 instead of 94 MB on ES ResNet-50's encoder
(74 instead of 76 MB on the default model) at the same CPU time per image; the arena stays on (off: +15 MB).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.backends.base import BaseRunner

_PROVIDERS = {"CPU": "CPUExecutionProvider", "CUDA": "CUDAExecutionProvider", "GPU": "CUDAExecutionProvider"}


class OnnxRuntimeRunner(BaseRunner):
    name = "onnxruntime"

    def _optimized_path(self, provider: str) -> Path | None:
        """The cached optimized graph for this file, runtime version, provider and thread count (a cache serves one
        machine: ORT_ENABLE_ALL writes CPU-specific layouts)."""
        if self.cache_dir is None:
            return None
        stat = self.model_path.stat()
        key = "|".join(map(str, (self.model_path.resolve(), stat.st_size, stat.st_mtime_ns, ort.__version__, provider,
                                 self.threads)))
        return self.cache_dir / f"{self.model_path.stem}.{hashlib.sha256(key.encode()).hexdigest()[:16]}.ort.onnx"

    def load_impl(self) -> None:
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        if not self.spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_mem_pattern = False
        device = (self.device or "CPU").upper()
        if device not in _PROVIDERS:
            raise Sc2edgeError(f'onnxruntime: unknown device "{self.device}" (available: {", ".join(_PROVIDERS)})')
        provider = _PROVIDERS[device]
        if provider not in ort.get_available_providers():
            raise Sc2edgeError(f"onnxruntime: {provider} is not available here ({ort.get_available_providers()})")
        graph = self.model_path
        optimized = self._optimized_path(provider)
        if optimized is not None and optimized.is_file():
            graph = optimized  # optimized already: load it as it is
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        elif optimized is not None:
            optimized.parent.mkdir(parents=True, exist_ok=True)
            # A private name, renamed into place once the session exists: a reader never sees half a file.
            options.optimized_model_filepath = str(optimized.with_suffix(f".{os.getpid()}.tmp"))
            options.log_severity_level = 3  # its warning "hardware specific" is why the cache is per machine
        if self.quiet:
            options.log_severity_level = 4  # fatal only
        try:
            self.session = ort.InferenceSession(str(graph), options, providers=[provider])
        except Exception as exc:  # ORT raises its own exception types for unreadable graphs
            raise Sc2edgeError(f"onnxruntime cannot load {self.model_path}: {exc}") from exc
        if options.optimized_model_filepath:
            os.replace(options.optimized_model_filepath, optimized)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, {name: feed[name] for name in self.input_names})
        return dict(zip(self.output_names, values, strict=True))

    def close_impl(self) -> None:
        del self.session
