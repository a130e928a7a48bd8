"""INT8 for sc2edge bundles: calibration data, ONNX Runtime QDQ, TensorRT-ready Q/DQ, NNCF for OpenVINO,
and ``check_quant`` (what INT8 costs in accuracy and rate)."""

from sc2edge.calibrate.accuracy import control_accuracy
from sc2edge.calibrate.check import LayerError, QuantReport, check_quant, sqnr_db
from sc2edge.calibrate.config import CalibConfig
from sc2edge.calibrate.data import ImageSet, calibration_set, control_set, held_out_set, select_images

__all__ = ["CalibConfig", "ImageSet", "LayerError", "QuantReport", "calibration_set", "check_quant", "control_accuracy",
           "control_set", "held_out_set", "select_images", "sqnr_db"]
