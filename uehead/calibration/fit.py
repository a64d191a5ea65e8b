"""Fit a :class:`~uehead.calibration.apply.Calibration` from predictions on labelled rows (numpy only).

The procedures are :mod:`.isotonic` (score -> P(error)), :mod:`.risk` (Learn then Test thresholds)
and :mod:`.conformal` (prediction sets); this module checks the options, fits all three on the
same calibration rows and writes the report (:func:`calibration_report`). Scores are higher =
more uncertain; a row is accepted when its score is at most the certified threshold.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from uehead.calibration.apply import Calibration
from uehead.calibration.conformal import METHODS, ConformalLevel, fit_conformal
from uehead.calibration.isotonic import fit_isotonic
from uehead.calibration.risk import RiskThreshold, learn_then_test, n_min
from uehead.errors import DataError, UnknownScoreError
from uehead.evaluation import metrics

__all__ = ["check_levels", "required_rows", "check_enough_rows", "check_options", "fit_risk_levels",
           "fit_coverage_levels", "fit_calibration", "calibration_report", "CROSS_FIT_FOLDS"]

#: Folds of the cross-fitting that measures the calibrated probability and the prediction sets
#: on rows their fit did not see.
CROSS_FIT_FOLDS = 5


def check_levels(values: float | Iterable[float], name: str) -> tuple[float, ...]:
    """Distinct levels strictly inside (0, 1), in the order given; DataError otherwise."""
    items = (values,) if isinstance(values, (int, float)) else tuple(values)
    if not items:
        raise DataError(f"{name}: give at least one level strictly between 0 and 1.")
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not 0.0 < float(v) < 1.0:
            raise DataError(f"{name} {v!r} is outside (0, 1); give levels strictly between 0 and 1, e.g. 0.05.")
        if any(math.isclose(float(v), w) for w in out):
            raise DataError(f"{name} {v!r} is given twice.")
        out.append(float(v))
    return tuple(out)


def check_options(risk, delta, coverage, method: str) -> tuple[tuple[float, ...], float, tuple[float, ...]]:
    """Checked (risks, delta, coverages); DataError for a level outside (0, 1) or an unknown method."""
    risks = check_levels(risk, "risk")
    (delta_,) = check_levels((delta,), "delta")
    coverages = check_levels(coverage, "coverage")
    if method not in METHODS:
        raise DataError(f"method {method!r} is unknown; use one of {', '.join(METHODS)}.")
    return risks, delta_, coverages


def required_rows(risks: Iterable[float], delta: float) -> int:
    """Fewest calibration rows that can certify every risk level at ``delta`` (Learn then Test's n_min)."""
    return max(n_min(r, delta) for r in risks)


def check_enough_rows(n: int, risks: Iterable[float], delta: float) -> None:
    """DataError giving the minimum when ``n`` rows cannot certify every risk level at ``delta``."""
    risks = tuple(risks)
    need = required_rows(risks, delta)
    if n < need:
        raise DataError(f"{n} calibration rows are too few: certifying risk {min(risks):g} at delta {delta:g} "
                        f"needs at least {need} rows (n_min = log(delta) / log(1 - r)).",
                        fix=f"calibrate on at least {need} labelled rows, or ask for a larger risk / delta.")


def fit_risk_levels(u, errors, risks: Iterable[float], delta: float) -> tuple[RiskThreshold, ...]:
    return tuple(learn_then_test(u, errors, r, delta) for r in risks)


def fit_coverage_levels(probs, labels, coverages: Iterable[float], method: str = "lac",
                        class_conditional: bool = False) -> tuple[ConformalLevel, ...]:
    return tuple(fit_conformal(probs, labels, c, method, class_conditional) for c in coverages)


def _rows(probs, labels, scores: Mapping[str, np.ndarray], score: str):
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"probs [N, C] and labels [N] disagree: {probs.shape} and {labels.shape}")
    if score not in scores:
        raise UnknownScoreError(f"score {score!r} is not available; this bundle has {', '.join(scores)}.",
                                fix="pass one of them with --score.")
    errors = probs.argmax(axis=1) != labels
    return probs, labels, {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}, errors


