"""Does the decision layer keep its promises on held-out rows? (torch-free)

    python benchmarks/bench_decisions.py BUNDLE --data D [--split test] [--trials 200] --json OUT
        [--score KIND] [--risk 0.05,0.1] [--delta 0.1] [--coverage 0.9,0.95] [--method lac|aps]
        [--class-conditional] [--text-column text] [--label-column label] [--seed 0]

``D`` is a dataset folder, ``rotten_tomatoes`` or a labelled JSONL / CSV / Parquet file (as for
``uehead calibrate``). The split is predicted once through the runtime (every score, distances
included); then :func:`uehead.calibration.check.empirical_check` fits the calibration exactly as
``uehead calibrate`` does on ``--trials`` random calibration draws, twice:

* ``halves``: random calibration / test halves (the design notes' check). The test half's error
  rate among accepted rows is itself a noisy estimate, so its violation frequency may exceed
  delta by that noise even when the guarantee holds.
* ``bootstrap``: calibration rows drawn with replacement from all held-out rows and judged on
  all of them, where the error rate among accepted rows is the exact risk Learn then Test bounds.

For each score and risk level r: the frequency of trials whose error rate among accepted rows
exceeds r, with its exact binomial 95 % interval (consistent with the guarantee when the
interval reaches down to delta), the mean accepted fraction and the mean risk among accepted.
For each coverage level: mean coverage, mean set size, mean fraction of empty sets. Scores are
higher = more uncertain; a row is accepted when its score is at most the certified threshold.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from uehead import __version__, runtime
from uehead._extras import installed_versions
from uehead.bench.report import fixed_width_table
from uehead.calibration.check import RESAMPLING, empirical_check
from uehead.datasets import load_split
from uehead.jsonio import write_json_atomic


def _floats(value: str) -> tuple[float, ...]:
    return tuple(float(v) for v in value.split(",") if v.strip())


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--data", required=True, help="rotten_tomatoes | dataset folder | labelled .jsonl/.csv/.parquet")
    p.add_argument("--split", default="test", help="held-out split (never the training split)")
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--json", required=True, type=Path)
    p.add_argument("--score", default=None, help="score to calibrate (default: the bundle's default kind)")
    p.add_argument("--risk", type=_floats, default=(0.05, 0.1))
    p.add_argument("--delta", type=float, default=0.1)
    p.add_argument("--coverage", type=_floats, default=(0.9, 0.95))
    p.add_argument("--method", default="lac", choices=("lac", "aps"))
    p.add_argument("--class-conditional", action="store_true")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def tables(check: dict) -> str:
    """The risk and coverage tables of one :func:`empirical_check` result."""
    rows = []
    for score, levels in check["risk"].items():
        for level in levels:
            lo, hi = level["interval95"]
            rows.append({"score": score + (" *" if score == check["score"] else ""), "risk": level["risk"],
                         "violations": f"{level['violations']}/{check['trials']}",
                         "frequency": level["violation_frequency"], "95% interval": f"[{lo:.3f}, {hi:.3f}]",
                         "ok": "yes" if level["consistent"] else "NO",
                         "accepted": level["mean_accepted_fraction"],
                         "risk among accepted": level["mean_risk_among_accepted"]})
    title = (f"{check['resample']}: {check['trials']} trials, {check['n_calibration']} calibration rows of "
             f"{check['n_rows']}, delta {check['delta']:g} (* = the calibrated score; ok = interval reaches delta)")
    sets = [{"coverage": s["coverage"], "method": s["method"] + (" per class" if s["class_conditional"] else ""),
             "mean coverage": s["mean_coverage"], "mean set size": s["mean_set_size"],
             "empty sets": s["mean_empty_fraction"], "min class coverage": s["mean_min_class_coverage"]}
            for s in check["sets"]]
    return "\n\n".join([
        fixed_width_table(rows, ["score", "risk", "violations", "frequency", "95% interval", "ok", "accepted",
                                 "risk among accepted"], title=title),
        fixed_width_table(sets, ["coverage", "method", "mean coverage", "mean set size", "empty sets",
                                 "min class coverage"])])


def main(argv=None) -> dict:
    a = parse_args(argv)
    model = runtime.load(a.bundle)
    name, rows = load_split(a.data, a.split, label_names=model.labels, text_column=a.text_column,
                            label_column=a.label_column)
    t0 = time.perf_counter()
    preds = model.predict(rows.texts, batch_size=a.batch_size, distances=True)
    predict_s = time.perf_counter() - t0
    score = a.score or model.uncertainty_kind
    doc = {"bundle": str(a.bundle), "data": name, "split": a.split, "n_rows": len(rows),
           "accuracy": float(np.mean(preds.label_ids == rows.labels)), "score": score,
           "options": {"risk": list(a.risk), "delta": a.delta, "coverage": list(a.coverage), "method": a.method,
                       "class_conditional": a.class_conditional, "trials": a.trials, "seed": a.seed},
           "versions": {"uehead": __version__, "python": platform.python_version(),
                        **installed_versions(("numpy", "onnxruntime"))},
           "seconds": {"predict": round(predict_s, 3)}}
    print(f"{a.bundle} on {name} (n = {len(rows)}, accuracy {doc['accuracy']:.4f}), calibrating {score!r}")
    for resample in RESAMPLING:
        t0 = time.perf_counter()
        doc[resample] = empirical_check(preds.probs, rows.labels, preds.scores, score=score, risk=a.risk,
                                        delta=a.delta, coverage=a.coverage, method=a.method,
                                        class_conditional=a.class_conditional, trials=a.trials,
                                        resample=resample, seed=a.seed)
        doc["seconds"][resample] = round(time.perf_counter() - t0, 3)
        print("\n" + tables(doc[resample]))
    write_json_atomic(a.json, doc)
    print(f"\nwrote {a.json}")
    return doc


if __name__ == "__main__":
    main()
