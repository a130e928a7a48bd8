"""Load the checkpoints users really have, safely and completely.

Files from the paper's repository and sc2bench are torchdistill dicts (``model``, ``optimizer``, ``args``
as an ``argparse.Namespace``...). They load with ``weights_only=True`` once ``argparse.Namespace`` is
allow-listed; anything else the safe loader refuses needs the caller's explicit trust, because a pickle can
run code. Key layouts of both repositories and both CompressAI naming schemes are accepted.
"""

from __future__ import annotations

import argparse
import io
import pickle
import pickletools
import re
import warnings
import zipfile
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


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL = 0x80  # the first byte of a pickle of protocol 2 or later (legacy torch.save files start so)
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_EXPECTED_MODULES = ("torch", "collections", "argparse", "_codecs", "numpy")  # what checkpoints normally name


def _check_container(path: Path) -> None:
    """Refuse what is not a torch checkpoint at all (empty, truncated, another zip, random bytes) before loading."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes)")
    if head == _ZIP_MAGIC:
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path} is truncated or corrupt: a zip archive without its central directory")
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("/data.pkl") for name in archive.namelist()):
                raise CheckpointError(f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl inside)")
    elif head[0] != _PICKLE_PROTOCOL:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither a torch zip archive nor a pickle; "
                              f"it starts with {head!r})")


def _pickle_globals(path: Path) -> list[str]:
    """The callables/classes a checkpoint's pickles name (``module.name``), read without unpickling anything."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            blobs = [archive.read(n) for n in archive.namelist() if n.endswith("/data.pkl")]
    else:
        blobs = [path.read_bytes()]
    found: list[str] = []
    for blob in blobs:
        stream, strings = io.BytesIO(blob), []
        try:
            while stream.tell() < len(blob):  # legacy torch.save files hold several pickles in a row
                for opcode, arg, _ in pickletools.genops(stream):
                    if opcode.name == "GLOBAL":
                        found.append(str(arg).replace(" ", "."))
                    elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
                    elif isinstance(arg, str):
                        strings.append(arg)
        except ValueError:  # raw tensor bytes after the pickles, or a damaged pickle: stop reading
            pass
    return list(dict.fromkeys(found))


def _refusal(path: Path, exc: Exception) -> CheckpointError:
    """What the safe loader refused, by name (e.g. ``posix.system``), and what trusting the file means."""
    named = _REFUSED_GLOBAL.findall(str(exc))
    if not named:
        named = [g for g in _pickle_globals(path) if not g.startswith(_EXPECTED_MODULES)]
    what = f"it names {', '.join(named[:5])}" if named else "it holds objects outside the allow-list"
    return CheckpointError(
        f"{path} was refused by the safe loader: {what}. A checkpoint is a pickle and can run code: if you trust "
        "this file, pass --trust-checkpoint (trust_checkpoint=True)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


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
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file ({_first_line(exc)})") from exc
    _check_container(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise CheckpointError(f"{path} is corrupt or not a PyTorch checkpoint ({_first_line(exc)})") from exc
        if not trust:
            raise _refusal(path, exc) from exc
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as unsafe_exc:  # anything a trusted pickle raises is still one line for the user
            raise CheckpointError(f"{path} cannot be loaded ({_first_line(unsafe_exc)})") from unsafe_exc
    except Exception as exc:  # torch reports damage as RuntimeError, EOFError, IndexError, KeyError...
        raise CheckpointError(f"{path} is corrupt or not a PyTorch checkpoint ({_first_line(exc)})") from exc
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
