"""sc2edge inspect PATH: what a bundle directory or a .sc2 stream holds."""

from __future__ import annotations

import argparse
from pathlib import Path

from sc2edge.errors import Sc2edgeError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="a bundle directory or a .sc2 stream")
    parser.add_argument("--bundle", type=Path, help="for a stream: also check it against this bundle")


def _describe_bundle(path: Path) -> list[str]:
    from sc2edge.runtime import Bundle
    from sc2edge.runtime.entropy import entropy_spec

    bundle = Bundle.open(path)
    m = bundle.manifest
    entropy = entropy_spec(m)
    model = m["model"]
    lines = [
        f"bundle {path} (format {m['format']} v{m['format_version']}, sha256 of {len(m['files'])} files verified)",
        f"  model      {model['name']} (beta {model['beta']}, {model['task']}, {model['num_classes']} classes)"
        + ("" if model["trained"] else "  UNTRAINED: random weights"),
        f"  input      {m['input']['channels']}x{m['input']['height']}x{m['input']['width']}, preprocess "
        f"resize {m['preprocess']['resize']} crop {m['preprocess']['crop']}",
        f"  latent     {'x'.join(map(str, m['latent']['shape']))} symbols at that input "
        f"({m['latent']['channels']} channels, encoder convs (k,s,p) {m['latent']['geometry']})",
        f"  entropy    {entropy['kind']} ({entropy['coder']}), {bundle.tables.quantized_cdf.shape[1]}-entry CDFs, "
        + ", ".join(f"section {s['name']} tables {s['hash']}" for s in entropy["sections"]),
    ]
    for a in bundle.artifacts:
        size = (bundle.path / a.path).stat().st_size
        lines.append(f"  artifact   {a.role:6} {a.format:10} {a.precision:5} {a.path} ({size / 1e6:.2f} MB)")
    for v in m.get("validation", []):
        lines.append(f"  validated  {v['backend']}/{v['precision']}: {'PASS' if v['passed'] else 'FAIL'}, "
                     f"{v['symbols_different']}/{v['symbols_total']} symbols differ, logits max |err| "
                     f"{v['logits_max_abs_err']:.3g}")
    lines.append(f"  versions   {', '.join(f'{k} {v}' for k, v in m['versions'].items())}")
    return lines


def _describe_stream(path: Path, bundle_path: Path | None) -> list[str]:
    from sc2edge.runtime import Bundle, open_codec, read_header, unpack_stream

    data = path.read_bytes()
    header = read_header(data)
    lines = [f"stream {path}: {len(data)} bytes, format v{header.version}, entropy {header.codec}"]
    lines += [f"  section {s.name}: latent {s.shape}, payload {s.length} bytes, tables {s.table_hash}"
              for s in header.sections]
    bundle = Bundle.open(bundle_path) if bundle_path else None
    codec = open_codec(bundle) if bundle else None
    unpack_stream(data, codec=codec.kind if codec else None, tables=codec.table_hashes if codec else None)
    lines.append("  CRC ok" + (f", matches bundle {bundle.name}" if bundle else ""))
    return lines


def run(args: argparse.Namespace) -> int:
    if args.path.is_dir():
        lines = _describe_bundle(args.path)
    elif args.path.is_file():
        lines = _describe_stream(args.path, args.bundle)
    else:
        raise Sc2edgeError(f"not found: {args.path}")
    print("\n".join(lines))
    return 0
