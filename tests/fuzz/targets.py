"""Fuzz targets over what an outsider controls: stream bytes, the rANS payload inside a valid container, and the
files of a bundle. Each target takes bytes and must either succeed or raise ``Sc2edgeError``; anything else (or
a hang, or a native crash) is a finding.

They go through the public API only (``Decoder.decode_symbols``, ``pack_stream``, ``Bundle.open``), so they keep
working when the stream and manifest formats change underneath. ``scripts/fuzz.py`` runs them under atheris.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import tempfile
from pathlib import Path

from sc2edge._files import sha256_file
from sc2edge.errors import Sc2edgeError
from sc2edge.runtime import Bundle, Decoder, Encoder, pack_stream

TARGETS = ("stream", "coder", "bundle")
MAX_SIDE = 64  # latent height/width the coder target asks for (bounded so one input stays cheap)
_HOSTILE_VALUES = (None, -1, 0, 2**63, 1e308, "", "../../../etc/passwd", "/etc/hostname", [], {}, [[[]]], True,
                   "x" * 300, float("nan"), {"a": 1}, [1, 2, 3], "manifest.json", "tables.npz")


class StreamTarget:
    """Whole streams as a server receives them: container parsing, CRC, table check, then the rANS decoder."""

    def __init__(self, bundle: str | Path, images: list[Path]):
        self.decoder = Decoder(bundle)
        with Encoder(bundle) as encoder:
            self.streams = encoder.encode(images)

    def seeds(self) -> list[bytes]:
        return list(self.streams)

    def __call__(self, data: bytes) -> None:
        try:
            self.decoder.decode_symbols(data)
        except Sc2edgeError:
            pass


class CoderTarget(StreamTarget):
    """Arbitrary payloads in a valid container (right tables, right CRC), so every input reaches the rANS decoder.
    The first two bytes give the latent height and width."""

    def _frame(self, payload: bytes, height: int, width: int) -> bytes:
        """A valid container (this bundle's codec, tables and CRC) around ``payload`` as its first section."""
        codec = self.decoder.codec
        name, table_hash = next(iter(codec.table_hashes.items()))
        shape = (self.decoder.bundle.manifest["latent"]["channels"], height, width)
        return pack_stream(codec.kind, [(name, table_hash, shape, payload)])

    def seeds(self) -> list[bytes]:
        from sc2edge.runtime import unpack_stream

        found = []
        for stream in self.streams:
            header, payloads = unpack_stream(stream)
            section = header.sections[0]
            if section.shape[1] <= MAX_SIDE and section.shape[2] <= MAX_SIDE:
                found.append(bytes([section.shape[1] - 1, section.shape[2] - 1]) + payloads[section.name])
        return found or [b"\x0d\x0d" + b"\0" * 64]

    def __call__(self, data: bytes) -> None:
        if len(data) < 2:
            return
        height, width = data[0] % MAX_SIDE + 1, data[1] % MAX_SIDE + 1
        try:
            self.decoder.decode_symbols(self._frame(data[2:], height, width))
        except Sc2edgeError:
            pass


class BundleTarget:
    """A bundle directory whose manifest (raw bytes or a structured edit) or entropy tables come from the input.
    The graphs are replaced by small stand-ins (the reader hashes but never parses them), so each input is cheap."""

    def __init__(self, bundle: str | Path):
        source = Bundle.open(bundle)
        self.dir = Path(tempfile.mkdtemp(prefix="sc2edge-fuzz-bundle-"))
        manifest = copy.deepcopy(source.manifest)
        kept = {source.manifest["entropy"]["sections"][0]["tables"], source.manifest["task"].get("labels")}
        for name in manifest["files"]:
            target = self.dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if name in kept:
                shutil.copy(source.path / name, target)
            else:
                target.write_bytes(f"stand-in for {name}".encode())
            manifest["files"][name] = sha256_file(target)
        self.manifest = manifest
        self.tables_name = manifest["entropy"]["sections"][0]["tables"]
        self.tables = (self.dir / self.tables_name).read_bytes()
        self._write(json.dumps(manifest).encode(), self.tables)
        Bundle.open(self.dir)  # the seed itself must open

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _write(self, manifest: bytes, tables: bytes) -> None:
        (self.dir / self.tables_name).write_bytes(tables)
        (self.dir / "manifest.json").write_bytes(manifest)

    def seeds(self) -> list[bytes]:
        return [b"\0" + json.dumps(self.manifest).encode(), b"\1\0\0\0\0", b"\2" + self.tables]

    def _edited(self, data: bytes) -> bytes:
        """The seed manifest with values at input-chosen places replaced by input-chosen JSON values."""
        rng = random.Random(data)
        manifest = copy.deepcopy(self.manifest)
        for _ in range(1 + len(data) % 4):
            parent: dict | list | None = None
            key: str | int | None = None
            node: object = manifest
            while isinstance(node, dict | list) and node:
                key = rng.choice(list(node) if isinstance(node, dict) else range(len(node)))
                parent = node
                if rng.random() < 0.3:
                    break
                node = node[key]
            if parent is not None:
                parent[key] = copy.deepcopy(rng.choice(_HOSTILE_VALUES))
        return json.dumps(manifest).encode()

    def __call__(self, data: bytes) -> None:
        if not data:
            return
        mode, body = data[0] % 3, data[1:]
        if mode == 0:
            self._write(body, self.tables)
        elif mode == 1:
            self._write(self._edited(body), self.tables)
        else:  # the tables themselves, with the manifest's sha256 updated so the parser sees them
            manifest = copy.deepcopy(self.manifest)
            (self.dir / self.tables_name).write_bytes(body)
            manifest["files"][self.tables_name] = sha256_file(self.dir / self.tables_name)
            self._write(json.dumps(manifest).encode(), body)
        try:
            bundle = Bundle.open(self.dir)
            bundle.labels, bundle.preprocess, bundle.name  # noqa: B018 (the lazy readers run on access)
            for artifact in bundle.artifacts:
                bundle.artifact(artifact.role, artifact.format, artifact.precision)
        except Sc2edgeError:
            pass


def make_target(name: str, bundle: str | Path, images: list[Path]):
    if name == "stream":
        return StreamTarget(bundle, images)
    if name == "coder":
        return CoderTarget(bundle, images)
    if name == "bundle":
        return BundleTarget(bundle)
    raise ValueError(f"unknown fuzz target {name!r} (have: {', '.join(TARGETS)})")
