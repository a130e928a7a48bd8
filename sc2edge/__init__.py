"""sc2edge: deploy and measure supervised-compression (split computing) models.

The import package is light on purpose: ``sc2edge.runtime`` runs on devices without torch, so nothing
here imports torch, ONNX or OpenVINO. Subpackages: ``zoo`` (PyTorch models and checkpoints), ``export``
(ONNX/OpenVINO/TensorRT bundles), ``runtime`` (deployable encoder/decoder), ``calibrate`` (INT8) and
``bench`` (measurements and reports).
"""

from sc2edge.errors import Sc2edgeError

__version__ = "0.1.0"
__all__ = ["Sc2edgeError", "__version__"]
