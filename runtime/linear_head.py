"""The head graph as one affine map, run with every score in a single kernel call.

A bundle's ``head.onnx`` maps features z [N, H] to the task logits and one logit block per
uncertainty head. For the linear classifiers of BERT-style and decoder models that map is affine
(``logits = z W^T + b``, all outputs side by side), and running it through an ONNX Runtime session
costs far more than its arithmetic: on a lone request the session call and the separate score
kernels find their code and data evicted by the backbone. :class:`LinearHead` reads W and b off
the head session itself (so the bundle stays the one source of truth), checks on random features
that the session really is that affine map, and then computes logits, probabilities, argmax,
softmax response, entropy and each head's score in one compiled call
(``_kernels_impl.linear_head_kernel``), writing straight into the caller's output arrays.

A head that is not affine (a dense + activation classifier, e.g. RoBERTa's) or of a kind the
fused kernel does not know keeps the session + per-kind kernel path; :func:`fuse_linear_head` says
which and why. Every score is **higher = more uncertain**. Torch-free.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from uehead import scores as score_registry
from uehead.errors import NonFiniteLogitsError
from uehead.runtime import kernels
from uehead.runtime._kernels_aot import KIND_ADUE, KIND_ALIEN

__all__ = ["FUSED_KINDS", "LinearHead", "fuse_linear_head"]

log = logging.getLogger(__name__)

#: Head kinds the fused kernel computes, with their code and the registry parameter it takes.
FUSED_KINDS = {"adue": (KIND_ADUE, "lam"), "alien": (KIND_ALIEN, None)}

#: The affine check: |W z + b - session(z)| <= ATOL + RTOL * |session(z)| on random features of a
#: few scales (pooled BERT features lie in [-1, 1]; decoder hidden states reach hundreds).
RTOL, ATOL = 1e-4, 1e-4
_CHECK_SCALES = (1.0, 30.0)
_CHECK_ROWS = 8


@dataclass(frozen=True, eq=False)
class LinearHead:
    """``logits = z weight^T + bias`` for the task (first C columns) and each head in ``kinds``
    (C columns each, in that order), scored in one kernel call.

    Attributes: ``weight`` float32 [(1 + K) C, H] (C-contiguous), ``bias`` float32 [(1 + K) C],
    ``num_classes`` C, ``kinds`` (head kind names), ``codes`` int32 [K], ``lams`` float64 [K]
    (AdUE's lambda; 0 for kinds without one)."""

    weight: np.ndarray
    bias: np.ndarray
    num_classes: int
    kinds: tuple[str, ...]
    codes: np.ndarray
    lams: np.ndarray

    def __post_init__(self):
        # Bound once: on a lone request every lookup after the backbone runs with cold caches.
        object.__setattr__(self, "_kernel", kernels.linear_head_kernel())

    def score_into(self, z: np.ndarray, rows: np.ndarray, probs: np.ndarray, label_ids: np.ndarray,
                   scores: np.ndarray) -> None:
        """Score features ``z`` (float32 [n, H], C-contiguous) into row ``rows[i]`` (int64 [n]) of
        ``probs`` (float32 [N, C]), ``label_ids`` (int64 [N]) and ``scores`` (float32 [2 + K, N]:
        softmax response, entropy, then each head's score in ``kinds`` order).

        Raises NonFiniteLogitsError naming the first output row (of ``rows``) whose logits hold NaN/inf."""
        bad = self._kernel(z, self.weight, self.bias, rows, self.num_classes, self.codes, self.lams, probs,
                           label_ids, scores)
        if bad >= 0:
            self._raise_nonfinite(z, rows)

    def _raise_nonfinite(self, z: np.ndarray, rows: np.ndarray):
        with np.errstate(all="ignore"):
            logits = z.astype(np.float64) @ self.weight.T.astype(np.float64) + self.bias
        bad = ~np.isfinite(logits)
        i = int(np.argmin(np.where(bad.any(axis=1), rows, np.iinfo(np.int64).max)))
        col = int(np.flatnonzero(bad[i])[0])
        what = "task logits" if col < self.num_classes else f"{self.kinds[col // self.num_classes - 1]} logits"
        raise NonFiniteLogitsError(
            f"{what} contain NaN or inf (first at row {int(rows[i])}, class {col % self.num_classes}); "
            "check the model/bundle (re-run `uehead verify`).")


def fuse_linear_head(session, input_name: str, output_names: Sequence[str], feature_size: int, num_classes: int,
                     heads: Mapping[str, object]) -> LinearHead | None:
    """A :class:`LinearHead` equal to the head ``session`` (outputs ``output_names``: the task
    logits, then one per entry of ``heads``, kind -> manifest head spec), or None when the session
    is not one affine map or a head kind is not in :data:`FUSED_KINDS` (the reason is logged)."""
    unknown = [k for k in heads if k not in FUSED_KINDS]
    if unknown:
        log.debug("head kinds %s have no fused kernel; the head graph runs as a session", unknown)
        return None
    c, h = int(num_classes), int(feature_size)
    probe = np.zeros((h + 1, h), np.float32)
    probe[1:] = np.eye(h, dtype=np.float32)
    outs = np.concatenate(session.run(list(output_names), {input_name: probe}), axis=1).astype(np.float64)
    if outs.shape[1] != c * (1 + len(heads)) or not np.isfinite(outs).all():
        log.debug("head graph outputs %s do not form %d finite logit blocks; no fused head", outs.shape, 1 + len(heads))
        return None
    bias = outs[0]
    weight = np.ascontiguousarray((outs[1:] - bias).T, dtype=np.float32)
    rng = np.random.default_rng(0)
    for scale in _CHECK_SCALES:
        z = (rng.standard_normal((_CHECK_ROWS, h)) * scale).astype(np.float32)
        want = np.concatenate(session.run(list(output_names), {input_name: z}), axis=1).astype(np.float64)
        got = z.astype(np.float64) @ weight.T.astype(np.float64) + bias
        if not (np.abs(got - want) <= ATOL + RTOL * np.abs(want)).all():
            log.debug("head graph is not affine in its features (scale %s); no fused head", scale)
            return None
    codes, lams = [], []
    for kind, spec in heads.items():
        code, param = FUSED_KINDS[kind]
        codes.append(code)
        lams.append(float(score_registry.head_params(kind, spec)[param]) if param else 0.0)
    return LinearHead(weight=weight, bias=bias.astype(np.float32), num_classes=c, kinds=tuple(heads),
                      codes=np.asarray(codes, np.int32), lams=np.asarray(lams, np.float64))
