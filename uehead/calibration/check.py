"""The empirical check of the guarantees (numpy only): many random calibration / test splits of
labelled held-out rows, as in section 4 of the design notes.

For each of ``trials`` random splits into a calibration part and a test part: fit on the
calibration part exactly as ``uehead calibrate`` does (:func:`~uehead.calibration.fit.fit_calibration`),
apply through :class:`~uehead.calibration.apply.Calibration`, and measure on the test part

* for every score and risk level r: whether the error rate among accepted test rows exceeds r
  (a violation; no accepted row is no violation) and the accepted fraction. Learn then Test
  promises a violation frequency of at most delta; the report gives it with its exact binomial
  95 % interval over the trials;
* for every coverage level: the coverage of the prediction sets, their mean size and the
  fraction of empty sets (split conformal promises mean coverage >= 1 - alpha), and the lowest
  per-class coverage.

Every score is higher = more uncertain.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from uehead.calibration.fit import check_options, fit_calibration, fit_risk_levels
from uehead.calibration.risk import binomial_interval

__all__ = ["empirical_check", "RESAMPLING"]

#: How the calibration rows are drawn in each trial (see :func:`empirical_check`).
RESAMPLING = ("halves", "bootstrap")


def _trial(probs, labels, scores, errors, cal, test, *, score, risks, delta, coverages, method,
           class_conditional) -> tuple[dict, list[dict]]:
    fitted = fit_calibration(probs[cal], labels[cal], {k: v[cal] for k, v in scores.items()}, score=score,
                             label_names=tuple(str(c) for c in range(probs.shape[1])), graphs={}, risk=risks,
                             delta=delta, coverage=coverages, method=method, class_conditional=class_conditional,
                             report=False)
    risk_rows = {}
    for name, u in scores.items():
        levels = fitted.risk_levels if name == score else fit_risk_levels(u[cal], errors[cal], risks, delta)
        rows = []
        for level in levels:
            accepted = level.accept(u[test])
            rate = float(errors[test][accepted].mean()) if accepted.any() else 0.0
            rows.append({"violation": rate > level.risk, "accepted": float(accepted.mean()),
                         "risk_among_accepted": rate if accepted.any() else None})
        risk_rows[name] = rows
    set_rows = []
    y = labels[test]
    for c in coverages:
        mask = fitted.prediction_set_mask(probs[test], c)
        covered = mask[np.arange(y.size), y]
        size = mask.sum(axis=1)
        per_class = [covered[y == k].mean() for k in range(probs.shape[1]) if (y == k).any()]
        set_rows.append({"coverage": float(covered.mean()), "size": float(size.mean()),
                         "empty": float((size == 0).mean()), "min_class": float(min(per_class))})
    return risk_rows, set_rows


def _draw(rng, n: int, n_cal: int, resample: str) -> tuple[np.ndarray, np.ndarray]:
    if resample == "halves":
        perm = rng.permutation(n)
        return perm[:n_cal], perm[n_cal:]
    return rng.integers(0, n, n_cal), np.arange(n)


def empirical_check(probs, labels, scores: Mapping[str, np.ndarray], *, score: str, risk=(0.05, 0.1),
                    delta: float = 0.1, coverage=(0.9, 0.95), method: str = "lac", class_conditional: bool = False,
                    trials: int = 200, calibration_fraction: float = 0.5, resample: str = "halves",
                    seed: int = 0) -> dict:
    """Run the split check (see the module docstring) and summarise it over the trials.

    ``resample="halves"``: calibrate on a random part (``calibration_fraction``) and test on the
    rest. The test part's error rate among accepted rows carries its own sampling noise, so its
    violation frequency can exceed delta by that noise even though the guarantee holds.
    ``resample="bootstrap"``: draw the calibration rows with replacement from all held-out rows
    and judge on all of them: the error rate among accepted rows is then the exact risk of the
    distribution the calibration rows were drawn from, the quantity Learn then Test bounds.

    Returns ``{"trials", "n_rows", "n_calibration", "delta", "score", "risk": {score: [per risk level:
    risk, violations, violation_frequency, interval95, consistent (lower end <= delta),
    mean_accepted_fraction, mean_risk_among_accepted]}, "sets": [per coverage level: coverage,
    method, class_conditional, mean_coverage, mean_set_size, mean_empty_fraction,
    mean_min_class_coverage]}``.
    """
    risks, delta, coverages = check_options(risk, delta, coverage, method)
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    scores = {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}
    errors = probs.argmax(axis=1) != labels
    n = labels.size
    n_cal = int(round(calibration_fraction * n))
    if trials < 1 or not 0 < n_cal < n or resample not in RESAMPLING:
        raise ValueError(f"need trials >= 1, a calibration part strictly inside the {n} rows and resample in "
                         f"{RESAMPLING}")
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(trials):
        cal, test = _draw(rng, n, n_cal, resample)
        runs.append(_trial(probs, labels, scores, errors, cal, test, score=score, risks=risks,
                           delta=delta, coverages=coverages, method=method, class_conditional=class_conditional))
    risk_summary = {}
    for name in scores:
        rows = []
        for j, r in enumerate(risks):
            per = [run[0][name][j] for run in runs]
            k = sum(p["violation"] for p in per)
            lo, hi = binomial_interval(k, trials)
            among = [p["risk_among_accepted"] for p in per if p["risk_among_accepted"] is not None]
            rows.append({"risk": r, "violations": int(k), "violation_frequency": k / trials, "interval95": [lo, hi],
                         "consistent": lo <= delta,
                         "mean_accepted_fraction": float(np.mean([p["accepted"] for p in per])),
                         "mean_risk_among_accepted": float(np.mean(among)) if among else None})
        risk_summary[name] = rows
    sets = []
    for j, c in enumerate(coverages):
        per = [run[1][j] for run in runs]
        sets.append({"coverage": c, "method": method, "class_conditional": class_conditional,
                     "mean_coverage": float(np.mean([p["coverage"] for p in per])),
                     "mean_set_size": float(np.mean([p["size"] for p in per])),
                     "mean_empty_fraction": float(np.mean([p["empty"] for p in per])),
                     "mean_min_class_coverage": float(np.mean([p["min_class"] for p in per]))})
    return {"trials": trials, "resample": resample, "n_rows": n, "n_calibration": n_cal, "delta": delta,
            "score": score,
            "error_rate": float(errors.mean()), "risk": risk_summary, "sets": sets}
