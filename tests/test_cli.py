"""The console command end to end, in fresh interpreters, as a user runs it."""

import json

import numpy as np
import pytest

from sc2edge.commands._common import UNTRAINED_MARK
from sc2edge.runtime import Decoder
from tests.conftest import DEFAULT_TEST_MODEL, run_cli


@pytest.fixture(scope="module")
def streams(bundle_dir, photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("streams")
    result = run_cli("encode", bundle_dir, *photos[:2], "--out", out)
    assert result.returncode == 0, result.stderr
    assert all(line.endswith(f"[{UNTRAINED_MARK}]") for line in result.stdout.splitlines())  # random weights
    return sorted(out.glob("*.sc2"))


def test_encode_writes_one_stream_per_image_stem(streams, photos):
    assert [s.stem for s in streams] == sorted(p.stem for p in photos[:2])


def test_decode_prints_the_tasks_prediction_as_json_and_text(bundle_dir, streams):
    result = run_cli("decode", bundle_dir, *streams, "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["stream"] for r in records] == [str(s) for s in streams]
    with Decoder(bundle_dir) as decoder:
        predictions = [decoder.decode(s.read_bytes()) for s in streams]
        logits = decoder.outputs(streams[0].read_bytes())["logits"]
    assert [r["task"] for r in records] == ["classification"] * len(streams)
    assert [r["trained"] for r in records] == [False] * len(streams)  # the session bundle has random weights
    assert [{k: v for k, v in r.items() if k not in ("stream", "task", "trained")} for r in records] == \
        [p.to_json() for p in predictions]
    assert records[0]["classes"] == [int(i) for i in np.argsort(-logits)[:5]]
    assert records[0]["scores"] == sorted(records[0]["scores"], reverse=True)
    text = run_cli("decode", bundle_dir, *streams)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [f"{s}: {p} [{UNTRAINED_MARK}]" for s, p in zip(streams, predictions,
                                                                                      strict=True)]
    assert text.stdout.splitlines()[0].startswith(f"{streams[0]}: {records[0]['classes'][0]}")


def test_inspect_describes_bundles_and_streams(bundle_dir, streams):
    bundle = run_cli("inspect", bundle_dir)
    assert bundle.returncode == 0 and DEFAULT_TEST_MODEL in bundle.stdout and "UNTRAINED" in bundle.stdout
    stream = run_cli("inspect", bundle_dir, streams[0])
    assert stream.returncode == 0 and "(24, 55, 55)" in stream.stdout and "CRC ok" in stream.stdout


def _assert_one_line_error(result, *fragments, status=1):
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_user_errors_are_one_line(bundle_dir, streams, tmp_path):
    _assert_one_line_error(run_cli("encode", tmp_path / "nope", streams[0], "--out", tmp_path),
                           "not an sc2edge bundle")
    corrupt = tmp_path / "corrupt.sc2"
    data = bytearray(streams[0].read_bytes())
    data[len(data) // 2] ^= 0x40
    corrupt.write_bytes(bytes(data))
    _assert_one_line_error(run_cli("decode", bundle_dir, corrupt), "CRC")
    truncated = tmp_path / "truncated.sc2"
    truncated.write_bytes(streams[0].read_bytes()[:20])
    _assert_one_line_error(run_cli("decode", bundle_dir, truncated), "truncated")
    _assert_one_line_error(run_cli("export", "no_such_model", "--out", tmp_path / "b"), "unknown model")
    _assert_one_line_error(run_cli("encode", bundle_dir, tmp_path / "missing.jpg", "--out", tmp_path),
                           "image not found")
    _assert_one_line_error(run_cli("decode", bundle_dir, "--backend", "cuda-magic", streams[0]),
                           'unknown backend "cuda-magic"')
    _assert_one_line_error(run_cli("encode", bundle_dir, tmp_path / "missing.jpg", "--out", corrupt),
                           "is a file")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "sc2edge-bundle", "format_version": 1}))
    _assert_one_line_error(run_cli("inspect", tmp_path), "incomplete")


