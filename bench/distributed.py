"""Where the bench's per-configuration jobs run: one after another in this process (the default, for timings on a
quiet machine), or as Ray tasks (``--ray local``: ``ray.init()`` on this machine, loopback only; ``--ray ADDRESS``:
an existing Ray cluster), merged back in the serial order.

A Ray task whose worker process dies (killed, out of memory, node lost) is run again, up to ``RETRIES`` times;
a job that fails inside (a worker returning an error) is recorded as it is without Ray. Ray is optional
(``pip install "sc2edge[serve]"``): without it the bench runs serially as before.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sc2edge.errors import Sc2edgeError

RAY_LOCAL = "local"
RETRIES = 3
OBJECT_STORE_BYTES = 128 * 2**20  # results are small JSON-like dicts; Ray's default would take 30 % of memory

Result = TypeVar("Result")


def check_ray(address: str | None) -> None:
    """Refuse ``--ray`` early (before any measuring) where Ray is not installed."""
    if address is not None and importlib.util.find_spec("ray") is None:
        raise Sc2edgeError('--ray needs Ray: pip install "sc2edge[serve]" (or run the bench without --ray)')


def dispatch(function: Callable[..., Result], arguments: Sequence[tuple], *, ray_address: str | None = None,
             workers: int = 2) -> list[Result]:
    """``[function(*a) for a in arguments]``, serially (``ray_address`` None) or as Ray tasks on ``workers``
    CPUs of a local Ray started here (``"local"``) or of the cluster at ``ray_address``; results in order."""
    if ray_address is None:
        return [function(*a) for a in arguments]
    check_ray(ray_address)
    import ray

    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves this machine
        if ray_address == RAY_LOCAL:
            ray.init(num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1",
                     object_store_memory=OBJECT_STORE_BYTES, log_to_driver=False)
        else:
            ray.init(address=ray_address, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(function)
        return ray.get([remote.remote(*a) for a in arguments])
    except ray.exceptions.RayError as exc:
        raise Sc2edgeError(f"Ray could not finish the bench's jobs: {' '.join(str(exc).split())[:500]}") from None
    finally:
        if started:
            ray.shutdown()


def dispatch_record(ray_address: str | None, workers: int) -> dict[str, Any]:
    """The report's ``config.dispatch``: how the configurations ran."""
    if ray_address is None:
        return {"kind": "serial"}
    return {"kind": "ray", "address": ray_address, "workers": workers, "max_retries": RETRIES}
