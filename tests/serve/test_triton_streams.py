"""Hyperprior streams and one stream served by several tails through a real tritonserver on loopback (one server for
the module, two repositories): served outputs bit-exact with the in-process Decoder (the hyperprior's side network
runs in the server's entropy-decode model), segmentation class maps at the size the stream's image section says,
the one-line refusals of in-process decoding, a bounded load test and `sc2edge infer --task`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle, Decoder, Encoder
from sc2edge.runtime.stream import pack_stream, unpack_stream
from sc2edge.runtime.tails import TailDecoders
from sc2edge.serve import RepositoryError, write_triton_repository
from tests.conftest import run_cli, voc_images

pytest.importorskip("tritonclient.grpc", reason='tritonclient is not installed (pip install "sc2edge[serve]")')

from tritonclient.grpc import model_config_pb2  # noqa: E402

from sc2edge.serve.client import InferenceClient, InferenceError  # noqa: E402
from sc2edge.serve.load import load_test  # noqa: E402
from tests.serve.conftest import VARIANT, parsed_config  # noqa: E402


@pytest.fixture(scope="module")
def hyperprior_bundle(tmp_path_factory, photos):
    """A tiny mbt2018-mean classifier (mean-scale hyperprior, random weights with spread scales), ONNX Runtime."""
    from sc2edge.export import ExportConfig, export_bundle
    from tests._hyperprior import tiny_learned_codec

    folder = tmp_path_factory.mktemp("mbt")
    (folder / "images").mkdir()
    (folder / "images" / photos[1].name).symlink_to(photos[1])
    return export_bundle(tiny_learned_codec("mbt2018-mean"), folder / "bundle",
                         config=ExportConfig(validation_images=folder / "images", reference=False, progress=False))


@pytest.fixture(scope="module")
def repositories(tmp_path_factory, hyperprior_bundle, fp32_bundle_dir, segmentation_bundle_dir):
    root = tmp_path_factory.mktemp("triton-streams")
    return (write_triton_repository(hyperprior_bundle, root / "hyperprior", name="hp"),
            write_triton_repository([fp32_bundle_dir, segmentation_bundle_dir], root / "tails", name="tails"))


@pytest.fixture(scope="module")
def hyperprior_streams(hyperprior_bundle, photos):
    with Encoder(hyperprior_bundle) as encoder:
        return encoder.encode(photos)


@pytest.fixture(scope="module")
def tail_streams(segmentation_bundle_dir, photos):
    """Streams of the segmentation encoder (they carry the image sizes): three VOC photos and two offline photos."""
    with Encoder(segmentation_bundle_dir) as encoder:
        return encoder.encode([*voc_images()[:3], *photos[:2]])


def test_hyperprior_repository_decodes_y_hat_with_the_side_network(repositories):
    hyperprior, _ = repositories
    entropy = parsed_config(hyperprior, "hp_entropy")
    assert [(o.name, o.data_type, list(o.dims)) for o in entropy.output] == \
        [("y_hat", model_config_pb2.TYPE_FP32, [192, -1, -1])]
    server = parsed_config(hyperprior, "hp_server_python")
    assert [(i.name, i.data_type) for i in server.input] == [("y_hat", model_config_pb2.TYPE_FP32)]
    reduced = Bundle.open(hyperprior.path / "hp_entropy" / "1" / "bundle")
    assert reduced.manifest["entropy"]["kind"] == "hyperprior" and not reduced.artifacts
    assert reduced.manifest["entropy"]["side_network"]["file"] in reduced.spec.files


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_hyperprior_streams_are_bit_exact_with_the_in_process_decoder(server, repositories, hyperprior_bundle,
                                                                      hyperprior_streams, protocol):
    hyperprior, _ = repositories
    with Decoder(hyperprior_bundle) as decoder:
        expected = [decoder.outputs(s)["logits"] for s in hyperprior_streams]
    url = server.http_url if protocol == "http" else server.grpc_url
    with InferenceClient(url, hyperprior.ensemble(VARIANT), ["logits"], protocol=protocol) as client:
        one_by_one = [client.infer([s])[0]["logits"] for s in hyperprior_streams]
        batched = [item["logits"] for item in client.infer(hyperprior_streams)]
    assert len(expected) == 8 and len({e.tobytes() for e in expected}) > 1
    for want, single, many in zip(expected, one_by_one, batched, strict=True):
        assert np.array_equal(single, want) and np.array_equal(many, want)


def test_a_hyperprior_stream_with_another_index_map_is_refused_by_the_server(server, repositories,
                                                                            hyperprior_streams):
    """The stream's index-map CRC is checked on the server, before y is decoded (the side networks disagree)."""
    hyperprior, _ = repositories
    header, payloads = unpack_stream(hyperprior_streams[0], codec="hyperprior")
    sections = [(s.name, s.table_hash, s.shape, payloads[s.name]) for s in header.sections]
    crc = int.from_bytes(payloads["index"], "little") ^ 0x10
    tampered = pack_stream("hyperprior", [*sections[:2], (*sections[2][:3], crc.to_bytes(4, "little"))])
    with InferenceClient(f"grpc://{server.grpc_url}", hyperprior.ensemble(VARIANT), ["logits"]) as client:
        with pytest.raises(InferenceError, match="index map mismatch") as refused:
            client.infer([tampered])
        assert "\n" not in str(refused.value)


