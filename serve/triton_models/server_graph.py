"""Triton Python-backend model: one tail's server graph (the decoded latent, + the stream's image sizes for a task
that needs them -> the task's outputs) through sc2edge's own ``Decoder``, for tritonservers without the
onnxruntime/openvino backends (e.g. nvidia-pytriton's) and for tails whose server graph takes inputs that the task
makes from the image sizes (``Task.server_inputs``: segmentation's ``image_size``).

Copied as ``model.py`` by ``sc2edge triton-repo``; the version directory holds ``bundle`` (manifest, tables and the
one server graph). The backend and precision come from the model's config parameters. Each item's latent is checked
against this tail's own limits and its sizes turned into the task's inputs, as the tail's in-process ``Decoder``
does: a request whose item fails (e.g. a stream without the sizes segmentation needs) gets the one-line reason, the
other requests go on. Items that Triton's dynamic batcher hands over together run as one batch per latent shape and
task inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Decoder
from sc2edge.serve.wire import IMAGE_SIZES, row_sizes


def _parameter(config: dict, key: str, default: str | None = None) -> str | None:
    return config.get("parameters", {}).get(key, {}).get("string_value", default)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        version_dir = Path(args["model_repository"]) / args["model_version"]
        config = json.loads(args["model_config"])
        threads = _parameter(config, "threads")
        self.decoder = Decoder(version_dir / "bundle", _parameter(config, "backend", "onnxruntime"),
                               _parameter(config, "precision", "fp32"), threads=int(threads) if threads else None)
        self.latent = self.decoder.codec.server_inputs[0]
        self.sized = bool(self.decoder.task.extra_inputs)

    def items(self, request: object) -> list[tuple[np.ndarray, object, tuple]]:
        """One request -> per item: its latent, image sizes and batching key (latent shape and task inputs)."""
        latents = pb_utils.get_input_tensor_by_name(request, self.latent).as_numpy()
        rows = pb_utils.get_input_tensor_by_name(request, IMAGE_SIZES).as_numpy() if self.sized else None
        items = []
        for i, latent in enumerate(latents):
            self.decoder.codec.limits.check(latent.shape)
            sizes = row_sizes(rows[i]) if rows is not None else None
            extra = self.decoder.task.server_inputs(sizes)
            items.append((latent, sizes, (latent.shape, *((k, v.tobytes()) for k, v in sorted(extra.items())))))
        return items

    def execute(self, requests: list) -> list:
        results: list = [None] * len(requests)
        items: dict[int, list] = {}
        groups: dict[tuple, list[tuple[int, int]]] = {}
        for r, request in enumerate(requests):
            try:
                items[r] = self.items(request)
            except Sc2edgeError as exc:
                results[r] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
                continue
            for i, (_, _, key) in enumerate(items[r]):
                groups.setdefault(key, []).append((r, i))
        names = self.decoder.task.output_names
        outputs: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        for members in groups.values():
            r0, i0 = members[0]
            batch = np.stack([items[r][i][0] for r, i in members])
            produced = self.decoder.predict_outputs(batch, items[r0][i0][1])
            for j, member in enumerate(members):
                outputs[member] = {name: produced[name][j] for name in names}
        for r, parsed in items.items():
            per_item = [outputs[(r, i)] for i in range(len(parsed))]
            if any(item[name].shape != per_item[0][name].shape for item in per_item for name in names):
                results[r] = pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    "the items of one request give outputs of different shapes; send them in separate requests"))
                continue
            results[r] = pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, np.ascontiguousarray(np.stack([item[name] for item in per_item])))
                for name in names])
        return results

    def finalize(self) -> None:
        self.decoder.close()
