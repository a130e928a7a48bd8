"""PyTorch definitions of the supported split models, their registry and safe checkpoint loading.

This is the only subpackage (with ``export`` and the PyTorch parts of ``bench``/``calibrate``) that needs
torch; the runtime never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from compressai.entropy_models import EntropyModel

from sc2edge._files import sha256_file
from sc2edge.runtime.entropy import latent_size  # one definition, shared with the runtime
from sc2edge.zoo import (  # noqa: F401  (register builders)
    efficientnet_student,
    entropic_student,
    fashion_mnist,
    hyperprior_student,
)
from sc2edge.zoo.checkpoint import load_into, read_state_dict
from sc2edge.zoo.entropic_student import SplitClassifier
from sc2edge.zoo.registry import (
    _BUILDERS,
    ModelSpec,
    Preprocess,
    class_names,
    default_model_name,
    get_spec,
    list_builders,
    list_models,
    load_specs,
    register_builder,
    resolve_checkpoint,
    verify_sha256,
)

RANDOM_WEIGHTS_SEED = 0


@dataclass
class LoadedModel:
    """A model ready for export: the network in eval mode, its registry entry, and where its weights came from."""

    model: SplitClassifier
    spec: ModelSpec
    trained: bool
    checkpoint_path: Path | None
    checkpoint_sha256: str | None


def build(spec: ModelSpec) -> SplitClassifier:
    return _BUILDERS[spec.builder](num_classes=spec.num_classes, **spec.builder_args)


def _tables_missing(model: SplitClassifier) -> bool:
    """Whether any entropy model (bottleneck or Gaussian conditional) lacks its CDF tables."""
    return any(module._quantized_cdf.numel() == 0 for module in model.modules() if isinstance(module, EntropyModel))


def get_model(
    name: str, *, checkpoint: str | Path | None = None, trust_checkpoint: bool = False
) -> LoadedModel:
    """Build a registered model with its weights.

    Args:
        name (str): a name from ``models.yaml`` (``sc2edge models`` lists them).
        checkpoint (str | Path | None): weights to load instead of the registry's. Defaults to None.
        trust_checkpoint (bool): allow unpickling a file the safe loader refuses. Defaults to False.

    Without any checkpoint the model gets deterministic random weights (seed 0) and is marked untrained.
    """
    spec = get_spec(name)
    path = resolve_checkpoint(spec, checkpoint)
    if path is None:
        with torch.random.fork_rng():
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = build(spec)
        model.update(force=True)
        return LoadedModel(model.eval(), spec, trained=False, checkpoint_path=None, checkpoint_sha256=None)
    digest = verify_sha256(path, spec.checkpoint.sha256 if checkpoint is None else None)
    model = build(spec)
    load_into(model, read_state_dict(path, trust=trust_checkpoint))
    if _tables_missing(model):
        model.update(force=True)  # a checkpoint saved before update(): tables are computed once, here
    return LoadedModel(model.eval(), spec, trained=True, checkpoint_path=path, checkpoint_sha256=digest)


__all__ = [
    "LoadedModel", "ModelSpec", "Preprocess", "SplitClassifier", "build", "class_names", "default_model_name",
    "get_model", "get_spec", "latent_size", "list_builders", "list_models", "load_into", "load_specs",
    "read_state_dict", "register_builder", "sha256_file",
]
