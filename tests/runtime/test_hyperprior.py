"""The deterministic index path: one order of IEEE float32 operations, the same bits everywhere."""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from sc2edge.errors import BundleError, Sc2edgeError, StreamError
from sc2edge.runtime.hyperprior import (
    HyperpriorCoder,
    IndexPath,
    SideLayer,
    available_implementations,
    check_indexes,
    index_checksum,
    load_index_path,
)
from sc2edge.runtime.rans import EntropyTables
from tests._hyperprior import spread_mshp_model, torch_reference

pytestmark = pytest.mark.skipif("native" not in available_implementations(),
                                reason="sc2edge.runtime._hyperprior is not built")


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def _random_path(rng: np.random.Generator) -> IndexPath:
    """Every layer kind: biases, strides 1 and 2, output padding, ReLU and leaky ReLU."""
    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    layers = (
        SideLayer("conv_transpose2d", w(6, 5, 5, 5), w(5), stride=2, padding=2, output_padding=1),
        SideLayer("leaky_relu", slope=0.01),
        SideLayer("conv2d", w(7, 5, 3, 3), w(7), stride=2, padding=1),
        SideLayer("leaky_relu", slope=0.0),
        SideLayer("conv_transpose2d", w(7, 4, 4, 4), None, stride=3, padding=1, output_padding=2),
        SideLayer("conv2d", w(8, 4, 5, 5), w(8), stride=1, padding=2),
    )
    table = np.exp(np.linspace(np.log(0.11), np.log(256), 64)).astype(np.float32)
    return IndexPath(layers, z_medians=w(6), scale_table=table, scale_bound=0.11, means=True)


def _torch_params(path: IndexPath, z: np.ndarray) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(z.astype(np.float32) + path.z_medians[:, None, None])[None]
    for layer in path.layers:
        bias = None if layer.bias is None else torch.from_numpy(layer.bias)
        if layer.kind == "leaky_relu":
            x = F.leaky_relu(x, layer.slope)
        elif layer.kind == "conv2d":
            x = F.conv2d(x, torch.from_numpy(layer.weight), bias, layer.stride, layer.padding)
        else:
            x = F.conv_transpose2d(x, torch.from_numpy(layer.weight), bias, layer.stride, layer.padding,
                                   layer.output_padding)
    return x[0].numpy()


@pytest.fixture(scope="module")
def mshp():
    from sc2edge.export.hyperprior import gaussian_tables, index_path_of

    loaded = spread_mshp_model()
    bottleneck = loaded.model.bottleneck_layer
    coder = HyperpriorCoder(EntropyTables.from_bottleneck(bottleneck.entropy_bottleneck),
                            gaussian_tables(bottleneck.gaussian_conditional), index_path_of(bottleneck))
    return loaded, coder


@pytest.fixture(scope="module")
def references(mshp, photos):
    import torch

    from sc2edge.runtime.preprocess import preprocess_image

    loaded, coder = mshp
    out = []
    for photo in photos[:4]:
        image = torch.from_numpy(preprocess_image(photo, loaded.spec.preprocess.to_json()))[None]
        ref = torch_reference(loaded.model.bottleneck_layer, image)
        medians = loaded.model.bottleneck_layer.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
        ref["z_symbols"] = torch.round(ref["z"] - medians).int().numpy()[0]
        out.append(ref)
    return out


def test_native_and_numpy_implementations_agree_bit_for_bit_on_every_layer_kind():
    rng = np.random.default_rng(0)
    path = _random_path(rng)
    z = rng.integers(-20, 20, size=(6, 9, 7), dtype=np.int32)
    native, numpy_ = path.params(z, "native"), path.params(z, "numpy")
    assert np.array_equal(_bits(native), _bits(numpy_))
    np.testing.assert_allclose(native, _torch_params(path, z), rtol=1e-4, atol=1e-4)  # the same function as torch
    assert np.array_equal(path.indexes(native[:4], "native"), path.indexes(native[:4], "numpy"))


def test_index_path_matches_pytorch_but_for_a_handful_of_boundary_symbols(mshp, references):
    _, coder = mshp
    total = differ = 0
    for ref in references:
        indexes, means = coder.index_path(ref["z_symbols"], "native")
        numpy_indexes, numpy_means = coder.index_path(ref["z_symbols"], "numpy")
        assert np.array_equal(indexes, numpy_indexes) and np.array_equal(_bits(means), _bits(numpy_means))
        torch_indexes = ref["indexes"].numpy()[0]
        assert len(np.unique(indexes)) > 20  # the indexes really spread over the table
        np.testing.assert_allclose(means, ref["means"].numpy()[0], rtol=1e-4, atol=1e-4)
        total += indexes.size
        differ += int((indexes != torch_indexes).sum())
    assert differ <= total // 1000, f"{differ} of {total} indexes differ from PyTorch's float path"


