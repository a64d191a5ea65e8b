"""Sentences of words -> windows of token ids, with the position of each word's first sub-token.

The tokenizer of a token-classification bundle (``tokenizers`` only, no transformers); training
uses this same class on the checkpoint's tokenizer, so training and serving align words alike.

1. Each sentence is tokenised as pre-split words (``is_pretokenized``, no special tokens). A word
   longer than ``max_length * CHARS_PER_TOKEN`` characters is cut to that many first (its tag comes
   from its first sub-token), and a word keeps at most half a window of sub-tokens, so no single
   word can crowd out its neighbours' context. A word with inner spaces is one word: all its
   pieces belong to it, its first piece carries its tag. A word that makes no token (empty,
   whitespace, characters the normaliser deletes) is not scored (:data:`UNSCORED`).
2. The sub-tokens of a sentence fit in one window of ``max_length`` tokens (special tokens
   included) in the common case. A longer sentence is cut into windows of that size, consecutive
   windows sharing ``window_overlap`` sub-tokens, and each word is predicted in the window where its
   first sub-token is farthest from a window edge (ties: the earlier window). Nothing is dropped.
3. :meth:`WordTokenizer.pad` pads windows like :class:`~uehead.runtime.tokenize.TextTokenizer`
   (it is one), so the backbone sees the tensors it was exported with.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from uehead.bundle import TokenizerSpec
from uehead.runtime.tokenize import CHARS_PER_TOKEN, TextTokenizer

__all__ = ["WordTokenizer", "WordWindows", "UNSCORED", "default_window_overlap"]

#: ``WordWindows.word_window`` of a word that made no token.
UNSCORED = -1


def default_window_overlap(max_length: int, n_special: int) -> int:
    """Sub-tokens shared by consecutive windows: a quarter of a window's content, so every word of a
    long sentence keeps at least an eighth of a window of context on each side."""
    return max(0, (int(max_length) - int(n_special)) // 4)


@dataclass(frozen=True, eq=False)
class WordWindows:
    """The windows of a batch of sentences and where each word is read.

    Words are numbered sentence after sentence (``words_per_sentence`` gives the cut).

    Attributes:
        ids: token ids of each window, special tokens included (at most ``max_length`` each).
        window_sentence: int64 [n_windows], the sentence each window belongs to.
        word_window: int64 [n_words], the window a word is predicted in (:data:`UNSCORED` if none).
        word_position: int64 [n_words], the index of its first sub-token in that window (0 if unscored).
        words_per_sentence: int64 [n_sentences].
    """

    ids: list[list[int]]
    window_sentence: np.ndarray
    word_window: np.ndarray
    word_position: np.ndarray
    words_per_sentence: np.ndarray

    @property
    def scored(self) -> np.ndarray:
        """bool [n_words]: the word made at least one token (it has a prediction of its own)."""
        return self.word_window != UNSCORED

    @property
    def n_words(self) -> int:
        return int(self.word_window.shape[0])

    def window_words(self) -> list[np.ndarray]:
        """For each window, the indices of the words predicted in it, in word order."""
        scored = np.flatnonzero(self.scored)
        owner = self.word_window[scored]
        order = np.argsort(owner, kind="stable")
        cuts = np.searchsorted(owner[order], np.arange(len(self.ids) + 1))
        return [scored[order[cuts[w]:cuts[w + 1]]] for w in range(len(self.ids))]


class WordTokenizer(TextTokenizer):
    """A bundle's tokenizer for pre-split words (see the module docstring). Thread-safe.

    ``window_overlap`` None: :func:`default_window_overlap`.
    """

    def __init__(self, tokenizer_file: str | os.PathLike, spec: TokenizerSpec, window_overlap: int | None = None):
        super().__init__(tokenizer_file, spec)
        tok = Tokenizer.from_file(str(tokenizer_file))
        tok.no_padding()
        tok.no_truncation()
        self._words_tok = tok
        probe = tok.encode(["a"], is_pretokenized=True, add_special_tokens=True)
        content = [i for i, special in enumerate(probe.special_tokens_mask) if not special]
        self._prefix = probe.ids[:content[0]] if content else []
        self._suffix = probe.ids[content[-1] + 1:] if content else []
        self.capacity = self.max_length - len(self._prefix) - len(self._suffix)
        if self.capacity < 1:
            raise ValueError(f"max_length {self.max_length} leaves no room for words next to "
                             f"{len(self._prefix) + len(self._suffix)} special tokens")
        overlap = default_window_overlap(self.max_length, len(self._prefix) + len(self._suffix)) \
            if window_overlap is None else int(window_overlap)
        if not 0 <= overlap < self.capacity:
            raise ValueError(f"window_overlap={overlap} must lie in [0, {self.capacity})")
        self.window_overlap = overlap
        self.max_word_tokens = max(1, self.capacity // 2)
        self.max_word_chars = self.max_length * CHARS_PER_TOKEN

    def encode_words(self, sentences: list[list[str]]) -> WordWindows:
        """Windows and word positions of ``sentences`` (lists of str; checked by the caller)."""
        counts = np.fromiter((len(s) for s in sentences), np.int64, len(sentences))
        n = int(counts.sum())
        word_window = np.full(n, UNSCORED, np.int64)
        word_position = np.zeros(n, np.int64)
        ids: list[list[int]] = []
        window_sentence: list[int] = []
        nonempty = [i for i, s in enumerate(sentences) if s]
        encodings = self._words_tok.encode_batch(
            [[w[:self.max_word_chars] for w in sentences[i]] for i in nonempty], is_pretokenized=True,
            add_special_tokens=False) if nonempty else []
        starts = np.concatenate([[0], np.cumsum(counts)])
        for i, enc in zip(nonempty, encodings):
            tokens, first = self._capped(enc.ids, enc.word_ids, len(sentences[i]))
            windows = self._windows(len(tokens))
            owner, position = self._owners(first, windows)
            base = len(ids)
            for a, b in windows:
                ids.append(self._prefix + tokens[a:b] + self._suffix)
                window_sentence.append(i)
            seen = first >= 0
            word_window[starts[i]:starts[i + 1]][seen] = base + owner[seen]
            word_position[starts[i]:starts[i + 1]][seen] = position[seen]
        return WordWindows(ids, np.asarray(window_sentence, np.int64), word_window, word_position, counts)

    def _capped(self, token_ids: list[int], word_ids: list, n_words: int) -> tuple[list[int], np.ndarray]:
        """(the sentence's sub-tokens, each word keeping at most ``max_word_tokens``; the index of
        each word's first sub-token among them, -1 for a word without tokens)."""
        first = np.full(n_words, -1, np.int64)
        kept: list[int] = []
        run_word, run = None, 0
        for tid, wid in zip(token_ids, word_ids):
            if wid is None:
                continue
            if wid != run_word:
                run_word, run = wid, 0
            if run >= self.max_word_tokens:
                continue
            if run == 0 and first[wid] < 0:
                first[wid] = len(kept)
            kept.append(tid)
            run += 1
        return kept, first

    def _windows(self, n_tokens: int) -> list[tuple[int, int]]:
        """[start, end) of each window over ``n_tokens`` content sub-tokens (one empty window for 0)."""
        size = self.capacity
        if n_tokens <= size:
            return [(0, n_tokens)]
        step = size - self.window_overlap
        starts = list(range(0, n_tokens - size + 1, step))
        if starts[-1] + size < n_tokens:
            starts.append(n_tokens - size)
        return [(s, s + size) for s in starts]

    def _owners(self, first: np.ndarray, windows: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """(window of each word, position of its first sub-token there incl. the prefix)."""
        if len(windows) == 1:
            return np.zeros_like(first), first + len(self._prefix)
        a = np.asarray([w[0] for w in windows], np.int64)[None, :]
        b = np.asarray([w[1] for w in windows], np.int64)[None, :]
        t = first[:, None]
        margin = np.where((t >= a) & (t < b), np.minimum(t - a, b - 1 - t), -1)
        owner = margin.argmax(axis=1)  # first maximum: ties go to the earlier window
        return owner, first - a[0, owner] + len(self._prefix)

    def split_words(self, text: str) -> list[tuple[str, int, int]]:
        """Words of a raw string with character offsets ``(word, start, end)``, as the tokenizer's
        normaliser and pre-tokenizer split it (whitespace trimmed; words that make no token dropped)."""
        enc = self._words_tok.encode(text, add_special_tokens=False)
        spans: dict[int, list[int]] = {}
        for wid, (s, e) in zip(enc.word_ids, enc.offsets):
            if wid is None:
                continue
            span = spans.setdefault(wid, [s, e])
            span[0], span[1] = min(span[0], s), max(span[1], e)
        out = []
        for s, e in spans.values():
            piece = text[s:e]
            left = len(piece) - len(piece.lstrip())
            piece = piece.strip()
            if piece:
                out.append((piece, s + left, s + left + len(piece)))
        return out
