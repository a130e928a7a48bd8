import argparse

import numpy as np
import torch

from sc2edge.zoo import build, get_model, get_spec, list_models
from tests._hyperprior import MODEL, spread_side_networks


def test_mshp_entries_are_registered_and_untrained_without_a_checkpoint():
    names = list_models("mshp_student_resnet50")
    assert MODEL in names and len(names) == 7
    loaded = get_model(MODEL)
    assert not loaded.trained and loaded.checkpoint_path is None
    bottleneck = loaded.model.bottleneck_layer
    assert bottleneck.gaussian_conditional.scale_table.numel() == 64  # CompressAI's get_scale_table()
    x = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        y = bottleneck.g_a(x)
        z = bottleneck.h_a(y)
        params = bottleneck.h_s(bottleneck.received_side_latent(y))
        logits = loaded.model(x)
    assert y.shape == (1, 24, 55, 55) and z.shape == (1, 16, 14, 14) and params.shape == (1, 48, 55, 55)
    assert logits.shape == (1, 1000)
    assert [tuple(m.weight.shape) for m in bottleneck.h_s if hasattr(m, "weight")] == [
        (16, 16, 5, 5), (16, 24, 5, 5), (48, 24, 5, 5)]


def test_sc2bench_style_mshp_checkpoint_with_data_dependent_table_sizes_loads(tmp_path):
    """sc2bench saves a torchdistill dict whose Gaussian tables (and scale table) have the trained model's sizes."""
    torch.manual_seed(3)
    source = build(get_spec(MODEL))
    scale_table = torch.exp(torch.linspace(0.0, 4.0, 40)).tolist()  # 40 levels, not the default 64
    source.update(scale_table=scale_table, force=True)
    state = source.state_dict()
    assert state["bottleneck_layer.gaussian_conditional._quantized_cdf"].shape[0] == 40
    path = tmp_path / "ilsvrc2012-splittable_resnet50-mshp-beta0.08_from_resnet50.pt"
    torch.save({"model": state, "optimizer": {}, "best_value": 0.7, "lr_scheduler": {},
                "args": argparse.Namespace(config="mshp.yaml")}, path)

    loaded = get_model(MODEL, checkpoint=path)
    assert loaded.trained and loaded.checkpoint_sha256
    got = loaded.model.state_dict()
    for name in ("_quantized_cdf", "_offset", "_cdf_length", "scale_table"):
        key = f"bottleneck_layer.gaussian_conditional.{name}"
        assert torch.equal(got[key], state[key]), key
    for key in ("bottleneck_layer.entropy_bottleneck._quantized_cdf", "bottleneck_layer.h_s.4.weight",
                "bottleneck_layer.g_a.1.gamma", "layer4.2.conv3.weight", "fc.weight"):
        assert torch.equal(got[key], state[key]), key


def test_scale_hyperprior_student_codes_through_the_index_path_byte_for_byte(photos):
    """sc2bench's shp variant (h_a on |y|, scales only): the deterministic index path reproduces its compress()."""
    from sc2edge.export.hyperprior import gaussian_tables, index_path_of, model_means, torch_hyperprior_reference
    from sc2edge.runtime.hyperprior import HyperpriorCoder
    from sc2edge.runtime.preprocess import preprocess_image
    from sc2edge.runtime.rans import EntropyTables

    loaded = get_model("shp_student_resnet50")
    assert not loaded.trained and not model_means(loaded.model)
    bottleneck = loaded.model.bottleneck_layer
    spread_side_networks(bottleneck)
    coder = HyperpriorCoder(EntropyTables.from_bottleneck(bottleneck.entropy_bottleneck),
                            gaussian_tables(bottleneck.gaussian_conditional), index_path_of(bottleneck, means=False))
    x = torch.from_numpy(preprocess_image(photos[0], loaded.spec.preprocess.to_json())[None])
    with torch.no_grad():
        ref = torch_hyperprior_reference(bottleneck, x, means=False)
        y = bottleneck.g_a(x).numpy()[0]
    payload = coder.encode(y, ref["z_symbols"][0])
    indexes, _ = coder.side_info(ref["z_symbols"][0])
    assert len(np.unique(indexes)) > 5 and (indexes != ref["indexes"][0]).mean() < 1e-3
    assert payload.z == ref["z_strings"][0]
    assert payload.y == ref["y_strings"][0] or not np.array_equal(indexes, ref["indexes"][0])
    assert np.array_equal(coder.decode_symbols(payload)[0], np.rint(y))
