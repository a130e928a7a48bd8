"""File and environment helpers shared by every subpackage (kept torch-free for the runtime)."""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in blocks so large graphs do not load into memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Python, sc2edge and the installed version of each package in ``names`` (None where absent)."""
    from sc2edge import __version__

    found: dict[str, str | None] = {"python": platform.python_version(), "sc2edge": __version__}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
