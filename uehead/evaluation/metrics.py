"""Misclassification-detection metrics for uncertainty scores (numpy only, torch-free).

Every function takes an uncertainty score ``u`` (**higher = more uncertain**) and the error
indicator ``errors`` (1 / True where the model's prediction is wrong, 0 / False where it is right).

===========  =======================================================  ==================
metric       what it measures                                         better
===========  =======================================================  ==================
roc_auc      P(u of a random error > u of a random correct row)       higher (1 perfect,
             (ties count 1/2)                                         0.5 random)
prr          prediction-rejection ratio: area under the accuracy-     higher (1 oracle,
             of-retained-rows curve, (score - random)/(oracle -       0 random, < 0
             random)                                                  worse than random)
aurc         area under the risk-coverage curve                       lower (>= oracle)
ece          expected calibration error of the predicted error        lower (0 perfect)
             probability clip(u, 0, 1), 15 equal-width bins
brier        mean (clip(u, 0, 1) - error)^2                           lower (0 perfect)
accuracy     fraction of correct predictions                          higher
===========  =======================================================  ==================

Ties in ``u`` are resolved by their expectation over a random order within the tie (average
ranks for ROC-AUC, the expected risk for the curves), so a constant score gets exactly the
random baseline (ROC-AUC 0.5, PRR 0) and results never depend on the input order.

ROC-AUC and PRR are undefined when there are no errors or no correct predictions; they then
return NaN and emit :class:`UndefinedMetricWarning` (never a crash, never a silent 0.5).
ECE and Brier only make sense for scores that are error probabilities (softmax response,
AdUE, ALIEN), see :data:`PROBABILITY_SCORES`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "UndefinedMetricWarning", "METRICS", "DIRECTIONS", "PROBABILITY_SCORES", "N_BINS",
    "roc_auc", "prr", "aurc", "risk_coverage_curve", "oracle_aurc", "ece", "calibration_bins",
    "brier", "accuracy", "error_probability", "summarize", "format_table",
    "MeanStd", "mean_std", "aggregate", "format_mean_std",
]

#: Number of equal-width bins for ECE (the paper's setting).
N_BINS = 15
#: Metric names in table order.
METRICS = ("roc_auc", "prr", "aurc", "ece", "brier")
#: "higher" or "lower" is better, per metric.
DIRECTIONS = {"roc_auc": "higher", "prr": "higher", "aurc": "lower", "ece": "lower", "brier": "lower",
              "accuracy": "higher"}
#: Score names whose value is a predicted error probability (ECE and Brier are computed for these).
PROBABILITY_SCORES = ("sr", "softmax_response", "adue", "alien")
_HEADERS = {"roc_auc": "ROC-AUC", "prr": "PRR", "aurc": "AURC", "ece": "ECE", "brier": "Brier"}


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for this data (e.g. ROC-AUC without errors) and was returned as NaN."""


# ----------------------------------------------------------------------------------- inputs
def _check_errors(errors) -> np.ndarray:
    """Validate the error indicator; return it as float64 0/1."""
    e = np.asarray(errors)
    if e.ndim != 1:
        raise ValueError(f"errors must be a 1-D array, got shape {e.shape}")
    if e.size == 0:
        raise ValueError("errors is empty: metrics need at least one row")
    if e.dtype != bool and (not np.issubdtype(e.dtype, np.number) or not np.isin(e, (0, 1)).all()):
        raise ValueError("errors must be 0/1 or bool (1 = the prediction is wrong)")
    return e.astype(np.float64)


