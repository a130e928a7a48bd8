"""The ``sc2edge`` command: each verb is a thin module in ``sc2edge.commands`` that calls one public API.

Verb modules are imported only when their verb runs, so ``sc2edge encode`` on a device never imports
torch, and a verb whose dependencies are missing (a runtime-only install) fails with one line naming the
extra to install instead of breaking the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from sc2edge import __version__
from sc2edge._lazy import install_hint
from sc2edge.errors import Sc2edgeError

# verb -> (module in sc2edge.commands, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "export": ("export", "export a model to a bundle (ONNX, OpenVINO, INT8) with its entropy tables"),
    "encode": ("encode", "device side: images -> compressed streams"),
    "decode": ("decode", "server side: streams -> predictions"),
    "infer": ("infer", "device side over the network: images -> streams -> a v2 server (Triton) -> predictions"),
    "triton-repo": ("triton_repo", "write a Triton model repository serving a bundle's server side"),
    "inspect": ("inspect", "show what a bundle or a stream holds"),
    "check-quant": ("check_quant", "what INT8 costs: accuracy, latent error, symbols changed, bytes"),
    "build-engine": ("build_engine", "build a TensorRT engine from a bundle (on the target GPU)"),
    "bench": ("bench", "FLOPs, memory, latency per stage, size, end-to-end split latency, reports"),
    "models": ("models", "list the models in the registry"),
    "demo": ("demo", "the whole pipeline on the default model: export, INT8, encode/decode, check-quant, bench"),
}
# The pip extra a verb needs beyond sc2edge[runtime]; the verbs not named here run on the runtime alone.
VERB_EXTRAS: dict[str, str] = {"export": "full", "check-quant": "full", "demo": "full", "bench": "bench",
                               "infer": "serve"}


def _load_verb(module: str):
    return importlib.import_module(f"sc2edge.commands.{module}")


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line too (``sc2edge decode: error: ...``), with exit status 2 as argparse's."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sc2edge", description="Deploy and measure supervised-compression (split computing) models.")
    parser.add_argument("--version", action="version", version=f"sc2edge {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log messages (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors: no progress bars, no notes")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (module, help_text) in VERBS.items():
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text)
        try:
            _load_verb(module).configure(verb_parser)
        except ImportError as exc:
            hint = install_hint(exc.name or "", VERB_EXTRAS.get(verb))
            reason = f"{exc}; {hint}" if hint else str(exc)
            verb_parser.set_defaults(_unavailable=f"sc2edge {verb} is unavailable: {reason}")
        verb_parser.set_defaults(_module=module)
    return parser


def _configure_output(args: argparse.Namespace) -> None:
    """-q/-v set the logging level; progress bars (tqdm) only when stderr is a terminal and not quiet."""
    level = logging.ERROR if args.quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.quiet or not sys.stderr.isatty():
        os.environ["TQDM_DISABLE"] = "1"  # tqdm reads its defaults from TQDM_* variables


def _silence_stdout() -> None:
    """After a broken pipe (``sc2edge ... | head``), point stdout at /dev/null so the exit flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    # CompressAI triggers this torch deprecation on import; it says nothing to our users.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_output(args)
    try:
        if getattr(args, "_unavailable", None):
            raise Sc2edgeError(args._unavailable)
        status = _load_verb(args._module).run(args) or 0
        sys.stdout.flush()  # inside the try: a reader gone before the last block is a broken pipe too
        return status
    except BrokenPipeError:
        _silence_stdout()
        return 141  # what a shell reports for a command ended by SIGPIPE
    except Sc2edgeError as exc:
        print(f"sc2edge {args.verb}: error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:  # an optional dependency this install lacks; anything else is a bug
        hint = install_hint(exc.name or "", VERB_EXTRAS.get(args.verb))
        if hint is None:
            raise
        print(f'sc2edge {args.verb}: error: needs the module "{exc.name}", which is not installed; {hint}',
              file=sys.stderr)
        return 1
    except OSError as exc:  # unwritable --out, a folder where a file goes, a full disk: the OS says which
        print(f"sc2edge {args.verb}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