def test_export_from_the_command_line(tmp_path, photos):
    images = tmp_path / "images"
    images.mkdir()
    (images / photos[0].name).symlink_to(photos[0])
    result = run_cli("export", DEFAULT_TEST_MODEL, "--out", tmp_path / "b", "--validation-images", images)
    assert result.returncode == 0, result.stderr
    assert "validation onnxruntime/fp32: PASS" in result.stdout and "UNTRAINED" in result.stdout
    assert (tmp_path / "b" / "manifest.json").is_file()


def test_every_verb_takes_the_bundle_first_and_json_as_a_flag():
    from sc2edge.cli import build_parser

    verbs = build_parser()._subparsers._group_actions[0].choices
    for verb in ("encode", "decode", "inspect", "check-quant", "bench", "build-engine"):
        options = {o for a in verbs[verb]._actions for o in a.option_strings}
        first = next(a.dest for a in verbs[verb]._actions if not a.option_strings)
        assert first in ("bundle", "bundles", "path") and "--bundle" not in options, verb
    for verb in ("encode", "decode", "inspect", "check-quant", "bench", "export", "models"):
        json_flag = next(a for a in verbs[verb]._actions if "--json" in a.option_strings)
        assert json_flag.nargs == 0, verb  # a flag everywhere, never a file name


def test_bad_options_are_one_line_usage_errors(bundle_dir, streams, tmp_path):
    _assert_one_line_error(run_cli("export", DEFAULT_TEST_MODEL, "--out", tmp_path / "b", "--backend", ","),
                           "comma-separated list", status=2)
    assert not (tmp_path / "b").exists()
    _assert_one_line_error(run_cli("decode", bundle_dir, streams[0], "--threads", "100000"), "must be in 1..",
                           status=2)
    _assert_one_line_error(run_cli("bench", bundle_dir, "--link", "lte", "--codec", "jpeg:x"), "NAME[:QUALITY]",
                           status=2)
    _assert_one_line_error(run_cli("check-quant", bundle_dir, "--data", tmp_path, "--max-images", "0"),
                           "must be in 1..", status=2)


def test_export_refuses_an_unsupported_opset(tmp_path):
    _assert_one_line_error(run_cli("export", DEFAULT_TEST_MODEL, "--out", tmp_path / "b", "--opset", "99"),
                           "opset 99 is not supported")


def test_unwritable_out_is_one_line(bundle_dir, photos, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _assert_one_line_error(run_cli("encode", bundle_dir, photos[0], "--out", blocker / "streams"), "a-file")


def test_json_lines_from_encode_and_inspect(bundle_dir, photos, tmp_path):
    encoded = run_cli("encode", bundle_dir, photos[0], "--out", tmp_path, "--json")
    assert encoded.returncode == 0, encoded.stderr
    record = json.loads(encoded.stdout)
    assert record["trained"] is False
    assert record["bytes"] == (tmp_path / f"{photos[0].stem}.sc2").stat().st_size
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
    inspected = run_cli("inspect", bundle_dir, record["stream"], "--json")
    assert inspected.returncode == 0, inspected.stderr
    bundle_record, stream_record = map(json.loads, inspected.stdout.splitlines())
    assert bundle_record["manifest"]["model"]["name"] == DEFAULT_TEST_MODEL and stream_record["crc_ok"]


def test_broken_pipe_exits_quietly():
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-m", "sc2edge.cli", "-q", "models"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    child.stdout.close()  # the reader is gone before the first line is written, as with `| head -0`
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=300) == 141 and "Traceback" not in stderr, stderr


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    from sc2edge._files import atomic_write_bytes

    target = tmp_path / "photo.sc2"
    target.write_bytes(b"old stream")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")
    assert target.read_bytes() == b"old stream" and [p.name for p in tmp_path.iterdir()] == ["photo.sc2"]
    atomic_write_bytes(target, b"new stream")
    assert target.read_bytes() == b"new stream" and [p.name for p in tmp_path.iterdir()] == ["photo.sc2"]
