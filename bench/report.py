"""Reports people read: one set of tables rendered as Markdown and as a self-contained HTML page, plus CSV
files, PNG plots (matplotlib, Agg) and the full JSON record."""

from __future__ import annotations

import base64
import csv
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sc2edge._files import atomic_write_text
from sc2edge.bench.timing import UNSTABLE_SPREAD

DEVICE_STAGES = ("preprocess", "encoder_graph", "entropy_encode")
SERVER_STAGES = ("entropy_decode", "server_graph")
TOTAL_STAGES = ("device_total", "server_total")
STAGE_LABELS = {"preprocess": "preprocess", "encoder_graph": "encoder graph", "entropy_encode": "entropy encode",
                "device_total": "device total", "entropy_decode": "entropy decode", "server_graph": "server graph",
                "server_total": "server total"}
HEADLINE_LINKS = 2


@dataclass
class Table:
    """A titled table with an optional note; rendered to Markdown and HTML from the same rows."""

    title: str
    header: list[str]
    rows: list[list[Any]]
    note: str = ""
    images: list[str] = field(default_factory=list)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return " / ".join(_fmt(v) for v in value)
    return str(value)


def _mb(nbytes: int | None) -> float | None:
    return None if nbytes is None else nbytes / 2**20


def _g(count: dict[str, Any] | None, key: str = "macs") -> float | None:
    return None if not count else count[key] / 1e9


def untrained_bundles(report: dict[str, Any]) -> set[str]:
    """Ids of the benched bundles with random weights."""
    return {b["id"] for b in report["inputs"]["bundles"] if b.get("trained") is False}


def _headline(report: dict[str, Any]) -> Table:
    links = [link["name"] for link in report["links"]][:HEADLINE_LINKS]
    e2e = {(r["config"], r["link"]): r["total_ms"] for r in report["end_to_end"] if r["path"] == "split"}
    header = ["configuration", *(STAGE_LABELS[s] for s in (*DEVICE_STAGES, "device_total", *SERVER_STAGES,
                                                           "server_total")),
              "% of roofline", "x of roofline", "bytes/image", "payload bytes", "bpp", "paper KB", "device kMAC/px",
              "stable", *(f"end-to-end {n} (ms)" for n in links)]
    untrained = untrained_bundles(report)
    rows = []
    for row in report["headline"]:
        label = ("UNTRAINED " if row["config"].rsplit("/", 2)[0] in untrained else "") + row["config"]
        rows.append([label, *(row.get(s) for s in (*DEVICE_STAGES, "device_total", *SERVER_STAGES, "server_total")),
                     row.get("pct_of_roofline"), row.get("x_of_roofline"), row["bytes_mean"],
                     row.get("payload_bytes_mean"), row.get("bpp"), row.get("paper_kb"),
                     row.get("device_kmac_per_pixel"),
                     "yes" if row.get("stable", True) else "NO: " + ", ".join(row["unstable_stages"]),
                     *(e2e.get((row["config"], n)) for n in links)])
    baseline = report.get("baseline")
    if baseline:
        st = baseline["stages"]
        rows.append([f"PyTorch eager, paper path ({baseline['model']})",
                     *(st.get(s, {}).get("p50") for s in (*DEVICE_STAGES, "device_total", *SERVER_STAGES,
                                                           "server_total")),
                     None, None, None, sum(baseline["payload_bytes"]) / max(len(baseline["payload_bytes"]), 1),
                     None, None, None, None, *([None] * len(links))])
    ratios = [f"{r['config']}: {r['paper_over_ours_device']:.1f}x (fastest runs: "
              f"{r['paper_over_ours_device_min']:.1f}x)" for r in report["headline"] if "paper_over_ours_device" in r]
    note = (f"Latencies are p50 in ms, {report['machine']['threads']} threads, {report['machine']['cpu_model']}. "
            "Roofline: device-graph FLOPs / FP32 peak FLOP/s of the same runtime (3x3 convolution microbenchmark); "
            "% of roofline = roofline time / measured encoder-graph time. Totals are timed end to end (one call "
            "per image), not summed from the stages. bytes/image = stream incl. container; payload = rANS bytes "
            "alone; bpp = payload bits per input pixel; paper KB = sc2bench's pickled size; kMAC/px = device "
            f"MACs per input pixel / 1000. stable = p90/p50 of every stage at most {UNSTABLE_SPREAD}. "
            f"Images: {report['inputs'].get('images_source', 'given')}.")
    if untrained:
        note = (f"UNTRAINED: {', '.join(sorted(untrained))} (random weights): bytes and predictions say nothing "
                "about the method; latencies and sizes of the graphs are still real. " + note)
    if ratios:
        note += " Paper path / our device path (image -> bytes): " + ", ".join(ratios) + "."
    coded = [f"{r['config']}: {r['paper_over_ours_tensor_to_bytes']:.1f}x" for r in report["headline"]
             if "paper_over_ours_tensor_to_bytes" in r]
    if coded:
        note += (" Without preprocessing (tensor -> bytes: encoder graph + entropy encode, the path the paper times): "
                 + ", ".join(coded) + ".")
    return Table("Headline" + (" (UNTRAINED)" if untrained else ""), header, rows, note)


def _latency(report: dict[str, Any]) -> Table:
    rows = []
    entries = [(k, e["stages"]) for k, e in report["latency"].items()]
    if report.get("baseline"):
        entries.append(("PyTorch eager (paper path)", report["baseline"]["stages"]))
    for key, stages in entries:
        for stage, s in stages.items():
            rows.append([key, STAGE_LABELS.get(stage, stage), s["p50"], s["p90"], s["p99"], s["mean"], s["std"],
                         s.get("cpu"), s["n"]])
    for key, alt in report.get("alternatives", {}).items():
        full = alt["stages"]["full_model"]
        rows.append([key, "whole model on device", *(full[k] for k in ("p50", "p90", "p99", "mean", "std")),
                     full.get("cpu"), full["n"]])
        for name, codec in alt["codecs"].items():
            for what in ("encode", "server_total"):
                s = codec[what]
                rows.append([key, f"{name} {what.replace('_', ' ')}", s["p50"], s["p90"], s["p99"], s["mean"],
                             s["std"], s.get("cpu"), s["n"]])
    timing = report["config"]["timing"]
    coders = ", ".join(sorted({f"{k}: {e['coder']}" for k, e in report["latency"].items()}))
    note = (f"ms; warm-up {timing['warmup_count']} runs / {timing['warmup_s']} s, then at least "
            f"{timing['min_count']} runs and {timing['min_time_s']} s per stage; each configuration in its own "
            f"process. CPU = user + system CPU ms per run, every thread of the process (the energy proxy; above the "
            f"wall time when several threads work). Entropy coder: {coders or 'n/a'}.")
    return Table("Latency per stage", ["configuration", "stage", "p50", "p90", "p99", "mean", "std", "CPU", "runs"],
                 rows, note)


def _compute(report: dict[str, Any]) -> list[Table]:
    tables = []
    for model, section in report["compute"].items():
        rows = []
        for stage, c in section["stages"].items():
            t, o = c["torch"], c["onnx"]
            rows.append([stage, _g(t), _g(o), _g(t, "dense_macs"), _g(o, "dense_macs"),
                         t["params"] if t else None, o["params"] if o else None,
                         _mb(o.get("activation_bytes_peak")) if o else None, c.get("kmac_per_pixel"),
                         c["warning"] or ("agree" if t and o else "n/a (one counter)")])
        fraction = section["device_fraction"]
        note = ("GMACs (FLOPs = 2 x MACs); dense = Conv/Gemm only; ONNX params = initializer elements; kMAC/px = "
                "thousand MACs per input pixel (ONNX count, else PyTorch), the unit of MPEG feature coding and "
                "CompressAI-Vision. ")
        if fraction:
            note += (f"On the device: {fraction['macs']:.1%} of the MACs, {fraction['params']:.2%} of the "
                     "parameters. ")
        note += " ".join(section["notes"])
        tables.append(Table(f"Compute: {model}", ["stage", "GMACs PyTorch", "GMACs ONNX", "dense GMACs PyTorch",
                                                   "dense GMACs ONNX", "params PyTorch", "params ONNX",
                                                   "peak activations (MB)", "kMAC/px", "check"], rows, note))
        tables.append(Table(f"Files: {model}", ["role", "format", "precision", "path", "MB"],
                            [[a["role"], a["format"], a["precision"], a["path"], _mb(a["bytes"])]
                             for a in section["artifacts"]]))
    return tables


def _memory(report: dict[str, Any]) -> Table:
    rows = [[m["config"], m["side"], _mb(m["peak_rss_bytes"]), _mb(m["timing_process_peak_rss_bytes"]),
             m["torch_imported"], (m.get("cold_start") or {}).get("process_start_to_first_stream_s"),
             (m.get("cold_start") or {}).get("cpu_s")] for m in report["memory"]]
    baseline = report.get("baseline")
    if baseline:
        rows.append(["PyTorch eager (paper path)", "device", _mb(baseline["device_peak_rss_bytes"]),
                     _mb(baseline["device_timing_process_peak_rss_bytes"]), True, None, None])
    note = ("Peak RSS (MB) of a fresh process that encodes (or decodes) the images one at a time; the timing "
            "process also holds every decoded image. The device process must not import torch. Cold start: that "
            "device process from its creation to its first stream (interpreter, imports, session, first image), "
            "wall s and CPU s.")
    for model, section in report["compute"].items():
        peaks = {side: (section["stages"][side]["onnx"] or {}).get("activation_bytes_peak")
                 for side in ("device", "server")}
        if all(peaks.values()):
            note += (f" Activation memory the FP32 graphs need ({model}, ONNX shape inference, peak alive at once):"
                     f" device {_mb(peaks['device']):.1f} MB, server {_mb(peaks['server']):.1f} MB.")
    return Table("Memory", ["configuration", "side", "peak RSS (MB)", "timing process peak RSS (MB)",
                            "torch imported", "cold start (s)", "cold start CPU (s)"], rows, note)


def _size(report: dict[str, Any]) -> list[Table]:
    summary_rows, image_rows = [], []
    for key, size in report["size"].items():
        s = size["summary"]
        summary_rows.append([key, s["stream_bytes"]["mean"], s["stream_bytes"]["std"], s["payload_bytes"]["mean"],
                             s["bpp"]["mean"], s["information_bits"]["mean"] / 8, f"{s['coder_overhead']['mean']:+.3%}",
                             s["paper_kb"]["mean"]])
        for im in size["per_image"]:
            image_rows.append([key, im["image"], im["stream_bytes"], im["payload_bytes"], im["bpp"],
                               im["information_bits"] / 8, f"{im['coder_overhead']:+.3%}", im["paper_kb"]])
    note = ("stream = container header + rANS payload (what is sent); bpp = payload bits per input pixel; "
            "information = -log2 p(symbols) under the bundle's CDF tables (escapes incl. bypass bits); overhead = "
            "payload / information - 1; paper KB = sys.getsizeof(pickle.dumps({'strings': [[payload]], "
            "'shape': (h, w)}))/1024, sc2bench's figure, for comparison with the paper only.")
    return [Table("Size (mean over images)", ["configuration", "stream bytes", "std", "payload bytes", "bpp",
                                              "information (bytes)", "coder overhead", "paper KB"],
                  summary_rows, note),
            Table("Size per image", ["configuration", "image", "stream bytes", "payload bytes", "bpp",
                                     "information (bytes)", "coder overhead", "paper KB"], image_rows)]


def _end_to_end(report: dict[str, Any]) -> Table:
    rows = [[r["config"], r["link"], r["path"], r["device_ms"], r["bytes"], r["transfer_ms"], r["rtt_ms"],
             r["server_ms"], r["total_ms"]] for r in report["end_to_end"]]
    links = "; ".join(f"{link['name']}: {link['uplink_mbps']} Mbit/s up, {link['rtt_ms']} ms RTT ({link['label']})"
                      for link in report["links"])
    methods = {alt.get("full_model_method") for alt in report.get("alternatives", {}).values()}
    note = (f"total = device + bytes / uplink + RTT + server, p50 latencies measured on this machine. Links: {links}. "
            f"All on device: {', '.join(sorted(m for m in methods if m)) or 'n/a'}. Codec rows: resize+crop+normalize "
            "(upper bound of the crop) and codec encode of the 224x224 input crop on the device; the server decodes "
            "the image and runs the whole model.")
    return Table("End-to-end split latency", ["configuration", "link", "path", "device ms", "bytes", "transfer ms",
                                              "RTT ms", "server ms", "total ms"], rows, note)


def _verdicts(report: dict[str, Any]) -> Table:
    rows = [[v["config"], v["link"], v["verdict"]] for v in report.get("end_to_end_verdicts", [])]
    return Table("End-to-end verdict per link", ["configuration", "link", "verdict"], rows or [["n/a", "", ""]],
                 "Fastest path per link from the p50 totals above; the split path against the best alternative "
                 "(whole model on the device, or an input codec + the whole model on the server).")


