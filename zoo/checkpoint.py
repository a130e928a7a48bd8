"""Load the checkpoints users really have, safely and completely.

Files from the paper's repository and sc2bench are torchdistill dicts (``model``, ``optimizer``, ``args``
as an ``argparse.Namespace``...). They load with ``weights_only=True`` once ``argparse.Namespace`` is
allow-listed; anything else the safe loader refuses needs the caller's explicit trust, because a pickle can
run code. Key layouts of both repositories and both CompressAI naming schemes are accepted.
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from sc2edge.errors import CheckpointError

# Prefixes that wrap the same modules: the paper's classifier (``backbone.``), its detectors
# (``backbone.body.``) and DataParallel (``module.``).
_WRAPPER_PREFIXES = ("module.", "backbone.body.", "backbone.")
# Constant buffers set in __init__ that older CompressAI versions did not save; the model's own are kept.
_CONSTANT_BUFFER_SUFFIXES = (".target", "likelihood_lower_bound.bound", ".pedestal", "lower_bound.bound")


def read_state_dict(path: str | Path, *, trust: bool = False) -> dict[str, Tensor]:
    """The model's parameters from a checkpoint file (.pt/.pth torchdistill dict, plain state dict or .safetensors).

    Args:
        path (str | Path): the checkpoint.
        trust (bool): allow full unpickling when the safe loader refuses the file. Defaults to False.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError) as exc:
        if not trust:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"{path} was refused by the safe loader ({first_line}). A checkpoint is a pickle and can run code: "
                "if you trust this file, pass --trust-checkpoint (trust_checkpoint=True)"
            ) from exc
        obj = torch.load(path, map_location="cpu", weights_only=False)
    return _state_dict_of(obj, path)


def _state_dict_of(obj: object, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state dict (expected a dict of tensors, or one under 'model')")
    return dict(obj)


def _strip_wrappers(state: Mapping[str, Tensor], expected: set[str]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        name = key
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix) and name not in expected:
                name = name[len(prefix):]
        out[name] = value
    return out


def load_into(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Load ``state`` into ``model`` completely, or raise CheckpointError listing what does not fit."""
    expected = set(model.state_dict())
    state = _strip_wrappers(state, expected)
    try:
        result = model.load_state_dict(state, strict=False)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint does not fit {type(model).__name__}: {exc}") from exc
    missing = [k for k in result.missing_keys if not k.endswith(_CONSTANT_BUFFER_SUFFIXES)]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys: {', '.join(sorted(missing)[:12])}")
    if result.unexpected_keys:
        problems.append(
            f"unexpected {len(result.unexpected_keys)} keys: {', '.join(sorted(result.unexpected_keys)[:12])}"
        )
    if problems:
        raise CheckpointError(f"checkpoint does not fit {type(model).__name__}: " + "; ".join(problems))
