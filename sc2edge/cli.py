"""The ``sc2edge`` command: each verb is a thin module in ``sc2edge.commands`` that calls one public API.

Verb modules are imported only when their verb runs, so ``sc2edge encode`` on a device never imports
torch, and a verb whose dependencies are missing fails with a message instead of breaking the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from sc2edge import __version__
from sc2edge.errors import Sc2edgeError

# verb -> (module in sc2edge.commands, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "export": ("export", "export a model to a bundle (ONNX, OpenVINO, INT8) with its entropy tables"),
    "encode": ("encode", "device side: images -> compressed streams"),
    "decode": ("decode", "server side: streams -> predictions"),
    "inspect": ("inspect", "show what a bundle or a stream holds"),
    "check-quant": ("check_quant", "what INT8 costs: accuracy, latent error, symbols changed, bytes"),
    "build-engine": ("build_engine", "build a TensorRT engine from a bundle (on the target GPU)"),
    "bench": ("bench", "FLOPs, memory, latency per stage, size, end-to-end split latency, reports"),
    "models": ("models", "list the models in the registry"),
    "demo": ("demo", "the whole pipeline on the default model: export, INT8, encode/decode, check-quant, bench"),
}


def _load_verb(module: str):
    return importlib.import_module(f"sc2edge.commands.{module}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sc2edge", description="Deploy and measure supervised-compression (split computing) models.")
    parser.add_argument("--version", action="version", version=f"sc2edge {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (module, help_text) in VERBS.items():
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text)
        try:
            _load_verb(module).configure(verb_parser)
        except ImportError as exc:
            verb_parser.set_defaults(_unavailable=f"sc2edge {verb} is unavailable: {exc}")
        verb_parser.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # CompressAI triggers this torch deprecation on import; it says nothing to our users.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "_unavailable", None):
            raise Sc2edgeError(args._unavailable)
        return _load_verb(args._module).run(args) or 0
    except Sc2edgeError as exc:
        print(f"sc2edge {args.verb}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
