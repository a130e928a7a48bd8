"""OpenVINO IR from the exported ONNX graphs: FP32, or FP16-compressed weights (decompressed at load on CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sc2edge._lazy import lazy_import


def to_openvino(onnx_path: str | Path, xml_path: str | Path, *, fp16: bool = False) -> Path:
    """Convert an ONNX graph to OpenVINO IR (``.xml`` + ``.bin`` beside it).

    Args:
        onnx_path (str | Path): the ONNX graph (FP32, or a Q/DQ INT8 graph, which OpenVINO maps to its
            FakeQuantize form).
        xml_path (str | Path): the ``.xml`` file to write.
        fp16 (bool): store weights as FP16 (half the file; computation precision is the device's choice).
            Defaults to False.
    """
    ov = lazy_import("openvino")
    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    return Path(xml_path)


def add_openvino_artifacts(builder: Any, roles: tuple[str, ...] = ("device", "server")) -> None:
    """Hook for ``export_bundle``: FP32 and FP16-weight IR of each role's ``<role>.fp32.onnx`` in the staging dir."""
    for role in roles:
        source = builder.staging / f"{role}.fp32.onnx"
        for precision, fp16 in (("fp32", False), ("fp16", True)):
            xml = to_openvino(source, builder.staging / f"{role}.{precision}.xml", fp16=fp16)
            builder.add_artifact(role, "openvino", precision, xml.name,
                                 {"weights": xml.with_suffix(".bin").name, "source": source.name,
                                  "compress_to_fp16": fp16})
