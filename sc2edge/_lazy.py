"""Import heavy optional dependencies only when used, with an error that names the install extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from sc2edge.errors import Sc2edgeError

# Which pip extra brings each optional module.
_EXTRAS = {
    "torch": "full",
    "torchvision": "full",
    "compressai": "full",
    "onnx": "full",
    "openvino": "openvino",
    "nncf": "full",
    "matplotlib": "full",
}
# Modules that no pip extra of ours brings.
_ELSEWHERE = {
    "tensorrt": "TensorRT comes from NVIDIA's package index (pip install tensorrt there) or with JetPack on Jetson",
}


def lazy_import(name: str) -> ModuleType:
    """Import ``name`` or raise Sc2edgeError saying which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = name.split(".")[0]
        hint = _ELSEWHERE.get(top) or f'install it with pip install "sc2edge[{_EXTRAS.get(top, "full")}]"'
        raise Sc2edgeError(f'"{name}" is needed here but cannot be imported ({exc}); {hint}') from exc
