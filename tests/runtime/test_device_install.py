"""The device install: ``sc2edge[runtime]`` alone (its own compiled coder), and no torch or CompressAI."""

import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def device_env(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("device-venv")
    venv.create(root, with_pip=True)
    python = root / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    result = subprocess.run(pip + [f"{REPO}[runtime]"], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"pip install sc2edge[runtime] failed:\n{result.stderr[-2000:]}")
    return root


def test_runtime_install_has_no_torch_and_round_trips(device_env, bundle_dir, photos, tmp_path):
    python = device_env / "bin" / "python"
    sc2edge = device_env / "bin" / "sc2edge"
    probe = "import importlib.util as u; print([m for m in ('torch', 'compressai') if u.find_spec(m)])"
    check = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    assert check.stdout.strip() == "[]"
    encoded = subprocess.run([str(sc2edge), "encode", bundle_dir, photos[0], "--out", tmp_path],
                             capture_output=True, text=True, timeout=300)
    assert encoded.returncode == 0, encoded.stderr
    stream = tmp_path / f"{photos[0].stem}.sc2"
    decoded = subprocess.run([str(sc2edge), "decode", bundle_dir, stream, "--json"],
                             capture_output=True, text=True, timeout=300)
    assert decoded.returncode == 0, decoded.stderr
    # the device-only install makes the same stream as the full one
    from sc2edge.runtime import Encoder

    assert stream.read_bytes() == Encoder(bundle_dir).encode([photos[0]])[0]
