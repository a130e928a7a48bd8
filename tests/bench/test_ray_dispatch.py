"""The bench's configurations as Ray tasks (a local Ray on loopback): same numbers as the serial bench, and a Ray
worker killed in the middle of a configuration is run again. Slow (Ray's start and two benches): -m slow."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from sc2edge.bench import run_bench
from sc2edge.bench.core import BenchConfig
from sc2edge.errors import Sc2edgeError

SWEEP = {"backends": ("onnxruntime", "openvino"), "quick": True, "max_images": 2, "torch_baseline": False,
         "links": ["lte"], "threads": 1}


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _descends_from_us(pid: int) -> bool:
    while pid > 1:
        if pid == os.getpid():
            return True
        pid = _parent(pid)
    return False


def _kill_first_ray_worker_running_a_device_job(stop: threading.Event, killed: list[int]) -> None:
    """Wait for a bench worker (device job) started by a Ray worker of this test, then SIGKILL that Ray worker and
    its bench worker: the task dies mid-configuration."""
    while not stop.is_set() and not killed:
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                if entry.name.isdigit() and b"sc2edge.bench.worker" in cmdline and b"-device-" in b" ".join(cmdline):
                    pid = int(entry.name)
                    ray_worker = _parent(pid)
                    if ray_worker != os.getpid() and _descends_from_us(ray_worker):
                        os.kill(ray_worker, signal.SIGKILL)
                        os.kill(pid, signal.SIGKILL)
                        killed.append(ray_worker)
                        return
            except (OSError, ValueError, IndexError):
                continue  # the process ended while being read
        time.sleep(0.05)


def _deterministic(report: dict) -> dict:
    """What a bench measures that does not depend on timing."""
    return {"keys": sorted(report["latency"]), "size": report["size"], "predictions": report["predictions"],
            "compute": report["compute"], "rate_accuracy": report["rate_accuracy"],
            "coders": {k: v["coder"] for k, v in report["latency"].items()}}


@pytest.mark.slow
def test_two_worker_ray_sweep_equals_the_serial_one_and_survives_a_killed_worker(reference_bundle_dir, photos,
                                                                                  tmp_path):
    pytest.importorskip("ray", reason='Ray is not installed (pip install "sc2edge[serve]")')
    serial = run_bench([reference_bundle_dir], images=photos[:2], out_dir=tmp_path / "serial", **SWEEP)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_ray_worker_running_a_device_job, args=(stop, killed))
    killer.start()
    try:
        dispatched = run_bench([reference_bundle_dir], images=photos[:2], out_dir=tmp_path / "ray", ray="local",
                               ray_workers=2, **SWEEP)
    finally:
        stop.set()
        killer.join()
    assert killed, "no Ray worker was seen running a device job"
    assert dispatched["config"]["dispatch"]["kind"] == "ray" and serial["config"]["dispatch"] == {"kind": "serial"}
    assert _deterministic(dispatched) == _deterministic(serial)
    assert len(dispatched["latency"]) == 2 and not any("failed" in w for w in dispatched["warnings"])
    assert any("Ray workers" in w for w in dispatched["warnings"])


def test_ray_address_is_refused_early_where_ray_is_missing_or_workers_are_out_of_range(reference_bundle_dir,
                                                                                       monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(Sc2edgeError, match="--ray needs Ray"):
        BenchConfig(bundles=(reference_bundle_dir,), ray="local", quick=True).validate()
    monkeypatch.undo()
    with pytest.raises(Sc2edgeError, match="ray-workers"):
        BenchConfig(bundles=(reference_bundle_dir,), ray_workers=0, quick=True).validate()
