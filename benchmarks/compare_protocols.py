"""Table 1 under both training protocols, side by side, from the run folders of
``benchmarks/run_protocol_table.sh`` (torch-free: reads only checkpoints' scores and records).

    python benchmarks/compare_protocols.py --work runs/protocols/minilm [--out benchmarks/results/protocols_minilm]

Per dataset (mean ± std over seeds, x100): test ROC-AUC of every method under each protocol
(the baselines are the same numbers in both: one shared LoRA model per dataset x seed), the
paired per-seed difference authors - uehead for AdUE and ALIEN, which protocol wins on how many
datasets, ECE and Brier of the probability-like scores, the do-no-harm default each run chose and
whether that default's test ROC-AUC is at least SR's, and the LoRA curves (validation accuracy per
epoch, the kept epoch). ECE / Brier of AdUE are of the score each protocol trains as a probability
of error: U_AdUE under uehead, U_AdUE / (1 - 1/C) clipped to [0, 1] under the authors'. Every score
is higher = more uncertain.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from paper.config import DATASETS, PAPER_ROBERTA  # noqa: E402
from uehead.checkpoint import read_scores, read_training  # noqa: E402
from uehead.evaluation import metrics as M  # noqa: E402
from uehead.jsonio import to_jsonable  # noqa: E402

PROTOCOLS = ("uehead", "authors")
BASELINES = (("sr", "SR"), ("entropy", "Entropy"), ("md", "MD"), ("rmd", "RMD"), ("rde", "RDE"))
HEADS = (("adue", "AdUE"), ("alien", "ALIEN"))
PROB = ("sr", "adue", "alien")


def load_runs(work: Path) -> dict:
    """protocol -> dataset -> [per-seed record] of every complete run folder under ``work``."""
    out: dict = {p: {} for p in PROTOCOLS}
    for protocol in PROTOCOLS:
        for seed_dir in sorted((work / protocol).glob("*/seed*")):
            try:
                record, scores = read_training(seed_dir), read_scores(seed_dir, "test")
            except Exception:  # noqa: BLE001 - an unfinished run is simply not tabled
                continue
            c = int(record["num_classes"])
            e = scores["errors"]
            prob = {m: np.asarray(scores[m], dtype=np.float64) for m in PROB}
            if protocol == "authors":
                prob["adue"] = np.clip(prob["adue"] / (1.0 - 1.0 / c), 0.0, 1.0)
            default = (record.get("default_score") or {}).get("chosen", "sr")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", M.UndefinedMetricWarning)
                aucs = {m: M.roc_auc(scores[m], e) for m, _ in BASELINES + HEADS if m in scores}
            out[protocol].setdefault(seed_dir.parent.name, []).append({
                "seed": record["seed"], "accuracy": record["accuracy"]["test"], "roc_auc": aucs,
                "ece": {m: M.ece(prob[m], e) for m in PROB}, "brier": {m: M.brier(prob[m], e) for m in PROB},
                "default": default, "default_roc_auc": aucs.get(default, aucs["sr"]),
                "default_test": record.get("default_score"), "lora_epochs": record.get("lora_epochs"),
                "n_rows": record.get("n_rows")})
    return out


def _ms(values) -> M.MeanStd:
    return M.mean_std(v for v in values if v is not None and np.isfinite(v))


def _fmt(ms: M.MeanStd, signed: bool = False) -> str:
    if not ms.count:
        return "–"
    mean = f"{ms.mean * 100:+.1f}" if signed else f"{ms.mean * 100:.1f}"
    return mean + (f" ± {ms.std * 100:.1f}" if ms.count > 1 else "")


def compare(runs: dict) -> dict:
    names = [n for n in DATASETS if n in runs["uehead"] and n in runs["authors"]]
    table = {}
    for n in names:
        ue, au = runs["uehead"][n], runs["authors"][n]
        seeds = sorted({r["seed"] for r in ue} & {r["seed"] for r in au})
        ue = [r for r in ue if r["seed"] in seeds]
        au = [r for r in au if r["seed"] in seeds]
        cell = {"seeds": seeds, "accuracy": _ms(r["accuracy"] for r in ue), "roc_auc": {}, "paired": {},
                "ece": {}, "brier": {}, "defaults": {}}
        for protocol, rs in (("uehead", ue), ("authors", au)):
            for m, _ in BASELINES + HEADS:
                cell["roc_auc"][f"{m}/{protocol}"] = _ms(r["roc_auc"].get(m) for r in rs)
            for m in PROB:
                cell["ece"][f"{m}/{protocol}"] = _ms(r["ece"][m] for r in rs)
                cell["brier"][f"{m}/{protocol}"] = _ms(r["brier"][m] for r in rs)
            cell["defaults"][protocol] = {
                "chosen": [r["default"] for r in rs],
                "default_minus_sr": _ms(r["default_roc_auc"] - r["roc_auc"]["sr"] for r in rs)}
        for m, _ in HEADS:
            cell["paired"][m] = _ms(a["roc_auc"][m] - u["roc_auc"][m] for u, a in zip(ue, au))
        cell["lora"] = [{"seed": r["seed"], "valid_accuracy": [h.get("score") for h in (r["lora_epochs"] or [])
                                                              if "epoch" in h],
                         "best_epoch": next((h["best_epoch"] for h in (r["lora_epochs"] or []) if "best_epoch" in h),
                                            None)} for r in ue]
        table[n] = cell
    wins = {m: {p: sum(1 for n in names if table[n]["roc_auc"][f"{m}/{p}"].mean
                       > table[n]["roc_auc"][f"{m}/{q}"].mean)
                for p, q in (("uehead", "authors"), ("authors", "uehead"))} for m, _ in HEADS}
    return {"datasets": names, "table": table, "wins": wins}


def render(result: dict, work: Path) -> str:
    names, table = result["datasets"], result["table"]
    titles = [DATASETS[n][0] for n in names]
    head = "| Method | " + " | ".join(titles) + " |\n|:--|" + "--:|" * len(names)
    lines = ["# Table 1 under both training protocols (shared LoRA per dataset x seed)", "",
             f"Test ROC-AUC x100, mean ± std over seeds; from `python benchmarks/compare_protocols.py --work {work}`. "
             "Baselines are identical in both protocols (same fine-tuned model).", "", head]
    lines.append("| Accuracy (task, %) | " + " | ".join(_fmt(table[n]["accuracy"]) for n in names) + " |")
    for m, label in BASELINES:
        lines.append(f"| {label} | " + " | ".join(_fmt(table[n]["roc_auc"][f"{m}/uehead"]) for n in names) + " |")
    for m, label in HEADS:
        for p in PROTOCOLS:
            lines.append(f"| {label} ({p}) | " + " | ".join(_fmt(table[n]["roc_auc"][f"{m}/{p}"]) for n in names) + " |")
        lines.append(f"| {label}: authors − uehead (paired) | "
                     + " | ".join(_fmt(table[n]["paired"][m], signed=True) for n in names) + " |")
    for m, label in (("sr", "SR"), ("adue", "AdUE")):
        lines.append(f"| {label} (paper, RoBERTa-base) | " + " | ".join(
            f"{PAPER_ROBERTA[m][n][0]:.1f}" if n in PAPER_ROBERTA[m] else "–" for n in names) + " |")
    w = result["wins"]
    lines += ["", "Datasets won (higher mean ROC-AUC): " + "; ".join(
        f"{label}: uehead {w[m]['uehead']}, authors {w[m]['authors']} of {len(names)}" for m, label in HEADS), ""]
    for metric, title in (("ece", "ECE x100 (lower is better)"), ("brier", "Brier x100 (lower is better)")):
        lines += [f"## {title}", "", head]
        for m, label in (("sr", "SR"), ("adue", "AdUE"), ("alien", "ALIEN")):
            for p in (PROTOCOLS if m != "sr" else ("uehead",)):
                tag = f" ({p})" if m != "sr" else ""
                lines.append(f"| {label}{tag} | " + " | ".join(_fmt(table[n][metric][f"{m}/{p}"]) for n in names) + " |")
        lines.append("")
    lines += ["## Do-no-harm default (chosen per run on held-out validation rows)", "",
              head.replace("| Method |", "| Outcome |", 1)]
    for p in PROTOCOLS:
        lines.append(f"| chosen ({p}) | " + " | ".join(", ".join(table[n]["defaults"][p]["chosen"]) for n in names)
                     + " |")
        lines.append(f"| default − SR, test ({p}) | " + " | ".join(
            _fmt(table[n]["defaults"][p]["default_minus_sr"], signed=True) for n in names) + " |")
    lines += ["", "## LoRA: validation accuracy (select rows) per epoch, kept epoch", ""]
    for n in names:
        for r in table[n]["lora"]:
            curve = " ".join(f"{100 * a:.1f}" for a in r["valid_accuracy"] if a is not None)
            lines.append(f"- {DATASETS[n][0]} seed {r['seed']}: {curve} (kept epoch {r['best_epoch']})")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True, help="folder holding uehead/ and authors/ run folders")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "protocols_minilm",
                   help="output stem: OUT.json and OUT.md (default benchmarks/results/protocols_minilm)")
    args = p.parse_args(argv)
    result = compare(load_runs(args.work))
    if not result["datasets"]:
        print(f"compare_protocols: no dataset has runs under both {args.work}/uehead and {args.work}/authors",
              file=sys.stderr)
        return 2
    md = render(result, args.work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    (args.out.parent / f"{args.out.name}.json").write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    (args.out.parent / f"{args.out.name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
