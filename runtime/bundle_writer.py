"""Write bundles so that a reader only ever sees a complete, verified one.

``BundleBuilder`` makes a new bundle, ``BundleEditor`` changes an existing one (engines, accuracy control,
added backends). Both stage every file in a sibling directory, write the manifest with every file's sha256,
check the staged bundle opens, then swap it into place in one step: a failure (or a kill) at any point
leaves the old bundle, or the new one, never a mix and never none. Torch-free, so export, calibrate and
``build-engine`` (on a device) all use it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sc2edge._files import sha256_file
from sc2edge.errors import BundleError
from sc2edge.runtime.bundle import Bundle, backup_path, restore_interrupted_commit
from sc2edge.runtime.manifest import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, MANIFEST, Artifact

STAGING_TAG = "sc2edge-staging"
_RENAME_EXCHANGE = 2  # linux/fs.h


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and next(path.iterdir(), None) is None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directory entries atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    renameat2 = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None) if libc_name else None
    if renameat2 is None:
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a filesystem without exchange
        return False
    raise BundleError(f"cannot swap {a} into {b}: {os.strerror(code)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(out_dir: Path) -> list[Path]:
    """Remove what killed writers of ``out_dir`` left: staging directories named by this module for this bundle,
    on this host, whose process no longer runs; and a parked old bundle once a bundle is back in place."""
    pattern = re.compile(rf"\.{re.escape(out_dir.name)}\.{STAGING_TAG}\.{re.escape(os.uname().nodename)}"
                         r"\.(\d+)\.[A-Za-z0-9_]+")
    removed = []
    literal_name = re.sub(r"([*?[])", r"[\1]", out_dir.name)  # a glob pattern matching the name itself
    for candidate in out_dir.parent.glob(f".{literal_name}.{STAGING_TAG}.*"):
        match = pattern.fullmatch(candidate.name)
        if match and candidate.is_dir() and not candidate.is_symlink() and not _pid_alive(int(match[1])):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    backup = backup_path(out_dir)
    if (out_dir / MANIFEST).is_file() and (backup / MANIFEST).is_file() and not backup.is_symlink():
        shutil.rmtree(backup, ignore_errors=True)
        removed.append(backup)
    return removed


class BundleBuilder:
    """Stage a bundle's files, ``write_manifest``, then ``commit`` it.

    Use it as a context manager: an exception (or a missing commit) discards the staging directory.

    Args:
        out_dir (Path): the bundle directory to create.
        overwrite (bool): replace an existing bundle at ``out_dir``. Defaults to False.
    """

    def __init__(self, out_dir: str | Path, *, overwrite: bool = False):
        self.out_dir = Path(out_dir)
        restore_interrupted_commit(self.out_dir)
        if self.out_dir.exists():
            if not overwrite:
                raise BundleError(f"{self.out_dir} exists; pass --force (overwrite=True) to replace it")
            if not (self.out_dir / MANIFEST).is_file() and not _is_empty_dir(self.out_dir):
                # commit() deletes what it replaces: never a folder that is not a bundle (e.g. --out .)
                raise BundleError(f"{self.out_dir} is not an sc2edge bundle (no {MANIFEST}): --force replaces "
                                  "bundles only; choose a new --out")
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(self.out_dir)
        prefix = f".{self.out_dir.name}.{STAGING_TAG}.{os.uname().nodename}.{os.getpid()}."
        self.staging = Path(tempfile.mkdtemp(prefix=prefix, dir=self.out_dir.parent))
        self.artifacts: list[Artifact] = []
        self._hashed: dict[str, str] = {}  # files hashed when recorded (not read again by write_manifest)

    def add_artifact(self, role: str, fmt: str, precision: str, path: str | Path,
                     meta: dict[str, Any] | None = None) -> Artifact:
        """Record a graph written under ``self.staging`` (``path`` absolute or relative to the staging dir)."""
        path = Path(path)
        relative = path.relative_to(self.staging) if path.is_absolute() else path
        if not (self.staging / relative).is_file():
            raise BundleError(f"artifact {relative} was not written")
        name = relative.as_posix()
        self._hashed[name] = sha256_file(self.staging / relative)
        artifact = Artifact(role, fmt, precision, name, self._hashed[name], dict(meta or {}))  # type: ignore[arg-type]
        self.artifacts = [a for a in self.artifacts if (a.role, a.format, a.precision) != (role, fmt, precision)]
        self.artifacts.append(artifact)
        return artifact

    def reload_staged(self) -> None:
        """Take the artifacts and file hashes of the staged manifest, after a ``BundleEditor`` on the staging
        directory (export-time accuracy control) rewrote files: the hashes recorded before are stale."""
        staged = Bundle.open(self.staging, verify=False)
        self.artifacts = list(staged.artifacts)
        self._hashed = dict(staged.spec.files)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write manifest.json into the staging directory, with the sha256 of every other file.

        Artifacts recorded by ``add_artifact`` were hashed then; only the other files are read here.
        """
        files = {}
        for path in sorted(self.staging.rglob("*")):
            if path.is_file() and path.name != MANIFEST:
                name = path.relative_to(self.staging).as_posix()
                files[name] = self._hashed.get(name) or sha256_file(path)
        artifacts = [Artifact(a.role, a.format, a.precision, a.path, files.get(a.path, a.sha256), a.meta).to_json()
                     for a in self.artifacts]
        full = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_FORMAT_VERSION, **manifest,
                "artifacts": artifacts, "files": files}
        (self.staging / MANIFEST).write_text(json.dumps(full, indent=2) + "\n")

    def commit(self) -> Path:
        """Check the staged bundle opens, then move it into place (after ``write_manifest``)."""
        if not (self.staging / MANIFEST).is_file():
            raise BundleError("write_manifest() must come before commit()")
        Bundle.open(self.staging, verify=False)  # every file was hashed by write_manifest just now
        if not self.out_dir.exists():
            self.staging.rename(self.out_dir)
        elif _exchange(self.staging, self.out_dir):
            shutil.rmtree(self.staging, ignore_errors=True)  # now the old bundle
        else:  # the old bundle is parked aside; Bundle.open or the next writer restores it after a kill here
            backup = backup_path(self.out_dir)
            shutil.rmtree(backup, ignore_errors=True)
            self.out_dir.rename(backup)
            self.staging.rename(self.out_dir)
            shutil.rmtree(backup, ignore_errors=True)
        return self.out_dir

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> BundleBuilder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None or self.staging.exists():
            self.discard()


