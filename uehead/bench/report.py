"""Tables, target checks and JSON writing for ``uehead bench`` documents (torch-free)."""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uehead.bench.engines import BASELINE

__all__ = ["TARGETS", "TIE_TOLERANCE", "check_targets", "fixed_width_table", "int8_peak_sentence",
           "optimum_int8_peers", "overhead_sentence", "print_report", "speedups", "write_json"]

#: The speed and size targets a run is checked against (ratios are of engines measured in one run).
#: ``int8_vs_best_optimum_int8_b32``: uehead-int8 against the fastest optimum int8 peer of each cell;
#: ``fp32_vs_optimum_o3_b32``: uehead-fp32 against optimum's O3-optimised graph, where a tie within
#: noise (a ratio of medians at most :data:`TIE_TOLERANCE` below the target) is accepted and named so.
TARGETS = {"fp32_vs_pytorch_b32": 2.0, "int8_vs_pytorch_b32": 4.0, "vs_optimum_b32": 1.0,
           "int8_vs_best_optimum_int8_b32": 1.4, "fp32_vs_optimum_o3_b32": 1.0,
           "overhead_pct_b32": 0.1, "coldstart_s": 0.6, "coldstart_rss_mb": 250.0}
#: How far below the target a ratio of medians may fall and still count as a tie: run-to-run noise
#: of two ONNX Runtime engines on the same graph kind, interleaved, on a quiet machine (~2 %).
TIE_TOLERANCE = 0.02
#: Columns of the printed tables.
STAGE_COLUMNS = ("bundle", "length", "batch_size", "seq_len_mean", "tokenize_us", "backbone_us", "head_us",
                 "kernels_us", "overhead_pct", "backbone_gflops", "pct_of_peak", "pct_of_int8_peak")
E2E_COLUMNS = ("length", "batch_size", "engine", "ms_per_batch", "best_ms_per_batch", "texts_per_s",
               f"x_vs_{BASELINE}", "spread_pct", "tokenize_ms_per_batch", "forward_ms_per_batch", "backbone_gflops",
               "pct_of_peak", "pct_of_int8_peak")
COLDSTART_COLUMNS = ("process", "import_s", "load_s", "first_predict_s", "total_s", "since_spawn_s", "peak_rss_mb",
                     "peak_rss_after_batch32_mb", "numba_imported", "kernels_backend")


