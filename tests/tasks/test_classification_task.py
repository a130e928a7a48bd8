"""The classification task on real server outputs: post-processing, agreement, metric, tolerances, manifest."""

from __future__ import annotations

import numpy as np
import pytest

from sc2edge.errors import BundleError
from sc2edge.runtime import Bundle, Encoder, create_runner
from sc2edge.runtime.bundle import LABELS_FILE
from sc2edge.tasks import bundle_task, create_task, task_kinds


@pytest.fixture(scope="module")
def real_outputs(fp32_bundle_dir, photos):
    """The server graph's logits for three photos, run directly (no Decoder): what the task post-processes."""
    bundle = Bundle.open(fp32_bundle_dir)
    with Encoder(bundle) as encoder, create_runner("onnxruntime", bundle, "server", "fp32") as server:
        symbols = encoder.symbols(np.stack([encoder.preprocess(p) for p in photos[:3]]))
        return bundle, server.infer({"symbols": symbols})


def test_predictions_are_the_top5_softmax_of_the_logits(real_outputs):
    bundle, outputs = real_outputs
    task = bundle_task(bundle)
    logits = outputs["logits"].astype(np.float64)
    predictions = task.predictions(outputs)
    assert len(predictions) == len(logits)
    for row, prediction in zip(logits, predictions, strict=True):
        probabilities = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        assert list(prediction.classes) == list(np.argsort(-row)[:5])
        np.testing.assert_allclose(prediction.scores, probabilities[list(prediction.classes)], rtol=1e-9)
        assert list(prediction.scores) == sorted(prediction.scores, reverse=True)
        if bundle.labels:
            assert list(prediction.labels) == [bundle.labels[c] for c in prediction.classes]
        assert task.parse(prediction.to_json()).classes == prediction.classes


def test_agreement_and_metric(real_outputs):
    bundle, outputs = real_outputs
    task = bundle_task(bundle)
    predictions = task.predictions(outputs)
    top1 = [p.top1 for p in predictions]
    assert task.agreement(predictions, predictions) == 1.0
    assert task.metric(predictions, top1) == 1.0
    assert task.metric(predictions, [(t + 1) % task.num_classes for t in top1]) == 0.0
    # The second-best class of every image: top-1 disagrees, top-5 still contains the reference.
    runner_up = task.predictions({"logits": np.where(np.eye(task.num_classes, dtype=bool)[top1], -1e9,
                                                     outputs["logits"])})
    assert task.agreement(predictions, runner_up) == 0.0
    assert all(task.agreement_checks(r, p) == {"top1": False, "top5": True}
               for r, p in zip(runner_up, predictions, strict=True))


def test_compare_holds_outputs_to_the_task_tolerance(real_outputs):
    bundle, outputs = real_outputs
    task = bundle_task(bundle)
    item = task.items(outputs)[0]
    bound = task.tolerances()["logits"].bound(item["logits"])
    assert task.compare(item, {"logits": item["logits"] + 0.5 * bound})["logits"].passed
    failed = task.compare(item, {"logits": item["logits"] + 2 * bound})["logits"]
    assert not failed.passed and failed.max_abs_err == pytest.approx(2 * bound, rel=1e-3)
    assert not task.compare(item, {"logits": item["logits"][:-1]})["logits"].passed


def test_manifest_section_round_trips_and_names_the_server_outputs(fp32_bundle_dir):
    bundle = Bundle.open(fp32_bundle_dir)
    section = bundle.manifest["task"]
    assert section == {"kind": "classification", "num_classes": 1000, "labels": LABELS_FILE if bundle.labels else None,
                       "outputs": [{"name": "logits", "dtype": "float32", "shape": ["N", 1000]}]}
    task = create_task(section, bundle.labels)
    assert task.to_json(section["labels"]) == section
    assert task.outputs[0].dynamic_axes() == {0: "batch"}
    import onnx

    graph = onnx.load(bundle.path / bundle.artifact("server", "onnx", "fp32").path).graph
    assert [o.name for o in graph.output] == task.output_names
    assert graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_bad_task_sections_are_one_line_errors():
    assert task_kinds() == ["classification", "detection", "segmentation"]
    with pytest.raises(BundleError, match='task "keypoints" is not known.*known: classification, detection, segm'):
        create_task({"kind": "keypoints"})
    with pytest.raises(BundleError, match="positive number of classes"):
        create_task({"kind": "classification", "num_classes": 0})
    with pytest.raises(BundleError, match="labels name 2 classes, its model has 3"):
        create_task({"kind": "classification", "num_classes": 3}, ["a", "b"])
    with pytest.raises(BundleError, match="the manifest declares"):
        create_task({"kind": "classification", "num_classes": 3,
                     "outputs": [{"name": "scores", "dtype": "float32", "shape": ["N", 3]}]})
