"""The data half of the model registry: ``models.yaml`` entries, the default model and where weights are.

Torch-free, so ``sc2edge models`` answers on a runtime-only install and in a fraction of a second;
``sc2edge.zoo.registry`` adds the builders (PyTorch) and re-exports these names.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sc2edge._files import sha256_file
from sc2edge.errors import CheckpointError, Sc2edgeError
from sc2edge.runtime.manifest import PreprocessSpec


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


def _registry() -> dict[str, Any]:
    text = resources.files("sc2edge").joinpath("models.yaml").read_text()
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml's parser when built


def load_specs() -> dict[str, ModelSpec]:
    raw = _registry()
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
    return _registry()["default"]


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
        path = _zoo_folder() / ckpt.path
        if not path.is_file():
            raise CheckpointError(f"packaged weights for {spec.name} are missing: {path}")
        return path
    path = Path(ckpt.path)
    return path if path.is_file() else None


def _zoo_folder() -> Path:
    """Where the ``sc2edge.zoo`` package's files are, found without importing it (its ``__init__`` imports torch)."""
    spec = importlib.util.find_spec("sc2edge.zoo")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("the sc2edge.zoo package is missing from this install")
    return Path(next(iter(spec.submodule_search_locations)))


def verify_sha256(path: Path, expected: str | None) -> str:
    digest = sha256_file(path)
    if expected and digest != expected:
        raise CheckpointError(f"{path} has sha256 {digest[:16]}..., the registry expects {expected[:16]}...")
    return digest
