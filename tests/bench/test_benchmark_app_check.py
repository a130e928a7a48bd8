"""The benchmark_app comparison runs both tools on the same compiled configuration (no timing assertions)."""

from __future__ import annotations

import json

from sc2edge.bench.benchmark_app_check import benchmark_app_command, compare
from sc2edge.runtime import Bundle
from sc2edge.runtime.backends import create_runner


def test_benchmark_app_gets_the_runners_properties(reference_bundle_dir, tmp_path):
    bundle = Bundle.open(reference_bundle_dir)
    command = benchmark_app_command(bundle, "fp32", 2, tmp_path / "config.json")
    properties = json.loads((tmp_path / "config.json").read_text())["CPU"]
    with create_runner("openvino", bundle, "device", "fp32", threads=2) as runner:
        for name, value in properties.items():
            got = runner.compiled.get_property(name)
            assert (got.to_string() if hasattr(got, "to_string") else str(got)) == value, name
    assert "-data_shape" in command and "-shape" not in command  # the model keeps its dynamic input
    figures = compare(bundle, "fp32", 2, seconds=0.5, rounds=1)
    for name in ("bench", "request", "benchmark_app"):
        (row,) = figures[name]
        assert row["median_ms"] > 0 and row["min_ms"] <= row["median_ms"]
