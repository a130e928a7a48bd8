"""The README's device install for real: ``python -m build``, the wheel with the ``runtime`` extra in a fresh venv
from the package index (numpy 2, no torch, the compiled extensions), streams equal to the full install's, one-line
errors naming the extra (``scripts/check_device_install.py`` does the work). Slow: a build and a venv from the index,
2-3 minutes on 2 shared cores."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_device_install.py"


def runs(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import venv"], capture_output=True, timeout=60).returncode == 0
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("python", [sys.executable, "python3.13"], ids=["this-python", "python3.13"])
def test_wheel_installs_runtime_only_and_round_trips(python, tmp_path):
    if not runs(python):
        pytest.skip(f"{python} is not installed here (the newest Python a device may have)")
    result = subprocess.run([sys.executable, SCRIPT, "--python", python, "--work", tmp_path], capture_output=True,
                            text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("device install: OK")
