"""The device's client: sc2edge streams to a server over the Open Inference Protocol (v2), HTTP or gRPC.

A request carries one input ``STREAM`` (BYTES, shape [N, 1]: N streams) and asks for the task's outputs by name;
any v2 server exposing such a model answers it (a repository from ``write_triton_repository`` on tritonserver;
KServe, OVMS and MLServer speak the same protocol, not tried here). Uses NVIDIA's ``tritonclient``.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import numpy as np

from sc2edge.errors import Sc2edgeError
from sc2edge.serve.wire import STREAM_INPUT

PROTOCOLS = ("http", "grpc")


class InferenceError(Sc2edgeError):
    """The server refused a request or could not be reached (its one-line reason)."""


def split_url(url: str, protocol: str | None = None) -> tuple[str, str, bool]:
    """``http://host:port``, ``grpc://host:port`` (``https``/``grpcs``: TLS) or ``host:port`` with ``protocol``
    -> (protocol, host:port, tls)."""
    parts = urlsplit(url if "://" in url else f"{protocol or 'http'}://{url}")
    scheme = parts.scheme.lower()
    tls = scheme in ("https", "grpcs")
    found = {"https": "http", "grpcs": "grpc"}.get(scheme, scheme)
    if found not in PROTOCOLS or not parts.netloc or parts.path not in ("", "/"):
        raise InferenceError(f"server URL {url!r}: expected [http|https|grpc|grpcs://]host:port")
    if protocol and protocol != found:
        raise InferenceError(f"server URL {url!r} says {found}, --protocol says {protocol}")
    return found, parts.netloc, tls


class InferenceClient:
    """One connection to a v2 server's ``model``; ``infer(streams)`` returns each stream's named outputs.

    Not shared between threads (tritonclient's clients are not): give each thread its own.

    Args:
        url: ``http://host:port`` or ``grpc://host:port`` (``host:port``: HTTP unless ``protocol`` says grpc).
        model: the model (ensemble) taking ``STREAM``.
        outputs: the output names to ask for (the bundle task's ``output_names``).
        protocol: "http" or "grpc" when the URL has no scheme.
        timeout: seconds for one request.
    """

    def __init__(self, url: str, model: str, outputs: Sequence[str], *, protocol: str | None = None,
                 timeout: float = 60.0):
        self.protocol, self.address, tls = split_url(url, protocol)
        self.model, self.output_names, self.timeout = model, list(outputs), timeout
        try:
            if self.protocol == "http":
                import tritonclient.http as api

                self.client = api.InferenceServerClient(self.address, ssl=tls, connection_timeout=timeout,
                                                        network_timeout=timeout)
            else:
                import tritonclient.grpc as api

                self.client = api.InferenceServerClient(self.address, ssl=tls)
        except ImportError:
            raise InferenceError('the v2 client needs tritonclient: pip install "sc2edge[serve]"') from None
        self.api = api

    def infer(self, streams: Sequence[bytes]) -> list[dict[str, np.ndarray]]:
        """Streams -> each one's outputs (batch axis removed), in one request."""
        from tritonclient.utils import InferenceServerException

        data = np.array([[bytes(s)] for s in streams], dtype=np.object_)
        request = self.api.InferInput(STREAM_INPUT, list(data.shape), "BYTES")
        request.set_data_from_numpy(data)
        wanted = [self.api.InferRequestedOutput(name) for name in self.output_names]
        try:
            if self.protocol == "http":
                result = self.client.infer(self.model, [request], outputs=wanted, timeout=int(self.timeout * 1e6))
            else:
                result = self.client.infer(self.model, [request], outputs=wanted, client_timeout=self.timeout)
        except InferenceServerException as exc:
            raise InferenceError(f"{self.protocol}://{self.address} model {self.model}: "
                                 f"{' '.join(str(exc.message()).split())}") from None
        except OSError as exc:
            raise InferenceError(f"{self.protocol}://{self.address}: {exc}") from None
        outputs = {name: result.as_numpy(name) for name in self.output_names}
        return [{name: outputs[name][i] for name in self.output_names} for i in range(len(streams))]

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
