"""A few seconds of coverage-guided fuzzing per target in every run of the suite (scripts/fuzz.py runs it longer).

Each target's inputs must end in success or an Sc2edgeError: a traceback of any other type, a native crash or a
hang fails the run, and atheris leaves the input under the output folder's crashes/.
"""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz.py"


def _fuzz(target: str, bundle: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), target, "--bundle", str(bundle), "--runs", "3000",
                           "--seconds", "8", "--out", str(out)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("target", ["stream", "coder"])
def test_stream_and_coder_take_any_bytes(fp32_bundle_dir, tmp_path, target):
    result = _fuzz(target, fp32_bundle_dir, tmp_path)
    assert result.returncode == 0 and "Done" in result.stderr, result.stderr[-3000:]


def test_bundle_reader_takes_any_manifest_or_tables(fp32_bundle_dir, tmp_path):
    result = _fuzz("bundle", fp32_bundle_dir, tmp_path)
    assert result.returncode == 0 and "Done" in result.stderr, result.stderr[-3000:]
