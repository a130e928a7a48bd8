"""Write a bundle atomically: everything goes into a staging directory that is renamed into place at the end,
so a failed or interrupted export leaves no half bundle (and an existing bundle stays intact until then).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sc2edge._files import sha256_file
from sc2edge.errors import BundleError
from sc2edge.runtime.bundle import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, MANIFEST, Artifact


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and next(path.iterdir(), None) is None


class BundleBuilder:
    """Stage a bundle's files, ``write_manifest``, then ``commit`` it.

    Use it as a context manager: an exception (or a missing commit) discards the staging directory.

    Args:
        out_dir (Path): the bundle directory to create.
        overwrite (bool): replace an existing bundle at ``out_dir``. Defaults to False.
    """

    def __init__(self, out_dir: str | Path, *, overwrite: bool = False):
        self.out_dir = Path(out_dir)
        if self.out_dir.exists():
            if not overwrite:
                raise BundleError(f"{self.out_dir} exists; pass --force (overwrite=True) to replace it")
            if not (self.out_dir / MANIFEST).is_file() and not _is_empty_dir(self.out_dir):
                # commit() deletes what it replaces: never a folder that is not a bundle (e.g. --out .)
                raise BundleError(f"{self.out_dir} is not an sc2edge bundle (no {MANIFEST}): --force replaces "
                                  "bundles only; choose a new --out")
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", dir=self.out_dir.parent))
        self.artifacts: list[Artifact] = []

    def add_artifact(self, role: str, fmt: str, precision: str, path: str | Path,
                     meta: dict[str, Any] | None = None) -> Artifact:
        """Record a graph written under ``self.staging`` (``path`` absolute or relative to the staging dir)."""
        path = Path(path)
        relative = path.relative_to(self.staging) if path.is_absolute() else path
        if not (self.staging / relative).is_file():
            raise BundleError(f"artifact {relative} was not written")
        artifact = Artifact(role, fmt, precision, relative.as_posix(), sha256_file(self.staging / relative),
                            dict(meta or {}))
        self.artifacts = [a for a in self.artifacts if (a.role, a.format, a.precision) != (role, fmt, precision)]
        self.artifacts.append(artifact)
        return artifact

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write manifest.json into the staging directory, with the sha256 of every other file.

        Artifacts were hashed when recorded; only the other files (tables, labels, caches) are read here.
        """
        recorded = {a.path: a.sha256 for a in self.artifacts}
        files = {}
        for path in sorted(self.staging.rglob("*")):
            if path.is_file() and path.name != MANIFEST:
                name = path.relative_to(self.staging).as_posix()
                files[name] = recorded.get(name) or sha256_file(path)
        full = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_FORMAT_VERSION, **manifest,
                "artifacts": [a.to_json() for a in self.artifacts], "files": files}
        (self.staging / MANIFEST).write_text(json.dumps(full, indent=2) + "\n")

    def commit(self) -> Path:
        """Move the staged bundle into place (after ``write_manifest``)."""
        if not (self.staging / MANIFEST).is_file():
            raise BundleError("write_manifest() must come before commit()")
        if self.out_dir.exists():
            backup = self.out_dir.with_name(f".{self.out_dir.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            self.out_dir.rename(backup)
            self.staging.rename(self.out_dir)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            self.staging.rename(self.out_dir)
        return self.out_dir

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> BundleBuilder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None or self.staging.exists():
            self.discard()
