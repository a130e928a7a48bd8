#!/usr/bin/env bash
# Create or update .venv with everything sc2edge's full workflow and tests need, on a fresh machine.
# Idempotent: a second run only checks. Set SC2EDGE_SKIP_APT=1 to skip the Debian data packages.
set -euo pipefail
cd "$(dirname "$0")/.."

# Offline data: real photos and Fashion-MNIST come as Debian packages (see README, "Data").
APT_PACKAGES="dataset-fashion-mnist opencv-doc mate-backgrounds labelme-examples"
if [ "${SC2EDGE_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
  missing=""
  for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "setup: installing Debian data packages:$missing"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.sc2edge-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing sc2edge[full,dev,serve] into .venv (torch is large: a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[full,dev,serve]"
  touch "$stamp"
fi
