"""Start a real tritonserver on loopback for a model repository, bounded in time, and stop it.

The binary is the launcher ``scripts/setup-triton.sh`` writes (``.venv-triton/bin/sc2edge-tritonserver``: the
nvidia-pytriton wheel's CPU tritonserver with its Python backend), or ``SC2EDGE_TRITONSERVER``, or a
``tritonserver`` on PATH (e.g. inside NVIDIA's container). HTTP and gRPC listen on 127.0.0.1 only, on free ports;
metrics are off. Models load explicitly (``--model-control-mode=explicit``), so a repository with models whose
backend this server lacks (onnxruntime, openvino, tensorrt in the pytriton build) still serves the others.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from sc2edge.errors import Sc2edgeError

LAUNCHER_ENV = "SC2EDGE_TRITONSERVER"
SOURCE_LAUNCHER = Path(__file__).resolve().parents[1] / ".venv-triton" / "bin" / "sc2edge-tritonserver"


class ServerError(Sc2edgeError):
    """No tritonserver here, or it did not become ready in time (the message holds the end of its log)."""


def find_tritonserver() -> Path | None:
    """The tritonserver (launcher) to run: $SC2EDGE_TRITONSERVER, the source tree's .venv-triton, or PATH."""
    candidates = [os.environ.get(LAUNCHER_ENV), SOURCE_LAUNCHER, shutil.which("sc2edge-tritonserver"),
                  shutil.which("tritonserver")]
    return next((Path(c) for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TritonServer:
    """A tritonserver process on loopback serving ``models`` of ``repository`` (a context manager).

    Args:
        repository: the model repository, or several (their model names must differ).
        models: the models to load (all must become ready).
        timeout: seconds to wait for readiness before giving up (the process is then killed).
        binary: the tritonserver (launcher) to run. Defaults to ``find_tritonserver()``.
    """

    def __init__(self, repository: str | Path | Sequence[str | Path], models: Sequence[str], *, timeout: float = 120,
                 binary: str | Path | None = None):
        self.binary = Path(binary) if binary else find_tritonserver()
        if self.binary is None:
            raise ServerError("no tritonserver found: run scripts/setup-triton.sh (or set SC2EDGE_TRITONSERVER)")
        several = not isinstance(repository, (str, Path))
        self.repositories = [Path(r) for r in repository] if several else [Path(repository)]
        self.models, self.timeout = list(models), timeout
        self.http_port, self.grpc_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        return [str(self.binary), *(f"--model-repository={r}" for r in self.repositories),
                "--model-control-mode=explicit",
                *(f"--load-model={m}" for m in self.models), "--http-address=127.0.0.1",
                f"--http-port={self.http_port}", "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
                "--allow-metrics=false", "--exit-timeout-secs=5", "--log-verbose=0"]

    def log(self, limit: int = 4000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-limit:]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def start(self) -> TritonServer:
        self.process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise ServerError(f"tritonserver exited with status {self.process.returncode}:\n{self.log()}")
            if self._ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise ServerError(f"tritonserver was not ready after {self.timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self._log.close()
