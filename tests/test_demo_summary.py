"""The demo's summary shows an INT8 artifact over its export budget as a failure (and the verb exits 1)."""

from __future__ import annotations

from sc2edge.demo import DemoSummary, budget_metric, budget_verdicts


def test_failed_budget_is_a_failure(tmp_path):
    ok = {"backend": "onnxruntime", "metric": "agreement", "fp32": 1.0, "int8": 1.0, "rate_change_pct": 0.1,
          "passed": True}
    bad = {**ok, "backend": "openvino", "int8": 0.75, "rate_change_pct": 5.3, "passed": False}
    validation = {"images": 12, "budget": {"max_drop": 0.01, "max_bytes_pct": 2.0}, "results": [ok, bad]}
    summary = DemoSummary("m", True, tmp_path, 12, 59)
    verdicts = budget_verdicts(validation, tmp_path, summary, model="m")
    assert verdicts["onnxruntime"].startswith("PASS: ") and verdicts["openvino"].startswith("FAIL: ")
    assert not summary.passed
    text = str(summary)
    assert "INT8 budget: FAIL" in text and "openvino/int8: agreement 100.00 -> 75.00 %, bytes +5.30 %" in text
    passing = DemoSummary("m", True, tmp_path, 12, 59)
    budget_verdicts({**validation, "results": [ok]}, tmp_path, passing, model="m")
    assert passing.passed and "INT8 budget: PASS" in str(passing)


def test_teacher_pseudo_label_budget_is_named_with_agreement_beside(tmp_path):
    failed = {"backend": "onnxruntime", "metric": "teacher agreement", "fp32": 0.80, "int8": 0.78,
              "agreement_fp32": 0.84, "rate_change_pct": -0.1, "passed": False}
    validation = {"images": 192, "crops": 16, "budget": {"max_drop": 0.01, "max_bytes_pct": 2.0},
                  "budgeted_on": "pseudo-labels: the teacher's FP32 top-1 on the same inputs", "results": [failed]}
    summary = DemoSummary("m", True, tmp_path, 12, 59)
    summary.budget_metric = budget_metric(validation)
    verdicts = budget_verdicts(validation, tmp_path, summary, model="m")
    assert verdicts["onnxruntime"].startswith("FAIL: teacher agreement 80.00")
    text = str(summary)
    assert "budgeted: top-1 accuracy against pseudo-labels" in text and "top-1 = FP32 84.00 %, not budgeted" in text
    assert "12 photos x 16 crops" in text and not summary.passed


def test_convs_kept_float_by_accuracy_control_are_named(tmp_path):
    ok = {"backend": "onnxruntime", "metric": "agreement", "fp32": 1.0, "int8": 0.995, "rate_change_pct": 0.1,
          "passed": True}
    validation = {"images": 12, "budget": {"max_drop": 0.01, "max_bytes_pct": 2.0}, "results": [ok]}
    summary = DemoSummary("m", True, tmp_path, 12, 59)
    verdict = budget_verdicts(validation, tmp_path, summary, {"onnxruntime": ["/enc/conv2", "/enc/conv7"]},
                              model="m")
    assert verdict["onnxruntime"].endswith("2 device convs kept float by accuracy control (/enc/conv2, /enc/conv7)")
    assert "kept float" not in budget_verdicts(validation, tmp_path, summary, model="m")["onnxruntime"]


def test_server_rows_are_shown_and_budgeted(tmp_path):
    """INT8 as deployed: the server rows get their own lines in the summary, and one over budget fails the demo
    even when the device row passes."""
    device = {"backend": "onnxruntime", "graph": "device", "metric": "teacher agreement", "fp32": 0.6719,
              "int8": 0.6719, "agreement_fp32": 0.93, "rate_change_pct": 0.26, "passed": True}
    server = {**device, "graph": "server", "int8": 0.6510, "rate_change_pct": 0.0, "passed": False}
    both = {**device, "graph": "both", "int8": 0.6719}
    validation = {"images": 192, "crops": 16, "budget": {"max_drop": 0.01, "max_bytes_pct": 2.0},
                  "results": [device, server, both]}
    summary = DemoSummary("m", True, tmp_path, 12, 59)
    verdicts = budget_verdicts(validation, tmp_path, summary, {"onnxruntime": [], "onnxruntime server": ["/conv_head"]},
                               model="m")
    assert verdicts == {"onnxruntime": verdicts["onnxruntime"]} and verdicts["onnxruntime"].startswith("PASS")
    text = str(summary)
    assert "| m | onnxruntime | server | teacher agreement 67.19 -> 65.10 % | +0.00 % | FAIL |" in text
    assert "| m | onnxruntime | device + server | teacher agreement 67.19 -> 67.19 % | +0.26 % | PASS |" in text
    assert "INT8 budget: FAIL" in text and "onnxruntime/int8 (server): teacher agreement 67.19 -> 65.10 %" in text
    assert "1 server convs kept float by accuracy control (/conv_head)" in text and not summary.passed


def test_deployed_rows_name_their_model(tmp_path):
    """The demo budgets two models (the default student, the Fashion-MNIST one) into one INT8-as-deployed table:
    a model column, with the short name, tells their rows apart."""
    row = {"backend": "openvino", "graph": "server", "metric": "accuracy", "fp32": 0.821, "int8": 0.807,
           "rate_change_pct": 0.0, "passed": False}
    validation = {"images": 1000, "budget": {"max_drop": 0.01, "max_bytes_pct": 2.0}, "results": [row]}
    summary = DemoSummary("m", True, tmp_path, 12, 59)
    budget_verdicts(validation, tmp_path, summary, model="entropic_student_efficientnet_lite0_beta1.6")
    budget_verdicts({**validation, "results": [{**row, "int8": 0.821, "passed": True}]}, tmp_path, summary,
                    model="entropic_student_fashion_mnist_beta0.1")
    lines = str(summary).splitlines()
    assert "| model | backend | INT8 graphs | budgeted metric FP32 -> INT8 | bytes | INT8 budget |" in lines
    assert "| efficientnet_lite0_beta1.6 | openvino | server | accuracy 82.10 -> 80.70 % | +0.00 % | FAIL |" in lines
    assert "| fashion_mnist_beta0.1 | openvino | server | accuracy 82.10 -> 82.10 % | +0.00 % | PASS |" in lines
