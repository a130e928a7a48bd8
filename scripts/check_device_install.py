"""Check the README's device install from scratch: build the sdist and wheel (``python -m build``), install the
wheel with the ``runtime`` extra into a fresh venv (packages from the index: numpy 2, no torch), then in that venv
list the models, encode and decode a bundle (streams must equal the full install's) and check that every verb
needing more than the runtime ends in one line naming its extra.

Usage: .venv/bin/python scripts/check_device_install.py [--python python3.13] [--bundle B] [--work DIR]
(run from the full install: it builds the wheel and exports the bundle there). Exit status 0 when all holds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEVICE_MODEL = "entropic_student_fashion_mnist_beta0.1"  # small: the check is the install, not the model
# Wheel members that the source tree must supply: package data and the compiled extensions.
WHEEL_DATA = {
    "sc2edge/models.yaml": "models.yaml",
    "sc2edge/schemas/*.json": "sc2edge/schemas/*.json",
    "sc2edge/bench/*.yaml": "bench/*.yaml",
    "sc2edge/zoo/weights/*.safetensors": "zoo/weights/*.safetensors",
    "sc2edge/serve/triton_models/*.py": "serve/triton_models/*.py",
}
EXTENSIONS = ("sc2edge/runtime/_rans", "sc2edge/runtime/_hyperprior")
# Verbs that need more than the runtime, with arguments that get them past parsing, and the extra they must name.
FULL_VERBS = {
    "export": (["export", DEVICE_MODEL, "--out", "{work}/never"], "full"),
    "check-quant": (["check-quant", "{bundle}", "--data", "{work}"], "full"),
    "demo": (["demo", "--out", "{work}/demo"], "full"),
}


class CheckFailed(Exception):
    pass


def run(command: list, check: bool = True) -> subprocess.CompletedProcess:
    """Run outside the repository, whose ``sc2edge/`` folder would shadow the installed package."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=900,
                            cwd=tempfile.gettempdir())
    if check and result.returncode != 0:
        raise CheckFailed(f"{' '.join(map(str, command))} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def python_tag(python: str | Path) -> str:
    return run([python, "-c", "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')"]).stdout.strip()


def check_wheel(wheel: Path) -> list[str]:
    """The wheel holds every package-data file of the source tree and both compiled extensions."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for member, source in WHEEL_DATA.items():
        expected = {f"{member.rsplit('/', 1)[0]}/{p.name}" for p in REPO.glob(source)}
        if not expected or not expected <= names:
            raise CheckFailed(f"{wheel.name} lacks package data {sorted(expected - names) or member}")
    for extension in EXTENSIONS:
        if not any(n.startswith(extension + ".") and n.endswith(".so") for n in names):
            raise CheckFailed(f"{wheel.name} lacks the compiled extension {extension} (was a C compiler there?)")
    return sorted(names)


def build(work: Path, python: str) -> Path:
    """sdist, then the wheel from it (as ``python -m build`` does); for another Python, that interpreter's pip
    builds the wheel from the sdist."""
    dist = work / "dist"
    shutil.rmtree(dist, ignore_errors=True)  # a kept --work folder must not offer an old wheel
    run([sys.executable, "-m", "build", "--outdir", dist, REPO])
    tag = python_tag(python)
    wheels = sorted(dist.glob(f"sc2edge-*-{tag}-{tag}-*.whl"))
    if not wheels:
        sdist = next(dist.glob("sc2edge-*.tar.gz"))
        run([python, "-m", "pip", "wheel", "--no-deps", "-w", dist, sdist])
        wheels = sorted(dist.glob(f"sc2edge-*-{tag}-{tag}-*.whl"))
    return wheels[0]


def check_venv(venv: Path, bundle: Path, work: Path) -> dict:
    python, sc2edge = venv / "bin" / "python", venv / "bin" / "sc2edge"
    probe = ("import importlib.util as u, json, numpy, sys; from sc2edge.runtime import hyperprior, rans; "
             "print(json.dumps({'python': sys.version.split()[0], 'numpy': numpy.__version__, "
             "'missing_ok': [m for m in ('torch', 'compressai', 'onnx', 'nncf') if u.find_spec(m)], "
             "'coders': rans.available_coders(), 'index_paths': hyperprior.available_implementations()}))")
    facts = json.loads(run([python, "-c", probe]).stdout)
    if facts["missing_ok"]:
        raise CheckFailed(f"the runtime-only install brought {facts['missing_ok']}")
    if int(facts["numpy"].split(".")[0]) < 2:
        raise CheckFailed(f"the runtime install resolved numpy {facts['numpy']}, not numpy 2")
    if facts["coders"][0] != "native" or facts["index_paths"][0] != "native":
        raise CheckFailed(f"the compiled extensions are not used: coders {facts['coders']}, {facts['index_paths']}")
    models = run([sc2edge, "models", "--json"]).stdout.splitlines()
    if not any(json.loads(line)["name"] == DEVICE_MODEL for line in models):
        raise CheckFailed(f"sc2edge models does not list {DEVICE_MODEL}")
    from sc2edge.photos import system_photos

    photo = system_photos()[0]
    run([sc2edge, "encode", bundle, photo, "--out", work / "streams"])
    stream = work / "streams" / f"{photo.stem}.sc2"
    decoded = json.loads(run([sc2edge, "decode", bundle, stream, "--json"]).stdout)
    from sc2edge.runtime import Decoder, Encoder

    with Encoder(bundle) as encoder, Decoder(bundle) as decoder:
        if stream.read_bytes() != encoder.encode([photo])[0]:
            raise CheckFailed("the device install's stream differs from the full install's")
        if decoded["classes"] != decoder.decode(stream.read_bytes()).to_json()["classes"]:
            raise CheckFailed("the device install's prediction differs from the full install's")
    for verb, (arguments, extra) in FULL_VERBS.items():
        result = run([sc2edge, *(a.format(work=work, bundle=bundle) for a in arguments)], check=False)
        lines = result.stderr.strip().splitlines()
        if result.returncode != 1 or len(lines) != 1 or f"sc2edge[{extra}]" not in lines[0]:
            raise CheckFailed(f"sc2edge {verb} on the runtime install: exit {result.returncode}, "
                              f"expected one line naming sc2edge[{extra}]:\n{result.stderr[-2000:]}")
        facts[f"{verb} says"] = lines[0]
    facts["stream_bytes"] = stream.stat().st_size
    return facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the device's interpreter (default: this one)")
    parser.add_argument("--bundle", type=Path, help=f"a bundle to encode/decode (default: export {DEVICE_MODEL})")
    parser.add_argument("--work", type=Path, help="keep everything here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sc2edge-device-") as temporary:
        work = (args.work or Path(temporary)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        try:
            venv = work / "venv"
            run([args.python, "-m", "venv", "--clear", venv])
            wheel = build(work, venv / "bin" / "python")
            members = check_wheel(wheel)
            bundle = args.bundle.resolve() if args.bundle else None
            if bundle is None:
                bundle = work / "bundle"
                run([sys.executable, "-m", "sc2edge.cli", "-q", "export", DEVICE_MODEL, "--out", bundle, "--force"])
            run([venv / "bin" / "python", "-m", "pip", "install", "-q", f"{wheel}[runtime]"])
            facts = check_venv(venv, bundle, work)
        except CheckFailed as exc:
            print(f"device install: FAIL: {exc}", file=sys.stderr)
            return 1
    print(f"device install: OK: {wheel.name} ({len(members)} files), Python {facts['python']}, "
          f"numpy {facts['numpy']}, coders {facts['coders']}, index path {facts['index_paths']}, "
          f"{facts['stream_bytes']}-byte stream equal to the full install's")
    for verb in FULL_VERBS:
        print(f"  {facts[f'{verb} says']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
