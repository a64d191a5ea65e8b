"""The Markdown report: the paper's Table 1 layout from the aggregated metrics (torch-free)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from paper.config import ABLATION_METHODS, DATASETS, MAIN_METHODS, PAPER_ROBERTA
from uehead.evaluation import metrics as M

__all__ = ["ranks", "render_markdown"]


def _columns(names) -> list[str]:
    """The paper's datasets in its column order, then any others."""
    known = [n for n in DATASETS if n in names]  # the paper's column order
    return known + [n for n in names if n not in DATASETS]



def _fmt(ms: M.MeanStd | None, scale: float = 100.0) -> str:
    return "–" if ms is None else M.format_mean_std(ms, scale=scale, digits=1)


def ranks(values: list[float], higher: bool) -> list[float]:
    """1 = best; ties share their average rank; NaN gets NaN."""
    out = [math.nan] * len(values)
    ok = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
    for v, i in ok:
        better = sum(1 for w, _ in ok if (w > v if higher else w < v))
        same = sum(1 for w, _ in ok if w == v)
        out[i] = better + (same + 1) / 2
    return out


def _block(agg: dict, cols: list[str], methods, metric: str, higher: bool) -> list[list[str]]:
    """Rows of one block; the best mean per column (at the displayed precision) in bold; mean rank."""
    cells = {m: [agg[c]["metrics"].get(m, {}).get(metric) for c in cols] for m, _ in methods}
    shown = {m: [round(ms.mean * 100, 1) if ms is not None and ms.count else math.nan for ms in row]
             for m, row in cells.items()}
    present = [(m, label) for m, label in methods if any(not math.isnan(v) for v in shown[m])]
    if not present:
        return []
    rank_cols = [ranks([shown[m][j] for m, _ in present], higher) for j in range(len(cols))]
    rows = []
    for i, (m, label) in enumerate(present):
        row = [label]
        for j in range(len(cols)):
            text = _fmt(cells[m][j])
            best = [shown[k][j] for k, _ in present if not math.isnan(shown[k][j])]
            if best and shown[m][j] == (max(best) if higher else min(best)) and len(present) > 1:
                text = f"**{text}**"
            row.append(text)
        r = [rank_cols[j][i] for j in range(len(cols)) if not math.isnan(rank_cols[j][i])]
        row.append(f"{sum(r) / len(r):.1f}" if r else "–")
        rows.append(row)
    return rows


def _table(agg: dict, cols: list[str], metric: str, blocks, accuracy_row: bool = False) -> str:
    higher = M.DIRECTIONS[metric] == "higher"
    head = ["Method"] + [agg[c]["title"] for c in cols] + ["Rank ↓"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":--"] + ["--:"] * (len(head) - 1)) + "|"]
    for k, (title, methods) in enumerate(blocks):
        rows = _block(agg, cols, methods, metric, higher)
        if rows and title:
            lines.append("| " + " | ".join([f"*{title}*"] + [""] * (len(head) - 1)) + " |")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    if accuracy_row:
        lines.append("| " + " | ".join(["Accuracy (task, %)"] + [_fmt(agg[c]["accuracy"]) for c in cols] + [""])
                     + " |")
    return "\n".join(lines)


def _caps_line(agg: dict, cols: list[str], seeds) -> str:
    def per(key, fmt=str):
        vals = {agg[c]["title"]: agg[c]["caps"][key] for c in cols}
        if len({json.dumps(v) for v in vals.values()}) == 1:
            return fmt(next(iter(vals.values())))
        return ", ".join(f"{t} {fmt(v)}" for t, v in vals.items())

    train_rows = ", ".join(f"{agg[c]['title']} {_rows(agg[c]['n_rows'], 'train')}" for c in cols)
    test_rows = ", ".join(f"{agg[c]['title']} {_rows(agg[c]['n_rows'], 'test')}" for c in cols)
    models = ", ".join(dict.fromkeys(_display_model(agg[c]["model"]) for c in cols))
    devices = ", ".join(dict.fromkeys(str(agg[c]["device"]) for c in cols))
    return (f"**Caps used:** backbone `{models}`; LoRA epochs {per('epochs')}; batch {per('batch_size')}; "
            f"max_train {per('max_train', _all)} (LoRA training rows: {train_rows}); max_length "
            f"{per('max_length')} tokens; seeds {', '.join(map(str, seeds))}; device {devices}; heads fitted and "
            f"selected on the valid split; metrics on the full test split ({test_rows} rows).")


def _display_model(model) -> str:
    """A built-in name as is; a local path by its folder name."""
    return Path(model).name if isinstance(model, str) and os.sep in model else str(model)


def _all(v) -> str:
    return "all" if v is None else str(v)


