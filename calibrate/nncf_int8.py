"""OpenVINO INT8 with NNCF: ``nncf.quantize`` (``CalibConfig.nncf_preset``; PERFORMANCE, symmetric int8
activations, suits GDN's signed activations better than MIXED here), or ``quantize_with_accuracy_control``.

Weights follow ``CalibConfig.recipe``: "portable" is ``OverflowFix.ENABLE`` (7-bit weights in every layer: the
CPU plugin's output equals its float simulation on x86 without VNNI too); NNCF's default ``FIRST_LAYER`` fixes
only the first conv, and the latent conv still saturates there. "vnni" is ``OverflowFix.DISABLE`` (8-bit).
Encoders get NNCF's full ``BiasCorrection`` (``full_bias_correction``), not its fast default: on the
EfficientNet student's 12 held-out photos x 16 crops it kept top-1 agreement with FP32 at 96.9 % instead of
94.3 % (symbols changed 2.29 % vs 2.40 %); on Fashion-MNIST (1,000 test images) accuracy 81.3-81.5 vs 81.7 %,
FP32 82.1 %. It runs the model layer by layer, minutes on a deep server graph, which keeps the fast one.

GDN's ``Divide`` (and inverse GDN's ``Multiply``) stay float with unquantized inputs. With both of their
activation inputs quantized (NNCF's default), OpenVINO 2026.4's CPU plugin outputs ~1e-7 instead of x / norm
(x * norm): the encoder emits all-zero symbols (fast, and useless: that is what an INT8 encoder "at 1.0 ms"
was) and the server's logits are noise. ``FLOAT_OP_TYPES`` names what stays float.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sc2edge._lazy import lazy_import
from sc2edge.calibrate.config import CalibConfig
from sc2edge.errors import Sc2edgeError

FLOAT_OP_TYPES = ("Divide", "Multiply")

# (compiled model, validation items) -> metric (higher is better), as NNCF's accuracy control expects.
ValidationFn = Callable[[Any, Sequence[Any]], float]


def quantize_openvino(model: str | Path, out_xml: str | Path, feeds: Sequence[dict[str, np.ndarray]],
                      config: CalibConfig, *, max_drop: float | None = None,
                      validation: tuple[Sequence[Any], ValidationFn] | None = None,
                      full_bias_correction: bool = False) -> Path:
    """Quantize an OpenVINO model (IR or ONNX) to INT8 and save it as IR.

    Args:
        model (str | Path): the FP32 graph (``.xml`` or ``.onnx``).
        out_xml (str | Path): the ``.xml`` file to write.
        feeds (Sequence[dict]): calibration inputs (input name -> batch of one), the same images ORT uses.
        config (CalibConfig): ``exclude`` names nodes kept in float. ``samples`` caps the subset size.
        max_drop (float | None): largest allowed metric drop; needs ``validation``. Defaults to None.
        validation (tuple | None): (items, fn) for accuracy control: items are (model input, target) pairs,
            fn(compiled_model, items) -> metric, higher is better. Defaults to None.
        full_bias_correction (bool): NNCF's full BiasCorrection instead of FastBiasCorrection (the encoder's
            choice; slow on deep graphs). Defaults to False.
    """
    config = config.validate()
    ov, nncf = lazy_import("openvino"), lazy_import("nncf")
    if not feeds:
        raise Sc2edgeError("no calibration data for NNCF: the image set is empty")
    ov_model = ov.Core().read_model(str(model))
    dataset = nncf.Dataset(list(feeds))
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    overflow_fix = OverflowFix.ENABLE if config.seven_bit_weights else OverflowFix.DISABLE
    advanced = AdvancedQuantizationParameters(overflow_fix=overflow_fix)
    options: dict[str, Any] = {
        "preset": nncf.QuantizationPreset(config.nncf_preset), "subset_size": min(config.samples, len(feeds)),
        "fast_bias_correction": not full_bias_correction,
        "ignored_scope": nncf.IgnoredScope(names=list(config.exclude), types=list(FLOAT_OP_TYPES), validate=False),
    }
    if max_drop is None:
        quantized = nncf.quantize(ov_model, dataset, **options, advanced_parameters=advanced)
    else:
        if validation is None:
            raise Sc2edgeError("accuracy control (max_drop) needs validation images")
        items, fn = validation
        quantized = nncf.quantize_with_accuracy_control(
            ov_model, dataset, nncf.Dataset(list(items), lambda item: item[0]), validation_fn=fn, max_drop=max_drop,
            drop_type=nncf.DropType.ABSOLUTE, advanced_quantization_parameters=advanced, **options)
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    return Path(out_xml)
