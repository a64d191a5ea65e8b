"""Token-classification (NER) datasets, torch-free (used by training, evaluation and benchmarks).

A dataset folder holds ``{train,valid,test}.jsonl`` (or ``.jsonl.gz``) files of
``{"tokens": [str, ...], "tags": [int, ...]}`` rows (one sentence each, as many tags as tokens)
plus ``labels.json``, the BIO tag names (index i = tag id i). Bad data fails early with
:class:`~uehead.errors.DataError` naming the file and line.

Tag sequences that break BIO (an ``I-X`` after ``O`` or after another type) are read as the
entity-level scorer reads them, i.e. as ``B-X`` (:meth:`uehead.bio.BioTags.repair`); each split
records how many tags were rewritten in ``bio_fixes``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uehead.bio import BioTags
from uehead.datasets import SPLITS, json_lines, read_label_names, split_file
from uehead.errors import DataError

__all__ = ["TokenSplit", "TokenDataset", "load_token_dataset", "is_token_dataset", "read_token_split"]


@dataclass(frozen=True)
class TokenSplit:
    """Sentences of one split: ``tokens[i]`` (list of str) and ``tags[i]`` (int64 [len(tokens[i])])."""

    tokens: list[list[str]]
    tags: list[np.ndarray]
    bio_fixes: int = 0

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def n_words(self) -> int:
        return int(sum(len(t) for t in self.tokens))

    def head(self, n: int | None) -> "TokenSplit":
        """The first n sentences (all when n is None)."""
        if n is None or n >= len(self.tokens):
            return self
        return TokenSplit(self.tokens[:n], self.tags[:n], self.bio_fixes)

    def take(self, index) -> "TokenSplit":
        """The sentences at ``index`` (in that order)."""
        index = [int(i) for i in index]
        return TokenSplit([self.tokens[i] for i in index], [self.tags[i] for i in index], self.bio_fixes)

    def flat_tags(self) -> np.ndarray:
        """Every word's tag id, sentence after sentence (int64 [n_words])."""
        return np.concatenate(self.tags) if self.tags else np.zeros(0, np.int64)


@dataclass(frozen=True)
class TokenDataset:
    name: str
    tag_names: tuple[str, ...]
    splits: dict[str, TokenSplit]

    @property
    def scheme(self) -> BioTags:
        return BioTags(self.tag_names)

    @property
    def num_tags(self) -> int:
        return len(self.tag_names)

    def __getitem__(self, split: str) -> TokenSplit:
        try:
            return self.splits[split]
        except KeyError:
            raise DataError(f"dataset {self.name!r} has no split {split!r}; it has {sorted(self.splits)}") from None


def is_token_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder whose first row of any split has ``tokens`` (not ``text``)."""
    root = Path(path)
    if not root.is_dir():
        return False
    for split in SPLITS:
        try:
            for _, row in json_lines(split_file(root, split)):
                return isinstance(row, dict) and "tokens" in row
        except DataError:
            continue
    return False


def load_token_dataset(path: str | os.PathLike, splits: tuple[str, ...] = SPLITS) -> TokenDataset:
    """Load a token-classification dataset folder (see the module docstring)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a dataset folder. A token-classification dataset folder holds "
                        "train/valid/test.jsonl[.gz] of {\"tokens\": [...], \"tags\": [...]} rows and labels.json.")
    if not is_token_dataset(root):
        raise DataError(f"{root}: its rows are not {{\"tokens\": [...], \"tags\": [...]}} sentences (a "
                        "sequence-classification dataset holds {\"text\", \"label\"} rows: train it without "
                        "--task token-classification).")
    names = read_label_names(root)
    try:
        scheme = BioTags(names)
    except ValueError as exc:
        raise DataError(f"{root / 'labels.json'}: not BIO tag names ({exc}); write 'O', 'B-X', 'I-X' names.") from None
    return TokenDataset(root.name, names, {s: read_token_split(split_file(root, s), scheme) for s in splits})


def read_token_split(path: Path, scheme: BioTags) -> TokenSplit:
    """Read one ``{"tokens", "tags"}`` JSONL file, checking every row and repairing BIO."""
    tokens: list[list[str]] = []
    tags: list[np.ndarray] = []
    fixes = 0
    try:
        for lineno, row in json_lines(path):
            words, ids = _check_row(row, path, lineno, len(scheme))
            fixed, n = scheme.repair(ids)
            tokens.append(words)
            tags.append(fixed)
            fixes += n
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}). Re-encode it as UTF-8.") from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read ({exc}).") from exc
    if not tokens:
        raise DataError(f"{path}: the file has no rows.")
    return TokenSplit(tokens, tags, fixes)


def _check_row(row, path: Path, lineno: int, num_tags: int) -> tuple[list[str], np.ndarray]:
    where = f"{path}:{lineno}"
    if not isinstance(row, dict) or "tokens" not in row or "tags" not in row:
        raise DataError(f"{where}: each row must be an object with 'tokens' and 'tags'.")
    words, ids = row["tokens"], row["tags"]
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise DataError(f"{where}: 'tokens' must be a list of strings.")
    if not isinstance(ids, list) or len(ids) != len(words):
        raise DataError(f"{where}: 'tags' must be a list with one tag id per token ({len(words)} tokens).")
    for t in ids:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < num_tags:
            raise DataError(f"{where}: tag {t!r} is out of range [0, {num_tags}) given labels.json.")
    return words, np.asarray(ids, dtype=np.int64)
