#!/usr/bin/env bash
# The main job (README): set up .venv if needed, then run the whole pipeline on the default model and the
# offline photos: export, INT8 calibration, encode/decode, check-quant, bench, and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
exec .venv/bin/sc2edge demo --out "${SC2EDGE_DEMO_OUT:-out/demo}" "$@"
