"""Isotonic map from an uncertainty score to a probability of error (numpy only).

Fit: pool adjacent violators (PAV) on the calibration rows, the non-parametric recalibration of
Zadrozny and Elkan, "Transforming classifier scores into accurate multiclass probability
estimates" (KDD 2002). The fitted map g is non-decreasing: a higher score (higher = more
uncertain) never gets a lower P(error).

Stored as breakpoints (x, y): each pooled block contributes its lowest and highest score with
the block's error rate. Applied with linear interpolation between breakpoints and clipped to
the first / last value outside the fitted range (``numpy.interp``), as scikit-learn's
``IsotonicRegression(out_of_bounds="clip")`` does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["IsotonicMap", "fit_isotonic"]


@dataclass(frozen=True, eq=False)
class IsotonicMap:
    """g(u) = P(error | score u): ``x`` strictly increasing scores, ``y`` non-decreasing values in [0, 1]."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self):
        x = np.asarray(self.x, dtype=np.float64)
        y = np.asarray(self.y, dtype=np.float64)
        if x.ndim != 1 or x.shape != y.shape or x.size == 0:
            raise ValueError(f"breakpoints x and y must be non-empty 1-D arrays of one length, got {x.shape}, "
                             f"{y.shape}")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("breakpoints must be finite numbers")
        if (np.diff(x) <= 0).any():
            raise ValueError("breakpoint scores x must be strictly increasing")
        if (np.diff(y) < 0).any() or y[0] < 0 or y[-1] > 1:
            raise ValueError("breakpoint values y must be non-decreasing and within [0, 1]")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def __call__(self, u) -> np.ndarray:
        """P(error) for scores ``u`` (float64, same shape), interpolated and clipped."""
        return np.interp(np.asarray(u, dtype=np.float64), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        return {"x": self.x.tolist(), "y": self.y.tolist()}

    @classmethod
    def from_dict(cls, data: Any) -> IsotonicMap:
        if not isinstance(data, dict) or "x" not in data or "y" not in data:
            raise ValueError("the isotonic map must be an object with lists 'x' and 'y'")
        return cls(np.asarray(data["x"], dtype=np.float64), np.asarray(data["y"], dtype=np.float64))


def fit_isotonic(u, errors) -> IsotonicMap:
    """Least-squares non-decreasing fit of ``errors`` (0/1 or bool) on scores ``u`` by PAV.

    Rows with equal scores are pooled first (they must get one value); adjacent blocks are then
    merged while a block's mean is not below its predecessor's.
    """
    u = np.asarray(u, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    if u.ndim != 1 or u.shape != e.shape or u.size == 0:
        raise ValueError(f"u and errors must be non-empty 1-D arrays of one length, got {u.shape} and {e.shape}")
    if not np.isfinite(u).all():
        raise ValueError("u contains NaN or inf; uncertainty scores must be finite")
    ux, inverse = np.unique(u, return_inverse=True)
    weight = np.bincount(inverse).astype(np.float64)
    total = np.bincount(inverse, weights=e)
    # Each block: [sum of errors, number of rows, index of its first unique score].
    blocks: list[list[float]] = []
    for i in range(ux.size):
        blocks.append([total[i], weight[i], i])
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] >= blocks[-1][0] * blocks[-2][1]:
            s, w, _ = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += w
    xs: list[float] = []
    ys: list[float] = []
    starts = [int(b[2]) for b in blocks] + [ux.size]
    for (s, w, _), first, stop in zip(blocks, starts[:-1], starts[1:]):
        value = min(max(s / w, 0.0), 1.0)
        xs.append(ux[first])
        ys.append(value)
        if stop - 1 > first:
            xs.append(ux[stop - 1])
            ys.append(value)
    return IsotonicMap(np.asarray(xs), np.asarray(ys))
