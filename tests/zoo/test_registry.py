import pytest
import yaml

from sc2edge.errors import Sc2edgeError
from sc2edge.zoo import build, default_model_name, get_spec, list_builders, list_models, load_specs, register_builder
from sc2edge.zoo.entropic_student import EntropicStudentResNet50


def test_every_entry_has_a_builder_and_every_builder_is_used():
    specs = load_specs()
    assert {s.builder for s in specs.values()} == set(list_builders())
    assert default_model_name() in specs


def test_duplicate_builder_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_builder("entropic_student_resnet50")(lambda **_: None)


def test_unknown_model_names_the_choices():
    with pytest.raises(Sc2edgeError, match="available: .*entropic_student_resnet50_beta0.08"):
        get_spec("resnet51")


def test_published_betas_are_registered_with_the_paper_checkpoint_paths():
    names = list_models("entropic_student_resnet50")
    assert len(names) == 9
    spec = get_spec("entropic_student_resnet50_beta0.08")
    assert spec.checkpoint.path == ("resource/ckpt/ilsvrc2012/entropic_student/"
                                    "ilsvrc2012-bottleneck_resnet50-b24ch_igdn-beta0.08_from_resnet50.pt")
    assert spec.preprocess.resize == 256 and spec.preprocess.crop == 224


def test_resnet50_student_matches_the_paper_sizes():
    model = build(get_spec("entropic_student_resnet50_beta0.08"))
    assert type(model) is EntropicStudentResNet50
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.bottleneck_layer.encoder) == 138_672
    assert count(model.bottleneck_layer.decoder) == 1_164_032
    assert model.encoder_geometry() == [(5, 2, 2), (5, 2, 2), (2, 1, 0)]


def test_registry_file_is_data_only():
    from importlib import resources

    raw = yaml.safe_load(resources.files("sc2edge").joinpath("models.yaml").read_text())
    for entry in raw["models"].values():
        assert set(entry) <= {"builder", "task", "num_classes", "labels", "preprocess", "description", "meta",
                              "beta", "checkpoint", "builder_args"}


def test_every_builder_has_a_reference_model_with_the_students_input_and_classes(tmp_path):
    import torch

    from sc2edge.errors import CheckpointError
    from sc2edge.zoo import get_reference, reference_builders

    assert set(reference_builders()) == set(list_builders())
    first, references = {}, {}
    for name in list_models():
        first.setdefault(get_spec(name).builder, name)
    for builder, name in first.items():
        spec, reference = get_spec(name), get_reference(name)
        references[builder] = reference
        channels = 1 if spec.preprocess.grayscale else 3
        side = spec.preprocess.crop or 64  # a dynamic input (segmentation) takes any size
        with torch.no_grad():
            if spec.task == "detection":  # torchvision's detector as it is: images in, a dict of boxes per image out
                assert set(reference.module([torch.zeros(channels, side, side)])[0]) == {"boxes", "scores", "labels"}
            else:
                output = reference.module(torch.zeros(1, channels, side, side))
                expected = (1, spec.num_classes) if spec.task == "classification" else (1, side, side)
                assert output.shape == expected, builder  # logits, class map
        assert reference.trained == (reference.weights is not None) == (reference.weights_sha256 is not None)
    # the ResNet-50 teacher has no shipped weights: untrained, unless a checkpoint is given (and checked)
    resnet = first["entropic_student_resnet50"]
    assert not references["entropic_student_resnet50"].trained
    torch.save(references["entropic_student_resnet50"].module.state_dict(), tmp_path / "resnet50.pth")
    loaded = get_reference(resnet, checkpoint=tmp_path / "resnet50.pth")
    assert loaded.trained and loaded.weights_sha256
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        get_reference(resnet, checkpoint=tmp_path / "missing.pth")


def test_baselines_are_registered_with_the_paper_checkpoint_paths_and_shapes():
    """CR+BQ (sc2bench's larger_resnet_bottleneck, latent N x 29 x 29, decoder to layer2's 512 x 28 x 28) and
    Singh et al.'s end-to-end students (the Entropic Student's architecture) at the paper's betas."""
    import torch

    from sc2edge.zoo import latent_size

    assert list_models("cr_bq_resnet50") == [f"cr_bq_resnet50_b{n}ch" for n in (12, 2, 3, 6, 9)]
    spec = get_spec("cr_bq_resnet50_b6ch")
    assert spec.checkpoint.path == "resource/ckpt/ilsvrc2012/bq/ilsvrc2012-custom_resnet50-b6ch_from_resnet50.pt"
    model = build(spec).eval()
    assert model.encoder_geometry() == [(7, 2, 3), (3, 2, 1), (2, 2, 1)] and model.latent_channels == 6
    assert latent_size(224, model.encoder_geometry()) == 29
    with torch.no_grad():
        z = model.bottleneck_layer.encoder(torch.zeros(1, 3, 224, 224))
        assert z.shape == (1, 6, 29, 29) and model.bottleneck_layer.decoder(z).shape == (1, 512, 28, 28)
    singh = list_models("singh_e2e_resnet50")
    assert len(singh) == 12 and get_spec("singh_e2e_resnet50_beta1.28e-8").beta == 1.28e-8
    assert get_spec("singh_e2e_resnet50_beta1.28e-8").checkpoint.path == (
        "resource/ckpt/ilsvrc2012/singh_et_al/ilsvrc2012-bottleneck_resnet50-b24ch_igdn-beta1.28e-8.pt")
    assert {get_spec(n).builder for n in singh} == {"entropic_student_resnet50"}
    assert {get_spec(n).meta["method"] for n in list_models("cr_bq_")} == {"cr_bq"}
    assert {get_spec(n).meta["method"] for n in list_models("singh_e2e_")} == {"singh_e2e"}
