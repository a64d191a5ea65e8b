"""How a calibrated bundle's decisions do on labelled rows (torch-free, numpy only).

For each stored risk level: the fraction of rows accepted (coverage) and the error rate among
them (selective risk), against the level's target; for each stored coverage level: how often the
true label is in the conformal set, the mean set size and the empty sets. The guarantees assume
the rows are exchangeable with the calibration rows: on the split the heads or the calibration
were fitted on, or under domain shift, these numbers are not a test of them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["decision_metrics", "format_decisions"]


def decision_metrics(calibration, probs, scores, labels) -> dict[str, Any]:
    """``{"score", "risk_levels": [...], "coverage_levels": [...]}`` on these rows.

    Args:
        calibration: a :class:`uehead.calibration.apply.Calibration`.
        probs: float [N, C]; scores: name -> [N] (must hold ``calibration.score``); labels: int [N].
    """
    y = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    u = np.asarray(scores[calibration.score], dtype=np.float64)
    errors = probs.argmax(axis=1) != y
    risk_levels = []
    for level in calibration.risk_levels:
        accepted = level.accept(u)
        n_acc = int(accepted.sum())
        selective_risk = float(errors[accepted].mean()) if n_acc else None
        risk_levels.append({
            "risk": level.risk, "delta": level.delta, "threshold": level.threshold,
            "certified": level.threshold is not None, "accepted": n_acc,
            "accepted_fraction": n_acc / len(y) if len(y) else 0.0,
            "selective_risk": selective_risk,
            "within_risk": None if selective_risk is None else selective_risk <= level.risk,
        })
    coverage_levels = []
    for level in calibration.coverage_levels:
        mask = level.set_mask(probs)
        sizes = mask.sum(axis=1)
        coverage_levels.append({
            "coverage": level.coverage, "method": level.method, "class_conditional": level.class_conditional,
            "empirical_coverage": float(mask[np.arange(len(y)), y].mean()) if len(y) else None,
            "mean_set_size": float(sizes.mean()) if len(y) else None,
            "empty_sets": int((sizes == 0).sum()),
        })
    return {"score": calibration.score, "risk_levels": risk_levels, "coverage_levels": coverage_levels}


def format_decisions(result: dict[str, Any]) -> str:
    """The decision metrics as plain-text lines."""
    lines = [f"decisions on score {result['score']!r} (calibrated; accept when score <= threshold):"]
    for r in result["risk_levels"]:
        if not r["certified"]:
            lines.append(f"  risk {r['risk']:g} (delta {r['delta']:g}): no threshold certified, nothing accepted")
            continue
        risk = "-" if r["selective_risk"] is None else f"{r['selective_risk']:.4f}"
        lines.append(f"  risk {r['risk']:g} (delta {r['delta']:g}): accepted {r['accepted_fraction']:.1%} "
                     f"({r['accepted']} rows), error rate among accepted {risk}")
    for c in result["coverage_levels"]:
        lines.append(f"  coverage {c['coverage']:g} ({c['method']}): label in set {c['empirical_coverage']:.1%}, "
                     f"mean set size {c['mean_set_size']:.3f}, empty sets {c['empty_sets']}")
    return "\n".join(lines)
