"""How cost grows: time per text against sequence length and batch size, fp32 vs int8 (torch-free).

    python benchmarks/bench_scaling.py --fp32 B32 --int8 B8 [--lengths 16,32,64,128,256,512]
        [--batch-sizes 1,8,32,128] [--repeats 5] [--threads N]

Every cell feeds both bundles the same rows of exactly L tokens (Rotten Tomatoes test sentences,
ids concatenated between [CLS] and [SEP], no truncation to the manifest's max_length) and times
backbone + head + score kernels alternately (uehead.bench.scaling). Prints microseconds per text
per length x batch size for each bundle and the int8/fp32 time ratio, writes the JSON
(benchmarks/results/scaling.json) and a two-panel log-log plot (benchmarks/results/scaling.png;
skipped, with a note, without matplotlib).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uehead.bench.report import fixed_width_table, write_json
from uehead.bench.scaling import BATCH_SIZES, LENGTHS, MAX_TOKENS_PER_CELL, MEMORY_SHARE, scaling_sweep

RESULTS = Path(__file__).resolve().parent / "results"


def _ints(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r}: pass comma-separated integers, e.g. 16,32,64") from None


def _grid(doc: dict[str, Any], value: Callable[[dict[str, Any]], float | None], label: str) -> list[dict[str, Any]]:
    rows = []
    for length in doc["settings"]["lengths"]:
        row = {"bundle": label, "length": length}
        for c in doc["cells"]:
            if c["length"] == length:
                row[f"b{c['batch_size']}"] = value(c)
        if len(row) > 2:
            rows.append(row)
    return rows


def scaling_table(doc: dict[str, Any]) -> str:
    """Fixed-width tables: microseconds per text per length x batch size for each bundle, each
    bundle's time ratio to the first, and each bundle's backbone GFLOP/s."""
    cols = ("bundle", "length", *(f"b{b}" for b in doc["settings"]["batch_sizes"]))
    m = doc["meta"]

    def load(v):
        return "-" if not v else "/".join(f"{x:.2f}" for x in v)

    head = (f"{m['cpu']}, {m['threads']} threads, load average (1/5/15 min) {load(m['loadavg_start'])} -> "
            f"{load(m.get('loadavg_end'))}; medians of side-by-side repeats")
    rows, ratio_rows, flop_rows = [], [], []
    for name in doc["bundles"]:
        rows += _grid(doc, lambda c, n=name: c["results"][n]["us_per_text"], name)
        flop_rows += _grid(doc, lambda c, n=name: c["results"][n].get("backbone_gflops_per_s"), name)
    for key in (doc["cells"][0]["ratios"] if doc["cells"] else {}):
        ratio_rows += _grid(doc, lambda c, k=key: c["ratios"][k], key.replace("_over_", "/"))
    parts = [head, fixed_width_table(rows, cols, "microseconds per text (backbone + head + kernels)")]
    if ratio_rows:
        parts.append(fixed_width_table(ratio_rows, cols, "time ratio (below 1: faster than the reference)"))
    if any(r.get(c) is not None for r in flop_rows for c in cols[2:]):
        parts.append(fixed_width_table(flop_rows, cols, "backbone GFLOP/s"))
    mem = _grid(doc, lambda c: c["memory"].get("peak_rss_mb"), "all")
    if any(r.get(c) is not None for r in mem for c in cols[2:]):
        parts.append(fixed_width_table(mem, cols, "peak RSS over the cell, MB (all bundles)"))
    parts += [f"length {c['length']} batch {c['batch_size']}: {c['memory']['order']}" for c in doc["cells"]
              if c["memory"]["order"] != "alternated"]
    parts += [f"length {s['length']}{' batch ' + str(s['batch_size']) if 'batch_size' in s else ''} skipped: "
              f"{s['reason']}" for s in doc["skipped"]]
    return "\n\n".join(parts)


def plot_scaling(doc: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """Two log-log panels of microseconds per text: against sequence length (one line per batch
    size) and against batch size (one line per length); the first bundle solid, the second dashed.
    Returns the PNG's path, or None (and says so on stderr) without matplotlib."""
    try:  # the Agg canvas, never pyplot: the user's global backend stays as it is
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'uehead[eval]').", file=sys.stderr)
        return None
    styles = ("-", "--", ":", "-.")
    fig = Figure(figsize=(12, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    ax_l, ax_b = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    cmap = colormaps["viridis"]
    grid = doc["settings"]
    for axis, key, series, values, xlabel, slabel in (
            (ax_l, "length", "batch_size", grid["batch_sizes"], "sequence length (tokens)", "batch"),
            (ax_b, "batch_size", "length", grid["lengths"], "batch size", "length")):
        colors = {v: cmap(i / max(1, len(values) - 1)) for i, v in enumerate(values)}
        for k, name in enumerate(doc["bundles"]):
            for v, color in colors.items():
                pts = sorted((c[key], c["results"][name]["us_per_text"]) for c in doc["cells"] if c[series] == v)
                if pts:
                    axis.plot(*zip(*pts), styles[k % len(styles)], color=color, marker="o", ms=3,
                              label=f"{name} {slabel} {v}")
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        ticks = sorted({c[key] for c in doc["cells"]})  # skipped lengths leave no gap
        axis.set_xticks(ticks, [str(t) for t in ticks])
        axis.set_title(f"per text vs {xlabel.split(' (')[0]}", fontsize=10)
        axis.set_xlabel(xlabel)
        axis.set_ylabel("microseconds per text")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7, ncol=2)
    m = doc["meta"]
    load = m.get("loadavg_start")
    styled = ", ".join(f"{n} {('solid', 'dashed', 'dotted', 'dash-dot')[k % 4]}" for k, n in enumerate(doc["bundles"]))
    load_text = f", load average {load[0]:.2f}" if load else ""
    fig.suptitle(f"backbone + head + kernels, microseconds per text ({styled}); {m['cpu']}, {m['threads']} threads"
                 f"{load_text}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fp32", type=Path, required=True, help="fp32 bundle folder (the reference of the ratios)")
    p.add_argument("--int8", type=Path, default=None, help="int8 bundle folder (same checkpoint)")
    p.add_argument("--lengths", type=_ints, default=LENGTHS, help="tokens per row, special tokens included")
    p.add_argument("--batch-sizes", type=_ints, default=BATCH_SIZES)
    p.add_argument("--repeats", type=int, default=5, help="timed calls per bundle and cell (fewer for big cells)")
    p.add_argument("--max-tokens-per-cell", type=int, default=MAX_TOKENS_PER_CELL,
                   help="tokens per bundle over a cell's repeats before repeats shrink (0: never shrink)")
    p.add_argument("--memory-share", type=float, default=MEMORY_SHARE,
                   help="share of the available memory a cell may take; over it the bundles run one at a time")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: physical cores)")
    p.add_argument("--out", type=Path, default=RESULTS / "scaling.json")
    p.add_argument("--plot", type=Path, default=RESULTS / "scaling.png")
    a = p.parse_args(argv)
    bundles = {"fp32": a.fp32, **({"int8": a.int8} if a.int8 else {})}
    doc = scaling_sweep(bundles, lengths=a.lengths, batch_sizes=a.batch_sizes, repeats=a.repeats, threads=a.threads,
                        max_tokens_per_cell=a.max_tokens_per_cell or None, memory_share=a.memory_share,
                        progress=lambda line: print(line, file=sys.stderr, flush=True))
    doc["command"] = " ".join(["python", "benchmarks/bench_scaling.py", *(sys.argv[1:] if argv is None else argv)])
    print(scaling_table(doc))
    print(f"wrote {write_json(a.out, doc)}")
    png = plot_scaling(doc, a.plot)
    if png is not None:
        print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