def fixed_width_table(rows: list[dict[str, Any]], columns: Sequence[str], title: str = "") -> str:
    """A fixed-width text table of ``rows`` (dicts) over ``columns``; floats get 3 significant digits+."""
    def cell(v):
        if isinstance(v, float):
            if math.isnan(v):
                return "nan"
            return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
        return "-" if v is None else str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[k]) for b in body)) if body else len(c) for k, c in enumerate(columns)]
    lines = [title] if title else []
    lines.append("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def write_json(path: str | os.PathLike, doc: dict[str, Any]) -> Path:
    """Write ``doc`` (numpy scalars and paths allowed) to ``path`` atomically; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _row(doc: dict, engine: str, length: str, b: int) -> dict | None:
    for r in doc.get("e2e", []):
        if r["engine"] == engine and r["length"] == length and r["batch_size"] == b:
            return r
    return None


def speedups(doc: dict[str, Any], baseline: str = BASELINE) -> None:
    """Add ``x_vs_<baseline>`` (baseline time / engine time, same length and batch) to every e2e row,
    and to a bundle's rows its stage split (tokenise; backbone + head + kernels) and GFLOP/s."""
    stages = {(r["bundle"], r["length"], r["batch_size"]): r for r in doc.get("stages", [])}
    for r in doc.get("e2e", []):
        st = stages.get((r["engine"], r["length"], r["batch_size"]))
        if st is not None:
            r.setdefault("tokenize_ms_per_batch", st["tokenize_us"] / 1e3)
            r.setdefault("forward_ms_per_batch", (st["backbone_us"] + st["head_us"] + st["kernels_us"]) / 1e3)
            for k in ("seq_len_mean", "backbone_gflops", "pct_of_peak", "pct_of_int8_peak"):
                if k in st:
                    r.setdefault(k, st[k])
        base = _row(doc, baseline, r["length"], r["batch_size"])
        if base is not None:
            r[f"x_vs_{baseline}"] = base["total_s"] / r["total_s"]


def int8_peak_sentence(p: dict[str, Any]) -> str:
    """One line on the int8 GEMM peak of a ``peak`` section (or why it is missing)."""
    if not p.get("int8_peak_gops"):
        return f"int8 peak: skipped ({p.get('int8_skipped', 'not measured')})"
    ops = ", ".join(f"{k} {v['gops_best']:.0f}" for k, v in (p.get("onnxruntime_int8") or {}).items()
                    if isinstance(v, dict) and "gops_best" in v)
    return (f"int8 peak ({p['n']}^3, onnxruntime, GOP/s): {ops} -> peak {p['int8_peak_gops']:.1f} "
            f"({p.get('int8_peak_op')})")


def overhead_sentence(name: str, o: dict[str, Any]) -> str:
    """One line on a :func:`uehead.bench.overhead.head_overhead` result: batch job, lone batch, hot loop."""
    if "one_batch" not in o:  # results written before the head ran once per block (a lone batch only)
        return (f"{name}: head overhead, one batch of {o['batch_size']}: head graph {o['head_us']:.0f} us + kernels "
                f"{o['kernels_us']:.0f} us = {o['overhead_pct_of_backbone']:.3f}% of the backbone "
                f"({o['backbone_us'] / 1e3:.1f} ms)")
    one = o["one_batch"]
    return (f"{name}: per-batch CPU overhead of the head at batch {o['batch_size']}: in a batch job of {o['n_texts']} "
            f"short sentences, head graph {o['head_us']:.1f} us + kernels {o['kernels_us']:.1f} us = "
            f"{o['head_plus_kernels_us']:.1f} us per batch = {o['overhead_pct_of_backbone']:.3f}% of the backbone "
            f"({o['backbone_us'] / 1e3:.1f} ms); one lone batch: head {one['head_us']:.0f} us + kernels "
            f"{one['kernels_us']:.0f} us = {one['overhead_pct_of_backbone']:.3f}% of its backbone; hot loop (caches "
            f"warm): head {o['hot_head_us']:.0f} us + kernels {o['hot_kernels_us']:.0f} us")


def _check(name: str, target: str, measured: dict[str, float], ok: bool, **extra) -> dict[str, Any]:
    return {"name": name, "target": target, "measured": measured, "met": bool(ok), **extra}


def optimum_int8_peers(doc: dict[str, Any]) -> list[str]:
    """The optimum int8 peers of a document's e2e rows (the pipeline wrapper excluded: same graph)."""
    names = dict.fromkeys(r["engine"] for r in doc.get("e2e", []))
    return [n for n in names if n.startswith("optimum-") and n.endswith("-int8") and "pipeline" not in n]


def _vs_fastest_int8(doc: dict[str, Any], lengths, target: float) -> dict[str, Any] | None:
    """uehead-int8 against the fastest optimum int8 peer of each (length, batch 32) cell."""
    vals, vs = {}, {}
    for length in lengths:
        a = _row(doc, "uehead-int8", length, 32)
        rows = [r for r in (_row(doc, p, length, 32) for p in optimum_int8_peers(doc)) if r]
        if a and rows:
            fastest = min(rows, key=lambda r: r["total_s"])
            vals[length], vs[length] = fastest["total_s"] / a["total_s"], fastest["engine"]
    if not vals:
        return None
    return _check("uehead-int8 vs the fastest optimum int8 peer, e2e batch 32", f">= {target:g}x (every length)",
                  vals, min(vals.values()) >= target, vs=vs)


def _vs_o3(doc: dict[str, Any], lengths, target: float, tol: float) -> dict[str, Any] | None:
    """uehead-fp32 against optimum-o3-fp32 (ratios of medians; best-of-repeats ratios shown beside them);
    ``verdict``: ahead (every length >= target), tie within noise (>= target - tol), or behind."""
    vals, best = {}, {}
    for length in lengths:
        a, b = _row(doc, "uehead-fp32", length, 32), _row(doc, "optimum-o3-fp32", length, 32)
        if a and b:
            vals[length] = b["total_s"] / a["total_s"]
            if a.get("best_ms_per_batch") and b.get("best_ms_per_batch"):
                best[f"{length} best"] = b["best_ms_per_batch"] / a["best_ms_per_batch"]
    if not vals:
        return None
    worst = min(vals.values())
    if worst >= target:
        verdict = "ahead"
    elif worst >= target - tol:
        verdict = "tie within noise"
    else:
        verdict = "behind"
    return _check("uehead-fp32 vs optimum-o3-fp32, e2e batch 32",
                  f">= {target:g}x (every length; a tie within noise, median ratio >= {target - tol:g}, accepted)",
                  {**vals, **best}, verdict != "behind",
                  verdict=verdict)


def check_targets(doc: dict[str, Any], targets: dict[str, float] = TARGETS) -> dict[str, Any]:
    """The document's ``summary``: each of ``targets`` checked against what the document holds (a
    check is absent when its data is). Adds the speed-ups to the e2e rows first (:func:`speedups`)."""
    speedups(doc)
    lengths = doc["settings"]["lengths"]
    checks = []

    def ratio_check(key, engine, other, label):
        vals = {}
        for length in lengths:
            a, b = _row(doc, engine, length, 32), _row(doc, other, length, 32)
            if a and b:
                vals[length] = b["total_s"] / a["total_s"]
        if vals:
            checks.append(_check(label, f">= {targets[key]:g}x (every length)", vals,
                                 min(vals.values()) >= targets[key]))

    ratio_check("fp32_vs_pytorch_b32", "uehead-fp32", BASELINE, "uehead-fp32 vs pytorch-fp32, e2e batch 32")
    ratio_check("int8_vs_pytorch_b32", "uehead-int8", BASELINE, "uehead-int8 vs pytorch-fp32, e2e batch 32")
    for prec in ("fp32", "int8"):
        for peer in (f"optimum-{prec}", f"optimum-pipeline-{prec}"):
            ratio_check("vs_optimum_b32", f"uehead-{prec}", peer, f"uehead-{prec} vs {peer}, e2e batch 32")
    for extra in (_vs_fastest_int8(doc, lengths, targets["int8_vs_best_optimum_int8_b32"]),
                  _vs_o3(doc, lengths, targets["fp32_vs_optimum_o3_b32"], TIE_TOLERANCE)):
        if extra is not None:
            checks.append(extra)
    peak8 = doc.get("peak", {}).get("int8_peak_gops")
    eff = {r["length"]: r["pct_of_int8_peak"] for r in doc.get("stages", [])
           if r["bundle"] == "uehead-int8" and r["batch_size"] == 32 and r.get("pct_of_int8_peak") is not None}
    if peak8 and eff:  # a statement, not a target: the int8 backbone's share of the measured int8 peak
        checks.append(_check(f"uehead-int8 backbone, % of the measured int8 GEMM peak ({peak8:.0f} GOP/s), batch 32",
                             "stated (no target)", eff, True, info_only=True))
    for bundle, o in doc.get("overhead", {}).items():
        if o.get("batch_size") == 32 and "n_texts" in o:
            checks.append(_check(f"{bundle} head + kernels, % of backbone, per batch of 32 in a batch job of "
                                 f"{o['n_texts']} short sentences", f"<= {targets['overhead_pct_b32']:g}%",
                                 {"median": o["overhead_pct_of_backbone"]},
                                 o["overhead_pct_of_backbone"] <= targets["overhead_pct_b32"]))
    cold = doc.get("coldstart", {}).get("uehead-fp32", {}).get("median")
    if cold:
        checks.append(_check("uehead-fp32 cold start (import + load + first prediction), s",
                             f"<= {targets['coldstart_s']:g} s", {"median": cold["total_s"]},
                             cold["total_s"] <= targets["coldstart_s"]))
        checks.append(_check("uehead-fp32 cold start peak RSS, MB", f"<= {targets['coldstart_rss_mb']:g} MB",
                             {"median": cold["peak_rss_mb"]}, cold["peak_rss_mb"] <= targets["coldstart_rss_mb"]))
    meta = doc["meta"]
    return {"checks": checks, "all_met": all(c["met"] for c in checks) if checks else None,
            "loadavg_start": meta.get("loadavg_start"), "loadavg_end": meta.get("loadavg_end"),
            "note": "timings on a shared machine are noisy: compare ratios from one run, and the load averages."}


def print_report(doc: dict[str, Any]) -> None:
    """Print the document's tables, overhead lines and target checks (stdout)."""
    m = doc["meta"]
    print(f"uehead bench: {m['cpu']}, {m['threads']} threads, onnxruntime {m['onnxruntime']}, numba {m['numba']}; "
          f"load average {m.get('loadavg_start')} -> {m.get('loadavg_end')}")
    print("texts: " + ", ".join(f"{k}: {v['n']} x ~{v['mean_tokens']:.0f} tokens" for k, v in doc["texts"].items())
          + f" ({next(iter(doc['texts'].values()))['source']})")
    if "peak" in doc:
        p = doc["peak"]
        ort = p.get("onnxruntime", {}).get("gflops_best")
        print(f"fp32 peak ({p['n']}^3 matmul): numpy {p['numpy']['gflops_best']:.1f} GFLOP/s, onnxruntime "
              f"{'-' if ort is None else f'{ort:.1f}'} GFLOP/s -> peak {p['peak_gflops']:.1f}")
        print(int8_peak_sentence(p))
    if doc.get("stages"):
        print()
        print(fixed_width_table(doc["stages"], STAGE_COLUMNS,
                                "per batch, per stage (microseconds; overhead = head + kernels, % of backbone)"))
    for name, o in doc.get("overhead", {}).items():
        print(overhead_sentence(name, o))
    if doc.get("e2e"):
        print()
        print(fixed_width_table(doc["e2e"], E2E_COLUMNS,
                                f"end to end (median over repeats; x = {BASELINE} time / engine time)"))
        for name, info in doc.get("peers", {}).items():
            if "skipped" in info:
                print(f"peer {name} skipped: {info['skipped']}")
        for name, a in doc.get("agreement", {}).items():
            print(f"agreement {name} vs {a['vs']}: labels {100 * a['label_agreement']:.1f}%, "
                  f"max |prob diff| {a['max_abs_prob_diff']:.2g}")
    cold = {k: v for k, v in doc.get("coldstart", {}).items() if isinstance(v, dict) and "median" in v}
    if cold:
        print()
        rows = [{"process": k, **v["median"]} for k, v in cold.items()]
        print(fixed_width_table(rows, COLDSTART_COLUMNS,
                                f"cold start, fresh processes (median of {next(iter(cold.values()))['runs']}; "
                                f"python -c pass: {doc['coldstart']['interpreter_s']:.3f} s)"))
    s = doc.get("summary", {})
    if s.get("checks"):
        print()
        for c in s["checks"]:
            vals = ", ".join(f"{k} {v:.3g}" for k, v in c["measured"].items())
            vs = ", ".join(f"{k} {v}" for k, v in c.get("vs", {}).items())
            verdict = f" [{c['verdict']}]" if "verdict" in c else ""
            tag = "info" if c.get("info_only") else "met" if c["met"] else "MISSED"
            print(f"[{tag}] {c['name']}: {vals}{verdict} (target {c['target']}{'; fastest: ' + vs if vs else ''})")
