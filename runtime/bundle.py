"""Read a bundle directory: its manifest (v1 or v2, normalized to v2), every path it names, every file's sha256.

What the runtime opens is exactly what the manifest lists and verifies: file names are plain relative paths
inside the bundle, the bundle holds no symlinks and no unlisted files, and only regular files are read.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sc2edge._files import read_regular_file, sha256_file
from sc2edge.errors import BundleError, Sc2edgeError
from sc2edge.runtime.manifest import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    LABELS_FILE,
    MANIFEST,
    MAX_FILES,
    UNCODED,
    Artifact,
    ManifestSpec,
    normalize,
    parse,
)
from sc2edge.runtime.rans import EntropyTables

__all__ = ["BUNDLE_FORMAT", "BUNDLE_FORMAT_VERSION", "LABELS_FILE", "MANIFEST", "Artifact", "Bundle",
           "backup_path", "restore_interrupted_commit"]

MAX_MANIFEST_BYTES = 4 << 20
MAX_LABELS_BYTES = 16 << 20


def backup_path(out_dir: Path) -> Path:
    """Where a commit parks the bundle it replaces (only where an atomic directory swap is unavailable)."""
    return out_dir.with_name(f".{out_dir.name}.old")


def restore_interrupted_commit(path: Path) -> bool:
    """Put back the bundle a commit parked aside, if the commit was killed before the new one moved in."""
    backup = backup_path(path)
    if os.path.lexists(path) or not (backup / MANIFEST).is_file():
        return False
    try:
        backup.rename(path)
    except OSError:
        return False
    return True


class Bundle:
    """An exported model: graphs, entropy tables and the manifest that ties them together.

    ``manifest`` is the v2 dict (a v1 manifest is normalized on open); ``spec`` its typed view;
    ``format_version`` the version of the file on disk.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], spec: ManifestSpec, tables: EntropyTables | None,
                 format_version: int):
        self.path = path
        self.manifest = manifest
        self.spec = spec
        self.tables = tables
        self.format_version = format_version
        self.artifacts = list(spec.artifacts)

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> Bundle:
        """Open and check a bundle directory.

        Args:
            path (str | Path): the bundle directory.
            verify (bool): check every file's sha256 against the manifest. Defaults to True.
        """
        path = Path(path)
        restore_interrupted_commit(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise BundleError(f"{path} is not an sc2edge bundle (no {MANIFEST})")
        raw = _read_json(manifest_path, MAX_MANIFEST_BYTES)
        manifest = normalize(raw, str(manifest_path))
        try:
            spec = parse(manifest)
        except BundleError as exc:
            raise BundleError(f"{manifest_path} is incomplete or malformed: {exc}") from None
        _check_files(path, spec, verify)
        section, tables = spec.entropy.sections[0], None
        if spec.entropy.coder != UNCODED:  # a codec without rANS tables checks its own files (runtime/bq.py)
            tables = EntropyTables.load(path / section.tables)
            if tables.hash != section.hash:
                raise BundleError(f"{path}: entropy tables hash {tables.hash}, manifest says {section.hash[:40]}")
        return cls(path, manifest, spec, tables, raw["format_version"])

    @property
    def name(self) -> str:
        return self.spec.model.name

    @property
    def labels(self) -> list[str] | None:
        """Class names, when the bundle carries them (one string per class)."""
        name = self.spec.task.labels
        if not name:
            return None
        labels = _read_json(self.path / name, MAX_LABELS_BYTES)
        if (not isinstance(labels, list) or len(labels) != self.spec.task.num_classes
                or not all(isinstance(label, str) for label in labels)):
            raise BundleError(f"{self.path / name} must be a list of {self.spec.task.num_classes} class names")
        return labels

    @property
    def preprocess(self) -> dict[str, Any]:
        return self.manifest["preprocess"]

    def graph_files(self, artifact: Artifact) -> list[str]:
        """The files a runtime running ``artifact`` opens: the graph and its companions, the entropy tables and the
        labels (``verify_files`` checks just these: a device need not hash the server's graphs to start)."""
        return [artifact.path, *artifact.companions, *self.spec.shared_files()]

    def verify_files(self, names: Iterable[str]) -> None:
        """Check these files' sha256 against the manifest (``open(verify=False)`` checks none)."""
        _verify(self.path, self.spec, names)

    def artifact(self, role: str, fmt: str, precision: str = "fp32") -> Artifact:
        for artifact in self.artifacts:
            if (artifact.role, artifact.format, artifact.precision) == (role, fmt, precision):
                return artifact
        have = ", ".join(f"{a.role}/{a.format}/{a.precision}" for a in self.artifacts)
        raise BundleError(f'{self.path} has no {role} graph in format "{fmt}" at precision "{precision}" '
                          f"(it has: {have}); export it with the matching --backend/--int8 options")


def _read_json(path: Path, limit: int) -> Any:
    """A JSON file that is a regular file of bounded size; anything else is a one-line BundleError."""
    try:
        return json.loads(read_regular_file(path, limit))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise BundleError(f"{path} is not valid JSON: nested too deeply") from None
    except Sc2edgeError as exc:
        raise BundleError(str(exc)) from None


def _bundle_files(root: Path) -> set[str]:
    """Relative names of every file under ``root`` (manifest excepted); a symlink or special file is refused."""
    found: set[str] = set()
    pending = [root]
    while pending:
        folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                name = Path(entry.path).relative_to(root).as_posix()
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    pending.append(Path(entry.path))
                elif stat.S_ISREG(mode):
                    found.add(name)
                else:
                    raise BundleError(f"{root}: {name} is a symlink or special file; bundles hold regular files only")
                if len(found) > MAX_FILES:
                    raise BundleError(f"{root} holds more than {MAX_FILES} files")
    found.discard(MANIFEST)
    return found


def _check_files(path: Path, spec: ManifestSpec, verify: bool) -> None:
    """Every file present is listed, every listed file is present, every file the runtime opens is listed."""
    present = _bundle_files(path)
    unlisted = sorted(present - set(spec.files))
    missing = sorted(set(spec.files) - present)
    unverified = sorted(set(spec.referenced_files()) - set(spec.files))
    if missing:
        raise BundleError(f"{path}: {missing[0][:80]} is missing")
    if unverified:
        raise BundleError(f"{path}: the manifest names {unverified[0][:80]} but does not list it in files")
    if unlisted:
        raise BundleError(f"{path}: {unlisted[0][:80]} is not listed in the manifest's files (added or left over)")
    if verify:
        _verify(path, spec, spec.files)


def _verify(path: Path, spec: ManifestSpec, names: Iterable[str]) -> None:
    """The sha256 of each of ``names`` (files the manifest lists) against the manifest."""
    for name in names:
        if sha256_file(path / name) != spec.files[name]:
            raise BundleError(f"{path}: {name} does not match its sha256 in the manifest (modified or corrupt)")
