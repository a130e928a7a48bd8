#!/usr/bin/env bash
# The test command (README): set up .venv if needed, lint, then run the test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
# A real tritonserver for tests/serve (nvidia-pytriton from PyPI, in .venv-triton); without one those tests skip.
bash scripts/setup-triton.sh || echo "setup: no tritonserver could be installed; the Triton tests will skip" >&2
.venv/bin/ruff check .
.venv/bin/python -m pytest -p no:cacheprovider "$@"
