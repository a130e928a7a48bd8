"""Coverage-guided fuzzing of the stream parser, the rANS decoder and the bundle reader with atheris.

    python scripts/fuzz.py stream --bundle BUNDLE [--runs N] [--seconds S] [--out DIR] [--keep-going]

Targets are in tests/fuzz/targets.py. An input that raises anything but Sc2edgeError is a crash: atheris stops
and saves it, or with --keep-going the run counts it by (exception, place), saves the first input of each kind
under OUT/crashes/ and goes on. libFuzzer's -timeout catches hangs (an input running over 20 s). The summary
(inputs, crashes by kind) goes to OUT/summary-TARGET.json; libFuzzer prints its own final counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.fuzz.targets

with atheris.instrument_imports(include=["sc2edge"]):  # coverage of sc2edge's own Python code, not numpy's
    import sc2edge.runtime  # noqa: F401

from tests.fuzz.targets import TARGETS, make_target  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--bundle", required=True, type=Path, help="an exported bundle (a small model is fastest)")
    parser.add_argument("--runs", type=int, default=100_000, help="inputs to try (default: %(default)s)")
    parser.add_argument("--seconds", type=int, default=600, help="stop after this long (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("fuzz-out"), help="corpus, crashes, summary")
    parser.add_argument("--keep-going", action="store_true", help="count crashes by kind instead of stopping")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from sc2edge.photos import system_photos

    target = make_target(args.target, args.bundle, system_photos()[:4])
    corpus, crashes = args.out / f"corpus-{args.target}", args.out / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for seed in target.seeds():
        (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    kinds: Counter[str] = Counter()
    state = {"inputs": 0, "start": time.time()}

    def one_input(data: bytes) -> None:
        state["inputs"] += 1
        if state["inputs"] % 2000 == 0:
            summary()
        try:
            target(data)
        except Exception as exc:
            if not args.keep_going:
                raise
            place = traceback.extract_tb(exc.__traceback__)[-1]
            kind = f"{type(exc).__name__} at {Path(place.filename).name}:{place.lineno}"
            if not kinds[kind]:
                (crashes / f"{args.target}-{hashlib.sha1(kind.encode()).hexdigest()[:12]}").write_bytes(data)
                print(f"NEW CRASH KIND {kind}: {exc!r}"[:400], file=sys.stderr, flush=True)
            kinds[kind] += 1
            summary()

    def summary() -> None:
        """Written every 2,000 inputs and at each crash: libFuzzer ends the process without running atexit."""
        record = {"target": args.target, "inputs": state["inputs"], "seconds": round(time.time() - state["start"]),
                  "crashes": sum(kinds.values()), "crash_kinds": dict(kinds), "bundle": str(args.bundle)}
        (args.out / f"summary-{args.target}.json").write_text(json.dumps(record, indent=2) + "\n")
    atheris.Setup([sys.argv[0], str(corpus), f"-runs={args.runs}", f"-max_total_time={args.seconds}", "-timeout=20",
                   f"-seed={args.seed}", "-rss_limit_mb=4096", f"-artifact_prefix={crashes}/", "-print_final_stats=1"],
                  one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
