"""sc2edge inspect BUNDLE [STREAM...] | STREAM [--json]: what a bundle or a .sc2 stream holds (streams given after a
bundle are checked against it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sc2edge.commands._common import add_json_argument, print_json, validation_summary
from sc2edge.errors import Sc2edgeError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="a bundle directory or a .sc2 stream")
    parser.add_argument("streams", nargs="*", type=Path, help="after a bundle: streams to check against it")
    add_json_argument(parser)


def _describe_bundle(bundle) -> list[str]:

    path = bundle.path
    m = bundle.manifest
    model, task, entropy = m["model"], m["task"], m["entropy"]
    lines = [
        f"bundle {path} (format {m['format']} v{bundle.format_version}, sha256 of {len(m['files'])} files verified)",
        f"  model      {model['name']} (beta {model['beta']}, {task['kind']}, {task['num_classes']} classes)"
        + ("" if model["trained"] else "  UNTRAINED: random weights"),
        f"  input      {m['input']['channels']}x{m['input']['height']}x{m['input']['width']}, preprocess "
        f"resize {m['preprocess']['resize']} crop {m['preprocess']['crop']}",
        f"  latent     {'x'.join(map(str, m['latent']['shape']))} symbols at that input "
        f"({m['latent']['channels']} channels, encoder convs (k,s,p) {m['latent']['geometry']})",
        f"  entropy    {entropy['kind']} ({entropy['coder']}), "
        + (f"{bundle.tables.quantized_cdf.shape[1]}-entry CDFs, " if bundle.tables is not None
           else f"{entropy['precision']}-bit values, no entropy coding, ")
        + ", ".join(f"section {s['name']} tables {s['hash']}" for s in entropy["sections"]),
    ]
    for a in bundle.artifacts:
        size = (bundle.path / a.path).stat().st_size
        lines.append(f"  artifact   {a.role:6} {a.format:10} {a.precision:5} {a.path} ({size / 1e6:.2f} MB)")
    for v in m.get("validation", []):
        lines.append(f"  validated  {validation_summary(v)}")
    lines.append(f"  versions   {', '.join(f'{k} {v}' for k, v in m['versions'].items())}")
    return lines


def _describe_stream(path: Path, bundle) -> tuple[list[str], dict]:
    from sc2edge.runtime import open_codec, read_header, unpack_stream

    if not path.is_file():
        raise Sc2edgeError(f"stream not found: {path}")
    data = path.read_bytes()
    header = read_header(data)
    lines = [f"stream {path}: {len(data)} bytes, format v{header.version}, entropy {header.codec}"]
    lines += [f"  section {s.name}: latent {s.shape}, payload {s.length} bytes, tables {s.table_hash}"
              for s in header.sections]
    sizes = None
    if bundle:  # container, codec, tables, latent limits and image sizes, as the bundle's decoder checks them
        sizes = open_codec(bundle).decompress_sized(data)[1]
    else:
        unpack_stream(data)
    if sizes:
        lines.append(f"  image      {sizes.original[1]}x{sizes.original[0]} px, model input "
                     f"{sizes.input[1]}x{sizes.input[0]}")
    lines.append("  CRC ok" + (f", matches bundle {bundle.name}" if bundle else ""))
    record = {"stream": str(path), "bytes": len(data), "format_version": header.version, "codec": header.codec,
              "sections": [{"name": s.name, "latent": list(s.shape), "payload_bytes": s.length,
                            "tables": s.table_hash} for s in header.sections],
              "crc_ok": True, "bundle": str(bundle.path) if bundle else None}
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
