"""sc2edge bench: the report has every section, the two FLOP counters agree, the device process has no torch,
and the size figures match CompressAI's real coder. No timing assertions: speeds are printed by bench_targets."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sc2edge.bench import compute
from sc2edge.bench.links import load_links, select_links
from sc2edge.bench.report import headline_markdown
from sc2edge.bench.roofline import conv_model, layer_roofline_ms, relu_model
from sc2edge.bench.size import information_bits, paper_kb
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle
from sc2edge.runtime.preprocess import graph_input_spec, load_image
from tests.conftest import run_cli

SECTIONS = ("Headline", "Latency per stage", "Compute:", "Files:", "Memory", "Size (mean over images)",
            "Size per image", "End-to-end split latency", "End-to-end verdict per link", "Rate-accuracy",
            "Roofline microbenchmark", "Machine and inputs", "Warnings and skipped configurations")


def _encoder_macs(height: int, width: int) -> int:
    """Dense MACs of the Entropic Student encoder, from its layer table (REFERENCE.md section 1): three convs,
    and GDN's 1x1 convolution (C x C) after the first two."""
    macs, size_h, size_w, c_in = 0, height, width, 3
    for c_out, k, s, p, gdn in ((96, 5, 2, 2, True), (48, 5, 2, 2, True), (24, 2, 1, 0, False)):
        size_h, size_w = (size_h + 2 * p - k) // s + 1, (size_w + 2 * p - k) // s + 1
        macs += c_in * c_out * k * k * size_h * size_w + (c_out * c_out * size_h * size_w if gdn else 0)
        c_in = c_out
    return macs


@pytest.fixture(scope="module")
def eval_photos() -> list:
    """Photos the session bundle was not calibrated on (``calib_dir`` takes the even ones): the bench refuses
    calibration images as evaluation images."""
    from sc2edge.photos import system_photos

    return system_photos()[1::2][:2]


@pytest.fixture(scope="module")
def quick_report(bundle_dir, eval_photos, tmp_path_factory):
    from sc2edge.bench import run_bench

    out = tmp_path_factory.mktemp("bench-report")
    image_list = out / "images.txt"  # a labelled file list, the form calibration and the demo use
    image_list.write_text("".join(f"{p} {label}\n" for p, label in zip(eval_photos, (3, 7), strict=True)))
    return run_bench([bundle_dir], ["onnxruntime"], ["fp32", "int8"], threads=1, images=[image_list],
                     links=["ble", "lte"], quick=True, out_dir=out), out


