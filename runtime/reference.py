"""Numpy reference for every score (the oracle the numba kernels are tested against).

Training, evaluation and the runtime all compute scores through this module or through
``kernels`` (which must match it), so training-time and serving-time scores cannot drift.

Directions: ``softmax_response``, ``entropy``, ``normalized_entropy``, ``adue_uncertainty`` and
``alien_uncertainty`` are **higher = more uncertain**. ``probs`` are class probabilities.
All functions take logits of shape [N, C] (N >= 0, C >= 2) and compute in float64.
"""
from __future__ import annotations

import numpy as np


class NonFiniteLogitsError(ValueError):
    """Logits contain NaN or +-inf: the model output is broken, scores would be garbage."""


def check_logits(logits: np.ndarray, name: str = "logits") -> np.ndarray:
    """Validate shape [N, C>=2] and finiteness; return a float64 view/copy."""
    x = np.asarray(logits)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"{name} must have shape [N, C] with C >= 2, got {x.shape}")
    x = x.astype(np.float64, copy=False)
    if x.size and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise NonFiniteLogitsError(
            f"{name} contain NaN or inf (first at row {bad[0]}, class {bad[1]}); "
            "check the model/bundle (re-run `uehead verify`).")
    return x


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = check_logits(logits)
    shifted = x - x.max(axis=1, keepdims=True) if x.size else x
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def softmax_response(logits: np.ndarray) -> np.ndarray:
    """U_SR = 1 - max_c p_c, in [0, 1 - 1/C]. Higher = more uncertain."""
    return 1.0 - softmax(logits).max(axis=1, initial=0.0) if np.asarray(logits).shape[0] else np.zeros(0)


def entropy(logits: np.ndarray) -> np.ndarray:
    """U_H = -sum_c p_c log p_c (nats), in [0, log C]. Higher = more uncertain."""
    lp = log_softmax(logits)
    return -(np.exp(lp) * lp).sum(axis=1)


def normalized_entropy(logits: np.ndarray) -> np.ndarray:
    """U_H / log C, in [0, 1]. Higher = more uncertain."""
    c = np.asarray(logits).shape[1]
    return entropy(logits) / np.log(c)


def smoothmax(q: np.ndarray, lam: float) -> np.ndarray:
    """SmoothMax_lam(q) = (1/lam) log sum_c exp(lam q_c), max-shifted. Can exceed max q by log(C)/lam."""
    q = np.asarray(q, dtype=np.float64)
    m = q.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(lam * (q - m)).sum(axis=1, keepdims=True)) / lam)[:, 0]


def adue_uncertainty(logits: np.ndarray, lam: float = 100.0) -> np.ndarray:
    """U_AdUE = 1 - SmoothMax_lam(softmax(logits)). Higher = more uncertain.

    May be slightly negative (down to -log(C)/lam) because SmoothMax can exceed max p.
    """
    if not lam > 0:
        raise ValueError(f"lambda must be > 0, got {lam}")
    p = softmax(logits)
    if p.shape[0] == 0:
        return np.zeros(0)
    return 1.0 - smoothmax(p, lam)


def alien_uncertainty(logits: np.ndarray) -> np.ndarray:
    """U_ALIEN = H(softmax(logits)) / log C, in [0, 1]. Higher = more uncertain."""
    return normalized_entropy(logits)


def task_outputs(logits: np.ndarray):
    """(probs, softmax_response, entropy, normalized_entropy) for task logits."""
    lp = log_softmax(logits)
    p = np.exp(lp)
    n, c = p.shape
    sr = 1.0 - p.max(axis=1) if n else np.zeros(0)
    h = -(p * lp).sum(axis=1)
    return p, sr, h, h / np.log(c)
