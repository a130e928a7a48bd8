"""The entropy layer: the manifest's entropy section in both layouts, the codec registry, the factorized codec
(device outputs -> sections -> server inputs) and the latent limits it checks before decoding."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from compressai.entropy_models import EntropyBottleneck

from sc2edge.errors import BundleError, StreamError
from sc2edge.runtime import Bundle
from sc2edge.runtime.entropy import (
    CODECS,
    MAX_INPUT_SCALE,
    FactorizedCodec,
    LatentLimits,
    entropy_spec,
    latent_size,
    open_codec,
)
from sc2edge.runtime.manifest import normalize, parse
from sc2edge.runtime.rans import EntropyTables
from sc2edge.runtime.stream import pack_stream, read_header

GOLDEN_MANIFEST = Path(__file__).resolve().parent.parent / "golden" / "manifest.v1.json"


@pytest.fixture(scope="module")
def tables() -> EntropyTables:
    """Tables of the golden model's shape (8 channels): only their shape and hash matter here."""
    torch.manual_seed(0)
    eb = EntropyBottleneck(8)
    eb.update(force=True)
    return EntropyTables.from_bottleneck(eb)


def _bundle(tmp_path: Path, tables: EntropyTables, v2: bool = True, **entropy_changes) -> Bundle:
    """The golden Fashion-MNIST manifest (latent 8x14x14 from 28 px) with these tables, in either layout."""
    manifest = json.loads(GOLDEN_MANIFEST.read_text())
    manifest["entropy"]["hash"] = tables.hash
    if v2:
        manifest["entropy"] = entropy_spec(manifest)
    manifest["entropy"].update(entropy_changes)
    tables.save(tmp_path / "tables.npz")
    version, manifest = manifest["format_version"], normalize(manifest, "golden manifest")
    return Bundle(tmp_path, manifest, parse(manifest), tables, version)


def test_entropy_spec_reads_both_layouts():
    v1 = json.loads(GOLDEN_MANIFEST.read_text())
    spec = entropy_spec(v1)
    assert spec == {"kind": "factorized", "coder": "compressai-rans64", "precision": 16,
                    "sections": [{"name": "y", "input": "symbols", "tables": "tables.npz",
                                  "hash": v1["entropy"]["hash"]}]}
    assert entropy_spec({"entropy": spec}) == spec


@pytest.mark.parametrize("entropy", [
    None, [], {"kind": "factorized"}, {"kind": "factorized", "sections": []},
    {"kind": "factorized", "sections": [{"name": "y"}]}, {"kind": 3, "sections": [{}]},
    {"kind": "factorized", "sections": [{"name": "y", "input": "symbols", "tables": "t", "hash": "h"}] * 5},
    {"coder": "compressai-rans64", "file": "tables.npz"},  # v1 without its hash
])
def test_malformed_entropy_sections_are_refused(entropy):
    with pytest.raises(BundleError, match="entropy section"):
        entropy_spec({"entropy": entropy})


def test_latent_limits_come_from_the_bundle_geometry():
    manifest = json.loads(GOLDEN_MANIFEST.read_text())
    limits = LatentLimits(manifest)
    largest = latent_size(MAX_INPUT_SCALE * 28, manifest["latent"]["geometry"])
    assert (limits.channels, limits.min_height, limits.max_height) == (8, 14, largest) and largest == 56
    limits.check((8, 14, 14))
    limits.check((8, 56, 20))
    for shape, message in (((8, 13, 14), "13 x 14 is outside"), ((8, 14, 57), "14 x 57 is outside"),
                           ((8, 1, 1), "outside"), ((16, 14, 14), "16 channels")):
        with pytest.raises(StreamError, match=message):
            limits.check(shape)


@pytest.mark.parametrize("edit", [
    lambda m: m.pop("latent"), lambda m: m["latent"].update(shape=[8, 14]), lambda m: m["latent"].update(geometry=3),
    lambda m: m["latent"]["geometry"].append([3, 0, 1]), lambda m: m["input"].update(height="tall"),
    lambda m: m["latent"].update(shape=[8, 0, 14]), lambda m: m["input"].update(height=10**6),
])
def test_malformed_latent_sections_are_bundle_errors(edit):
    manifest = json.loads(GOLDEN_MANIFEST.read_text())
    edit(manifest)
    with pytest.raises(BundleError, match="latent"):
        LatentLimits(manifest)


@pytest.mark.parametrize("v2", [True, False])
def test_factorized_codec_round_trip(tmp_path, tables, v2):
    codec = open_codec(_bundle(tmp_path, tables, v2=v2))
    assert isinstance(codec, FactorizedCodec) and CODECS["factorized"] is FactorizedCodec
    assert codec.device_outputs == codec.server_inputs == ("symbols",) and codec.table_hashes == {"y": tables.hash}
    symbols = np.random.default_rng(0).laplace(0, 3, (8, 14, 14)).round().astype(np.int32)
    stream = codec.compress({"symbols": symbols})
    header = read_header(stream)
    assert header.codec == "factorized" and [(s.name, s.table_hash, s.shape) for s in header.sections] == [
        ("y", tables.hash, (8, 14, 14))]
    assert codec.latent_section == "y"  # a format-1 manifest's one section too
    np.testing.assert_array_equal(codec.decompress(stream)["symbols"], symbols)


def test_codec_checks_streams_before_decoding(tmp_path, tables):
    codec = open_codec(_bundle(tmp_path, tables))
    payload = codec.coder.encode(np.zeros((8, 1, 1), np.int32))
    for sections, message in [
        ([("y", tables.hash, (8, 1, 1), payload)], "1 x 1 is outside"),
        ([("y", tables.hash, (8, 512, 512), b"\xff" * 64)], "512 x 512 is outside"),
        ([("y", "0123456789abcdef", (8, 14, 14), payload)], "made for entropy tables 0123456789abcdef"),
        ([("z", tables.hash, (8, 14, 14), payload)], "holds sections z"),
    ]:
        with pytest.raises(StreamError, match=message):
            codec.decompress(pack_stream("factorized", sections))
    with pytest.raises(StreamError, match='coded by the "hyperprior" entropy model'):
        codec.decompress(pack_stream("hyperprior", [("y", tables.hash, (8, 14, 14), payload)]))


def test_unknown_or_inconsistent_entropy_models_are_refused(tmp_path, tables):
    with pytest.raises(BundleError, match='entropy model "autoregressive" is not known.*known: factorized'):
        open_codec(_bundle(tmp_path, tables, kind="autoregressive"))
    spec = entropy_spec({"entropy": {"file": "tables.npz", "hash": tables.hash}})
    two = copy.deepcopy(spec["sections"]) * 2
    with pytest.raises(BundleError, match="codes one section, the manifest lists 2"):
        open_codec(_bundle(tmp_path, tables, sections=two))
    other = copy.deepcopy(spec["sections"])
    other[0]["hash"] = "0123456789abcdef"
    with pytest.raises(BundleError, match="hash .* the manifest says 0123456789abcdef"):
        open_codec(_bundle(tmp_path, tables, sections=other))
