"""Read a bundle directory: verify its format version and every file's sha256 before anything runs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sc2edge._files import sha256_file
from sc2edge.errors import BundleError
from sc2edge.runtime.entropy import entropy_spec
from sc2edge.runtime.rans import EntropyTables

BUNDLE_FORMAT = "sc2edge-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LABELS_FILE = "labels.json"
# Top-level manifest records every reader (runtime, inspect, calibrate, bench) relies on.
REQUIRED_KEYS = ("model", "preprocess", "input", "latent", "entropy", "artifacts", "files")


@dataclass(frozen=True)
class Artifact:
    """One graph file of a bundle: which half, in which format and precision."""

    role: str
    format: str
    precision: str
    path: str
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "format": self.format, "precision": self.precision, "path": self.path,
                "sha256": self.sha256, "meta": self.meta}


class Bundle:
    """An exported model: graphs, entropy tables and the manifest that ties them together."""

    def __init__(self, path: Path, manifest: dict[str, Any], tables: EntropyTables):
        self.path = path
        self.manifest = manifest
        self.tables = tables
        self.artifacts = [Artifact(**a) for a in manifest["artifacts"]]

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> Bundle:
        """Open and check a bundle directory.

        Args:
            path (str | Path): the bundle directory.
            verify (bool): check every file's sha256 against the manifest. Defaults to True.
        """
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise BundleError(f"{path} is not an sc2edge bundle (no {MANIFEST})")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{manifest_path} is not an sc2edge bundle manifest")
        version = manifest.get("format_version")
        if version != BUNDLE_FORMAT_VERSION:
            raise BundleError(f"{path} has bundle format version {version}; this sc2edge reads version "
                              f"{BUNDLE_FORMAT_VERSION}: re-export it with this version")
        _check_structure(manifest, manifest_path)
        files: dict[str, str] = manifest["files"]
        for name, expected in files.items():
            file_path = path / name
            if not file_path.is_file():
                raise BundleError(f"{path}: {name} is missing")
            if verify and sha256_file(file_path) != expected:
                raise BundleError(f"{path}: {name} does not match its sha256 in the manifest (modified or corrupt)")
        entropy = entropy_spec(manifest)["sections"][0]  # the first section's tables (the factorized prior's only)
        tables = EntropyTables.load(path / entropy["tables"])
        if tables.hash != entropy["hash"]:
            raise BundleError(f"{path}: entropy tables hash {tables.hash}, manifest says {entropy['hash']}")
        return cls(path, manifest, tables)

    @property
    def name(self) -> str:
        return self.manifest["model"]["name"]

    @property
    def labels(self) -> list[str] | None:
        """Class names, when the bundle carries them."""
        name = self.manifest["model"].get("labels")
        return json.loads((self.path / name).read_text()) if name else None

    @property
    def preprocess(self) -> dict[str, Any]:
        return self.manifest["preprocess"]

    def artifact(self, role: str, fmt: str, precision: str = "fp32") -> Artifact:
        for artifact in self.artifacts:
            if (artifact.role, artifact.format, artifact.precision) == (role, fmt, precision):
                return artifact
        have = ", ".join(f"{a.role}/{a.format}/{a.precision}" for a in self.artifacts)
        raise BundleError(f'{self.path} has no {role} graph in format "{fmt}" at precision "{precision}" '
                          f"(it has: {have}); export it with the matching --backend/--int8 options")


def _check_structure(manifest: dict[str, Any], manifest_path: Path) -> None:
    """A hand-edited or truncated manifest gives BundleError naming what is off, not a KeyError later."""
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise BundleError(f"{manifest_path} is incomplete: no {', '.join(missing)}")
    keys = {f.name for f in fields(Artifact)}
    try:
        entropy_spec(manifest)  # either entropy layout (v1: file, hash; v2: kind, sections)
    except BundleError as exc:
        raise BundleError(f"{manifest_path}: {exc}") from None
    artifacts = manifest["artifacts"]
    well_formed = (isinstance(manifest["files"], dict)
                   and isinstance(artifacts, list)
                   and all(isinstance(a, dict) and keys - {"meta"} <= set(a) <= keys for a in artifacts))
    if not well_formed:
        raise BundleError(f"{manifest_path} is malformed: its files or artifacts "
                          f"({', '.join(sorted(keys))}) are not as sc2edge writes them")
