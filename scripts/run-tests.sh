#!/usr/bin/env bash
# The test command (README): set up .venv if needed, lint, then run the test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -p no:cacheprovider "$@"
