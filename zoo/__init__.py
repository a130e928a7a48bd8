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
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime.entropy import latent_size  # one definition, shared with the runtime
from sc2edge.zoo import (  # noqa: F401  (register builders)
    bq,
    detection_student,
    efficientnet_student,
    entropic_student,
    fashion_mnist,
    hyperprior_student,
    learned_codecs,
    segmentation_student,
)
from sc2edge.zoo.checkpoint import load_into, read_state_dict
from sc2edge.zoo.entropic_student import SplitClassifier
from sc2edge.zoo.registry import (
    _BUILDERS,
    _REFERENCES,
    ModelSpec,
    ReferenceModel,
    class_names,
    default_model_name,
    get_spec,
    list_builders,
    list_models,
    load_specs,
    reference_builders,
    register_builder,
    register_reference,
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


def get_reference(name: str, *, checkpoint: str | Path | None = None,
                  trust_checkpoint: bool = False) -> ReferenceModel:
    """The unmodified model that the registered model ``name`` replaces (its teacher), image -> logits.

    Args:
        name (str): a registered model name.
        checkpoint (str | Path | None): the reference's weights, instead of what its builder provides.
            Defaults to None.
        trust_checkpoint (bool): allow unpickling a file the safe loader refuses. Defaults to False.

    Random weights (when its builder has none) are deterministic (seed 0), as for ``get_model``.
    """
    spec = get_spec(name)
    accessor = _REFERENCES.get(spec.builder)
    if accessor is None:
        raise Sc2edgeError(f'no reference model is known for {name} (builder "{spec.builder}")')
    with torch.random.fork_rng():
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        reference = accessor(spec)
    if checkpoint is not None:
        path = resolve_checkpoint(spec, checkpoint)
        load_into(reference.module, read_state_dict(path, trust=trust_checkpoint))
        reference.trained, reference.weights, reference.weights_sha256 = True, path, verify_sha256(path, None)
    reference.module.eval()
    return reference


__all__ = [
    "LoadedModel", "ModelSpec", "ReferenceModel", "SplitClassifier", "build", "class_names",
    "default_model_name", "get_model", "get_reference", "get_spec", "latent_size", "list_builders", "list_models",
    "load_into", "load_specs", "read_state_dict", "reference_builders", "register_builder", "register_reference",
    "sha256_file",
]
