"""sc2edge models: the registry (models.yaml), read without torch: it answers on a runtime-only install."""

from __future__ import annotations

import argparse

from sc2edge.commands._common import add_json_argument, print_json


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--include", help="only names containing this")
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    from sc2edge.model_specs import default_model_name, load_specs, resolve_checkpoint

    default = default_model_name()
    specs = load_specs()
    for name in sorted(n for n in specs if args.include is None or args.include in n):
        spec = specs[name]
        weights = resolve_checkpoint(spec, None)
        if args.json:
            print_json({"name": name, "default": name == default, "beta": spec.beta,
                        "weights": str(weights) if weights else None})
            continue
        status = f"weights {weights}" if weights else "no checkpoint here: random weights"
        print(f"{'*' if name == default else ' '} {name:42} beta {spec.beta!s:6} {status}")
    return 0
