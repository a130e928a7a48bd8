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


def read_regular_file(path: str | Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes. A FIFO, device or directory is refused without
    blocking (opened non-blocking, checked with fstat), so a hostile path cannot hang or flood the reader."""
    import os
    import stat

    from sc2edge.errors import Sc2edgeError

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise Sc2edgeError(f"cannot open {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Sc2edgeError(f"{path} is not a regular file")
        if info.st_size > limit:
            raise Sc2edgeError(f"{path} is {info.st_size:,} bytes (at most {limit:,})")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Sc2edgeError(f"{path} is larger than {limit:,} bytes")
    return data
