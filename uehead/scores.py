"""Every uncertainty score uehead computes: the numpy reference and the head-kind registry.

**Direction: every score here is higher = more uncertain.**

Scores of the task logits (no trained head):
    sr        softmax response, 1 - max_c p_c, in [0, 1 - 1/C]
    entropy   predictive entropy -sum_c p_c log p_c (nats), in [0, log C]
Scores of the features z (Mahalanobis baselines, :mod:`uehead.distances`):
    md, rmd   squared Mahalanobis distance to the nearest class (RMD: minus the background's)
Scores of an uncertainty head's logits, one registered :class:`HeadKind` each:
    adue      1 - SmoothMax_lam(softmax(h(z))), lam from the bundle (may dip to -log(C)/lam)
    alien     H(softmax(h(z))) / log C, in [0, 1]

The numpy functions below are the oracle: the runtime's numba kernels are tested against them,
training reports its scores through them (or their torch twins, tested against them), so
training-time and serving-time scores cannot drift. They take logits [N, C] (N >= 0, C >= 2) and
compute in float64.

A head kind is registered once, here or by a plugin, with :func:`register_head_kind`; the
runtime, export validation, the bundle checks, benchmarks and training all dispatch through
:func:`head_kind`. Its ``kernel`` and ``torch_twin`` are "module:function" paths so that this
module imports neither numba nor torch.
"""
from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from uehead.errors import NonFiniteLogitsError, UnknownScoreError

__all__ = [
    "TASK_SCORES", "DISTANCE_SCORES", "DEFAULT_LAMBDA", "HeadKind", "register_head_kind", "unregister_head_kind",
    "head_kind", "head_kinds", "head_params", "resolve", "score_names", "check_logits", "log_softmax", "softmax",
    "softmax_response", "entropy", "normalized_entropy", "smoothmax", "adue_uncertainty", "alien_uncertainty",
    "task_outputs", "NonFiniteLogitsError",
]

#: Scores computed from the task logits alone, in this order in every output.
TASK_SCORES = ("sr", "entropy")
#: Scores computed from the features z when the bundle has Mahalanobis statistics.
DISTANCE_SCORES = ("md", "rmd")
#: SmoothMax temperature of the AdUE paper.
DEFAULT_LAMBDA = 100.0


# ------------------------------------------------------------------------- numpy reference
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


def adue_uncertainty(logits: np.ndarray, lam: float = DEFAULT_LAMBDA) -> np.ndarray:
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


# ------------------------------------------------------------------------- head-kind registry
@dataclass(frozen=True)
class HeadKind:
    """How one kind of uncertainty head turns its logits into a score (higher = more uncertain).

    Attributes:
        name: the kind's name in manifests, checkpoints, ``Predictions.scores`` and batch columns.
        summary: the formula, one line.
        reference: numpy oracle ``f(logits [N, C], **params) -> float64 [N]``.
        kernel: "module:function" of the fast runtime twin with the same signature (float32 [N]);
            the runtime calls it on every prediction.
        torch_twin: "module:function" of the differentiable twin used in training,
            ``f(outputs [K, N, C], **params) -> [K, N]``.
        params: names of the head's settings passed as keyword arguments (read from the
            bundle's head spec or the checkpoint's head json); each must be a finite real > 0.
        target: the base score the head is aligned to in training (its MSE term): "sr" (the
            softmax response) or "nent" (the normalised entropy).
    """

    name: str
    summary: str
    reference: Callable[..., np.ndarray]
    kernel: str
    torch_twin: str
    params: tuple[str, ...] = ()
    target: str = "sr"

    @property
    def higher_is_more_uncertain(self) -> bool:
        return True

    def score_reference(self, logits: np.ndarray, **params: float) -> np.ndarray:
        return self.reference(logits, **params)

    def score_kernel(self, logits: np.ndarray, **params: float) -> np.ndarray:
        return resolve(self.kernel)(logits, **params)


_REGISTRY: dict[str, HeadKind] = {}
_RESERVED = (*TASK_SCORES, *DISTANCE_SCORES)


def register_head_kind(kind: HeadKind, *, replace: bool = False) -> HeadKind:
    """Add ``kind`` to the registry (the order of registration is the default-head preference)."""
    if kind.name in _RESERVED:
        raise ValueError(f"{kind.name!r} is a built-in score name ({', '.join(_RESERVED)}); pick another.")
    if kind.target not in ("sr", "nent"):
        raise ValueError(f"head kind {kind.name!r}: target must be 'sr' or 'nent', got {kind.target!r}.")
    if kind.name in _REGISTRY and not replace:
        raise ValueError(f"head kind {kind.name!r} is already registered; pass replace=True to override.")
    _REGISTRY[kind.name] = kind
    return kind


def unregister_head_kind(name: str) -> None:
    """Remove a registered kind (for plugins and tests)."""
    _REGISTRY.pop(name, None)


def head_kinds() -> tuple[str, ...]:
    """Registered head kinds, in default-head preference order."""
    return tuple(_REGISTRY)


def head_kind(name: str) -> HeadKind:
    """The registered kind ``name``; :class:`UnknownScoreError` naming the known kinds otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownScoreError(
            f"unknown uncertainty head kind {name!r}; known kinds: {', '.join(_REGISTRY) or '(none)'}.",
            fix="upgrade uehead, register the kind (uehead.scores.register_head_kind), "
                "or re-export with a known head.") from None


def head_params(kind: HeadKind | str, source: Any) -> dict[str, float]:
    """The keyword arguments of ``kind``'s score, read from ``source``: a bundle's head spec (an
    object with those attributes) or a checkpoint head json (a mapping). Missing AdUE ``lam``
    defaults to :data:`DEFAULT_LAMBDA`."""
    kind = head_kind(kind) if isinstance(kind, str) else kind
    out = {}
    for p in kind.params:
        value = source.get(p, DEFAULT_LAMBDA if p == "lam" else None) if isinstance(source, Mapping) \
            else getattr(source, p, None)
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"head kind {kind.name!r}: parameter {p!r} must be a finite real > 0, got "
                             f"{value!r}.")
        out[p] = value
    return out


def score_names(heads: tuple[str, ...] | list[str] = (), distances: bool = False) -> tuple[str, ...]:
    """Every score name an output carries, in output order: sr, entropy, the heads, md, rmd."""
    return (*TASK_SCORES, *heads, *(DISTANCE_SCORES if distances else ()))


def resolve(path: str) -> Callable:
    """The callable at "package.module:function"."""
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise ValueError(f"{path!r} is not a 'module:function' path.")
    return getattr(importlib.import_module(module), attr)


register_head_kind(HeadKind(
    name="adue", summary="1 - SmoothMax_lam(softmax(h(z)))", reference=adue_uncertainty,
    kernel="uehead.runtime.kernels:adue_uncertainty", torch_twin="uehead.training.losses:adue_uncertainty",
    params=("lam",), target="sr"))
register_head_kind(HeadKind(
    name="alien", summary="H(softmax(h(z))) / log C", reference=alien_uncertainty,
    kernel="uehead.runtime.kernels:alien_uncertainty", torch_twin="uehead.training.losses:alien_uncertainty",
    params=(), target="nent"))