def _rows(n_rows, split: str) -> str:
    if isinstance(n_rows, dict):
        return f"{n_rows.get(split, '?'):,}" if isinstance(n_rows.get(split), int) else "?"
    return "varies"


def _reference(agg: dict, cols: list[str]) -> str:
    ref_cols = [c for c in cols if c in PAPER_ROBERTA["sr"]]
    if not ref_cols:
        return ""
    titles = [agg[c]["title"] for c in ref_cols]
    lines = ["### Paper reference (NOT measured here)", "",
             ("AdUE paper (arXiv:2505.15443) Table 1, **RoBERTa-base** (125M), ROC-AUC x100, mean ± std of 5 runs, "
              "as quoted in the design's METHOD.md. Different backbone and full data, so compare the ordering "
              "of methods, not the absolute values."), "",
             "| Method (paper, RoBERTa-base) | " + " | ".join(titles) + " |",
             "|:--|" + "|".join(["--:"] * len(titles)) + "|"]
    for m, label in (("sr", "SR"), ("adue", "AdUE"), ("rmd", "RMD")):
        lines.append(f"| {label} (paper) | " + " | ".join(f"{PAPER_ROBERTA[m][c][0]:.1f} ± {PAPER_ROBERTA[m][c][1]:.1f}"
                                                          for c in ref_cols) + " |")
    lines += ["", "Gain over SR in ROC-AUC x100 (ours: mean ± std of the per-seed paired difference):", "",
              "| Difference | " + " | ".join(titles) + " |", "|:--|" + "|".join(["--:"] * len(titles)) + "|"]
    for m, label in (("adue", "AdUE − SR (ours)"), ("alien", "ALIEN − SR (ours)")):
        cells = [agg[c]["roc_auc_paired"].get(f"{m}_minus_sr") for c in ref_cols]
        lines.append(f"| {label} | " + " | ".join(
            "–" if ms is None or not ms.count else f"{ms.mean * 100:+.1f} ± {ms.std * 100:.1f}" for ms in cells) + " |")
    lines.append("| AdUE − SR (paper, RoBERTa) | " + " | ".join(
        f"{PAPER_ROBERTA['adue'][c][0] - PAPER_ROBERTA['sr'][c][0]:+.1f}" for c in ref_cols) + " |")
    return "\n".join(lines)


def render_markdown(result: dict, agg: dict) -> str:
    """The report: Table 1 layout (ROC-AUC), caps, the paper's reference rows, PRR, AURC, ECE, Brier."""
    cols = _columns(list(agg))
    seeds = result["settings"]["seeds"]
    n_seeds = max(a["n_runs"] for a in agg.values())
    main = [("", MAIN_METHODS), ("Ablations (paper Table 2): AdUE variants", ABLATION_METHODS)]
    parts = [f"# AdUE paper Table 1 reproduced with uehead (`{_display_model(result['settings']['model'])}`)", "",
             f"Misclassification detection on the test split: **ROC-AUC x100**, mean ± std over {n_seeds} "
             + ("seeds " if n_seeds > 1 else "seed (a single run: std shown as 0) ")
             + "(higher is better; every score is higher = more uncertain). Best per column in **bold**, "
             "separately in each block; Rank = mean rank over the columns within the block. "
             "\"(n=k/m)\" marks cells where some runs were undefined.", "",
             _table(agg, cols, "roc_auc", main, accuracy_row=True), "", _caps_line(agg, cols, seeds), ""]
    if result["missing_runs"]:
        parts += [f"**Missing runs (not in the means):** {', '.join(result['missing_runs'])}.", ""]
    parts += [_reference(agg, cols), ""]
    parts += ["### PRR x100 (higher is better)", "", _table(agg, cols, "prr", main), "",
              "### AURC x100 (lower is better)", "", _table(agg, cols, "aurc", main), "",
              "### Calibration of the predicted error probability (probability scores only; lower is better)", "",
              "ECE x100 (15 equal-width bins):", "", _table(agg, cols, "ece", [("", MAIN_METHODS)]), "",
              "Brier x100:", "", _table(agg, cols, "brier", [("", MAIN_METHODS)]), ""]
    timing = ", ".join(f"{agg[c]['title']} {_fmt(agg[c]['train_time_s'], 1.0)} s" for c in cols)
    v = result["versions"]
    parts += [f"Training time per run (train() total): {timing}. Versions: uehead {v.get('uehead')}, "
              + ", ".join(f"{k} {v[k]}" for k in ("torch", "transformers", "peft", "scikit-learn") if k in v)
              + ". Everything (per-run metrics, timings, selected head hyperparameters) is in the JSON beside "
              "this file.", ""]
    if result.get("command"):
        parts += [f"Command: `{result['command']}`", ""]
    return "\n".join(parts)
