"""``sc2edge compare``: real curves from real bundles and codecs on labelled Fashion-MNIST images, BD-rate, and
the refusal of calibration images as evaluation images."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sc2edge._files import sha256_file
from sc2edge.bench.evaluation import CalibrationImagesError
from sc2edge.bench.sweep import bd_rate, keep_points, run_compare, summarize
from sc2edge.errors import Sc2edgeError
from sc2edge.photos import read_file_list
from sc2edge.runtime import Bundle
from tests.conftest import run_cli

BETAS = ("0.1", "1.6")


@pytest.fixture(scope="module")
def fashion_bundles(tmp_path_factory, reference_bundle_dir) -> dict[str, Path]:
    """The trained Fashion-MNIST students at two betas, each with its teacher (reference role): the session's
    beta 0.1 bundle (FP32) and beta 1.6 exported here for ONNX Runtime and OpenVINO, FP32 and INT8 (the teacher
    too), calibrated on 16 training images."""
    from sc2edge.export import ExportConfig, export_bundle
    from sc2edge.zoo.datasets import write_fashion_mnist_images

    assert Bundle.open(reference_bundle_dir).spec.model.beta == float(BETAS[0])
    calib = write_fashion_mnist_images("train", tmp_path_factory.mktemp("fashion-calib"), 16).parent
    other = export_bundle(f"entropic_student_fashion_mnist_beta{BETAS[1]}",
                          tmp_path_factory.mktemp("fashion-betas") / f"b{BETAS[1]}",
                          config=ExportConfig(backends=("onnxruntime", "openvino"), int8=True, calib=calib,
                                              calib_samples=16, int8_check_count=8, allow_int8_over_budget=True,
                                              int8_reference=True, progress=False))
    return {BETAS[0]: reference_bundle_dir, BETAS[1]: other}


@pytest.fixture(scope="module")
def fashion_test_list(tmp_path_factory) -> Path:
    from sc2edge.zoo.datasets import write_fashion_mnist_images

    return write_fashion_mnist_images("test", tmp_path_factory.mktemp("fashion-test"), 64)


def test_sweep_gives_one_monotone_curve_per_codec_and_bytes_ordered_by_beta(fashion_bundles, fashion_test_list,
                                                                             tmp_path):
    report = run_compare([*fashion_bundles.values(), "jpeg:10/50/90", "webp:10/50/90"], images=[fashion_test_list],
                         out_dir=tmp_path / "report")
    points = report["points"]
    assert report["items"]["count"] == 64 and report["items"]["labelled"]
    assert report["metric"] == "top-1 accuracy"
    for codec in ("jpeg", "webp"):
        curve = sorted((p for p in points if p["method"] == codec), key=lambda p: p["quality"])
        assert [p["quality"] for p in curve] == [10, 50, 90]
        sizes = [p["bytes_mean"] for p in curve]
        assert sizes == sorted(sizes) and len(set(sizes)) == 3, f"{codec} bytes not increasing with quality: {sizes}"
        assert all(p["bytes_max"] >= p["bytes_mean"] for p in curve)
    split = {p["beta"]: p for p in points if p["kind"] == "split"}
    assert set(split) == {float(b) for b in BETAS}
    assert split[0.1]["bytes_mean"] > split[1.6]["bytes_mean"]  # a larger rate weight gives fewer bytes
    assert split[0.1]["score"] > 0.5 and report["teacher"]["score"] > 0.5  # trained models on real labels
    summary = {(s["method"], s["precision"]): s for s in report["summary"]}
    assert summary[("jpeg", "fp32")]["bd_rate_vs_jpeg_pct"] is None  # the anchor itself
    assert len([s for s in report["summary"] if s["kind"] == "split"]) == 1  # both betas are one curve
    for name in ("markdown", "json", "plot_rate_accuracy"):
        assert Path(report["files"][name]).stat().st_size > 0
    assert "BD-rate vs JPEG" in Path(report["files"]["markdown"]).read_text()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_int8_points_for_the_split_model_and_the_codecs_on_each_runtime(fashion_bundles, fashion_test_list,
                                                                        backend):
    """With an INT8 reference graph in the bundle, the codec baselines get INT8 rows (the teacher quantized),
    beside the split model's; nothing is skipped, on ONNX Runtime and OpenVINO alike."""
    report = run_compare([fashion_bundles[BETAS[1]], "jpeg:20/90"], images=[fashion_test_list], max_images=16,
                         backend=backend, precisions=("fp32", "int8"))
    assert report["skipped"] == [] and report["backend"] == backend
    rows = {(p["method"], p["precision"]) for p in report["points"]}
    assert rows == {(m, p) for m in ("entropic_student_fashion_mnist", "jpeg") for p in ("fp32", "int8")}
    jpeg = {(p["precision"], p["quality"]): p for p in report["points"] if p["method"] == "jpeg"}
    for quality in (20, 90):  # the same bytes go to the FP32 and the INT8 teacher
        assert jpeg[("int8", quality)]["bytes_mean"] == jpeg[("fp32", quality)]["bytes_mean"]
    assert all(p["score"] > 0.3 for p in report["points"])  # trained models on 10 classes, INT8 included


