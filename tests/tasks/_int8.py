"""What an INT8 graph runs in INT8, for the tasks' server INT8 tests."""

from __future__ import annotations

from pathlib import Path


def quantized_op_types(graph: Path) -> set[str]:
    """Op types whose output ONNX Runtime quantizes (a QuantizeLinear reads it): what runs in INT8."""
    import onnx

    model = onnx.load(str(graph))
    quantized = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    return {n.op_type for n in model.graph.node if set(n.output) & quantized}


def fake_quantize_readers(xml: Path) -> set[str]:
    """Op types an OpenVINO INT8 IR's FakeQuantize nodes feed: what runs in INT8 there (ShapeOf, which reads the
    shape only, left out)."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    return {target.get_node().get_type_name() for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"
            for target in op.output(0).get_target_inputs()} - {"ShapeOf"}
