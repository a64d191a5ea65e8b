"""What ``Model.predict`` returns: :class:`Predictions`, numpy arrays in input order.

Every uncertainty score is **higher = more uncertain**.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Predictions"]


@dataclass(frozen=True, eq=False, repr=False)
class Predictions:
    """Outputs for N texts, in input order (numpy arrays; every score higher = more uncertain).

    Attributes:
        labels: predicted label names, list of N str.
        label_ids: int64 [N], argmax of the task logits.
        probs: float32 [N, C], softmax of the task logits.
        uncertainty: float32 [N], the bundle's default score (named by ``uncertainty_kind``).
        uncertainty_kind: a head kind ("adue": 1 - SmoothMax of the AdUE head; "alien":
            normalised entropy of the ALIEN head) or "sr" (softmax response of the task logits).
        softmax_response: float32 [N], 1 - max probs.
        entropy: float32 [N], entropy of probs in nats.
        scores: every score available, name -> float32 [N]: "sr", "entropy", each head kind
            ("adue", "alien"), and "md", "rmd" when asked for and the bundle has baselines.
        p_error: float32 [N], calibrated probability that the label is wrong (None when the
            bundle is not calibrated).
        accept: bool [N], True where the calibrated score is at or below the threshold certified
            for the selected risk level (None when not calibrated). At that level, with
            probability >= 1 - delta over the calibration draw, the error rate among accepted
            inputs is at most the risk.
        prediction_sets: list of N tuples of label names, the conformal prediction set at the
            selected coverage (None when not calibrated). May be empty (a strong abstain signal).
        risk, coverage: the decision levels used for ``accept`` and ``prediction_sets`` (None
            when not calibrated).
    """

    labels: list[str]
    label_ids: np.ndarray
    probs: np.ndarray
    uncertainty: np.ndarray
    uncertainty_kind: str
    softmax_response: np.ndarray
    entropy: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    p_error: np.ndarray | None = None
    accept: np.ndarray | None = None
    prediction_sets: list[tuple[str, ...]] | None = None
    risk: float | None = None
    coverage: float | None = None

    def __len__(self) -> int:
        return int(self.label_ids.shape[0])

    @property
    def calibrated(self) -> bool:
        return self.p_error is not None

    def __repr__(self) -> str:
        extra = f", risk={self.risk}, coverage={self.coverage}" if self.calibrated else ""
        return (f"Predictions(n={len(self)}, classes={self.probs.shape[1]}, "
                f"uncertainty_kind={self.uncertainty_kind!r}, scores={sorted(self.scores)}{extra})")

    @classmethod
    def concat(cls, parts: Sequence[Predictions]) -> Predictions:
        """Join several Predictions (same bundle, same score set, same decision levels) end to end."""
        if not parts:
            raise ValueError("Predictions.concat needs at least one part.")
        first = parts[0]

        def joined(name):
            return None if getattr(first, name) is None else np.concatenate([getattr(p, name) for p in parts])

        return cls(
            labels=[label for p in parts for label in p.labels],
            label_ids=np.concatenate([p.label_ids for p in parts]),
            probs=np.concatenate([p.probs for p in parts]),
            uncertainty=np.concatenate([p.uncertainty for p in parts]),
            uncertainty_kind=first.uncertainty_kind,
            softmax_response=np.concatenate([p.softmax_response for p in parts]),
            entropy=np.concatenate([p.entropy for p in parts]),
            scores={k: np.concatenate([p.scores[k] for p in parts]) for k in first.scores},
            p_error=joined("p_error"),
            accept=joined("accept"),
            prediction_sets=None if first.prediction_sets is None else [s for p in parts for s in p.prediction_sets],
            risk=first.risk,
            coverage=first.coverage,
        )