def test_bd_rate_reads_half_the_bytes_at_equal_accuracy():
    anchor = [(100, 0.5), (200, 0.7), (400, 0.8)]
    assert bd_rate(anchor, [(b / 2, s) for b, s in anchor]) == pytest.approx(-50.0)
    assert bd_rate(anchor, [(b * 2, s) for b, s in anchor]) == pytest.approx(100.0)
    assert bd_rate(anchor, [(10, 0.1), (20, 0.2)]) is None  # no accuracy both reach
    # A dominated point (more bytes, lower accuracy) does not bend the curve.
    assert bd_rate(anchor, [(50, 0.5), (100, 0.7), (150, 0.65), (200, 0.8)]) == pytest.approx(
        bd_rate(anchor, [(50, 0.5), (100, 0.7), (200, 0.8)]))


def _report(created: str, points: list[tuple[str, int, float]], files: tuple[str, ...] = ("a.png", "b.png")) -> dict:
    """A compare report of (method, bytes, score) points, as ``run_compare`` writes it (the fields keep reads)."""
    return {"schema": "sc2edge-compare", "created": created, "backend": "onnxruntime", "metric": "top-1 accuracy",
            "items": {"files": list(files), "protocol": "files"}, "teacher": {"name": "t"}, "machine": {},
            "points": [{"method": m, "kind": "codec" if m == "jpeg" else "split", "setting": str(b),
                        "precision": "fp32", "bytes_mean": b, "bytes_max": b, "score": s,
                        "device_ms": {"p50": 1.0}} for m, b, s in points]}


def test_keep_from_adds_only_the_methods_not_measured_again_and_refuses_other_items():
    old = _report("old", [("jpeg", 100, 0.5), ("jpeg", 200, 0.8), ("es", 50, 0.7), ("bq", 300, 0.1)])
    new = _report("new", [("bq", 150, 0.6), ("bq", 250, 0.7)])
    kept = keep_points(old, new)
    assert sorted((p["method"], p["bytes_mean"]) for p in kept) == [("es", 50), ("jpeg", 100), ("jpeg", 200)]
    assert {p["measured"] for p in kept} == {"old"}
    bq = {s["method"]: s for s in summarize(kept + new["points"])}["bq"]
    assert bq["bytes_mean_range"] == [150, 250] and bq["bd_rate_vs_jpeg_pct"] is not None  # the new point, vs JPEG
    with pytest.raises(Sc2edgeError, match="other items"):
        keep_points(_report("old", [("jpeg", 100, 0.5)], files=("c.png",)), new)


def _calibrated_copy(bundle: Path, images: list[Path], where: Path) -> Path:
    """A copy of ``bundle`` whose manifest records ``images`` as its INT8 calibration images."""
    from sc2edge.runtime.bundle_writer import BundleEditor

    target = where / bundle.name
    shutil.copytree(bundle, target)
    editor = BundleEditor(target)
    editor.manifest["calibration"] = {"source": "test", "seed": 0, "count": len(images),
                                      "sha256": [sha256_file(p) for p in images]}
    return editor.commit()


