"""Triton Python-backend model: the bundle's server graph (decoded latent -> the task's outputs) through
sc2edge's own backends, for tritonservers without the onnxruntime/openvino backends (e.g. nvidia-pytriton's).

Copied as ``model.py`` by ``sc2edge triton-repo``; the version directory holds ``bundle`` (manifest, tables and the
one server graph). The backend and precision come from the model's config parameters. Requests that Triton's
dynamic batcher hands over together run as one batch per latent shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from sc2edge.runtime import Bundle, create_runner, open_codec
from sc2edge.tasks import bundle_task


def _parameter(config: dict, key: str, default: str | None = None) -> str | None:
    return config.get("parameters", {}).get(key, {}).get("string_value", default)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        version_dir = Path(args["model_repository"]) / args["model_version"]
        bundle = Bundle.open(version_dir / "bundle")
        config = json.loads(args["model_config"])
        threads = _parameter(config, "threads")
        self.inputs = open_codec(bundle).server_inputs
        self.outputs = bundle_task(bundle).output_names
        self.runner = create_runner(_parameter(config, "backend", "onnxruntime"), bundle, "server",
                                    _parameter(config, "precision", "fp32"),
                                    threads=int(threads) if threads else None).activate()

    def execute(self, requests: list) -> list:
        feeds = [{name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs}
                 for r in requests]
        results: list = [None] * len(requests)
        by_shape: dict[tuple, list[int]] = {}
        for index, feed in enumerate(feeds):
            by_shape.setdefault(tuple(feed[name].shape[1:] for name in self.inputs), []).append(index)
        for indexes in by_shape.values():
            batch = {name: np.concatenate([feeds[i][name] for i in indexes]) for name in self.inputs}
            outputs = self.runner.infer(batch)
            start = 0
            for i in indexes:
                size = len(feeds[i][self.inputs[0]])
                results[i] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor(name, np.ascontiguousarray(outputs[name][start:start + size]))
                    for name in self.outputs])
                start += size
        return results

    def finalize(self) -> None:
        self.runner.close()