class BundleEditor(BundleBuilder):
    """Change an existing bundle: the verified bundle is copied into staging; add, replace or ``remove`` files
    there (``add_artifact`` records graphs), edit ``manifest``, then ``commit``. Until the commit the bundle
    is untouched; a failed edit leaves it as it was.

    Args:
        bundle (Bundle | str | Path): the bundle to edit (opened and verified here).
    """

    def __init__(self, bundle: Bundle | str | Path):
        bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
        super().__init__(bundle.path, overwrite=True)
        self.source = bundle
        for name in bundle.spec.files:
            target = self.staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bundle.path / name, target)  # a copy: a staged rewrite never touches the bundle
        self.artifacts = list(bundle.artifacts)
        self.manifest = {k: v for k, v in bundle.manifest.items()
                         if k not in ("format", "format_version", "artifacts", "files")}

    def remove(self, names: Iterable[str]) -> None:
        """Drop files (and the artifacts stored in them) from the edited bundle."""
        for name in names:
            (self.staging / name).unlink(missing_ok=True)
            self.artifacts = [a for a in self.artifacts if a.path != name]

    def commit(self) -> Path:
        """Write the manifest (every file hashed afresh), check the staged bundle, swap it in."""
        self.write_manifest(self.manifest)
        return super().commit()

