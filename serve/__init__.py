"""Serving a bundle's server side on engines people already run: a Triton model repository
(``write_triton_repository``), a device client speaking the Open Inference Protocol (v2, HTTP and gRPC), a
tritonserver launcher for loopback tests, and a bounded load test. Torch-free, like the runtime it builds on."""

from sc2edge.serve.repository import RepositoryError, TritonRepository, check_repository, write_triton_repository

__all__ = ["RepositoryError", "TritonRepository", "check_repository", "write_triton_repository"]
