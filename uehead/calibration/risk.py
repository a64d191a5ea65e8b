"""Abstention with a finite-sample guarantee: Learn then Test with fixed-sequence testing (numpy only).

Accept a row when its score u (higher = more uncertain) is at most a threshold t. For a risk
level r and a tolerance delta, :func:`learn_then_test` picks t such that, with probability at
least 1 - delta over the draw of the calibration rows, the error rate among accepted rows
R(t) = P(error | u <= t) is at most r. Procedure (Angelopoulos, Bates, Candes, Jordan, Lei,
"Learn then Test: Calibrating predictive algorithms to achieve risk control", 2021):

1. Candidate thresholds fixed before the labels are read: the 1 %, 2 %, ..., 100 % quantiles of
   the calibration scores (:func:`threshold_grid`), strictest first; the leading ones that accept
   fewer than :func:`n_min` rows are dropped (no test there has power).
2. For each t_j, with n_j accepted rows and k_j errors among them, the p-value of
   H_j: R(t_j) > r is the exact binomial tail P(Binomial(n_j, r) <= k_j) (:func:`binom_cdf`).
3. Walk the grid while p_j <= delta; the last certified t_j is the answer. Fixed-sequence
   testing controls the family-wise error at delta because the order is fixed in advance.
   When t_1 is not certified no threshold reaches r: accept nothing.

Related: Geifman and El-Yaniv, "Selective classification for deep neural networks" (2017, SGR).
The guarantee assumes the calibration rows and future rows are exchangeable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RiskThreshold", "n_min", "binom_cdf", "binomial_interval", "threshold_grid", "learn_then_test"]

#: Candidate thresholds are the GRID_STEPS quantiles at 1/GRID_STEPS, 2/GRID_STEPS, ..., 100 %.
GRID_STEPS = 100


@dataclass(frozen=True)
class RiskThreshold:
    """A certified threshold for one risk level. ``threshold`` is None when no candidate reaches
    ``risk`` at ``delta``: then nothing is accepted. ``accepted_fraction`` is measured on the
    calibration rows."""

    risk: float
    delta: float
    threshold: float | None
    n_min: int
    accepted_fraction: float

    def accept(self, u) -> np.ndarray:
        """bool mask: u <= threshold (all False when no threshold was certified)."""
        u = np.asarray(u)
        if self.threshold is None:
            return np.zeros(u.shape, dtype=bool)
        return u <= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"risk": self.risk, "delta": self.delta, "threshold": self.threshold, "n_min": self.n_min,
                "accepted_fraction": self.accepted_fraction}

    @classmethod
    def from_dict(cls, data: Any) -> RiskThreshold:
        if not isinstance(data, dict):
            raise ValueError("a risk level must be an object")
        t = data.get("threshold")
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)):
            raise ValueError(f"threshold must be a finite number or null, got {t!r}")
        return cls(risk=_unit(data.get("risk"), "risk"), delta=_unit(data.get("delta"), "delta"),
                   threshold=None if t is None else float(t), n_min=int(data.get("n_min", 0)),
                   accepted_fraction=float(data.get("accepted_fraction", 0.0)))


def _unit(value: Any, name: str) -> float:
    """``value`` as a float strictly inside (0, 1), else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def n_min(risk: float, delta: float) -> int:
    """Fewest accepted rows that can certify ``risk`` at ``delta``: even with no error,
    (1 - risk)^n <= delta needs n >= log(delta) / log(1 - risk)."""
    risk, delta = _unit(risk, "risk"), _unit(delta, "delta")
    bound = math.log(delta) / math.log1p(-risk)
    n = math.ceil(bound - 1e-9)  # an exact integer bound stays itself despite rounding
    return n if (1.0 - risk) ** n <= delta else n + 1


_log_factorial_table = np.zeros(1)


def _log_factorials(n: int) -> np.ndarray:
    """log(i!) for i = 0..n at least (math.lgamma), from a table that grows by doubling: one
    calibration asks for many different n, and recomputing per n would cost n lgamma calls each."""
    global _log_factorial_table
    table = _log_factorial_table
    if table.size <= n:
        table = np.array([math.lgamma(i + 1.0) for i in range(max(n + 1, 2 * table.size))])
        table.setflags(write=False)
        _log_factorial_table = table
    return table


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k), exact, summed in log space (log-sum-exp of the log pmf terms)."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"binom_cdf needs n >= 0 and p in [0, 1], got n={n}, p={p}")
    if k < 0:
        return 0.0
    if k >= n or p == 0.0:
        return 1.0
    if p == 1.0:
        return 0.0
    lf = _log_factorials(n)
    i = np.arange(k + 1)
    terms = lf[n] - lf[i] - lf[n - i] + i * math.log(p) + (n - i) * math.log1p(-p)
    top = terms.max()
    return float(min(1.0, math.exp(top + math.log(np.exp(terms - top).sum()))))


def binomial_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact) two-sided interval for a binomial proportion k / n, found by
    bisection on :func:`binom_cdf` (no scipy)."""
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"binomial_interval needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    tail = (1.0 - level) / 2.0

    def solve(f) -> float:  # f is decreasing in p; find p with f(p) = tail
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2.0
            lo, hi = (mid, hi) if f(mid) > tail else (lo, mid)
        return (lo + hi) / 2.0

    # P(X >= k | p) = P(n - X <= n - k | 1 - p): the lower end mirrors the upper one.
    lower = 0.0 if k == 0 else 1.0 - solve(lambda q: binom_cdf(n - k, n, q))
    upper = 1.0 if k == n else solve(lambda p: binom_cdf(k, n, p))
    return lower, upper


def threshold_grid(u) -> np.ndarray:
    """Candidate thresholds: the distinct 1 %, ..., 100 % quantiles of ``u``, ascending = strictest
    first. The j % quantile is the ceil(j n / 100)-th smallest score (the inverse of the empirical
    CDF, in integer arithmetic so no level is shifted by rounding). Depends on the scores only."""
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 1 or u.size == 0 or not np.isfinite(u).all():
        raise ValueError("scores must be a non-empty 1-D array of finite numbers")
    ranks = -(-np.arange(1, GRID_STEPS + 1) * u.size // GRID_STEPS)
    return np.unique(np.sort(u)[ranks - 1])


def learn_then_test(u, errors, risk: float, delta: float) -> RiskThreshold:
    """The laxest threshold certified by fixed-sequence testing (see the module docstring)."""
    risk, delta = _unit(risk, "risk"), _unit(delta, "delta")
    u = np.asarray(u, dtype=np.float64)
    e = np.asarray(errors).astype(bool)
    if e.shape != u.shape:
        raise ValueError(f"u has shape {u.shape} but errors has {e.shape}; pass one value per row")
    need = n_min(risk, delta)
    grid = threshold_grid(u)
    order = np.argsort(u, kind="stable")
    sorted_u = u[order]
    cum_errors = np.concatenate([[0], np.cumsum(e[order])])
    accepted = np.searchsorted(sorted_u, grid, side="right")
    certified: float | None = None
    n_accepted = 0
    for t, n_j in zip(grid, accepted):
        if n_j < need:
            continue
        if binom_cdf(int(cum_errors[n_j]), int(n_j), risk) > delta:
            break
        certified, n_accepted = float(t), int(n_j)
    return RiskThreshold(risk=risk, delta=delta, threshold=certified, n_min=need,
                         accepted_fraction=n_accepted / u.size)