def test_quick_bench_writes_every_report_file_and_section(quick_report):
    report, out = quick_report
    for name in ("report.json", "report.md", "report.html", "latency.csv", "size.csv", "end_to_end.csv",
                 "latency_stages.png", "end_to_end.png", "rate_accuracy.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "latency_stages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for title in SECTIONS:
        assert f"## {title}" in markdown, title
        assert title in page, title
    assert page.count("data:image/png;base64,") == 3  # self-contained: the plots are inside the page
    saved = json.loads((out / "report.json").read_text())
    for key in ("compute", "roofline", "latency", "memory", "size", "end_to_end", "rate_accuracy", "baseline",
                "machine", "inputs", "headline", "alternatives"):
        assert saved[key], key
    with open(out / "latency.csv") as f:
        stages = {row["stage"] for row in csv.DictReader(f)}
    assert {"preprocess", "encoder_graph", "entropy_encode", "device_total", "entropy_decode", "server_graph",
            "server_total"} <= stages


def test_quick_bench_figures_are_consistent(quick_report, bundle_dir):
    report, _ = quick_report
    key = next(iter(report["latency"]))
    assert report["latency"][key]["stages"]["encoder_graph"]["n"] >= 3
    # INT8 artifacts may not exist yet: then the configuration is reported as skipped, not silently dropped
    if not any(a.precision == "int8" for a in Bundle.open(bundle_dir).artifacts):
        assert any("int8" in s["what"] for s in report["skipped"])
    # sizes: the stream is the payload plus its container, and the coder is within 1% of the information content
    for image in report["size"][key]["per_image"]:
        assert image["stream_bytes"] > image["payload_bytes"] > 0
        assert 0 <= image["coder_overhead"] < 0.01
        assert image["paper_kb"] * 1024 > image["payload_bytes"]
    # the paper's eager path on the same weights writes payloads of the same size as ours
    assert report["baseline"]["same_weights_as_bundle"]
    assert report["baseline"]["payload_bytes_equal_to_ours"] is True
    # end to end = device + transfer + round trip + server, and the reference agrees with itself
    for row in report["end_to_end"]:
        assert row["total_ms"] == pytest.approx(row["device_ms"] + row["transfer_ms"] + row["rtt_ms"]
                                                + row["server_ms"])
    assert {r["path"] for r in report["end_to_end"]} >= {"split", "all on device", "jpeg-q75", "webp-q80"}
    assert report["alternatives"][key]["model"] == "student"  # this bundle has no reference: the student stands in
    assert all(p["accuracy"] is not None for p in report["rate_accuracy"]["points"])  # labels from the list
    reference = report["rate_accuracy"]["reference"]
    assert next(p for p in report["rate_accuracy"]["points"] if p["config"] == reference)["agreement"] == 1.0
    assert 0 < report["compute"][report["latency"][key]["bundle"]]["device_fraction"]["macs"] < 0.5
    assert report["machine"]["threads"] == 1 and report["inputs"]["images_hash"]


def test_quick_bench_is_honest_about_images_weights_and_stability(quick_report, bundle_dir):
    report, out = quick_report
    assert report["inputs"]["images_source"].startswith("given") and not report["inputs"]["calibration_images_used"]
    assert not any("CALIBRATION IMAGES" in w for w in report["warnings"])
    # the session bundle has random weights: the headline says so, in the terminal and in every report
    assert report["inputs"]["bundles"][0]["trained"] is False
    assert "## Headline (UNTRAINED)" in (out / "report.md").read_text()
    assert "UNTRAINED" in headline_markdown(report)
    for row in report["headline"]:
        assert isinstance(row["stable"], bool) and isinstance(row["totals_consistent"], bool)
        assert row["stable"] == (not row["unstable_stages"])
        assert row["bpp"] > 0 and row["paper_kb"] > 0 and row["device_kmac_per_pixel"] > 0
    # the device's kMAC per pixel is its MACs over the input's pixels
    stages = report["compute"][bundle_dir.name]["stages"]
    h, w = Bundle.open(bundle_dir).manifest["input"]["height"], Bundle.open(bundle_dir).manifest["input"]["width"]
    device = stages["device"]["onnx"] or stages["device"]["torch"]
    assert stages["device"]["kmac_per_pixel"] == pytest.approx(device["macs"] / (h * w) / 1e3)
    # one verdict per configuration and link, naming the winner
    verdicts = {(v["config"], v["link"]) for v in report["end_to_end_verdicts"]}
    assert verdicts == {(r["config"], r["link"]) for r in report["end_to_end"] if r["path"] == "split"}
    assert all(" wins" in v["verdict"] for v in report["end_to_end_verdicts"])


def test_device_process_has_no_torch_but_the_paper_path_does(quick_report):
    report, _ = quick_report
    runtime = [m for m in report["memory"] if m["engine"] == "runtime"]
    assert runtime and all(m["ok"] and not m["torch_imported"] for m in runtime)
    device = next(m for m in runtime if m["side"] == "device")
    # the detection itself works: the paper path's process did import torch and needs far more memory
    assert report["baseline"]["device_peak_rss_bytes"] > device["peak_rss_bytes"]


def test_local_rows_run_the_reference_model_in_a_torch_free_worker(reference_bundle_dir, photos, tmp_path):
    """"All on device" and "codec + server" run the bundle's reference (the teacher), through the input codecs."""
    from sc2edge.bench.timing import TimingConfig
    from sc2edge.runtime import CodecDecoder, CodecEncoder, ReferenceGraph

    spec = {"mode": "local", "bundle": str(reference_bundle_dir), "backend": "openvino", "precision": "int8",
            "server_precision": "int8", "threads": 1, "timing": TimingConfig.quick().to_json(),
            "images": [str(p) for p in photos[:2]], "codecs": [["jpeg", 75], ["avif", 40]]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    subprocess.run([sys.executable, "-m", "sc2edge.bench.worker", str(tmp_path / "spec.json"),
                    str(tmp_path / "result.json")], check=True, timeout=300)
    out = json.loads((tmp_path / "result.json").read_text())
    assert out["ok"], out.get("error")
    assert not out["torch_imported"]
    result = out["result"]
    assert (result["model"], result["reference"]) == ("reference", "fashion_mnist_teacher")
    assert result["precision"] == "fp32"  # no INT8 reference was exported: the FP32 one is used, and said so
    assert set(result["codecs"]) == {"jpeg-q75", "avif-q40"}
    for label, codec in result["codecs"].items():
        spec_text = label.replace("-q", ":")
        frames = [np.asarray(load_image(p)) for p in photos[:2]]  # the worker holds decoded frames
        sent = CodecEncoder(reference_bundle_dir, spec_text).encode(frames)
        assert codec["bytes"] == [len(s) for s in sent]
        with CodecDecoder(reference_bundle_dir, spec_text, "openvino") as server:
            top5 = [[int(i) for i in np.argsort(-server.decode(s))[:5]] for s in sent]
            assert [p["classes"] for p in codec["predictions"]] == top5
    assert result["stages"]["full_model"]["n"] >= 3
    # the teacher's own predictions on the uncompressed input: the reference of the bench's rate-accuracy
    with ReferenceGraph(reference_bundle_dir, "openvino") as teacher:
        assert [p["classes"] for p in result["predictions"]] == [
            [int(i) for i in np.argsort(-teacher.classify(frame))[:5]] for frame in frames]  # what the worker read


def test_encoder_flops_agree_between_onnx_graph_and_torch_model(bundle_dir):
    bundle = Bundle.open(bundle_dir)
    h, w = bundle.manifest["input"]["height"], bundle.manifest["input"]["width"]
    onnx_count = compute.count_onnx(bundle.path / bundle.artifact("device", "onnx", "fp32").path,
                                    {"image": graph_input_spec(bundle.preprocess, h, w)})["all"]
    torch_count = compute.count_torch(bundle.name, 3, h, w)["device"]
    assert onnx_count.dense_macs == torch_count.dense_macs == _encoder_macs(h, w)
    # GDN's elementwise work is counted on both sides (FlopCounterMode alone would count it as zero)
    assert torch_count.macs > torch_count.dense_macs
    assert compute.compare(torch_count, onnx_count) is None
    assert onnx_count.activation_bytes_peak >= 96 * (h // 2) * (w // 2) * 4  # the first GDN's input and output
    # a real difference is reported
    assert compute.compare(torch_count, compute.StageCount(macs=onnx_count.macs * 2, dense_macs=onnx_count.dense_macs,
                                                          params=0)) is not None


def test_server_flops_split_into_decoder_and_tail(bundle_dir):
    bundle = Bundle.open(bundle_dir)
    latent = tuple(bundle.manifest["latent"]["shape"])
    counts = compute.count_onnx(bundle.path / bundle.artifact("server", "onnx", "fp32").path,
                                {"symbols": ((1, *latent), np.int32)}, split=("decoder", "decoder", "tail"))
    torch_counts = compute.count_torch(bundle.name, 3, bundle.manifest["input"]["height"],
                                       bundle.manifest["input"]["width"])
    assert counts["decoder"].macs + counts["tail"].macs == counts["all"].macs
    for stage in ("decoder", "tail"):
        assert compute.compare(torch_counts[stage], counts[stage]) is None, stage


def test_information_content_matches_compressai_coder(es_model, photos):
    import torch

    from sc2edge.runtime.preprocess import preprocess_image

    bottleneck = es_model.model.bottleneck_layer
    eb = bottleneck.entropy_bottleneck
    tables = (eb._quantized_cdf.numpy(), eb._cdf_length.numpy(), eb._offset.numpy())
    x = torch.from_numpy(preprocess_image(photos[0], es_model.spec.preprocess.to_json()))[None]
    with torch.no_grad():
        y = bottleneck.encoder(x)
    for scale in (1.0, 40.0):  # 40x pushes many symbols out of the tables: escapes with bypass bits
        latent = y * scale
        payload = eb.compress(latent)[0]
        symbols = torch.round(latent - eb._get_medians().reshape(1, -1, 1, 1)).to(torch.int32)[0].numpy()
        bits = information_bits(symbols, *tables)
        assert bits <= 8 * len(payload) <= bits * 1.01 + 64, scale
    assert paper_kb(b"x" * 1000, (55, 55)) * 1024 > 1000


def test_roofline_model_is_a_valid_onnx_conv():
    import onnx
    import onnxruntime as ort
    import torch

    data, flops = conv_model(8, 10)
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    weight = onnx.numpy_helper.to_array(model.graph.initializer[0])
    x = np.random.default_rng(0).standard_normal((1, 8, 10, 10)).astype(np.float32)
    y = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight.copy()), padding=1).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    assert flops == 2 * 8 * 8 * 9 * 10 * 10


def test_per_layer_roofline_bounds_each_conv_by_flops_or_bytes(tmp_path):
    """A conv's least traffic is its input, weights and output once; the roofline takes the slower of its two
    bounds per layer, and the bandwidth graph is a Relu a runtime runs."""
    import onnxruntime as ort

    data, flops = conv_model(8, 10)
    (tmp_path / "conv.onnx").write_bytes(data)
    (layer,) = compute.dense_layers(tmp_path / "conv.onnx", {"x": ((1, 8, 10, 10), np.float32)})
    assert layer.op == "Conv" and layer.flops == flops
    assert layer.bytes == 4 * (2 * 8 * 10 * 10 + 8 * 8 * 3 * 3)
    dense = compute.DenseLayer("dense", "Conv", flops=10**9, bytes=10**6)  # 1000 FLOP/byte
    thin = compute.DenseLayer("depthwise", "Conv", flops=10**6, bytes=10**7)  # 0.1 FLOP/byte
    roof = layer_roofline_ms([dense, thin], peak_gflops=100.0, bandwidth_gbs=10.0)
    assert roof["ms"] == pytest.approx(10.0 + 1.0) and roof["dense_peak_ms"] == pytest.approx(10.0 + 0.01)
    assert roof["memory_bound"] == 1 and roof["memory_bound_share"] == pytest.approx(1 / 11)
    x = np.random.default_rng(0).standard_normal((1, 1000)).astype(np.float32)
    y = ort.InferenceSession(relu_model(1000), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_links_are_loaded_and_checked(tmp_path):
    links = load_links()
    assert {"ble", "lte", "wifi", "5g"} <= set(links)
    assert all(link.source for link in links.values())
    lte = links["lte"]
    assert lte.end_to_end_ms(10, lte.uplink_mbps * 1e6 / 8, 20) == pytest.approx(10 + 1000 + lte.rtt_ms + 20)
    with pytest.raises(Sc2edgeError, match="available"):
        select_links(links, ["carrier-pigeon"])
    bad = tmp_path / "links.yaml"
    bad.write_text("links:\n  x: {uplink_mbps: 0, rtt_ms: 1}\n")
    with pytest.raises(Sc2edgeError, match="non-positive"):
        load_links(bad)


def test_images_and_labels_from_folders_and_lists(bundle_dir, photos, tmp_path):
    from sc2edge.bench.core import BenchConfig

    for label, photo in zip((5, 9), photos[:2], strict=True):
        (tmp_path / "tree" / str(label)).mkdir(parents=True)
        (tmp_path / "tree" / str(label) / photo.name).symlink_to(photo)
    config = BenchConfig(bundles=(bundle_dir,), images=(tmp_path / "tree",), quick=True).validate()
    assert config.labels == (5, 9) and len(config.images) == 2
    unlabelled = BenchConfig(bundles=(bundle_dir,), images=tuple(photos[:3]), max_images=3).validate()
    assert unlabelled.labels is None and len(unlabelled.images) == 3
    with pytest.raises(Sc2edgeError, match="not found"):
        BenchConfig(bundles=(bundle_dir,), images=(tmp_path / "missing",)).validate()
    with pytest.raises(Sc2edgeError, match="unknown precision"):
        BenchConfig(bundles=(bundle_dir,), images=tuple(photos[:1]), precisions=("int4",)).validate()
    with pytest.raises(Sc2edgeError, match="max-images must be positive"):
        BenchConfig(bundles=(bundle_dir,), images=tuple(photos[:1]), max_images=-1).validate()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(Sc2edgeError, match="is not a folder"):
        BenchConfig(bundles=(bundle_dir,), images=tuple(photos[:1]), out_dir=tmp_path / "a-file").validate()


def test_cli_reports_a_missing_bundle_in_one_line(tmp_path):
    result = run_cli("bench", tmp_path / "nope", "--quick", "--out", tmp_path / "r")
    assert result.returncode == 1
    assert "not an sc2edge bundle" in result.stderr and "Traceback" not in result.stderr


def test_bench_runs_without_torch(bundle_dir, eval_photos, tmp_path):
    """A device-like environment: torch cannot be imported anywhere; every section but the PyTorch side is there."""
    shadow = tmp_path / "shadow" / "torch"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('torch is not installed in this environment')\n")
    out = tmp_path / "report"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "sc2edge.cli", "bench", str(bundle_dir), "--quick", "--threads", "1",
         "--data", ",".join(map(str, eval_photos)), "--codec", "jpeg:75", "--link", "lte", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    device = next(iter(report["compute"].values()))["stages"]["device"]
    assert device["torch"] is None and device["onnx"]["dense_macs"] > 0
    assert report["baseline"] is None
    assert any("PyTorch eager baseline" in s["what"] for s in report["skipped"])
    assert report["latency"] and report["size"] and report["end_to_end"] and report["roofline"]
    assert "## End-to-end split latency" in (out / "report.md").read_text()


def test_quick_report_matches_the_shipped_schema(quick_report, bundle_dir):
    from sc2edge.jsonschemas import validate

    _, out = quick_report
    saved = json.loads((out / "report.json").read_text())
    validate(saved, "bench-report")
    assert saved["inputs"]["bundles"][0]["id"] == bundle_dir.name
    assert all(key.startswith(f"{bundle_dir.name}/") for key in saved["latency"])


def test_two_bundles_of_one_model_get_their_own_results(tmp_path):
    from sc2edge.bench.core import bundle_ids

    fp32, int8, other = tmp_path / "a" / "es", tmp_path / "b" / "es", tmp_path / "es-int8"
    ids = bundle_ids([fp32, int8, other])
    assert len(set(ids.values())) == 3 and ids[other] == "es-int8" and ids[fp32] == str(fp32)


def test_busy_machine_unstable_stages_and_verdicts_are_flagged():
    from sc2edge.bench.core import _stability, busy_warning, end_to_end_verdicts

    cores = len(os.sched_getaffinity(0))
    assert busy_warning([0.0, 0.0, 0.0], "start") is None
    assert "BUSY MACHINE at the end" in busy_warning([4.0 * cores, 1.0, 1.0], "end")
    stats = {"p50": 1.0, "p90": 1.1}
    warnings: list[str] = []
    flags = _stability("b/onnxruntime/fp32", {"encoder_graph": {"p50": 1.0, "p90": 3.0}, "server_graph": stats,
                                              "server_total": {"p50": 0.5, "p90": 0.6}}, warnings)
    assert flags == {"stable": False, "unstable_stages": ["encoder_graph"], "totals_consistent": False}
    assert any(w.startswith("UNSTABLE") for w in warnings) and any(w.startswith("INCONSISTENT") for w in warnings)
    rows = [{"config": "c", "link": "lte", "path": p, "total_ms": t}
            for p, t in (("split", 30.0), ("all on device", 60.0), ("jpeg-q75", 45.0))]
    rows += [{"config": "c", "link": "ble", "path": p, "total_ms": t}
             for p, t in (("split", 300.0), ("all on device", 60.0))]
    verdicts = {v["link"]: v for v in end_to_end_verdicts(rows)}
    assert verdicts["lte"]["split_wins"] and verdicts["lte"]["best_other"] == "jpeg-q75"
    assert "1.50x faster" in verdicts["lte"]["verdict"]
    assert not verdicts["ble"]["split_wins"] and verdicts["ble"]["verdict"].startswith("all on device wins")