def test_calibration_images_are_refused_or_loudly_flagged(fashion_bundles, fashion_test_list, tmp_path):
    paths, _ = read_file_list(fashion_test_list)
    bundle = _calibrated_copy(fashion_bundles["1.6"], paths[:3], tmp_path)
    with pytest.raises(CalibrationImagesError, match="3 of the 8 evaluation images are INT8 calibration images"):
        run_compare([bundle, "jpeg:50"], images=[fashion_test_list], max_images=8)
    report = run_compare([bundle, "jpeg:50"], images=[fashion_test_list], max_images=8,
                         allow_calibration_images=True)
    assert report["warnings"] and report["warnings"][0].startswith("CALIBRATION IMAGES USED FOR EVALUATION")
    assert not report["items"]["calibration_images_excluded_by_check"]
    held_out = run_compare([bundle, "jpeg:50"], images=[fashion_test_list.parent / p.name for p in paths[3:8]])
    assert held_out["warnings"] == [] and held_out["items"]["count"] == 5


def test_bench_refuses_calibration_images(fashion_bundles, fashion_test_list, tmp_path):
    from sc2edge.bench import run_bench

    paths, _ = read_file_list(fashion_test_list)
    bundle = _calibrated_copy(fashion_bundles["0.1"], paths[:2], tmp_path)
    with pytest.raises(CalibrationImagesError, match="INT8 calibration images"):
        run_bench([bundle], images=[paths[0], paths[5]], out_dir=tmp_path / "report", quick=True)
    assert not (tmp_path / "report").exists()  # refused before measuring anything


def test_compare_cli_refuses_a_bad_codec_quality_in_one_line(fashion_bundles, tmp_path):
    out = run_cli("compare", str(fashion_bundles["0.1"]), "jpeg:10/500", "--out", str(tmp_path))
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "jpeg quality" in out.stderr and "500" in out.stderr


def test_photo_protocol_is_the_registry_s_evaluation_crops():
    """The default ImageNet items are exactly the crops models.yaml's agreement figures were measured on."""
    import numpy as np

    from sc2edge.bench.sweep import photo_crop_items
    from sc2edge.runtime.preprocess import normalize_image
    from sc2edge.zoo import default_model_name, get_spec
    from sc2edge.zoo.datasets import evaluation_crops, split_photos

    preprocess = get_spec(default_model_name()).preprocess.to_json()
    photos = split_photos()[1][:2]
    items = photo_crop_items(preprocess, photos, per_photo=4)
    assert len(items.crops) == 8 and items.labels is None
    ours = np.stack([normalize_image(c, preprocess) for c in items.crops])
    np.testing.assert_array_equal(ours, evaluation_crops(photos, 4, preprocess, seed=0))


def test_compare_calibrates_int8_exports_on_training_images_only(tmp_path):
    """Without --calib, INT8 exports calibrate on the evaluation data's training images: never a held-out one."""
    from argparse import Namespace

    from sc2edge.bench.evaluation import held_out_photos
    from sc2edge.commands.compare import DEFAULT_CALIBRATION_IMAGES, _default_calibration

    listing = _default_calibration(Namespace(out=tmp_path / "photos", dataset=None))
    paths, _ = read_file_list(listing)
    assert paths and not {p.name for p in paths} & {p.name for p in held_out_photos()}
    fashion = _default_calibration(Namespace(out=tmp_path / "fm", dataset="fashion-mnist"))
    names = sorted(p.name for p in fashion.glob("*.png"))
    assert len(names) == DEFAULT_CALIBRATION_IMAGES and all(n.startswith("train-") for n in names)


def test_compare_exports_one_int8_teacher(tmp_path):
    """The codecs' INT8 rows read one INT8 teacher: the first exported bundle carries it, the next only FP32's."""
    from argparse import Namespace

    from sc2edge.commands.compare import _default_calibration, _export_models
    from sc2edge.runtime.reference import has_reference

    calib = _default_calibration(Namespace(out=tmp_path / "fm", dataset="fashion-mnist"))
    names = ["entropic_student_fashion_mnist_beta1.6", "cr_bq_fashion_mnist_b1ch"]
    first, second = (Bundle.open(p) for p in _export_models([*names, "jpeg"], tmp_path / "bundles", True, calib,
                                                            ["onnxruntime"], 16)[:2])
    assert has_reference(first, "onnxruntime", "int8") and has_reference(second, "onnxruntime", "fp32")
    assert not has_reference(second, precision="int8")
