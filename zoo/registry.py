"""Named models: builders registered in code, variants (betas, checkpoints, preprocessing) in models.yaml.

``models.yaml`` is data only. Each entry names a ``builder`` registered here with ``@register_builder``;
a test checks that every entry has a builder and every builder is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The registry's data half is torch-free (``sc2edge models`` reads it without the zoo); re-exported here.
from sc2edge.model_specs import (  # noqa: F401
    Checkpoint,
    ModelSpec,
    default_model_name,
    get_spec,
    list_models,
    load_specs,
    resolve_checkpoint,
    verify_sha256,
)

_BUILDERS: dict[str, Callable[..., Any]] = {}


def register_builder(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a model builder under ``name``; a second registration of the same name is an error."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _BUILDERS:
            raise ValueError(f'builder "{name}" is already registered')
        _BUILDERS[name] = fn
        return fn

    return wrap


def list_builders() -> list[str]:
    return sorted(_BUILDERS)


@dataclass
class ReferenceModel:
    """The unmodified model a split model replaces (its teacher): image -> logits, for the baselines.

    ``weights`` says where the weights came from (a file, or None for deterministic random weights).
    """

    module: Any  # torch.nn.Module in eval mode, same input and preprocessing as the student
    name: str
    description: str
    trained: bool
    weights: Path | None = None
    weights_sha256: str | None = None


_REFERENCES: dict[str, Callable[..., ReferenceModel]] = {}


def register_reference(builder: str) -> Callable[[Callable[..., ReferenceModel]], Callable[..., ReferenceModel]]:
    """Register the accessor of ``builder``'s reference model: ``fn(spec: ModelSpec) -> ReferenceModel``."""

    def wrap(fn: Callable[..., ReferenceModel]) -> Callable[..., ReferenceModel]:
        if builder in _REFERENCES:
            raise ValueError(f'a reference for builder "{builder}" is already registered')
        _REFERENCES[builder] = fn
        return fn

    return wrap


def reference_builders() -> list[str]:
    """Builders whose reference model is known."""
    return sorted(_REFERENCES)


# ImageNet class names ship with Debian's opencv-doc (installed by scripts/setup-env.sh).
IMAGENET_CLASS_FILE = Path("/usr/share/doc/opencv-doc/examples/data/dnn/classification_classes_ILSVRC2012.txt")


def class_names(spec: ModelSpec) -> list[str] | None:
    """The model's class names: a list in models.yaml, or "imagenet" read from the offline class file."""
    if isinstance(spec.labels, list):
        names = [str(n) for n in spec.labels]
    elif spec.labels == "imagenet" and IMAGENET_CLASS_FILE.is_file():
        names = [line.strip() for line in IMAGENET_CLASS_FILE.read_text().splitlines() if line.strip()]
    else:
        return None
    return names if len(names) == spec.num_classes else None
