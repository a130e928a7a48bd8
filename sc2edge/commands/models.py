"""sc2edge models: the registry."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--include", help="only names containing this")


def run(args: argparse.Namespace) -> int:
    from sc2edge.zoo import default_model_name, get_spec, list_models, resolve_checkpoint

    default = default_model_name()
    for name in list_models(args.include):
        spec = get_spec(name)
        weights = resolve_checkpoint(spec, None)
        status = f"weights {weights}" if weights else "no checkpoint here: random weights"
        print(f"{'*' if name == default else ' '} {name:42} beta {spec.beta!s:6} {status}")
    return 0
