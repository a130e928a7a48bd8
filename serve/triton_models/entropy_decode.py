"""Triton Python-backend model: sc2edge streams (BYTES) -> the server graphs' latent input (the decoded latent) and,
when the config asks for ``image_sizes``, the image sizes each stream carries (zeros when it carries none).

Copied as ``model.py`` into the entropy-decode model of a repository that ``sc2edge triton-repo`` writes. It
decodes with sc2edge's own runtime (``sc2edge.runtime.open_codec``: container, CRC, table hashes and latent limits
checked before any payload is decoded), from the tables bundle in its version directory (``<version>/bundle``, a
bundle holding the manifest, entropy tables and side files, no graphs; its latent limits are the union of the
tails'). A hyperprior's side network runs here, in sc2edge's deterministic index path (its C extension where the
server's Python has it built). The server's Python environment must import ``sc2edge.runtime``
(``pip install "sc2edge[runtime]"``; see README "Serving on Triton").
A bad stream fails its own request with the runtime's one-line reason; the other requests of the batch go on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle, open_codec
from sc2edge.serve.wire import IMAGE_SIZES, STREAM_INPUT, sizes_row


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.codec = open_codec(Bundle.open(version_dir / "bundle"))
        config = json.loads(args["model_config"])
        self.dtypes = {o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]}

    def decode(self, streams: np.ndarray) -> list[pb_utils.Tensor]:
        """One request's streams (N x 1 BYTES) -> its named server inputs (+ image sizes), stacked over N."""
        decoded = [self.codec.decompress_sized(bytes(stream)) for stream in streams.reshape(-1)]
        items = [inputs for inputs, _ in decoded]
        tensors = []
        for name in self.codec.server_inputs:
            arrays = [item[name] for item in items]
            if any(a.shape != arrays[0].shape for a in arrays):
                raise Sc2edgeError("the streams of one request decode to latents of different shapes; send them "
                                   "in separate requests")
            tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(np.stack(arrays), dtype=self.dtypes[name])))
        if IMAGE_SIZES in self.dtypes:
            tensors.append(pb_utils.Tensor(IMAGE_SIZES, np.stack([sizes_row(sizes) for _, sizes in decoded])))
        return tensors

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            streams = pb_utils.get_input_tensor_by_name(request, STREAM_INPUT).as_numpy()
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=self.decode(streams)))
            except Sc2edgeError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses
