"""Markdown tables from benchmarks/results/*.json (for benchmarks/README.md).

    python benchmarks/report_md.py [FILE.json ...] [--results benchmarks/results]

Reads the given result files (default: e2e.json, peak.json and coldstart.json in --results,
when present) and prints the tables; every number comes from those files, i.e. a measured run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from uehead.bench.report import overhead_sentence

RESULTS = Path(__file__).resolve().parent / "results"


def table(rows: list[list], header: list[str], left: int = 1) -> str:
    """A Markdown table; the first ``left`` columns (labels) align left, the numbers right."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def f(x, fmt="{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def meta_line(doc: dict) -> str:
    m = doc["meta"]
    la = lambda v: "-" if not v else "/".join(f"{x:.1f}" for x in v)
    return (f"_{m['cpu']}, {m['threads']} threads, onnxruntime {m['onnxruntime']}, numba {m['numba']}, "
            f"{m['started']}; load average (1/5/15 min) {la(m.get('loadavg_start'))} at start, "
            f"{la(m.get('loadavg_end'))} at end; repeats {doc['settings']['repeats']}._")


def e2e_tables(doc: dict) -> str:
    parts = [meta_line(doc)]
    texts = doc["texts"]
    parts.append("Texts: " + ", ".join(f"`{k}` ~{v['mean_tokens']:.0f} tokens" for k, v in texts.items())
                 + f" ({next(iter(texts.values()))['source']}).")
    if "peak" in doc:
        p = doc["peak"]
        parts.append(f"Measured fp32 peak ({p['n']}^3 matmul, {p['threads']} threads): numpy "
                     f"{p['numpy']['gflops_best']:.0f} GFLOP/s, ONNX Runtime "
                     f"{f(p.get('onnxruntime', {}).get('gflops_best'), '{:.0f}')} GFLOP/s.")
    rows = doc.get("e2e", [])
    lengths = doc["settings"]["lengths"]
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    by = {(r["engine"], r["length"], r["batch_size"]): r for r in rows}
    if rows:
        body = []
        for b in doc["settings"]["batch_sizes"]:
            for e in engines:
                cells = []
                for length in lengths:
                    r = by.get((e, length, b))
                    x = None if r is None else r.get("x_vs_pytorch-fp32")
                    cells.append("-" if r is None else f"{r['texts_per_s']:.0f} ({f(x, '{:.2f}x')})")
                body.append([b, e, *cells])
        parts.append("**End to end** (texts/s; in brackets: PyTorch eager fp32 time / engine time, same cell)\n\n"
                     + table(body, ["batch", "engine", *lengths], left=2))
    st = doc.get("stages", [])
    if st:
        body = [[r["bundle"], r["length"], r["batch_size"], f(r["seq_len_mean"], "{:.0f}"), f(r["tokenize_us"], "{:.0f}"),
                 f(r["backbone_us"], "{:.0f}"), f(r["head_us"], "{:.0f}"), f(r["kernels_us"], "{:.0f}"),
                 f(r["overhead_pct"], "{:.3f}"), f(r.get("backbone_gflops"), "{:.0f}"), f(r.get("pct_of_peak"), "{:.0f}")]
                for r in st]
        parts.append("**Per batch, per stage** (microseconds; overhead = head graph + kernels as % of the backbone)\n\n"
                     + table(body, ["bundle", "length", "batch", "padded len", "tokenise", "backbone", "head",
                                    "kernels", "overhead %", "GFLOP/s", "% of peak"], left=2))
    peers = [r for r in rows if r.get("backbone_gflops") is not None and not r["engine"].startswith("uehead")]
    if peers:
        body = [[r["engine"], r["length"], r["batch_size"], f(r["forward_ms_per_batch"]), f(r["backbone_gflops"], "{:.0f}"),
                 f(r.get("pct_of_peak"), "{:.0f}")] for r in peers]
        parts.append("**Peers' forward pass** (model call only, tokeniser excluded)\n\n"
                     + table(body, ["engine", "length", "batch", "ms/batch", "GFLOP/s", "% of peak"], left=2))
    for name, o in doc.get("overhead", {}).items():
        parts.append(overhead_sentence(f"`{name}`", o) + ".")
    return "\n\n".join(parts)


def cold_tables(doc: dict) -> str:
    cold = {k: v for k, v in doc.get("coldstart", {}).items() if isinstance(v, dict) and "median" in v}
    body = [[k, f(v["median"]["import_s"], "{:.3f}"), f(v["median"]["load_s"], "{:.3f}"),
             f(v["median"]["first_predict_s"], "{:.3f}"), f(v["median"]["total_s"], "{:.3f}"),
             f(v["median"]["since_spawn_s"], "{:.3f}"), f(v["median"]["peak_rss_mb"], "{:.0f}"),
             f(v["median"]["peak_rss_after_batch32_mb"], "{:.0f}"),
             "yes" if v["median"].get("numba_imported") else "no", v["median"].get("kernels_backend", "-")]
            for k, v in cold.items()]
    return ("**Cold start** (fresh processes, medians)\n\n" + table(body, ["process", "import s", "load s", "first prediction s",
                                                    "total s", "from spawn s", "peak RSS MB",
                                                    "peak RSS after 32x128 tokens MB", "numba imported",
                                                    "kernels"])
            + f"\n\n`python -c pass`: {doc['coldstart']['interpreter_s']:.3f} s.")


def checks(doc: dict) -> str:
    lines = []
    for c in doc.get("summary", {}).get("checks", []):
        vals = ", ".join(f"{k} {v:.3g}" for k, v in c["measured"].items())
        lines.append(f"- {'met' if c['met'] else '**missed**'}: {c['name']}: {vals} (target {c['target']})")
    return "\n".join(lines)


def render(doc: dict) -> str:
    if doc.get("stages") or doc.get("e2e") or doc.get("peak"):
        parts = [e2e_tables(doc)]
    else:
        parts = [meta_line(doc)]
    if any(isinstance(v, dict) and "median" in v for v in doc.get("coldstart", {}).values()):
        parts.append(cold_tables(doc))
    parts.append(checks(doc))
    return "\n\n".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path, help="result JSON files (default: e2e, peak, coldstart in --results)")
    p.add_argument("--results", type=Path, default=RESULTS)
    a = p.parse_args()
    files = a.files or [a.results / n for n in ("e2e.json", "peak.json", "coldstart.json")]
    for path in files:
        if path.is_file():
            print(f"### {path.name}\n\n{render(json.loads(path.read_text(encoding='utf-8')))}\n")


if __name__ == "__main__":
    main()
