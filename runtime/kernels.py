"""Score kernels (PLACEHOLDER: delegates to the numpy reference until the numba kernels land).

API (stable; see reference.py for the definitions and directions, higher = more uncertain):
    task_outputs(logits) -> (probs [N,C] float32, softmax_response [N], entropy [N], normalized_entropy [N])
    adue_uncertainty(logits, lam) -> [N]
    alien_uncertainty(logits) -> [N]
    warmup() -> None
Score arrays are float32. NaN/inf logits raise NonFiniteLogitsError (a ValueError).
"""
from __future__ import annotations

import numpy as np

from uehead.runtime import reference
from uehead.runtime.reference import NonFiniteLogitsError

__all__ = ["task_outputs", "adue_uncertainty", "alien_uncertainty", "warmup", "NonFiniteLogitsError"]


def task_outputs(logits):
    p, sr, h, hn = reference.task_outputs(logits)
    return p.astype(np.float32), sr.astype(np.float32), h.astype(np.float32), hn.astype(np.float32)


def adue_uncertainty(logits, lam: float = 100.0):
    return reference.adue_uncertainty(logits, lam).astype(np.float32)


def alien_uncertainty(logits):
    return reference.alien_uncertainty(logits).astype(np.float32)


def warmup() -> None:
    task_outputs(np.zeros((1, 2), np.float32))
