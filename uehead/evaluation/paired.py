"""Paired bootstrap of ROC-AUC differences, and the "do no harm" choice of a bundle's default score.

A trained head becomes the bundle's default uncertainty only when it is *clearly* better than the
plain softmax response on rows it was not fitted on: the lower end of the two-sided ``level``
percentile interval of ROC-AUC(head) - ROC-AUC(baseline) over a paired bootstrap of those rows
must lie above zero. Otherwise the default falls back to the baseline (softmax response), which
costs nothing and never hurts on shifted data the way a head fitted to one domain can.

Every score is higher = more uncertain; ROC-AUC is of the score against the error label.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from uehead.evaluation.metrics import _average_ranks, _check_errors, roc_auc_rows

#: Settings of the default-score test (recorded with its result).
DEFAULT_BOOTSTRAP = 2000
DEFAULT_LEVEL = 0.95
FALLBACK_SCORE = "sr"
_CHUNK = 250


def bootstrap_auc_diff(u_a, u_b, errors, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """ROC-AUC(u_a) - ROC-AUC(u_b) on ``n_boot`` paired resamples of the rows (with replacement,
    the same rows for both scores), float64 [n_boot]; a resample without errors or without correct
    rows is drawn again."""
    e = _check_errors(errors).astype(bool)
    a, b = np.asarray(u_a, dtype=np.float64), np.asarray(u_b, dtype=np.float64)
    if not (a.shape == b.shape == e.shape):
        raise ValueError(f"scores {a.shape}, {b.shape} and errors {e.shape} must have one shape [N]")
    n_pos = int(e.sum())
    if n_pos == 0 or n_pos == e.size:
        raise ValueError("the rows need both errors and correct predictions to compare ROC-AUCs")
    rng = np.random.RandomState(seed)
    out: list[np.ndarray] = []
    while sum(len(x) for x in out) < n_boot:
        idx = rng.randint(0, e.size, size=(_CHUNK, e.size))
        ee = e[idx]
        pos = ee.sum(axis=1)
        keep = (pos > 0) & (pos < e.size)
        idx, ee, pos = idx[keep], ee[keep], pos[keep]
        neg = e.size - pos
        diffs = []
        for s in (a, b):
            ranks = _average_ranks(s[idx])
            diffs.append(((ranks * ee).sum(axis=1) - pos * (pos + 1) / 2.0) / (pos * neg))
        out.append(diffs[0] - diffs[1])
    return np.concatenate(out)[:n_boot]


def choose_default_score(scores: Mapping[str, np.ndarray], errors, candidates: Sequence[str], *,
                         baseline: str = FALLBACK_SCORE, n_boot: int = DEFAULT_BOOTSTRAP,
                         level: float = DEFAULT_LEVEL, seed: int = 0, rows: str = "") -> dict:
    """The default score among ``candidates`` (head kinds present in ``scores``) or ``baseline``.

    Each candidate is compared with ``baseline`` by :func:`bootstrap_auc_diff` on the given rows;
    the candidate with the largest observed gain among those whose interval lies above zero wins,
    else ``baseline``. Returns a JSON-ready record: ``chosen``, ``baseline``, ``method``, ``rows``
    (what the rows are), ``n_rows``, ``n_errors`` and per candidate ``roc_auc``, ``baseline_roc_auc``,
    ``diff``, ``ci_low``, ``ci_high``, ``p_value`` (share of resamples with diff <= 0) and
    ``significant``.
    """
    e = _check_errors(errors)
    record = {"chosen": baseline, "baseline": baseline, "rows": rows, "n_rows": int(e.size),
              "n_errors": int(e.sum()), "level": level, "n_boot": n_boot, "seed": seed,
              "method": f"paired bootstrap of the ROC-AUC difference; a head is the default only when the "
                        f"lower end of its {level:.0%} interval is above 0", "candidates": {}}
    present = [c for c in candidates if c in scores and c != baseline]
    if not present or not 0 < e.sum() < e.size:
        record["reason"] = ("no trained head" if not present
                            else "the rows have no errors or no correct predictions")
        return record
    aucs = roc_auc_rows(np.stack([scores[baseline]] + [scores[c] for c in present]), e)
    best, best_gain = baseline, 0.0
    tail = (1.0 - level) / 2.0
    for i, name in enumerate(present):
        diffs = bootstrap_auc_diff(scores[name], scores[baseline], e, n_boot=n_boot, seed=seed + i)
        gain = float(aucs[i + 1] - aucs[0])
        low, high = (float(q) for q in np.quantile(diffs, [tail, 1.0 - tail]))
        significant = low > 0.0
        record["candidates"][name] = {"roc_auc": float(aucs[i + 1]), "baseline_roc_auc": float(aucs[0]),
                                      "diff": gain, "ci_low": low, "ci_high": high,
                                      "p_value": float((diffs <= 0).mean()), "significant": bool(significant)}
        if significant and gain > best_gain:
            best, best_gain = name, gain
    record["chosen"] = best
    return record


def describe_default(record: Mapping) -> str:
    """One line for people: which score is the default and why (the test's result)."""
    chosen, base = record.get("chosen"), record.get("baseline", FALLBACK_SCORE)
    parts = []
    for name, c in (record.get("candidates") or {}).items():
        parts.append(f"{name} {100 * c['diff']:+.2f} ROC-AUC points vs {base} "
                     f"({record.get('level', DEFAULT_LEVEL):.0%} CI [{100 * c['ci_low']:+.2f}, "
                     f"{100 * c['ci_high']:+.2f}]{', significant' if c['significant'] else ', not significant'})")
    where = f" on {record.get('n_rows')} {record.get('rows') or 'held-out'} rows" if record.get("n_rows") else ""
    detail = "; ".join(parts) if parts else record.get("reason", "")
    verdict = f"{chosen} is clearly better than {base}" if chosen != base else f"no head is clearly better than {base}"
    return f"default uncertainty: {chosen} ({verdict}{where}: {detail})"
