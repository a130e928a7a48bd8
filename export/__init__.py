"""Trace a trained split model's device and server parts to deployable graphs, validated against PyTorch,
and write them with the entropy tables as a bundle."""

from sc2edge.export.pipeline import ExportConfig, export_bundle
from sc2edge.export.validate import Tolerance, ValidationResult, validate_bundle

__all__ = ["ExportConfig", "Tolerance", "ValidationResult", "export_bundle", "validate_bundle"]