def test_payloads_equal_compressai_compress_where_the_indexes_agree(mshp, references):
    _, coder = mshp
    agreeing = 0
    for ref in references:
        payload = coder.encode(ref["y"].numpy()[0], ref["z_symbols"])
        assert payload.z == ref["z_strings"][0]
        indexes, _ = coder.side_info(ref["z_symbols"])
        if np.array_equal(indexes, ref["indexes"].numpy()[0]):
            agreeing += 1
            assert payload.y == ref["y_strings"][0]
        y_symbols, means = coder.decode_symbols(payload)
        assert np.array_equal(y_symbols, np.rint(ref["y"].numpy()[0] - means).astype(np.int32))
    assert agreeing >= 2


def test_index_path_is_identical_across_processes_and_thread_settings(mshp, references, tmp_path):
    _, coder = mshp
    z = references[0]["z_symbols"]
    np.savez(tmp_path / "side.npz", **coder.index_path.to_arrays())
    np.save(tmp_path / "z.npy", z)
    indexes, means = coder.index_path(z)
    expected = [index_checksum(indexes), index_checksum(_bits(means).view(np.int32))]
    script = (
        "import json, sys, numpy as np\n"
        "from sc2edge.runtime.hyperprior import load_index_path, index_checksum\n"
        f"if sys.argv[1] == 'torch':\n    import torch; torch.set_num_threads(2); torch.set_flush_denormal(True)\n"
        f"path = load_index_path({str(tmp_path / 'side.npz')!r})\n"
        f"i, m = path(np.load({str(tmp_path / 'z.npy')!r}))\n"
        "print(json.dumps([index_checksum(i), index_checksum(m.view(np.int32))]))\n")
    for mode, threads in (("plain", "1"), ("torch", "2")):
        env = {"OMP_NUM_THREADS": threads, "PATH": "/usr/bin:/bin"}
        run = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, env=env,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout) == expected, mode
    with ThreadPoolExecutor(4) as pool:
        for got, got_means in pool.map(lambda _: coder.index_path(z), range(8)):
            assert np.array_equal(got, indexes) and np.array_equal(_bits(got_means), _bits(means))


def test_flush_to_zero_left_on_by_another_library_does_not_change_the_native_path():
    import torch

    tiny = np.float32(1e-20)  # products of 1e-20 * 1e-20 are denormal floats
    layer = SideLayer("conv2d", np.full((1, 1, 1, 1), tiny, np.float32), stride=1, padding=0)
    path = IndexPath((layer,), z_medians=np.full(1, tiny, np.float32), scale_table=np.array([1, 2], np.float32),
                     scale_bound=0.11, means=False)
    z = np.zeros((1, 2, 2), np.int32)
    before_native, before_numpy = path.params(z, "native"), path.params(z, "numpy")
    assert before_native[0, 0, 0] != 0 and np.array_equal(_bits(before_native), _bits(before_numpy))
    torch.set_flush_denormal(True)
    try:
        after_native, after_numpy = path.params(z, "native"), path.params(z, "numpy")
    finally:
        torch.set_flush_denormal(False)
    assert np.array_equal(_bits(after_native), _bits(before_native))
    assert after_numpy[0, 0, 0] == 0  # the thread really flushed denormals: a float path would have diverged


