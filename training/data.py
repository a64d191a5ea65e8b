"""Row selection, tokenisation and batching for training and feature extraction.

Splits come from :func:`uehead.datasets.load_dataset` (which validates the files). Token ids are
produced once per split (truncated, unpadded); batches are padded on the RIGHT to the longest row
of the batch, so the last real token of row i sits at ``attention_mask[i].sum() - 1``.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


def stratified_subsample(labels: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` rows drawn per class in proportion to class counts.

    Quotas are ``floor(n * n_c / N)`` per class, the remaining rows going to the classes with the
    largest fractional parts (ties to the smaller label id); rows of a class are drawn with one
    ``numpy.random.RandomState(seed)`` in ascending class order. ``n`` None or >= N keeps all rows.
    (Dataset files are often sorted by label, so "the first n rows" would be one class.)
    """
    labels = np.asarray(labels)
    total = len(labels)
    if n is None or n >= total:
        return np.arange(total)
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / total
    quota = np.floor(exact).astype(int)
    order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - quota[i]), classes[i]))
    for i in order[: n - quota.sum()]:
        quota[i] += 1
    rng = np.random.RandomState(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


@dataclass(frozen=True)
class Encoded:
    """Token ids of one split (lists of ints, truncated, no padding) and their labels."""

    ids: list[list[int]]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


def encode(tokenizer, texts: list[str], labels: np.ndarray, max_length: int) -> Encoded:
    """Tokenise with the fast tokenizer (special tokens added, truncated to ``max_length``)."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                    return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    return Encoded([list(x) for x in ids], np.asarray(labels, dtype=np.int64))


def collate(ids: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest row: ``input_ids`` and ``attention_mask`` (int64)."""
    width = max(1, max(len(x) for x in ids))
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def training_batches(lengths: np.ndarray, batch_size: int, rng: np.random.RandomState,
                     group_by_length: bool = True) -> list[np.ndarray]:
    """One epoch of shuffled batches of row indices.

    With ``group_by_length``: shuffle, cut into mega-batches of 50 batches, sort each by length
    (longest first), cut into batches, and shuffle the batch order (the Hugging Face
    ``group_by_length`` recipe): every row is seen once per epoch, batches hold similar lengths.
    """
    perm = rng.permutation(len(lengths))
    if not group_by_length:
        return [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]
    mega = 50 * batch_size
    batches = []
    for start in range(0, len(perm), mega):
        chunk = perm[start:start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Batches of row indices in length order (for no-grad passes; callers scatter results back)."""
    order = np.argsort(lengths, kind="stable")
    for i in range(0, len(order), batch_size):
        yield order[i:i + batch_size]