def _check(u, errors, name: str = "u") -> tuple[np.ndarray, np.ndarray]:
    """Validate a score / error pair; return (float64 scores, float64 0/1 errors)."""
    e = _check_errors(errors)
    u = np.asarray(u)
    if u.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {u.shape}")
    if u.shape != e.shape:
        raise ValueError(f"{name} has {u.shape[0]} rows but errors has {e.shape[0]}; pass one value per row")
    if u.dtype == bool or not np.issubdtype(u.dtype, np.number) or np.issubdtype(u.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {u.dtype}")
    u = u.astype(np.float64)
    if not np.isfinite(u).all():
        raise ValueError(f"{name} contains NaN or inf (first at row {int(np.flatnonzero(~np.isfinite(u))[0])}); "
                         "uncertainty scores must be finite")
    return u, e


def _undefined(metric: str, e: np.ndarray) -> bool:
    n_err = int(e.sum())
    if 0 < n_err < e.size:
        return False
    what = "no errors" if n_err == 0 else "no correct predictions"
    warnings.warn(f"{metric} undefined: the {e.size} rows have {what}; returning NaN",
                  UndefinedMetricWarning, stacklevel=3)
    return True


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis of x [K, N], ties getting the mean of the ranks they span."""
    k, n = x.shape
    order = np.argsort(x, axis=1, kind="mergesort")
    xs = np.take_along_axis(x, order, axis=1)
    new_run = np.ones((k, n), dtype=bool)
    new_run[:, 1:] = xs[:, 1:] != xs[:, :-1]
    run_id = np.cumsum(new_run, axis=1) - 1                    # run index per sorted position
    flat_run = (run_id + (np.arange(k) * n)[:, None]).ravel()  # runs numbered across rows
    counts = np.bincount(flat_run, minlength=k * n)
    starts = np.cumsum(counts) - counts - np.repeat(np.arange(k) * n, n)
    avg = starts + (counts + 1) / 2.0                          # mean 1-based rank of each run
    ranks = np.empty((k, n))
    np.put_along_axis(ranks, order, avg[flat_run].reshape(k, n), axis=1)
    return ranks


# ---------------------------------------------------------------------------------- ranking
def roc_auc_rows(scores, errors) -> np.ndarray:
    """ROC-AUC of each row of ``scores`` [K, N] against binary ``errors`` [N], float64 [K].

    Mann-Whitney U with average ranks for ties; a row holding NaN or inf gets NaN; every row is
    NaN when there are no errors or no correct predictions (no warning: callers that select on
    these values handle NaN). Higher is better.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must have shape [K, N], got {s.shape}")
    e = _check_errors(errors).astype(bool)
    if s.shape[1] != e.size:
        raise ValueError(f"scores has {s.shape[1]} columns but errors has {e.size} rows")
    n_pos, n_neg = int(e.sum()), int((~e).sum())
    if n_pos == 0 or n_neg == 0 or s.shape[0] == 0:
        return np.full(s.shape[0], np.nan)
    finite = np.isfinite(s).all(axis=1)
    ranks = _average_ranks(np.where(np.isfinite(s), s, 0.0))
    auc = (ranks[:, e].sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    auc[~finite] = np.nan
    return auc


def roc_auc(u, errors) -> float:
    """ROC-AUC of ``u`` against ``errors`` (Mann-Whitney U with average ranks for ties).

    Higher is better: 1.0 = every error is more uncertain than every correct row, 0.5 = random.
    NaN + :class:`UndefinedMetricWarning` when there are no errors or no correct predictions.
    """
    u, e = _check(u, errors)
    if _undefined("ROC-AUC", e):
        return math.nan
    return float(roc_auc_rows(u[None, :], e)[0])


def risk_coverage_curve(u, errors) -> tuple[np.ndarray, np.ndarray]:
    """Risk-coverage curve: keep the k least uncertain rows, k = 1..N.

    Returns ``(coverage, risk)`` with coverage = k/N and risk = error rate among the kept rows.
    Within a tie of ``u`` the expected error count over a random order is used, so tied rows
    are neither favoured nor penalised.
    """
    u, e = _check(u, errors)
    order = np.argsort(u, kind="mergesort")
    us, es = u[order], e[order]
    n = u.size
    starts = np.flatnonzero(np.r_[True, us[1:] != us[:-1]])
    ends = np.r_[starts[1:], n]
    group_rate = np.add.reduceat(es, starts) / (ends - starts)
    # expected errors among the first k rows: each row contributes its tie group's error rate
    cum_err = np.cumsum(np.repeat(group_rate, ends - starts))
    k = np.arange(1, n + 1)
    return k / n, cum_err / k


def aurc(u, errors) -> float:
    """Area under the risk-coverage curve, (1/N) sum_k risk(k). Lower is better.

    Bounded below by :func:`oracle_aurc` (errors ranked last); a random score gets the error rate.
    Defined for every non-empty input (0 without errors, 1 without correct predictions).
    """
    _, risk = risk_coverage_curve(u, errors)
    return float(risk.mean())


def oracle_aurc(errors) -> float:
    """AURC of the perfect score (all correct rows kept before any error)."""
    e = np.asarray(errors, dtype=np.float64)
    return aurc(e, e)


def prr(u, errors) -> float:
    """Prediction-rejection ratio, (score - random) / (oracle - random). Higher is better.

    The score is the area under the prediction-rejection curve (accuracy of the retained rows
    when the most uncertain rows are rejected first, over every rejection rate 0..(N-1)/N), which
    equals 1 - AURC. Random rejection keeps the base accuracy (area = accuracy); the oracle
    rejects errors first. 1 = oracle, 0 = random, negative = worse than random.
    NaN + :class:`UndefinedMetricWarning` when there are no errors or no correct predictions.
    """
    u, e = _check(u, errors)
    if _undefined("PRR", e):
        return math.nan
    base = e.mean()  # random AURC
    return float((base - aurc(u, e)) / (base - oracle_aurc(e)))


# ------------------------------------------------------------------------------ calibration
def error_probability(u) -> np.ndarray:
    """Read a probability-like score as a predicted error probability: clip(u, 0, 1).

    (AdUE's 1 - SmoothMax can dip below 0 by up to log(C)/lambda.)
    """
    return np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)


def calibration_bins(u, errors, n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin of p = clip(u, 0, 1): (mean predicted error prob, observed error rate, count).

    Bins are equal-width over [0, 1]: bin b holds b/n_bins <= p < (b+1)/n_bins, the last bin
    includes 1. Empty bins have count 0 and NaN means.
    """
    if not (isinstance(n_bins, (int, np.integer)) and n_bins >= 1):
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    u, e = _check(u, errors)
    p = error_probability(u)
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(idx, weights=p, minlength=n_bins) / count
        rate = np.bincount(idx, weights=e, minlength=n_bins) / count
    return mean_p, rate, count


def ece(u, errors, n_bins: int = N_BINS) -> float:
    """Expected calibration error of p = clip(u, 0, 1) as the probability of an error.

    ECE = sum_b (n_b / N) |mean error_b - mean p_b| over ``n_bins`` equal-width bins. Lower is
    better (0 = calibrated). For u = 1 - max softmax this is the usual confidence ECE
    |accuracy - confidence| with mirrored bins.
    """
    mean_p, rate, count = calibration_bins(u, errors, n_bins)
    full = count > 0
    return float((count[full] * np.abs(rate[full] - mean_p[full])).sum() / count.sum())


def brier(u, errors) -> float:
    """Brier score of p = clip(u, 0, 1) as the probability of an error: mean (p - e)^2. Lower is better."""
    u, e = _check(u, errors)
    return float(np.mean((error_probability(u) - e) ** 2))


def accuracy(y_true, y_pred) -> float:
    """Fraction of rows where ``y_pred == y_true``. Higher is better."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1 or t.size == 0:
        raise ValueError(f"y_true and y_pred must be non-empty 1-D arrays of one shape, got {t.shape} and {p.shape}")
    return float(np.mean(t == p))


# -------------------------------------------------------------------------------- summaries
def summarize(scores: Mapping[str, np.ndarray], errors,
              probability_scores: Iterable[str] = PROBABILITY_SCORES,
              n_bins: int = N_BINS) -> dict[str, dict[str, float]]:
    """Every metric for every score: ``{score: {"roc_auc", "prr", "aurc"[, "ece", "brier"]}}``.

    ECE and Brier are included only for names in ``probability_scores``. Undefined metrics are
    NaN; one :class:`UndefinedMetricWarning` is emitted for the whole call, not one per score.
    """
    prob = set(probability_scores)
    e = _check_errors(errors)
    out: dict[str, dict[str, float]] = {}
    for name, u in scores.items():
        _check(u, errors, name=f"score {name!r}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            row = {"roc_auc": roc_auc(u, e), "prr": prr(u, e), "aurc": aurc(u, e)}
        if name in prob:
            row["ece"] = ece(u, e, n_bins)
            row["brier"] = brier(u, e)
        out[name] = row
    if out:
        _undefined("ROC-AUC and PRR", e)
    return out


def _cell(value, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, MeanStd):
        return format_mean_std(value, scale=1.0, digits=digits)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def format_table(summary: Mapping[str, Mapping[str, object]], metrics: Sequence[str] = METRICS, *,
                 accuracy: float | None = None, n: int | None = None, digits: int = 4,
                 markdown: bool = True) -> str:
    """Render a :func:`summarize` (or :func:`aggregate`) result as a table, one row per score.

    ``markdown=True`` gives a GitHub table, else aligned plain text. A metric missing for a score
    (ECE of MD, say) shows "-", an undefined one "nan". A footer names the better direction of
    each metric, and the accuracy / row count when given.
    """
    head = ["score"] + [f"{_HEADERS.get(m, m)} ({'+' if DIRECTIONS.get(m) == 'higher' else '-'})"
                        for m in metrics]
    rows = [[name] + [_cell(vals.get(m), digits) for m in metrics] for name, vals in summary.items()]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in [head] + rows]
    foot = ["(+) higher is better, (-) lower is better"]
    if accuracy is not None:
        foot.append(f"accuracy {_cell(accuracy, digits)}")
    if n is not None:
        foot.append(f"n = {n}")
    return "\n".join(lines) + "\n\n" + "; ".join(foot)


# --------------------------------------------------------------------- aggregation over seeds
@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single run) over ``count`` finite
    values; ``total`` values were given (NaN runs are skipped, and counted as total - count)."""

    mean: float
    std: float
    count: int
    total: int

    def to_dict(self) -> dict[str, float | int | None]:
        nan2none = lambda x: None if math.isnan(x) else x  # noqa: E731
        return {"mean": nan2none(self.mean), "std": nan2none(self.std), "count": self.count, "total": self.total}


def mean_std(values: Iterable[float]) -> MeanStd:
    """Mean +- std over runs, ignoring NaN. All NaN (or none) -> mean = std = NaN, count 0."""
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    ok = v[~np.isnan(v)]
    if ok.size == 0:
        return MeanStd(math.nan, math.nan, 0, int(v.size))
    std = float(ok.std(ddof=1)) if ok.size > 1 else 0.0
    return MeanStd(float(ok.mean()), std, int(ok.size), int(v.size))


def aggregate(summaries: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, MeanStd]]:
    """Combine per-run :func:`summarize` results (e.g. one per seed) into mean +- std per cell.

    Scores and metrics are the union over runs; a run missing a cell counts as NaN there.
    """
    names: dict[str, dict[str, None]] = {}
    for s in summaries:
        for score, vals in s.items():
            names.setdefault(score, {}).update(dict.fromkeys(vals))
    return {score: {m: mean_std(s.get(score, {}).get(m, math.nan) for s in summaries) for m in ms}
            for score, ms in names.items()}


def format_mean_std(ms: MeanStd, scale: float = 100.0, digits: int = 1) -> str:
    """``"75.1 ± 0.3"`` (values times ``scale``, the paper's x100); ``"(n=2/3)"`` appended when
    some runs were NaN; ``"nan"`` when none were finite."""
    if ms.count == 0:
        return "nan"
    text = f"{ms.mean * scale:.{digits}f} ± {ms.std * scale:.{digits}f}"
    if ms.count < ms.total:
        text += f" (n={ms.count}/{ms.total})"
    return text