def test_hyperprior_load_of_8_clients_has_no_mismatch(server, repositories, hyperprior_bundle, hyperprior_streams,
                                                      capsys):
    hyperprior, _ = repositories
    report = load_test(hyperprior_bundle, hyperprior_streams, f"http://{server.http_url}",
                       hyperprior.ensemble(VARIANT), clients=8, requests_per_client=10)
    with capsys.disabled():
        print("\nTriton hyperprior load test (figures, no assertion on time):", json.dumps(report))
    for side in ("served", "in_process"):
        assert report[side]["requests"] == 80
        assert (report[side]["mismatches"], report[side]["errors"]) == (0, 0)


def test_several_tails_share_one_entropy_model_and_only_segmentation_reads_the_sizes(repositories):
    _, tails = repositories
    assert set(tails.tails) == {"classification", "segmentation"}
    assert tails.tails["segmentation"] == {VARIANT: "tails_segmentation_python"}
    assert "image_size" in tails.skipped["tails_segmentation_server_onnxruntime"]
    assert tails.models["tails_classification_server_onnxruntime"] == "onnxruntime"
    entropy = parsed_config(tails, "tails_entropy")
    assert [o.name for o in entropy.output] == ["symbols", "image_sizes"]
    assert entropy.output[1].data_type == model_config_pb2.TYPE_INT64 and list(entropy.output[1].dims) == [4]
    for task, wanted in (("classification", {"symbols"}), ("segmentation", {"symbols", "image_sizes"})):
        steps = parsed_config(tails, f"tails_{task}_{VARIANT}").ensemble_scheduling.step
        assert steps[0].model_name == "tails_entropy" and set(steps[0].output_map) == wanted
        assert set(steps[1].input_map) == wanted
    # the shared entropy model takes every latent one of the tails takes (each tail checks its own)
    def latent(model: str) -> dict:
        return Bundle.open(tails.path / model / "1" / "bundle").manifest["latent"]

    shared = latent("tails_entropy")
    each = [latent(f"tails_{task}_server_python") for task in ("classification", "segmentation")]
    assert shared["max_shape"] == [24, max(t["max_shape"][1] for t in each), max(t["max_shape"][2] for t in each)]
    assert shared["min_shape"] == [24, min(t["min_shape"][1] for t in each), min(t["min_shape"][2] for t in each)]
    assert each[0]["max_shape"] != each[1]["max_shape"]


