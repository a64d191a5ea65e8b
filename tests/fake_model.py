"""The suite's one fake model: ``uehead.runtime.Model``'s ``predict`` contract without ONNX.

A word-count sentiment rule (``tiny_models.POSITIVE`` / ``NEGATIVE`` words), computed per text,
so a text's outputs never depend on its batch mates. Returns real
:class:`uehead.runtime.Predictions` with every score (higher = more uncertain).
"""
from __future__ import annotations

import time

import numpy as np

from tiny_models import NEGATIVE, POSITIVE
from uehead.runtime.predictions import Predictions


class FakeModel:
    """``predict(texts, batch_size=32, distances=False)`` like a loaded bundle.

    Args:
        num_classes: classes of the fake task (labels "neg", "pos" for 2, else "class_i").
        perfect_labels: per-row true labels to make every prediction right (for metrics edge cases).
        fail_on_call: raise RuntimeError on this (1-based) predict call, to test failure handling.
        delay: seconds to sleep in every call, to test progress and interruption.
    Attributes: ``calls``, one dict per predict call (``n``, ``batch_size``, ``distances``).
    """

    uncertainty_kind = "adue"

    def __init__(self, num_classes: int = 2, perfect_labels=None, fail_on_call: int | None = None,
                 delay: float = 0.0):
        self.num_classes, self.perfect_labels = num_classes, perfect_labels
        self.fail_on_call, self.delay = fail_on_call, delay
        self.labels = ("neg", "pos") if num_classes == 2 else tuple(f"class_{i}" for i in range(num_classes))
        self.calls: list[dict] = []

    def predict(self, texts, *, batch_size: int = 32, distances: bool = False) -> Predictions:
        self.calls.append({"n": len(texts), "batch_size": batch_size, "distances": distances})
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise RuntimeError(f"injected failure on predict call {len(self.calls)}")
        if self.delay:
            time.sleep(self.delay)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] is {type(t).__name__}")
        n, c = len(texts), self.num_classes
        logits = np.zeros((n, c))
        for i, t in enumerate(texts):
            words = t.split()
            logits[i, 1 % c] = sum(w in POSITIVE for w in words) - 0.3 * len(words) / 8
            logits[i, 0] = sum(w in NEGATIVE for w in words)
        if self.perfect_labels is not None:
            logits[np.arange(n), self.perfect_labels] += 10.0
        p = np.exp(logits - logits.max(1, keepdims=True)) if n else np.zeros((0, c))
        p /= p.sum(1, keepdims=True) if n else 1.0
        sr = 1 - p.max(1) if n else np.zeros(0)
        h = -(p * np.log(p)).sum(1)
        scores = {"sr": sr, "entropy": h, "adue": np.clip(sr * 1.1 - 0.01, -0.01, 1), "alien": h / np.log(c)}
        if distances:
            md = 5 * h + np.arange(n) % 3  # not a probability
            scores.update(md=md, rmd=md - 2)
        scores = {k: np.asarray(v, np.float32) for k, v in scores.items()}
        ids = p.argmax(1).astype(np.int64)
        return Predictions(labels=[self.labels[i] for i in ids], label_ids=ids, probs=p.astype(np.float32),
                           uncertainty=scores["adue"], uncertainty_kind=self.uncertainty_kind,
                           softmax_response=scores["sr"], entropy=scores["entropy"], scores=scores)
