"""The segmentation tail end to end: a DeepLabv3 student bundle with a dynamic input (ONNX Runtime and OpenVINO),
streams that carry the image sizes, class maps against PyTorch at several input sizes, the measured input limits,
PNG masks from the CLI, mIoU on labelme-examples' VOC masks, and one stream decoded by two tails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from sc2edge.errors import Sc2edgeError, StreamError
from sc2edge.runtime import Bundle, Decoder, Encoder, pack_stream, unpack_stream
from sc2edge.runtime.tails import TailDecoders, check_shared_encoder
from sc2edge.tasks import ImageSizes, create_task
from sc2edge.tasks.segmentation import SegmentationPrediction, confusion, mean_iou
from tests.conftest import SEGMENTATION_MODEL, SEGMENTATION_RESIZE, VOC_IMAGES, voc_images


@pytest.fixture(scope="module")
def seg_model():
    from sc2edge.zoo import get_model

    return get_model(SEGMENTATION_MODEL).model


def test_export_validates_class_maps_on_both_runtimes_at_the_images_own_sizes(seg_bundle):
    manifest = seg_bundle.manifest
    assert manifest["task"]["kind"] == "segmentation" and manifest["input"]["dynamic"] is True
    assert manifest["preprocess"]["crop"] is None and manifest["preprocess"]["resize"] == SEGMENTATION_RESIZE
    assert manifest["model"]["trained"] is False  # no checkpoint here: random weights, said so
    assert {v["backend"] for v in manifest["validation"]} == {"onnxruntime", "openvino"}
    for record in manifest["validation"]:
        assert record["passed"] and record["streams_identical"] == record["images"] == 2
        assert record["outputs"]["classes"]["max_abs_err"] <= record["outputs"]["classes"]["bound"]


@pytest.mark.slow  # the export's validation (first test) already compares both runtimes at two sizes
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_streams_decode_to_pytorchs_class_map_at_two_input_sizes(seg_bundle, seg_model, backend):
    import torch

    sizes_seen = set()
    with Encoder(seg_bundle, backend) as encoder, Decoder(seg_bundle, backend) as decoder:
        for path in voc_images()[:2]:
            stream = encoder.encode([path])[0]
            prediction = decoder.decode(stream)
            x, sizes = encoder.preprocess_sized(path)
            with torch.no_grad():
                expected = seg_model(torch.from_numpy(x[None]))[0].numpy()
            assert prediction.mask.shape == expected.shape == sizes.input
            assert np.mean(prediction.mask == expected) >= 0.999
            with Image.open(path) as image:
                assert sizes.original == (image.height, image.width)
            sizes_seen.add(sizes.input)
    assert len(sizes_seen) == 2, "the two VOC photos should give two input sizes"


def test_manifest_records_the_measured_smallest_input_and_streams_below_it_are_refused(seg_bundle):
    from sc2edge.runtime.entropy import LatentLimits

    latent, image = seg_bundle.manifest["latent"], seg_bundle.manifest["input"]
    assert latent["min_shape"][1] < latent["shape"][1] <= latent["max_shape"][1]
    assert image["min"][0] < SEGMENTATION_RESIZE < image["max"][0]
    side = image["min"][0]
    with Encoder(seg_bundle) as encoder, Decoder(seg_bundle) as decoder:
        stream = encoder.encode_batch(np.zeros((1, 3, side, side), np.float32))[0]
        assert decoder.decode(stream).mask.shape == (side, side)  # the measured minimum decodes
        limits = LatentLimits(seg_bundle.manifest)
        assert limits.min_height == latent["min_shape"][1]
        with pytest.raises(StreamError, match="outside what this bundle's model takes"):
            limits.check((latent["channels"], latent["max_shape"][1] + 1, latent["max_shape"][2]))


def test_stream_carries_original_and_input_sizes_and_a_lying_size_is_refused(seg_bundle):
    path = voc_images()[0]
    with Encoder(seg_bundle) as encoder, Decoder(seg_bundle) as decoder:
        stream = encoder.encode([path])[0]
        symbols, sizes = decoder.decode_sized(stream)
        _, expected = encoder.preprocess_sized(path)
        assert sizes == expected and symbols.shape[1:] == decoder.codec.limits.latent_of(*sizes.input)
        header, payloads = unpack_stream(stream)
        sections = [(s.name, s.table_hash, s.shape, payloads[s.name]) for s in header.sections]
        lying = [(n, h, (1, shape[1] + 8, shape[2]) if n == "image" else shape, p) for n, h, shape, p in sections]
        with pytest.raises(StreamError, match="image section says"):
            decoder.decode(pack_stream(header.codec, lying))
        without_sizes = [section for section in sections if section[0] != "image"]
        with pytest.raises(StreamError, match="carries no image size"):
            decoder.decode(pack_stream(header.codec, without_sizes))


@pytest.mark.slow  # two CLI processes (about 20 s on a shared 2-core machine)
def test_cli_decode_writes_png_masks_equal_to_the_decoders_class_map(seg_bundle, tmp_path):
    path = voc_images()[1]
    cli = [sys.executable, "-m", "sc2edge.cli"]
    subprocess.run([*cli, "encode", str(seg_bundle.path), str(path), "--out", str(tmp_path / "s")], check=True,
                   capture_output=True)
    stream = tmp_path / "s" / f"{path.stem}.sc2"
    out = subprocess.run([*cli, "decode", str(seg_bundle.path), str(stream), "--task", "segmentation", "--out",
                          str(tmp_path / "masks"), "--json"], check=True, capture_output=True, text=True)
    record = json.loads(out.stdout)
    with Image.open(record["mask"]) as mask, Decoder(seg_bundle) as decoder:
        assert mask.mode == "L"
        np.testing.assert_array_equal(np.asarray(mask), decoder.decode(stream.read_bytes()).mask)
    assert record["task"] == "segmentation" and sum(record["classes"].values()) == pytest.approx(1.0, abs=1e-4)
    wrong = subprocess.run([*cli, "decode", str(seg_bundle.path), str(stream), "--task", "detection"],
                           capture_output=True, text=True)
    assert wrong.returncode == 1 and "no bundle serves the detection task" in wrong.stderr


def test_miou_against_labelme_voc_masks(seg_bundle):
    """Real labels (VOC masks at the photos' size, resized nearest to the model's input like sc2bench's eval); the
    weights are random, so the figure is low, but it is the real computation."""
    task = create_task(seg_bundle.manifest["task"], seg_bundle.labels)
    predictions, labels = [], []
    with Encoder(seg_bundle) as encoder, Decoder(seg_bundle) as decoder:
        for path in voc_images():
            prediction = decoder.decode(encoder.encode([path])[0])
            label = np.load(VOC_IMAGES.parent / "SegmentationClass" / f"{path.stem}.npy", allow_pickle=False)
            resized = Image.fromarray(label.astype(np.int32)).resize(prediction.mask.shape[::-1], Image.NEAREST)
            predictions.append(prediction)
            labels.append(np.asarray(resized))
    score = task.metric(predictions, labels)
    assert 0.0 <= score < 1.0
    perfect = [SegmentationPrediction(np.where(lab < 0, 0, lab).astype(np.uint8)) for lab in labels]
    assert task.metric(perfect, labels) == pytest.approx(1.0)


def test_mean_iou_and_pixel_agreement_by_hand():
    labels = [np.array([[0, 0, 1, 1], [2, 2, 255, 255]])]
    predictions = [np.array([[0, 1, 1, 1], [2, 0, 0, 2]], np.uint8)]
    matrix = confusion(predictions, labels, 3)
    # class 0: TP 1, FP 1, FN 1 -> 1/3; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1, FN 1 -> 1/2
    assert mean_iou(matrix) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    task = create_task({"kind": "segmentation", "num_classes": 3})
    a, b = SegmentationPrediction(predictions[0]), SegmentationPrediction(predictions[0].copy())
    assert task.agreement_checks(a, b)["pixels99"]
    b.mask[0, 0] = 2
    assert not task.agreement_checks(a, b)["pixels99"] and task.parse(b.to_json()).mask.tolist() == b.mask.tolist()
    errors = task.compare({"classes": a.mask}, {"classes": b.mask})
    assert not errors["classes"].passed and errors["classes"].max_abs_err == pytest.approx(1 / 8)


def test_one_stream_decoded_by_the_classification_and_segmentation_tails(seg_bundle, fp32_bundle_dir, es_model):
    """The random-weight students of one seed share the encoder and tables, as trained ones share the frozen
    ImageNet encoder: a segmentation stream (dynamic input) also feeds the classifier's tail."""
    import torch

    classifier = Bundle.open(fp32_bundle_dir)
    check_shared_encoder([classifier, seg_bundle])
    path = voc_images()[0]
    with Encoder(seg_bundle) as encoder:
        stream = encoder.encode([path])[0]
    with TailDecoders([classifier, seg_bundle]) as tails, Decoder(seg_bundle) as decoder:
        predictions = tails.decode(stream)
        symbols, _ = decoder.decode_sized(stream)
    assert set(predictions) == {"classification", "segmentation"}
    model = es_model.model
    medians = model.bottleneck_layer.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
    with torch.no_grad():
        logits = model.forward_tail(model.bottleneck_layer.decoder(torch.from_numpy(symbols[None]).float() + medians))
    assert predictions["classification"].top1 == int(logits.argmax())
    assert predictions["segmentation"].mask.shape == decoder.decode_sized(stream)[1].input
    with Encoder(classifier) as encoder, Decoder(seg_bundle) as decoder:  # a cropped classifier's stream
        with pytest.raises(StreamError, match="carries no image size"):
            decoder.decode(encoder.encode([path])[0])


def test_bundles_without_a_shared_encoder_are_refused(seg_bundle):
    manifest = json.loads(json.dumps(seg_bundle.manifest))
    manifest["entropy"]["sections"][0]["hash"] = "0" * 16
    other = SimpleNamespace(manifest=manifest, path=Path("other"))
    with pytest.raises(Sc2edgeError, match="do not share an encoder"):
        check_shared_encoder([seg_bundle, other])


@pytest.mark.slow  # builds two DeepLabv3 students
def test_sc2bench_checkpoint_layout_loads(tmp_path, seg_model):
    """sc2bench's deeplabv3_model keys: backbone.bottleneck_layer.*, backbone.layer2..4.*, classifier.*,
    aux_classifier.*; the loader maps them onto the student."""
    import torch

    from sc2edge.zoo import get_model

    state = {}
    for key, value in seg_model.state_dict().items():
        changed = value.is_floating_point() and "entropy_bottleneck" not in key  # differs from the random weights
        state[f"backbone.{key}" if key.startswith("bottleneck_layer.") else key] = value + 1 if changed else value
    torch.save({"model": state}, tmp_path / "ckpt.pt")
    loaded = get_model(SEGMENTATION_MODEL, checkpoint=tmp_path / "ckpt.pt")
    assert loaded.trained
    ours = loaded.model.state_dict()
    for key in ("bottleneck_layer.encoder.0.weight", "backbone.layer4.0.conv2.weight", "classifier.4.weight",
                "aux_classifier.4.weight"):
        source = f"backbone.{key}" if key.startswith("bottleneck_layer.") else key
        assert torch.equal(ours[key], state[source])


def test_image_sizes_must_fit_a_stream():
    from sc2edge.runtime.entropy import image_section

    assert image_section(ImageSizes((480, 640), (96, 128)))[2] == (1, 96, 128)
    with pytest.raises(StreamError, match="does not fit a stream"):
        image_section(ImageSizes((70000, 10), (96, 96)))
