"""golden.json, the bundle's self-test: a few texts and the outputs the exporter expects for each.

Written by ``uehead export`` (from PyTorch, one text per call), read by ``uehead verify``, which
recomputes the texts through the runtime and compares. Keys::

    texts             [str]
    tolerance         float, max abs difference allowed
    source            who computed the outputs ("pytorch", "numpy", ...)
    label_ids         [int]
    labels            [str]     optional: the label name of each label id, as the exporter named them
    probs             [[float]] (N x C)
    softmax_response  [float]   the "sr" score
    entropy           [float]
    heads             {kind: [float]}  each uncertainty head's score
    distances         {"md"|"rmd": [float]}  optional, when the bundle has baselines
    sentences         [[str]]   token-classification bundles only: each sentence's words; every
                      array then has one row per word, sentence after sentence (``texts`` holds
                      the sentences' words joined by spaces, for reading)

``labels`` and ``distances`` catch edits of the manifest that its checksums cannot (swapped label
names, a flipped baselines setting); bundles written before they existed lack them and still
verify. Every score is higher = more uncertain.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from uehead.errors import BundleError
from uehead.jsonio import read_json_object
from uehead.scores import DISTANCE_SCORES, TASK_SCORES

#: Keys every golden.json has.
GOLDEN_KEYS = ("texts", "label_ids", "probs", "softmax_response", "entropy")


def golden_payload(texts, label_ids, probs, scores, *, source: str, tolerance: float,
                   label_names=None) -> dict[str, Any]:
    """golden.json: a few texts and the outputs the exporter expects for each, one text per call.

    ``scores`` maps score names (:func:`uehead.scores.score_names`: "sr", "entropy", each head
    kind, and "md"/"rmd" when the bundle has baselines) to [N] arrays. On disk "sr" is stored as
    ``softmax_response``, the head kinds under ``heads`` and the distances under ``distances``.
    ``label_names`` (the bundle's labels, by id) adds ``labels``.
    """
    def floats(x):
        return np.asarray(x, np.float64).tolist()

    out = {
        "texts": list(texts),
        "tolerance": float(tolerance),
        "source": source,
        "label_ids": [int(x) for x in label_ids],
        **({"labels": [str(label_names[int(i)]) for i in label_ids]} if label_names is not None else {}),
        "probs": floats(probs),
        "softmax_response": floats(scores["sr"]),
        "entropy": floats(scores["entropy"]),
        "heads": {k: floats(v) for k, v in scores.items() if k not in (*TASK_SCORES, *DISTANCE_SCORES)},
    }
    distances = {k: floats(scores[k]) for k in DISTANCE_SCORES if k in scores}
    if distances:
        out["distances"] = distances
    return out


def read_golden(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check golden.json; ``heads`` and ``distances`` default to empty objects."""
    path = Path(path)
    fix = "re-export the bundle with `uehead export`."
    data = read_json_object(path, BundleError, fix)
    missing = [k for k in GOLDEN_KEYS if k not in data]
    if missing:
        raise BundleError(f"lacks keys {missing}.", path=path, fix=fix)
    texts = data["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise BundleError("'texts' must be a list of strings.", path=path, fix=fix)
    tol = data.get("tolerance", 1e-4)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise BundleError(f"'tolerance' must be a number >= 0, got {tol!r}.", path=path, fix=fix)
    names = data.get("labels")
    if names is not None and (not isinstance(names, list) or len(names) != len(texts)
                              or not all(isinstance(n, str) for n in names)):
        raise BundleError("'labels' must be a list of strings, one per text.", path=path, fix=fix)
    for key in ("heads", "distances"):
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise BundleError(f"'{key}' must be an object name -> list of numbers.", path=path, fix=fix)
        data[key] = value
    sentences = data.get("sentences")
    if sentences is not None and not (isinstance(sentences, list) and all(
            isinstance(s, list) and all(isinstance(w, str) for w in s) for s in sentences)):
        raise BundleError("'sentences' must be a list of lists of strings.", path=path, fix=fix)
    data["tolerance"] = float(tol)
    return data
