"""The runs' test metrics, recomputed from their scores and aggregated over seeds (torch-free).

Every cell is computed here from ``scores/test.npz`` (every score higher = more uncertain) with
:mod:`uehead.evaluation.metrics`, never copied from a run's own summary.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from paper.config import DATASETS, RUN_META
from paper.runs import is_complete, run_folder
from uehead.checkpoint import SCORE_META, read_scores, read_training
from uehead.evaluation import metrics as M

__all__ = ["aggregate", "collect", "find_seeds", "load_run", "unique"]


def load_run(folder: Path) -> dict:
    """One run's record: settings from training.json, test metrics recomputed from its scores."""
    record = read_training(folder)
    arrays = read_scores(folder, "test")
    scores = {k: v for k, v in arrays.items() if k not in SCORE_META}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.UndefinedMetricWarning)
        summary = M.summarize(scores, arrays["errors"])
    meta_path = folder / RUN_META
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    return {"seed": record.get("seed"), "folder": str(folder), "model": record.get("model"),
            "max_train": record.get("max_train"), "max_length": record.get("max_length"),
            "epochs": record.get("epochs"), "batch_size": record.get("batch_size"), "device": record.get("device"),
            "n_rows": record.get("n_rows"), "n_errors_test": int(np.asarray(arrays["errors"]).sum()),
            "accuracy": M.accuracy(arrays["labels"], arrays["predictions"]),
            "accuracy_valid": (record.get("accuracy") or {}).get("valid"),
            "metrics": summary, "timings_s": record.get("timings_s"), "wall_s": meta.get("wall_s"),
            "host": meta.get("host"), "head_selection": record.get("head_selection"),
            "versions": record.get("versions"), "uehead_version": record.get("uehead_version")}


def find_seeds(work: Path, names) -> list[int]:
    """Every seed with a complete run of at least one of ``names`` under ``work``."""
    seeds = set()
    for name in names:
        for d in (Path(work) / name).glob("seed*"):
            if d.name[4:].isdigit() and is_complete(d):
                seeds.add(int(d.name[4:]))
    return sorted(seeds)


def collect(work: Path, names, seeds) -> tuple[dict[str, list[dict]], list[str]]:
    """Complete runs per dataset (in seed order) and the missing ``name seedK`` runs."""
    runs, missing = {}, []
    for name in names:
        for seed in seeds:
            folder = run_folder(work, name, seed)
            if is_complete(folder):
                runs.setdefault(name, []).append(load_run(folder))
            else:
                missing.append(f"{name} seed{seed}")
    return runs, missing


def unique(values):
    """The one value all ``values`` share, else the list of their distinct values."""
    vals = list(dict.fromkeys(json.dumps(v, sort_keys=True) for v in values))
    return json.loads(vals[0]) if len(vals) == 1 else [json.loads(v) for v in vals]


def aggregate(runs: dict[str, list[dict]]) -> dict:
    """Per dataset: mean +- std over seeds of every metric of every method, accuracy, caps, timings."""
    out = {}
    for name, rs in runs.items():
        agg = M.aggregate([r["metrics"] for r in rs])
        paired = {}
        for m in ("adue", "alien"):  # paired over seeds: (method - SR) ROC-AUC per run
            diffs = [r["metrics"][m]["roc_auc"] - r["metrics"]["sr"]["roc_auc"] for r in rs
                     if m in r["metrics"] and "sr" in r["metrics"]]
            if diffs:
                paired[f"{m}_minus_sr"] = M.mean_std(diffs)
        out[name] = {
            "title": DATASETS.get(name, (name,))[0], "n_runs": len(rs), "seeds": [r["seed"] for r in rs],
            "caps": {k: unique([r[k] for r in rs]) for k in ("max_train", "max_length", "epochs", "batch_size")},
            "model": unique([r["model"] for r in rs]), "device": unique([r["device"] for r in rs]),
            "n_rows": unique([r["n_rows"] for r in rs]),
            "accuracy": M.mean_std(r["accuracy"] for r in rs),
            "metrics": agg, "roc_auc_paired": paired,
            "train_time_s": M.mean_std((r["timings_s"] or {}).get("total", math.nan) for r in rs),
        }
    return out

