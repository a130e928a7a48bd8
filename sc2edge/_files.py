"""File and environment helpers shared by every subpackage (kept torch-free for the runtime)."""

from __future__ import annotations

import hashlib
import os
import platform
import stat
import tempfile
from collections.abc import Iterable
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
    from importlib import metadata  # here: 20-170 ms of a device's cold start otherwise (issue 14)

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


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place: a reader (or a crash) sees the
    old file or the whole new one, never a truncated file under the final name."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