def test_one_ulp_in_a_float_path_desynchronises_the_decoder_and_the_checksum_catches_it(mshp, references):
    """The failure the index path prevents, made to happen: a server whose float h_s lands one ulp across a scale
    boundary decodes garbage; the deterministic path decodes exactly; the stream's index CRC names the mismatch."""
    _, coder = mshp
    ref = references[0]
    params = coder.index_path.params(ref["z_symbols"])
    scales = params[:coder.index_path.latent_channels].copy()
    table = coder.index_path.scale_table
    # The symbol whose scale lies nearest a boundary (relative distance), placed exactly on it on the device ...
    indexes = coder.index_path.indexes(scales)
    inside = (indexes > 0) & (indexes < table.size - 1)
    gap = np.where(inside, np.abs(scales / table[np.clip(indexes, 0, table.size - 1)] - 1), np.inf)
    where = np.unravel_index(np.argmin(gap), scales.shape)
    scales[where] = table[indexes[where]]
    device_indexes = coder.index_path.indexes(scales)
    # ... and one ulp above it on a server that computed h_s in its own float kernels.
    server_scales = scales.copy()
    server_scales[where] = np.nextafter(scales[where], np.float32(np.inf))
    server_indexes = coder.index_path.indexes(server_scales)
    assert int((server_indexes != device_indexes).sum()) == 1

    y_symbols = np.rint(ref["y"].numpy()[0] - params[coder.index_path.latent_channels:]).astype(np.int32)
    payload = coder.y_coder.encode_with_indexes(y_symbols, device_indexes)
    try:  # the coder's own checks may notice the garbage (an impossible escape), or decode it silently
        desynced = coder.y_coder.decode_with_indexes(payload, server_indexes)
        assert int((desynced != y_symbols).sum()) > 1  # not one wrong symbol: the rest of the stream is garbage
    except StreamError as exc:
        assert "corrupt" in str(exc)
    for implementation in available_implementations():  # the deterministic path gives the device's indexes
        assert np.array_equal(coder.index_path(ref["z_symbols"], implementation)[0], indexes)
    assert np.array_equal(coder.y_coder.decode_with_indexes(payload, device_indexes), y_symbols)
    with pytest.raises(StreamError, match="index map mismatch"):
        check_indexes(server_indexes, index_checksum(device_indexes))


def test_stream_whose_index_crc_disagrees_is_refused_before_decoding(mshp, references):
    from dataclasses import replace

    _, coder = mshp
    ref = references[1]
    payload = coder.encode(ref["y"].numpy()[0], ref["z_symbols"])
    with pytest.raises(StreamError, match="index map mismatch"):
        coder.decode(replace(payload, index_crc32=payload.index_crc32 ^ 1))


def test_bad_inputs_are_clear_errors(mshp, tmp_path):
    _, coder = mshp
    with pytest.raises(Sc2edgeError, match="z symbols must be int32"):
        coder.index_path(np.zeros((16, 14, 14), np.float32))
    with pytest.raises(Sc2edgeError, match="does not match h_s"):
        coder.encode(np.zeros((24, 50, 50), np.float32), np.zeros((16, 14, 14), np.int32))
    with pytest.raises(Sc2edgeError, match="indexes span"):
        coder.y_coder.encode_with_indexes(np.zeros((2, 2, 2), np.int32), np.full((2, 2, 2), 99, np.int32))
    arrays = coder.index_path.to_arrays()
    del arrays["h_s.4.weight"]
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(BundleError, match="malformed"):
        load_index_path(tmp_path / "broken.npz")


_BUILDS = {  # name -> extra compiler flags; "fma" lets the compiler fuse multiply-adds, which the build forbids
    "scalar-O0": ["-O0", "-ffp-contract=off"],
    "sse2": ["-O3", "-mno-avx", "-DSC2EDGE_SINGLE_TARGET", "-ffp-contract=off"],
    "native-isa": ["-O3", "-march=native", "-DSC2EDGE_SINGLE_TARGET", "-ffp-contract=off"],
    "fma-contracted": ["-O3", "-march=native", "-DSC2EDGE_SINGLE_TARGET", "-ffp-contract=fast"],
}


