"""Split conformal prediction sets for classification (numpy only).

Nonconformity s(x, y) of label y (higher = y fits x worse), from the task probabilities p(x):

* ``"lac"`` (least ambiguous set-valued classifiers; Sadinle, Lei and Wasserman, "Least
  ambiguous set-valued classifiers with bounded error levels", JASA 2019): s = 1 - p_y.
  The smallest sets on average; a set may be empty (a strong abstain signal).
* ``"aps"`` (adaptive prediction sets; Romano, Sesia and Candes, "Classification with valid and
  adaptive coverage", NeurIPS 2020), deterministic (no randomisation): s = the sum of the
  probabilities of the labels ranked at or above y (ties in p broken by label index).

With the calibration rows' s_i = s(x_i, y_i), q = the ceil((n + 1)(1 - alpha))-th smallest s_i
(+inf when that rank exceeds n) and C(x) = {y : s(x, y) <= q}, then P(y in C(x)) >= 1 - alpha
for a new exchangeable row (split conformal; Vovk, Gammerman and Shafer 2005; Papadopoulos et
al. 2002). Class-conditional (Mondrian) sets use one q per true class, computed on that class's
rows, and cover each class at 1 - alpha.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["METHODS", "ConformalLevel", "conformal_quantile", "label_scores", "fit_conformal"]

METHODS = ("lac", "aps")


def _check_probs(probs) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape [N, C] with C >= 2, got {p.shape}")
    return p


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"conformal method {method!r} is unknown; use one of {', '.join(METHODS)}")
    return method


def label_scores(probs, method: str = "lac") -> np.ndarray:
    """s(x, y) for every row and label, float64 [N, C] (higher = the label fits worse)."""
    p = _check_probs(probs)
    if _check_method(method) == "lac":
        return 1.0 - p
    order = np.argsort(-p, axis=1, kind="stable")
    cumulative = np.cumsum(np.take_along_axis(p, order, axis=1), axis=1)
    out = np.empty_like(p)
    np.put_along_axis(out, order, cumulative, axis=1)
    return out


def conformal_quantile(scores, alpha: float) -> float:
    """The ceil((n + 1)(1 - alpha))-th smallest of ``scores``; +inf when that rank exceeds n
    (too few rows for this alpha: every label is in every set)."""
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    rank = math.ceil((s.size + 1) * (1.0 - alpha) - 1e-12)
    return math.inf if rank > s.size else float(s[max(rank, 1) - 1])


@dataclass(frozen=True)
class ConformalLevel:
    """Prediction sets at ``coverage`` = 1 - alpha. ``q`` is one float, or a tuple with one value
    per class (class-conditional); +inf means the label is always in the set."""

    coverage: float
    method: str
    class_conditional: bool
    q: float | tuple[float, ...]

    def set_mask(self, probs) -> np.ndarray:
        """bool [N, C]: label y is in the set of row i."""
        s = label_scores(probs, self.method)
        q = np.asarray(self.q, dtype=np.float64)
        if q.ndim == 1 and q.size != s.shape[1]:
            raise ValueError(f"this level has {q.size} class thresholds but probs has {s.shape[1]} classes")
        return s <= q

    def to_dict(self) -> dict[str, Any]:
        def enc(v: float):
            return "inf" if math.isinf(v) else v

        q = [enc(v) for v in self.q] if isinstance(self.q, tuple) else enc(self.q)
        return {"coverage": self.coverage, "method": self.method, "class_conditional": self.class_conditional,
                "q": q}

    @classmethod
    def from_dict(cls, data: Any) -> ConformalLevel:
        if not isinstance(data, dict):
            raise ValueError("a coverage level must be an object")

        def dec(v) -> float:
            if v == "inf":
                return math.inf
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"q must be a finite number or \"inf\", got {v!r}")
            return float(v)

        cov = data.get("coverage")
        if isinstance(cov, bool) or not isinstance(cov, (int, float)) or not 0.0 < cov < 1.0:
            raise ValueError(f"coverage must be a number strictly between 0 and 1, got {cov!r}")
        conditional = bool(data.get("class_conditional", False))
        raw = data.get("q")
        q = tuple(dec(v) for v in raw) if conditional and isinstance(raw, list) else dec(raw)
        return cls(float(cov), _check_method(data.get("method")), conditional, q)


def fit_conformal(probs, labels, coverage: float, method: str = "lac",
                  class_conditional: bool = False) -> ConformalLevel:
    """Calibrate sets at ``coverage`` on rows with task probabilities ``probs`` and true ``labels``."""
    s_all = label_scores(probs, method)
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (s_all.shape[0],) or (y.size and (y.min() < 0 or y.max() >= s_all.shape[1])):
        raise ValueError(f"labels must be {s_all.shape[0]} class ids in [0, {s_all.shape[1]})")
    s = s_all[np.arange(y.size), y]
    alpha = 1.0 - coverage
    if class_conditional:
        q: float | tuple[float, ...] = tuple(conformal_quantile(s[y == c], alpha) for c in range(s_all.shape[1]))
    else:
        q = conformal_quantile(s, alpha)
    return ConformalLevel(float(coverage), method, bool(class_conditional), q)
