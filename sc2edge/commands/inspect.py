"""sc2edge inspect BUNDLE [STREAM...] | STREAM [--json]: what a bundle or a .sc2 stream holds (streams given after a
bundle are checked against it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sc2edge.commands._common import add_json_argument, print_json
from sc2edge.errors import Sc2edgeError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="a bundle directory or a .sc2 stream")
    parser.add_argument("streams", nargs="*", type=Path, help="after a bundle: streams to check against it")
    add_json_argument(parser)


def _describe_bundle(bundle) -> list[str]:
    path = bundle.path
    m = bundle.manifest
    model = m["model"]
    lines = [
        f"bundle {path} (format {m['format']} v{m['format_version']}, sha256 of {len(m['files'])} files verified)",
        f"  model      {model['name']} (beta {model['beta']}, {model['task']}, {model['num_classes']} classes)"
        + ("" if model["trained"] else "  UNTRAINED: random weights"),
        f"  input      {m['input']['channels']}x{m['input']['height']}x{m['input']['width']}, preprocess "
        f"resize {m['preprocess']['resize']} crop {m['preprocess']['crop']}",
        f"  latent     {'x'.join(map(str, m['latent']['shape']))} symbols at that input "
        f"({m['latent']['channels']} channels, encoder convs (k,s,p) {m['latent']['geometry']})",
        f"  entropy    {m['entropy']['coder']}, {bundle.tables.quantized_cdf.shape[1]}-entry CDFs, "
        f"tables {m['entropy']['hash']}",
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


def _describe_stream(path: Path, bundle) -> tuple[list[str], dict]:
    from sc2edge.runtime import read_header, unpack_stream

    if not path.is_file():
        raise Sc2edgeError(f"stream not found: {path}")
    data = path.read_bytes()
    header = read_header(data)
    unpack_stream(data, table_hash=bundle.tables.hash if bundle else None)
    record = {"stream": str(path), "bytes": len(data), "format_version": header.version,
              "latent": list(header.shape), "payload_bytes": header.payload_length, "tables": header.table_hash,
              "crc_ok": True, "bundle": str(bundle.path) if bundle else None}
    lines = [f"stream {path}: {len(data)} bytes, format v{header.version}, latent {header.shape}, "
             f"payload {header.payload_length} bytes, tables {header.table_hash}",
             "  CRC ok" + (f", matches bundle {bundle.name}" if bundle else "")]
    return lines, record


def run(args: argparse.Namespace) -> int:
    from sc2edge.runtime import Bundle

    if args.path.is_dir():
        bundle = Bundle.open(args.path)
        if args.json:
            print_json({"bundle": str(args.path), "verified_files": len(bundle.manifest["files"]),
                        "manifest": bundle.manifest})
        else:
            print("\n".join(_describe_bundle(bundle)))
    elif args.path.is_file():
        if args.streams:
            raise Sc2edgeError(f"{args.path} is not a bundle directory: give the bundle first, then its streams")
        args.streams, bundle = [args.path], None
    else:
        raise Sc2edgeError(f"not found: {args.path}")
    for stream in args.streams:
        lines, record = _describe_stream(stream, bundle)
        if args.json:
            print_json(record)
        else:
            print("\n".join(lines))
    return 0
