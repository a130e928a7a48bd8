import pickle

import pytest
import torch

from sc2edge.errors import CheckpointError
from sc2edge.zoo import get_model
from tests.conftest import DEFAULT_TEST_MODEL, paper_style_checkpoint


class _Payload:
    """Anything that is not on the allow-list: the safe loader must refuse to build it."""

    def __reduce__(self):
        return (print, ("this would have run",))


def test_paper_checkpoint_loads_with_old_names_and_paper_key_layout(tmp_path):
    path = tmp_path / "ilsvrc2012-bottleneck_resnet50-b24ch_igdn-beta0.08_from_resnet50.pt"
    expected = paper_style_checkpoint(path)
    loaded = get_model(DEFAULT_TEST_MODEL, checkpoint=path)
    assert loaded.trained and loaded.checkpoint_sha256
    state = loaded.model.state_dict()
    for key in ("bottleneck_layer.entropy_bottleneck.matrices.0", "bottleneck_layer.entropy_bottleneck._quantized_cdf",
                "layer2.0.conv1.weight", "fc.weight", "bottleneck_layer.encoder.1.gamma"):
        assert torch.equal(state[key], expected[key]), key


def test_unsafe_checkpoint_is_refused_with_the_opt_in_flag(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": _Payload()}, f)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        get_model(DEFAULT_TEST_MODEL, checkpoint=path)


def test_missing_keys_are_listed_not_silently_skipped(tmp_path):
    path = tmp_path / "partial.pt"
    state = paper_style_checkpoint(path)
    del state["fc.weight"]
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"missing 1 keys: fc\.weight"):
        get_model(DEFAULT_TEST_MODEL, checkpoint=path)


def test_wrong_shapes_are_reported(tmp_path):
    path = tmp_path / "wrong.pt"
    state = paper_style_checkpoint(path)
    state["fc.weight"] = torch.zeros(10, 2048)
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match="fc.weight"):
        get_model(DEFAULT_TEST_MODEL, checkpoint=path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        get_model(DEFAULT_TEST_MODEL, checkpoint=tmp_path / "nope.pt")


def test_random_weights_are_deterministic_and_marked_untrained():
    a, b = get_model(DEFAULT_TEST_MODEL), get_model(DEFAULT_TEST_MODEL)
    assert not a.trained
    assert torch.equal(a.model.bottleneck_layer.encoder[0].weight, b.model.bottleneck_layer.encoder[0].weight)


def test_sc2bench_layout_with_new_compressai_names_loads(tmp_path):
    from sc2edge.zoo import build, get_spec

    torch.manual_seed(2)
    model = build(get_spec(DEFAULT_TEST_MODEL))
    model.update(force=True)
    path = tmp_path / "sc2bench.pt"
    torch.save({"model": model.state_dict()}, path)  # sc2bench: bottleneck_layer.*, matrices.i names
    loaded = get_model(DEFAULT_TEST_MODEL, checkpoint=path)
    assert torch.equal(loaded.model.bottleneck_layer.entropy_bottleneck._quantized_cdf,
                       model.bottleneck_layer.entropy_bottleneck._quantized_cdf)


class _SystemCall:
    """A real attack's shape: the pickle calls os.system. Only ever given to the safe loader."""

    def __reduce__(self):
        import os

        return (os.system, ("true",))


def test_refusal_names_what_the_pickle_wanted_to_call(tmp_path):
    for name, save in (("raw.pt", lambda obj, p: p.write_bytes(pickle.dumps(obj))), ("zip.pt", torch.save)):
        path = tmp_path / name
        save({"model": _SystemCall()}, path)
        with pytest.raises(CheckpointError, match=r"posix\.system.*--trust-checkpoint"):
            get_model(DEFAULT_TEST_MODEL, checkpoint=path)


def _damaged_checkpoints(tmp_path):
    import zipfile

    whole = tmp_path / "whole.pt"
    torch.save({"model": {"w": torch.zeros(8)}}, whole)
    (tmp_path / "truncated.pt").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "garbage.pt").write_bytes(bytes(range(256)) * 3)
    with zipfile.ZipFile(tmp_path / "other.zip.pt", "w") as archive:
        archive.writestr("readme.txt", "not a checkpoint")
    return {"truncated.pt": "truncated", "empty.pt": "empty", "garbage.pt": "not a PyTorch checkpoint",
            "other.zip.pt": "not a PyTorch checkpoint"}


@pytest.mark.parametrize("trust", [False, True])
def test_damaged_files_say_what_is_wrong_not_trust_me(tmp_path, trust):
    for name, fragment in _damaged_checkpoints(tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            get_model(DEFAULT_TEST_MODEL, checkpoint=tmp_path / name, trust_checkpoint=trust)
        message = str(info.value)
        assert fragment in message and "--trust-checkpoint" not in message and "\n" not in message, message


def test_trusted_pickle_without_weights_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(CheckpointError, match="no state dict"):
        get_model(DEFAULT_TEST_MODEL, checkpoint=path, trust_checkpoint=True)
