"""What the Triton tests share: the variant a CPU tritonserver serves, a model's config parsed by Triton's own
protobuf definitions, and one tritonserver per module on loopback over the repositories the module writes (its
``repositories`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from sc2edge.serve import TritonRepository

VARIANT = "python"  # the pytriton tritonserver has the Python backend only


def parsed_config(repository: TritonRepository, model: str) -> Any:
    """``model``'s config.pbtxt in ``repository`` as a Triton ModelConfig (tritonclient brings the protobuf)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse((repository.path / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def server(repositories: Sequence[TritonRepository]) -> Iterator[Any]:
    """A tritonserver serving the ``VARIANT`` models of every repository the module writes (skipped where none is
    installed)."""
    from sc2edge.serve.server import TritonServer, find_tritonserver

    if find_tritonserver() is None:
        pytest.skip("no tritonserver: scripts/setup-triton.sh installs one (nvidia-pytriton, from PyPI)")
    models = [model for repository in repositories for model in repository.load_list(VARIANT)]
    with TritonServer([repository.path for repository in repositories], models, timeout=120) as running:
        yield running
