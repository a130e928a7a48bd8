"""Named models: builders registered in code, variants (betas, checkpoints, preprocessing) in models.yaml.

``models.yaml`` is data only. Each entry names a ``builder`` registered here with ``@register_builder``;
a test checks that every entry has a builder and every builder is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sc2edge._files import sha256_file
from sc2edge.errors import CheckpointError, Sc2edgeError
from sc2edge.runtime.manifest import PreprocessSpec

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


@dataclass(frozen=True)
class Checkpoint:
    """Where a variant's weights are and what they reach; ``path`` is relative to the repo or the CWD."""

    path: str | None
    sha256: str | None = None
    packaged: bool = False  # shipped inside sc2edge (zoo/weights), loaded from the installed package
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: str
    task: str
    num_classes: int
    beta: float | None
    preprocess: PreprocessSpec
    checkpoint: Checkpoint
    labels: str | list[str] | None
    description: str
    builder_args: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def _registry_text() -> str:
    return resources.files("sc2edge").joinpath("models.yaml").read_text()


def load_specs() -> dict[str, ModelSpec]:
    raw = yaml.safe_load(_registry_text())
    specs = {}
    for name, entry in raw["models"].items():
        ckpt = dict(entry.get("checkpoint") or {})
        specs[name] = ModelSpec(
            name=name,
            builder=entry["builder"],
            task=entry.get("task", "classification"),
            num_classes=int(entry["num_classes"]),
            beta=entry.get("beta"),
            preprocess=PreprocessSpec.from_json(entry["preprocess"], f"models.yaml {name}.preprocess"),
            checkpoint=Checkpoint(path=ckpt.get("path"), sha256=ckpt.get("sha256"),
                                  packaged=bool(ckpt.get("packaged", False)), meta=dict(ckpt.get("meta") or {})),
            labels=entry.get("labels"),
            description=entry.get("description", ""),
            builder_args=dict(entry.get("builder_args") or {}),
            meta=dict(entry.get("meta") or {}),
        )
    return specs


def default_model_name() -> str:
    return yaml.safe_load(_registry_text())["default"]


def list_models(include: str | None = None) -> list[str]:
    """Names of registered models, optionally filtered by a substring."""
    return sorted(n for n in load_specs() if include is None or include in n)


def get_spec(name: str) -> ModelSpec:
    specs = load_specs()
    if name not in specs:
        raise Sc2edgeError(f'unknown model "{name}" (available: {", ".join(sorted(specs))})')
    return specs[name]


def resolve_checkpoint(spec: ModelSpec, override: str | Path | None) -> Path | None:
    """The checkpoint file to load: the user's, the packaged one, or the registry path if it exists."""
    if override is not None:
        if not Path(override).is_file():
            raise CheckpointError(f"checkpoint not found: {override}")
        return Path(override)
    ckpt = spec.checkpoint
    if ckpt.path is None:
        return None
    if ckpt.packaged:
        path = Path(str(resources.files("sc2edge.zoo").joinpath(ckpt.path)))
        if not path.is_file():
            raise CheckpointError(f"packaged weights for {spec.name} are missing: {path}")
        return path
    path = Path(ckpt.path)
    return path if path.is_file() else None


def verify_sha256(path: Path, expected: str | None) -> str:
    digest = sha256_file(path)
    if expected and digest != expected:
        raise CheckpointError(f"{path} has sha256 {digest[:16]}..., the registry expects {expected[:16]}...")
    return digest


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
