"""What to calibrate and how, validated in one place (``CalibConfig.validate``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from sc2edge.errors import Sc2edgeError

METHODS = ("minmax", "entropy", "percentile")
NNCF_PRESETS = ("performance", "mixed")
TARGETS = ("onnxruntime", "tensorrt")
# INT8 weight recipes. "portable": 7-bit weights (ONNX Runtime reduce_range, NNCF OverflowFix.ENABLE), the same
# integers on every CPU, VPMADDUBSW's saturating int16 path included. "vnni": full 8-bit weights, exact only
# where the multiply accumulates in int32 (AVX-512 VNNI, AVX-VNNI, AMX, ARM dot product).
RECIPES = {
    "portable": "7-bit weights: no int16 saturation on x86 without VNNI; same integers on every CPU",
    "vnni": "full 8-bit weights for a known VNNI/AMX/ARM-dot-product target; saturates on x86 without VNNI",
}
DEFAULT_SAMPLES = 300  # what NNCF recommends; ORT and TensorRT calibrate well with the same


@dataclass(frozen=True)
class CalibConfig:
    """Post-training INT8 settings shared by ONNX Runtime, TensorRT-ready Q/DQ and NNCF.

    The defaults are the form that makes ONNX Runtime's INT8 encoder faster than FP32 on x86: QDQ with uint8
    activations and per-channel int8 weights on Conv only (GDN's Abs/Div stay float between Q/DQ pairs).
    ORT's own default (int8 activations) leaves the convs whose output feeds both GDN branches unfused,
    running in float on dequantized weights, which made INT8 about twice as slow as FP32.

    Args:
        method (str): range estimation, "minmax", "entropy" (KL) or "percentile". Percentile kept the ES
            encoder's latent best on held-out photos (SQNR 13.9 dB vs 9.7 entropy, 9.3 minmax). Defaults to
            "percentile".
        samples (int): calibration images. Defaults to 300.
        seed (int): seed of the image selection. Defaults to 0.
        per_channel (bool): one weight scale per output channel. Defaults to True.
        op_types (tuple[str, ...]): ONNX op types to quantize. Defaults to ("Conv",).
        exclude (tuple[str, ...]): node names kept in float (accuracy control). Defaults to ().
        num_bins (int): histogram bins for "entropy"/"percentile". Defaults to 2048.
        num_quantized_bins (int): target bins of the entropy (KL) search; must be below ``num_bins``
            or the search has nothing to clip and returns the MinMax range. Defaults to 128.
        percentile (float): kept share of the histogram for "percentile". Defaults to 99.99.
        recipe (str): weight range, "portable" (7-bit weights, exact on every CPU) or "vnni" (full 8-bit,
            for a VNNI/AMX/ARM-dot-product target only); see ``RECIPES``. Defaults to "portable".
        batch (int): images per calibration run (bounds the memory of collected tensors). Defaults to 8.
        nncf_preset (str): NNCF preset for OpenVINO, "performance" (symmetric activations) or "mixed"
            (asymmetric). On the ES encoder "performance" kept 2-3x more of the latent (SQNR 10.5 vs 5.8 dB
            on held-out photos) at the same speed. Defaults to "performance".
    """

    method: str = "percentile"
    samples: int = DEFAULT_SAMPLES
    seed: int = 0
    per_channel: bool = True
    op_types: tuple[str, ...] = ("Conv",)
    exclude: tuple[str, ...] = ()
    num_bins: int = 2048
    num_quantized_bins: int = 128
    percentile: float = 99.99
    recipe: str = "portable"
    batch: int = 8
    nncf_preset: str = "performance"

    def validate(self) -> CalibConfig:
        """Check every field and combination; returns the config with tuples normalized."""
        method = self.method.lower()
        if method not in METHODS:
            raise Sc2edgeError(f'unknown calibration method "{self.method}" (available: {", ".join(METHODS)})')
        if self.samples < 1:
            raise Sc2edgeError(f"calibration samples must be positive, got {self.samples}")
        if self.batch < 1:
            raise Sc2edgeError(f"calibration batch must be positive, got {self.batch}")
        if self.recipe not in RECIPES:
            raise Sc2edgeError(f'unknown INT8 recipe "{self.recipe}" (available: {", ".join(RECIPES)})')
        if self.nncf_preset not in NNCF_PRESETS:
            raise Sc2edgeError(f'unknown NNCF preset "{self.nncf_preset}" (available: {", ".join(NNCF_PRESETS)})')
        if not self.op_types:
            raise Sc2edgeError("op_types is empty: nothing would be quantized")
        if method == "entropy" and not 1 < self.num_quantized_bins < self.num_bins:
            raise Sc2edgeError(f"entropy calibration needs 1 < num_quantized_bins ({self.num_quantized_bins}) < "
                               f"num_bins ({self.num_bins}); equal values reproduce MinMax")
        if method in ("entropy", "percentile") and self.num_bins < 16:
            raise Sc2edgeError(f"num_bins must be at least 16 for {method} calibration, got {self.num_bins}")
        if method == "percentile" and not 50.0 < self.percentile <= 100.0:
            raise Sc2edgeError(f"percentile must be in (50, 100], got {self.percentile}")
        return replace(self, method=method, op_types=tuple(self.op_types), exclude=tuple(self.exclude))

    def calibrator_options(self) -> dict[str, Any]:
        """Keyword options for onnxruntime's ``create_calibrator`` (which ``quantize_static`` does not forward)."""
        if self.method == "entropy":
            return {"num_bins": self.num_bins, "num_quantized_bins": self.num_quantized_bins}
        if self.method == "percentile":
            return {"num_bins": self.num_bins, "percentile": self.percentile}
        return {}

    @property
    def seven_bit_weights(self) -> bool:
        """ONNX Runtime's ``reduce_range`` / NNCF's ``OverflowFix.ENABLE``: weights in [-64, 64]."""
        return self.recipe == "portable"

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> CalibConfig:
        """A config stored in a bundle; records written before recipes had ``reduce_range`` (False: 8-bit)."""
        record = dict(record)
        legacy = record.pop("reduce_range", None)
        if legacy is not None and "recipe" not in record:
            record["recipe"] = "portable" if legacy else "vnni"
        return cls(**record).validate()

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "op_types": list(self.op_types), "exclude": list(self.exclude)}