def test_builds_for_other_isas_give_the_same_bits_and_fma_contraction_would_not(tmp_path):
    """Stand-ins for other machines: the same source built scalar, SSE2-only and for this CPU's full ISA agrees bit
    for bit with the numpy reference; a build that lets the compiler fuse multiply-adds does not (on a CPU with
    FMA), which is why the extension is built with -ffp-contract=off."""
    import shutil
    import sysconfig
    from pathlib import Path

    compiler = shutil.which("gcc")
    if compiler is None or sys.platform != "linux":
        pytest.skip("needs gcc on Linux")
    source = Path(__file__).parents[2] / "runtime" / "_hyperprior.c"
    rng = np.random.default_rng(1)
    path = _random_path(rng)
    np.savez(tmp_path / "side.npz", **path.to_arrays())
    z = rng.integers(-20, 20, size=(6, 9, 7), dtype=np.int32)
    np.save(tmp_path / "z.npy", z)
    reference = path.params(z, "numpy")
    script = (
        "import sys, numpy as np, importlib.machinery, importlib.util\n"
        "import sc2edge.runtime.hyperprior as hp\n"
        "loader = importlib.machinery.ExtensionFileLoader('sc2edge.runtime._hyperprior', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))\n"
        "loader.exec_module(module)\n"
        "hp._native_module = lambda: module\n"
        f"path = hp.load_index_path({str(tmp_path / 'side.npz')!r})\n"
        f"np.save(sys.argv[2], path.params(np.load({str(tmp_path / 'z.npy')!r}), 'native'))\n")
    include = sysconfig.get_paths()["include"]
    results = {}
    for name, flags in _BUILDS.items():
        library = tmp_path / name / f"_hyperprior{sysconfig.get_config_var('EXT_SUFFIX')}"
        library.parent.mkdir()
        build = subprocess.run([compiler, "-shared", "-fPIC", "-std=c11", *flags, f"-I{include}", str(source), "-o",
                                str(library)], capture_output=True, text=True, timeout=120)
        assert build.returncode == 0, build.stderr
        run = subprocess.run([sys.executable, "-c", script, str(library), str(tmp_path / f"{name}.npy")],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        results[name] = np.load(tmp_path / f"{name}.npy")
    for name in ("scalar-O0", "sse2", "native-isa"):
        assert np.array_equal(_bits(results[name]), _bits(reference)), name
    with open("/proc/cpuinfo") as f:
        has_fma = " fma " in f.read()
    if has_fma:
        assert not np.array_equal(_bits(results["fma-contracted"]), _bits(reference))


def _codec(coder: HyperpriorCoder, index_path: IndexPath | None = None):
    from sc2edge.runtime.entropy import LatentLimits
    from sc2edge.runtime.hyperprior import HyperpriorCodec

    z_tables, y_tables = coder.z_coder.tables, coder.y_coder.tables
    spec = {"kind": "hyperprior", "coder": "compressai-rans64", "precision": 16,
            "sections": [{"name": "z", "input": "z_symbols", "tables": "tables.npz", "hash": z_tables.hash},
                         {"name": "y", "input": "y", "tables": "gaussian.npz", "hash": y_tables.hash}],
            "side_network": {"file": "side.npz", "hash": coder.index_path.hash}, "server_input": "y_hat"}
    manifest = {"latent": {"shape": [24, 55, 55], "geometry": [[5, 2, 2], [5, 2, 2], [2, 1, 0]]},
                "input": {"height": 224, "width": 224}}
    return HyperpriorCodec(spec, {"z": z_tables, "y": y_tables}, LatentLimits(manifest),
                           index_path=index_path or coder.index_path)


def test_hyperprior_codec_streams_carry_z_y_and_the_index_crc(mshp, references):
    from sc2edge.runtime.stream import pack_stream, unpack_stream

    _, coder = mshp
    codec = _codec(coder)
    ref = references[2]
    stream = codec.compress({"y": ref["y"].numpy()[0], "z_symbols": ref["z_symbols"]})
    header, payloads = unpack_stream(stream, codec="hyperprior")
    assert [s.name for s in header.sections] == ["z", "y", "index"]
    assert codec.latent_section == "y"  # the manifest's last section: the side information "z" comes first
    assert header.sections[2].table_hash == coder.index_path.hash and len(payloads["index"]) == 4
    indexes, means = coder.side_info(ref["z_symbols"])
    y_hat = codec.decompress(stream)["y_hat"]
    assert np.array_equal(y_hat, np.rint(ref["y"].numpy()[0] - means) + means)

    sections = [(s.name, s.table_hash, s.shape, payloads[s.name]) for s in header.sections]
    tampered = sections[:2] + [(*sections[2][:3], (index_checksum(indexes) ^ 0x10).to_bytes(4, "little"))]
    with pytest.raises(StreamError, match="index map mismatch"):
        codec.decompress(pack_stream("hyperprior", tampered))
    other = IndexPath(coder.index_path.layers, coder.index_path.z_medians, coder.index_path.scale_table,
                      scale_bound=0.12)  # another side network: its streams are refused by hash, before decoding
    with pytest.raises(StreamError, match="made for entropy tables"):
        _codec(coder, other).decompress(stream)
    mismatched = [sections[0], (*sections[1][:2], (24, 54, 55), sections[1][3]), (*sections[2][:2], (24, 54, 55),
                                                                                  sections[2][3])]
    with pytest.raises(StreamError, match="outside|disagree"):
        codec.decompress(pack_stream("hyperprior", mismatched))