def _rate_accuracy(report: dict[str, Any]) -> Table:
    ra = report["rate_accuracy"]
    rows = [[p["bundle"], p.get("path", "split"), p["beta"], p["backend"], p["precision"], p["bytes_mean"],
             p["agreement"], p["accuracy"]] for p in ra["points"]]
    trained = {b["id"]: b["trained"] for b in report["inputs"]["bundles"]}
    note = f"agreement = top-1 equal to the reference {ra['reference']} ({ra['reference_rule']})."
    if not all(trained.values()):
        note += " Untrained bundles (random weights): agreement measures numerical fidelity, not accuracy."
    note += " For curves over many items and codec qualities, with BD-rate: sc2edge compare."
    return Table("Rate-accuracy", ["bundle", "path", "beta", "backend", "precision", "bytes/image",
                                   "top-1 agreement", "top-1 accuracy"], rows, note)


def _roofline(report: dict[str, Any]) -> Table:
    rows = [[backend, s["op"], s["flops"] / 1e9, s["latency_ms"]["p50"], s["gflops"]]
            for backend, r in report["roofline"].items() for s in r["shapes"]]
    return Table("Roofline microbenchmark", ["backend", "operation", "GFLOP", "p50 ms", "GFLOP/s"], rows,
                 "Peak = the best GFLOP/s of these, with the same runtime runner and thread count as the graphs.")


