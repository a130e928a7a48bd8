"""The Triton model repository on a real tritonserver (nvidia-pytriton's CPU build, scripts/setup-triton.sh) on
loopback: configs parsed by Triton's own protobuf definitions, device -> server results bit-exact with the
in-process Decoder over HTTP and gRPC, bad streams refused per request, a bounded load test, the `infer` verb."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sc2edge.runtime import Decoder, Encoder
from sc2edge.serve import RepositoryError, check_repository, write_triton_repository
from tests.conftest import run_cli

pytest.importorskip("tritonclient.grpc", reason='tritonclient is not installed (pip install "sc2edge[serve]")')

from tritonclient.grpc import model_config_pb2  # noqa: E402

from sc2edge.serve.client import InferenceClient, InferenceError  # noqa: E402
from sc2edge.serve.load import load_test  # noqa: E402
from tests.serve.conftest import VARIANT, parsed_config  # noqa: E402


@pytest.fixture(scope="module")
def repository(reference_bundle_dir, tmp_path_factory):
    return write_triton_repository(reference_bundle_dir, tmp_path_factory.mktemp("triton") / "repo", tensorrt=True)


@pytest.fixture(scope="module")
def repositories(repository):
    """What the module's tritonserver serves (the shared ``server`` fixture)."""
    return [repository]


@pytest.fixture(scope="module")
def streams(reference_bundle_dir, photos):
    with Encoder(reference_bundle_dir) as encoder:
        return encoder.encode(photos)


@pytest.fixture(scope="module")
def expected(reference_bundle_dir, streams):
    with Decoder(reference_bundle_dir) as decoder:
        return [decoder.outputs(s) for s in streams]


def test_every_config_parses_with_tritons_protobuf_and_says_what_it_serves(repository, reference_bundle_dir):
    assert check_repository(repository.path).startswith("tritonclient")
    name = repository.name
    assert repository.models == {
        f"{name}_entropy": "python", f"{name}_server_python": "python",
        f"{name}_server_onnxruntime": "onnxruntime", f"{name}_server_openvino": "openvino",
        f"{name}_server_tensorrt": "tensorrt_plan", **{f"{name}_{v}": "ensemble" for v in
                                                        ("python", "onnxruntime", "openvino", "tensorrt")}}
    entropy = parsed_config(repository, f"{name}_entropy")
    assert (entropy.backend, entropy.input[0].name, entropy.input[0].data_type) == \
        ("python", "STREAM", model_config_pb2.TYPE_STRING)
    assert entropy.output[0].name == "symbols" and entropy.output[0].data_type == model_config_pb2.TYPE_INT32
    assert list(entropy.output[0].dims)[0] == 8  # the Fashion-MNIST student's latent channels
    assert entropy.HasField("dynamic_batching")
    assert entropy.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    for variant in ("onnxruntime", "openvino"):
        config = parsed_config(repository, f"{name}_server_{variant}")
        assert config.backend == variant and config.HasField("dynamic_batching")
        assert [o.name for o in config.output] == ["logits"] and list(config.output[0].dims) == [10]
    trt = parsed_config(repository, f"{name}_server_tensorrt")
    assert trt.platform == "tensorrt_plan"
    assert trt.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    steps = parsed_config(repository, f"{name}_openvino").ensemble_scheduling.step
    assert [s.model_name for s in steps] == [f"{name}_entropy", f"{name}_server_openvino"]
    assert dict(steps[0].output_map) == dict(steps[1].input_map) == {"symbols": "symbols"}
    assert (repository.path / f"{name}_server_onnxruntime" / "1" / "model.onnx").is_file()
    assert (repository.path / f"{name}_server_openvino" / "1" / "model.bin").is_file()


def test_a_broken_config_is_refused_by_the_check(repository, tmp_path):
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(repository.path, copy)
    config = copy / f"{repository.name}_entropy" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size", "max_batch_sise"))
    with pytest.raises(RepositoryError, match="does not parse as a Triton ModelConfig"):
        check_repository(copy)


def test_repository_refuses_to_overwrite_a_folder_it_did_not_write(reference_bundle_dir, tmp_path):
    (tmp_path / "mine").mkdir()
    with pytest.raises(RepositoryError, match="exists"):
        write_triton_repository(reference_bundle_dir, tmp_path / "mine", force=True)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_outputs_are_bit_exact_with_the_in_process_decoder(server, repository, streams, expected, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    with InferenceClient(url, repository.ensemble(VARIANT), ["logits"], protocol=protocol) as client:
        one_by_one = [client.infer([s])[0] for s in streams]
        batched = client.infer(streams)
    for want, single, many in zip(expected, one_by_one, batched, strict=True):
        assert np.array_equal(single["logits"], want["logits"])
        assert np.array_equal(many["logits"], want["logits"])


def test_a_bad_stream_fails_its_request_in_one_line_and_the_server_goes_on(server, repository, streams, expected):
    with InferenceClient(f"grpc://{server.grpc_url}", repository.ensemble(VARIANT), ["logits"]) as client:
        with pytest.raises(InferenceError, match="not an sc2edge stream") as refused:
            client.infer([b"GIF89a" + bytes(100)])
        assert "\n" not in str(refused.value)
        with pytest.raises(InferenceError, match="CRC"):
            client.infer([streams[0][:-1] + bytes([streams[0][-1] ^ 1])])
        assert np.array_equal(client.infer([streams[0]])[0]["logits"], expected[0]["logits"])


def test_load_of_8_clients_has_no_mismatch(server, repository, reference_bundle_dir, streams, capsys):
    report = load_test(reference_bundle_dir, streams, f"http://{server.http_url}", repository.ensemble(VARIANT),
                       clients=8, requests_per_client=40)
    with capsys.disabled():
        print("\nTriton load test (figures, no assertion on time):", json.dumps(report))
    for side in ("served", "in_process"):
        assert report[side]["requests"] == 320
        assert (report[side]["mismatches"], report[side]["errors"]) == (0, 0)


def test_infer_verb_prints_the_same_prediction_as_in_process_decoding(server, repository, reference_bundle_dir,
                                                                       photos, streams):
    result = run_cli("infer", reference_bundle_dir, *photos[:2], "--url", f"http://{server.http_url}",
                     "--model", repository.ensemble(VARIANT), "--json")
    assert result.returncode == 0, result.stderr
    with Decoder(reference_bundle_dir) as decoder:
        want = [decoder.decode(s).to_json() for s in streams[:2]]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [{k: v for k, v in r.items() if k not in ("image", "bytes", "task")} for r in records] == want
    assert [r["bytes"] for r in records] == [len(s) for s in streams[:2]]
    refused = run_cli("infer", reference_bundle_dir, photos[0], "--url", f"grpc://{server.grpc_url}",
                      "--model", "no_such_model")
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert "no_such_model" in refused.stderr


def test_server_urls_name_their_protocol_or_take_it_from_the_flag():
    from sc2edge.serve.client import split_url

    assert split_url("127.0.0.1:8000") == ("http", "127.0.0.1:8000", False)
    assert split_url("127.0.0.1:8001", "grpc") == ("grpc", "127.0.0.1:8001", False)
    assert split_url("grpcs://edge.example:443") == ("grpc", "edge.example:443", True)
    assert split_url("https://edge.example/") == ("http", "edge.example", True)
    for bad, protocol in (("ftp://host:1", None), ("http://host:1/v2/models", None), ("grpc://host:1", "http")):
        with pytest.raises(InferenceError, match="server URL"):
            split_url(bad, protocol)
