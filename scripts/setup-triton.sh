#!/usr/bin/env bash
# Set up a real, CPU-only tritonserver for sc2edge's Triton tests and for serving a model repository locally.
#
# The nvidia-pytriton wheel (PyPI) bundles a tritonserver binary with the Python backend only (no ONNX Runtime,
# OpenVINO or TensorRT backends: those come with NVIDIA's NGC container, see README "Serving on Triton").
# Its Python backend runs model.py files in an embedded interpreter of the same Python version, which finds its
# packages through the first `python3` on PATH: this script makes that interpreter a virtual environment of its
# own, .venv-triton/ (numpy < 2, as the backend stub was built for), with sc2edge[runtime] installed so that the
# repository's Python models import sc2edge.runtime.
#
# Result: .venv-triton/bin/sc2edge-tritonserver, a launcher that sets LD_LIBRARY_PATH (the wheel's libraries and
# the interpreter's libpython) and PATH, then runs tritonserver with the Python backend's directory; pass it
# tritonserver's own flags (--model-repository DIR --http-port P ...). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv-triton
stamp=$VENV/.sc2edge-triton-installed
if [ ! -x $VENV/bin/python ]; then
  "$PYTHON" -m venv $VENV
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup-triton: installing nvidia-pytriton and sc2edge[runtime] into $VENV"
  $VENV/bin/python -m pip install -q "nvidia-pytriton>=0.5" "numpy<2" -e ".[runtime]"
fi
# The entropy-decode model runs in this interpreter: sc2edge's compiled rANS coder (there is no CompressAI here to
# fall back on) and the hyperprior's deterministic index path (its numpy fallback gives the same bits, ten times
# slower) must import.
if ! $VENV/bin/python -c "import sc2edge.runtime._rans, sc2edge.runtime._hyperprior"; then
  rm -f "$stamp"
  echo "setup-triton: sc2edge's C extensions (runtime/_rans.c, runtime/_hyperprior.c) do not import in $VENV:" \
       "install a C compiler and run this script again" >&2
  exit 1
fi

site=$($VENV/bin/python -c "import pytriton, pathlib; print(pathlib.Path(pytriton.__file__).parent)")
pyver=$($VENV/bin/python -c "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')")
libpython_dir=$($VENV/bin/python -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")
if [ ! -f "$libpython_dir/libpython$pyver.so.1.0" ] && [ ! -f "$libpython_dir/libpython$pyver.so" ]; then
  echo "setup-triton: $PYTHON has no shared libpython$pyver (the Python backend needs one; build Python with" \
       "--enable-shared)" >&2
  exit 1
fi
stub="$site/tritonserver/python_backend_stubs/$pyver/triton_python_backend_stub"
[ -x "$stub" ] || { echo "setup-triton: nvidia-pytriton has no Python backend stub for Python $pyver" >&2; exit 1; }

# tritonserver looks for the stub beside the backend library: lay out a server tree with this Python's stub.
server=$VENV/tritonserver
if [ ! -f "$stamp" ] || [ ! -x $server/bin/tritonserver ]; then
  rm -rf $server
  cp -r "$site/tritonserver" $server
  rm -rf $server/python_backend_stubs
  cp "$stub" $server/backends/python/triton_python_backend_stub
fi

libs=$(cd "$site/../nvidia_pytriton.libs" && pwd)
root=$(pwd)
cat > $VENV/bin/sc2edge-tritonserver <<EOF
#!/usr/bin/env bash
# Written by scripts/setup-triton.sh: the pytriton tritonserver (CPU, Python backend) with this environment.
export LD_LIBRARY_PATH="$libs:$libpython_dir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="$root/$VENV/bin:\$PATH"
exec "$root/$server/bin/tritonserver" --backend-directory "$root/$server/backends" "\$@"
EOF
chmod +x $VENV/bin/sc2edge-tritonserver
touch "$stamp"
echo "setup-triton: ready ($VENV/bin/sc2edge-tritonserver)"