def test_tails_of_different_encoders_are_refused_and_a_task_must_be_named(repositories, hyperprior_bundle,
                                                                        fp32_bundle_dir, tmp_path):
    with pytest.raises(Sc2edgeError, match="do not share an encoder"):
        write_triton_repository([fp32_bundle_dir, hyperprior_bundle], tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
    _, tails = repositories
    with pytest.raises(RepositoryError, match="name the task"):
        tails.ensemble(VARIANT)
    with pytest.raises(RepositoryError, match="segmentation tail has no onnxruntime variant"):
        tails.ensemble("onnxruntime", "segmentation")


def test_one_stream_through_each_tail_is_bit_exact_with_in_process_decoding(server, repositories, fp32_bundle_dir,
                                                                           segmentation_bundle_dir, tail_streams):
    _, tails = repositories
    with Decoder(fp32_bundle_dir) as classifier, Decoder(segmentation_bundle_dir) as segmenter:
        logits = [classifier.outputs(s)["logits"] for s in tail_streams]
        classes = [segmenter.outputs(s)["classes"] for s in tail_streams]
        sizes = [segmenter.decode_sized(s)[1] for s in tail_streams]
    assert len({s.input for s in sizes}) > 1  # the VOC photos give different input sizes
    url = f"http://{server.http_url}"
    with InferenceClient(url, tails.ensemble(VARIANT, "classification"), ["logits"]) as client:
        for stream, want in zip(tail_streams, logits, strict=True):
            assert np.array_equal(client.infer([stream])[0]["logits"], want)
    with InferenceClient(url, tails.ensemble(VARIANT, "segmentation"), ["classes"]) as client:
        for stream, want, size in zip(tail_streams, classes, sizes, strict=True):
            got = client.infer([stream])[0]["classes"]
            assert got.shape == size.input and np.array_equal(got, want)  # the class map at the stream's input size
        common = max({s.input for s in sizes}, key=[s.input for s in sizes].count)
        same_size = [i for i, s in enumerate(sizes) if s.input == common]
        assert len(same_size) >= 2  # two of the VOC photos are 500 x 375
        batched = client.infer([tail_streams[i] for i in same_size])  # one request, one batch on the server
        for i, item in zip(same_size, batched, strict=True):
            assert np.array_equal(item["classes"], classes[i])


def test_a_stream_without_image_sizes_is_refused_by_segmentation_only(server, repositories, fp32_bundle_dir, photos):
    _, tails = repositories
    with Encoder(fp32_bundle_dir) as encoder, Decoder(fp32_bundle_dir) as decoder:
        cropped = encoder.encode(photos[:1])[0]  # a cropped classifier's stream carries no sizes
        want = decoder.outputs(cropped)["logits"]
    with InferenceClient(f"grpc://{server.grpc_url}", tails.ensemble(VARIANT, "classification"), ["logits"]) as client:
        assert np.array_equal(client.infer([cropped])[0]["logits"], want)
    with InferenceClient(f"grpc://{server.grpc_url}", tails.ensemble(VARIANT, "segmentation"), ["classes"]) as client:
        with pytest.raises(InferenceError, match="carries no image size") as refused:
            client.infer([cropped])
        assert "\n" not in str(refused.value)


def test_infer_verb_asks_each_task_and_prints_what_in_process_decoding_prints(server, fp32_bundle_dir,
                                                                              segmentation_bundle_dir):
    image = voc_images()[0]
    result = run_cli("infer", f"{fp32_bundle_dir},{segmentation_bundle_dir}", image, "--url",
                     f"grpc://{server.grpc_url}", "--name", "tails", "--variant", VARIANT,
                     "--task", "segmentation,classification", "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    with Encoder(segmentation_bundle_dir) as encoder:  # the device encodes with the dynamic-input bundle
        stream = encoder.encode([image])[0]
    with TailDecoders([fp32_bundle_dir, segmentation_bundle_dir]) as decoders:
        want = {kind: prediction.to_json() for kind, prediction in decoders.decode(stream).items()}
    assert [r["task"] for r in records] == ["classification", "segmentation"]
    for record in records:
        assert record["bytes"] == len(stream)
        assert {k: v for k, v in record.items() if k not in ("image", "bytes", "task")} == want[record["task"]]
    refused = run_cli("infer", f"{fp32_bundle_dir},{segmentation_bundle_dir}", image, "--url",
                      f"http://{server.http_url}", "--task", "detection")
    assert refused.returncode == 1 and "no bundle serves the detection task" in refused.stderr