def _machine(report: dict[str, Any]) -> Table:
    m = report["machine"]
    busy = max((m.get("load_average_at_start") or [0])[0], (m.get("load_average_at_end") or [0])[0]) > m["cores"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    rows = [["CPU", m["cpu_model"]], ["cores (usable)", f"{m['cores']} ({m['cores_usable']})"],
            ["threads", m["threads"]], ["memory (MB)", _mb(m["memory_bytes"])], ["OS", m["os"]],
            ["load average (1/5/15 min) at start; at end",
             f"{_fmt(m.get('load_average_at_start'))}; {_fmt(m.get('load_average_at_end'))}"
             + (" (above the core count: other work competed for the CPU)" if busy else "")],
            ["versions", versions],
            ["images", f"{len(report['inputs']['images'])}, {report['inputs'].get('images_source', 'given')} (hash "
                       f"{report['inputs']['images_hash']}): "
                       + ", ".join(Path(p).name for p in report["inputs"]["images"])],
            ["calibration images among them", _fmt(report["inputs"].get("calibration_images_used"))],
            *[[f"bundle {b['id']}", f"{b['model']}, hash {b['hash']}, beta {b['beta']}, trained {_fmt(b['trained'])}"]
              for b in report["inputs"]["bundles"]],
            ["CPU flags", " ".join(f for f in m["cpu_flags"] if f.startswith(("avx", "amx", "fma", "sse4", "vnni")))]]
    return Table("Machine and inputs", ["item", "value"], rows)


def _problems(report: dict[str, Any]) -> Table:
    rows = [["warning", w] for w in report["warnings"]]
    rows += [["skipped", f"{s['what']}: {s['reason']}"] for s in report["skipped"]]
    return Table("Warnings and skipped configurations", ["kind", "detail"], rows or [["none", ""]])


def build_tables(report: dict[str, Any]) -> list[Table]:
    return [_headline(report), _latency(report), *_compute(report), _memory(report), *_size(report),
            _end_to_end(report), _verdicts(report), _rate_accuracy(report), _roofline(report), _machine(report),
            _problems(report)]


def headline_markdown(report: dict[str, Any]) -> str:
    """The headline table alone, for the terminal."""
    return to_markdown([_headline(report)], {}, title=None)


def to_markdown(tables: list[Table], plots: dict[str, Path], title: str | None = "sc2edge bench report") -> str:
    lines = [f"# {title}", ""] if title else []
    for table in tables:
        lines += [f"## {table.title}", ""]
        lines.append("| " + " | ".join(table.header) + " |")
        lines.append("|" + "---|" * len(table.header))
        lines += ["| " + " | ".join(_fmt(v).replace("|", "/") for v in row) + " |" for row in table.rows]
        lines.append("")
        if table.note:
            lines += [table.note, ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({path.name})" for name, path in plots.items()] + [""]
    return "\n".join(lines)


def to_html(tables: list[Table], plots: dict[str, Path]) -> str:
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:110em}table{border-collapse:collapse;"
             "margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
             "td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}p.note{color:#555;max-width:80em}"
             "img{max-width:48%;margin:.5em}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>sc2edge bench</title><style>{style}</style>"
             "</head><body><h1>sc2edge bench report</h1>"]
    for table in tables:
        parts.append(f"<h2>{html.escape(table.title)}</h2><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in table.header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in table.rows]
        parts.append("</table>")
        if table.note:
            parts.append(f"<p class='note'>{html.escape(table.note)}</p>")
    if plots:
        parts.append("<h2>Plots</h2>")
        for name, path in plots.items():
            data = base64.b64encode(path.read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_csvs(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    stats = ["n", "mean", "std", "min", "p50", "p90", "p99", "cpu"]
    latency_rows = [[key, e["backend"], e["precision"], stage, *(s.get(k) for k in stats)]
                    for key, e in report["latency"].items() for stage, s in e["stages"].items()]
    if report.get("baseline"):
        latency_rows += [["paper-path", "pytorch-eager", "fp32", stage, *(s.get(k) for k in stats)]
                         for stage, s in report["baseline"]["stages"].items()]
    size_fields = ["image", "stream_bytes", "payload_bytes", "bpp", "information_bits", "coder_overhead", "paper_kb"]
    e2e_fields = ["config", "link", "path", "device_ms", "bytes", "transfer_ms", "rtt_ms", "server_ms", "total_ms"]
    return {
        "latency_csv": _write_csv(out_dir / "latency.csv", ["config", "backend", "precision", "stage", *stats],
                                  latency_rows),
        "size_csv": _write_csv(out_dir / "size.csv", ["config", *size_fields],
                               [[k, *(im[f] for f in size_fields)] for k, s in report["size"].items()
                                for im in s["per_image"]]),
        "end_to_end_csv": _write_csv(out_dir / "end_to_end.csv", e2e_fields,
                                     [[r[f] for f in e2e_fields] for r in report["end_to_end"]]),
    }


def _plot_end_to_end(ax, mine: list[dict[str, Any]], config: str) -> None:
    """One configuration's stacked end-to-end bars: per link, one bar per path (device, transfer, RTT, server)."""
    links = list(dict.fromkeys(r["link"] for r in mine))
    paths = list(dict.fromkeys(r["path"] for r in mine))
    width = 0.8 / len(paths)
    parts = (("device_ms", "device", "C0"), ("transfer_ms", "transfer", "C1"), ("rtt_ms", "round trip", "C2"),
             ("server_ms", "server", "C3"))
    for j, path in enumerate(paths):
        xs = [i + j * width for i in range(len(links))]
        bottom = [0.0] * len(links)
        for field_name, label, color in parts:
            values = [next((r[field_name] for r in mine if (r["link"], r["path"]) == (link, path)), 0.0)
                      for link in links]
            ax.bar(xs, values, width * 0.95, bottom=bottom, color=color, label=label if j == 0 else None)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        for x, total in zip(xs, bottom, strict=True):
            ax.text(x, total, path, rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_xticks([i + width * (len(paths) - 1) / 2 for i in range(len(links))], links)
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.25)
    ax.set_title(f"End-to-end per link: split vs alternatives\n{config}", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")


def write_plots(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """PNG plots; empty when matplotlib is not installed (the tables still carry every figure)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        report["warnings"].append("matplotlib is not installed: no plots (pip install sc2edge[bench])")
        return {}
    plots: dict[str, Path] = {}

    bars = [(k, e["stages"]) for k, e in report["latency"].items()]
    if report.get("baseline"):
        bars.append(("PyTorch eager (paper)", report["baseline"]["stages"]))
    if bars:
        fig, axes = plt.subplots(1, 2, figsize=(12, 1.8 + 0.5 * len(bars)), sharey=True)
        for ax, side, offset in ((axes[0], DEVICE_STAGES, 0), (axes[1], SERVER_STAGES, len(DEVICE_STAGES))):
            for i, (_, stages) in enumerate(bars):
                left = 0.0
                for j, stage in enumerate(side):
                    width = stages.get(stage, {}).get("p50", 0.0)
                    ax.barh(i, width, left=left, color=f"C{offset + j}", label=STAGE_LABELS[stage] if i == 0 else None)
                    left += width
            ax.set_xlabel("p50 latency (ms)")
            ax.legend(fontsize=8, loc="lower right")
        axes[0].set_yticks(range(len(bars)), [k for k, _ in bars], fontsize=8)
        axes[0].set_title("device: image -> bytes")
        axes[1].set_title("server: bytes -> prediction")
        fig.tight_layout()
        plots["latency_stages"] = out_dir / "latency_stages.png"
        fig.savefig(plots["latency_stages"], dpi=110)
        plt.close(fig)

    rows = report["end_to_end"]
    if rows:
        configs = list(dict.fromkeys(r["config"] for r in rows))
        fig, axes = plt.subplots(len(configs), 1, figsize=(10, 4.2 * len(configs)), squeeze=False)
        for ax, config in zip(axes[:, 0], configs, strict=True):
            _plot_end_to_end(ax, [r for r in rows if r["config"] == config], config)
        fig.tight_layout()
        plots["end_to_end"] = out_dir / "end_to_end.png"
        fig.savefig(plots["end_to_end"], dpi=100)
        plt.close(fig)

    points = report["rate_accuracy"]["points"]
    if points:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        def series_of(p: dict[str, Any]) -> tuple[str, ...]:
            return p["backend"], p["precision"], p.get("path", "split").split("-q")[0]

        for k, series in enumerate(dict.fromkeys(series_of(p) for p in points)):
            pts = sorted((p["bytes_mean"], p["accuracy"] if p["accuracy"] is not None else p["agreement"] or 0.0)
                         for p in points if series_of(p) == series)
            ax.plot([x / 1024 for x, _ in pts], [100 * y for _, y in pts], marker="osD^v"[k % 5], markersize=10 - k,
                    fillstyle="none", label=" ".join(series).upper())  # hollow markers: coinciding points show
        ax.set_xlabel("KiB per image (stream)")
        ax.set_ylabel("top-1 accuracy (%)" if points[0]["accuracy"] is not None else "top-1 agreement (%)")
        ax.set_title("Rate-accuracy")
        ax.legend(fontsize=8)
        fig.tight_layout()
        plots["rate_accuracy"] = out_dir / "rate_accuracy.png"
        fig.savefig(plots["rate_accuracy"], dpi=110)
        plt.close(fig)
    return plots


def write_reports(report: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """report.json, latency/size/end_to_end CSVs, report.md, PNG plots and report.html in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, out_dir)
    files: dict[str, Path] = {**write_csvs(report, out_dir), **{f"plot_{k}": v for k, v in plots.items()}}
    tables = build_tables(report)
    files["markdown"] = out_dir / "report.md"
    atomic_write_text(files["markdown"], to_markdown(tables, plots))
    files["html"] = out_dir / "report.html"
    atomic_write_text(files["html"], to_html(tables, plots))
    files["json"] = out_dir / "report.json"
    listing = {k: str(v) for k, v in files.items()}
    atomic_write_text(files["json"], json.dumps({**report, "files": listing}, indent=1, default=str))
    return listing


def compare_tables(report: dict[str, Any]) -> list[Table]:
    """The rate-accuracy comparison (``sc2edge compare``): one summary row per curve, one row per point."""
    metric = report["metric"]
    isa = report["isa"]
    untrained = any(s["untrained"] for s in report["summary"])
    summary = [[("UNTRAINED " if s["untrained"] else "") + s["method"], s["precision"].upper(), s["points"],
                s["bytes_mean_range"], s["bytes_worst"], [100 * v for v in s["score_range"]],
                None if s["bd_rate_vs_jpeg_pct"] is None else f"{s['bd_rate_vs_jpeg_pct']:+.1f} %",
                s["device_ms_p50_range"]] for s in report["summary"]]
    points = [[("UNTRAINED " if not p.get("trained", True) else "") + p["method"], p["setting"],
               p["precision"].upper() + (f" (server {p['server_precision'].upper()})" if "server_precision" in p
                                         else ""), p["bytes_mean"], p["bytes_max"], p["bpp"], 100 * p["score"],
               p["device_ms"]["p50"], p["server_ms"]["p50"]] for p in report["points"]]
    items = report["items"]
    note = (f"{items['count']} items: {items['protocol']} of {items['source']}; score = {metric}; teacher "
            f"{report['teacher']['name']}: {100 * report['teacher']['score']:.2f} %. bytes = what is sent per image "
            "(split: stream container + payload; codec: the file); worst = the largest single image. BD-rate vs JPEG: "
            "average bytes of the curve relative to JPEG (FP32, teacher) at equal score over the score range both "
            "reach (negative = fewer bytes; n/a = no overlap). Device ms = median per image, one pass, "
            f"{report['backend']}, {report['threads']} thread(s); INT8 rows on {isa}.")
    if "kept_from" in report:
        kept = report["kept_from"]
        note += (f" Rows of {', '.join(kept['methods'])} come from the run of {kept['created']} (kept: same items, "
                 "runtime and teacher; its device times are that run's).")
    if untrained:
        note += " UNTRAINED: some curves have random weights; their scores say nothing about the method."
    return [Table("Rate-accuracy summary per method",
                  ["method", "precision", "points", "bytes/image (mean, range)", "worst bytes", f"{metric} % (range)",
                   "BD-rate vs JPEG", "device ms p50 (range)"], summary, note),
            Table("Rate-accuracy points", ["method", "setting", "precision", "bytes/image", "worst bytes", "bpp",
                                           f"{metric} %", "device ms p50", "server ms p50"], points),
            Table("Warnings and skipped", ["kind", "detail"],
                  [["warning", w] for w in report["warnings"]]
                  + [["skipped", f"{s['what']}: {s['reason']}"] for s in report["skipped"]] or [["none", ""]])]


def plot_compare(report: dict[str, Any], path: Path) -> Path | None:
    """Score against bytes per image (log axis), one curve per method and precision (INT8 dashed), the teacher as
    a horizontal line; beside it, device time per image against bytes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        report["warnings"].append("matplotlib is not installed: no plot (pip install sc2edge[bench])")
        return None
    fig, (ax, ax_time) = plt.subplots(1, 2, figsize=(13, 5))
    curves = list(dict.fromkeys((p["method"], p["precision"]) for p in report["points"]))
    colours = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(m for m, _ in curves))}
    for method, precision in curves:
        pts = sorted((p for p in report["points"] if (p["method"], p["precision"]) == (method, precision)),
                     key=lambda p: p["bytes_mean"])
        untrained = any(not p.get("trained", True) for p in pts)
        style = {"color": colours[method], "linestyle": "--" if precision == "int8" else "-",
                 "marker": "o" if pts[0]["kind"] == "split" else "s", "fillstyle": "none",
                 "label": f"{'UNTRAINED ' if untrained else ''}{method} {precision.upper()}"}
        xs = [p["bytes_mean"] for p in pts]
        ax.plot(xs, [100 * p["score"] for p in pts], **style)
        for p in pts:  # which beta or quality each point is
            ax.annotate(p["setting"].replace("beta ", "b"), (p["bytes_mean"], 100 * p["score"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points", color=colours[method])
        ax_time.plot(xs, [p["device_ms"]["p50"] for p in pts], **style)
    teacher = report["teacher"]
    ax.axhline(100 * teacher["score"], color="k", linewidth=0.8, linestyle=":",
               label=f"teacher {teacher['name']} (uncompressed)")
    for axis in (ax, ax_time):
        axis.set_xscale("log")
        axis.set_xlabel("bytes per image (sent)")
        axis.grid(True, which="both", alpha=0.3)
    ax.set_ylabel(f"{report['metric']} (%)")
    ax.set_title(f"Rate-accuracy, {report['items']['count']} items", fontsize=10)
    ax.legend(fontsize=7)
    ax_time.set_ylabel("device time per image, p50 (ms)")
    ax_time.set_yscale("log")
    ax_time.set_title(f"Device time ({report['backend']}, {report['threads']} thread(s))", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_compare_reports(report: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """compare.json, compare.md and rate_accuracy.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot = plot_compare(report, out_dir / "rate_accuracy.png")
    plots = {"rate_accuracy": plot} if plot else {}
    files = {"markdown": out_dir / "compare.md", "json": out_dir / "compare.json",
             **{f"plot_{k}": v for k, v in plots.items()}}
    atomic_write_text(files["markdown"], to_markdown(compare_tables(report), plots, title="sc2edge compare"))
    listing = {k: str(v) for k, v in files.items()}
    atomic_write_text(files["json"], json.dumps({**report, "files": listing}, indent=1, default=str))
    return listing
