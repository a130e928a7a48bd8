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

# The full install needs Python 3.10-3.12 (CompressAI has no wheels for newer ones): PYTHON, else the first of
# python3, python3.12, python3.11, python3.10 that is one (a device's runtime-only install takes 3.13 too: README).
supported='import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))'
if [ ! -x .venv/bin/python ]; then
  for candidate in ${PYTHON:-python3 python3.12 python3.11 python3.10}; do
    if "$candidate" -c "$supported" 2>/dev/null; then PYTHON=$candidate; break; fi
  done
  if ! "${PYTHON:-python3}" -c "$supported" 2>/dev/null; then
    echo "setup: the full install needs Python 3.10-3.12 (CompressAI); install one and set PYTHON=python3.12" >&2
    exit 1
  fi
  if ! "$PYTHON" -c "import ensurepip" 2>/dev/null && command -v apt-get >/dev/null; then
    echo "setup: installing python3-venv (Debian/Ubuntu ship venv's pip separately)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.sc2edge-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing sc2edge[full,dev,serve] into .venv (torch is large: a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[full,dev,serve]"
  touch "$stamp"
fi