def fit_calibration(probs, labels, scores: Mapping[str, np.ndarray], *, score: str, label_names, graphs,
                    data: str = "", risk=(0.05, 0.1), delta: float = 0.1, coverage=(0.9, 0.95),
                    method: str = "lac", class_conditional: bool = False, writer=None,
                    report: bool = True) -> Calibration:
    """Fit every part of the calibration section on one set of labelled rows.

    ``probs`` [N, C] task probabilities, ``labels`` [N] true class ids, ``scores`` name -> [N]
    (every score, higher = more uncertain; ``score`` is the one calibrated). The first of
    ``risk`` and of ``coverage`` become the defaults. ``report=False`` skips
    :func:`calibration_report` (faster, for repeated fits).
    """
    risks, delta, coverages = check_options(risk, delta, coverage, method)
    probs, labels, scores, errors = _rows(probs, labels, scores, score)
    check_enough_rows(labels.size, risks, delta)
    u = scores[score]
    return Calibration(
        score=score, labels=tuple(label_names), graphs=dict(graphs), n_rows=int(labels.size), data=data,
        isotonic=fit_isotonic(u, errors), risk_levels=fit_risk_levels(u, errors, risks, delta),
        default_risk=risks[0], coverage_levels=fit_coverage_levels(probs, labels, coverages, method, class_conditional),
        default_coverage=coverages[0], writer=dict(writer or {}),
        report=calibration_report(probs, labels, scores, score=score, risks=risks, delta=delta, coverages=coverages,
                                  method=method, class_conditional=class_conditional) if report else {})


def _folds(n: int, k: int = CROSS_FIT_FOLDS, seed: int = 0) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(perm, min(k, n))]


def _cross_fitted_sets(probs, labels, coverage, method, class_conditional, folds) -> dict:
    covered = np.zeros(labels.size, dtype=bool)
    size = np.zeros(labels.size, dtype=np.int64)
    for held in folds:
        fit = np.setdiff1d(np.arange(labels.size), held, assume_unique=True)
        mask = fit_conformal(probs[fit], labels[fit], coverage, method, class_conditional).set_mask(probs[held])
        covered[held] = mask[np.arange(held.size), labels[held]]
        size[held] = mask.sum(axis=1)
    return {"coverage": coverage, "method": method, "class_conditional": class_conditional,
            "empirical_coverage": float(covered.mean()), "mean_set_size": float(size.mean()),
            "empty_fraction": float((size == 0).mean())}


def calibration_report(probs, labels, scores: Mapping[str, np.ndarray], *, score: str, risks, delta: float,
                       coverages, method: str, class_conditional: bool) -> dict:
    """What ``uehead calibrate`` prints and stores: accepted fraction at each risk level for every
    score (on the calibration rows, at that score's own certified threshold), ECE / Brier of the
    raw and of the calibrated score and the sets' coverage and size, the last two cross-fitted
    (fit on 4/5 of the rows, measured on the other 1/5, for each fifth)."""
    probs, labels, scores, errors = _rows(probs, labels, scores, score)
    folds = _folds(labels.size)
    u = scores[score]
    p_held = np.empty(labels.size)
    for held in folds:
        fit = np.setdiff1d(np.arange(labels.size), held, assume_unique=True)
        p_held[held] = fit_isotonic(u[fit], errors[fit])(u[held])
    raw = ({"ece": metrics.ece(u, errors), "brier": metrics.brier(u, errors)}
           if score in metrics.PROBABILITY_SCORES else None)
    per_score = {name: [t.to_dict() for t in fit_risk_levels(v, errors, risks, delta)] for name, v in scores.items()}
    notes = [f"risk {t['risk']:g}: no threshold on {score!r} is certified at delta {delta:g}; nothing is accepted "
             "at this level." for t in per_score[score] if t["threshold"] is None]
    return {
        "score": score, "n_rows": int(labels.size), "error_rate": float(errors.mean()), "delta": delta,
        "held_out": f"{len(folds)}-fold cross-fitting of the calibration rows (seed 0)",
        "probability": {"raw": raw, "calibrated": {"ece": metrics.ece(p_held, errors),
                                                   "brier": metrics.brier(p_held, errors)}},
        "risk": per_score,
        "sets": [_cross_fitted_sets(probs, labels, c, method, class_conditional, folds) for c in coverages],
        "notes": notes,
    }
