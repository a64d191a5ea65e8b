"""Sentences of words -> token windows with word-level labels, for token-classification training.

The checkpoint's fast tokenizer is used through the runtime's
:class:`~uehead.runtime.word_tokenize.WordTokenizer` (on a copy of its ``tokenizer.json``), so
training aligns words exactly as a bundle will: the first sub-token of each word carries the
word's tag, the other positions (later sub-tokens, special tokens, padding) get
:data:`IGNORE_INDEX` and are left out of the loss; long sentences are cut into the same windows.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from uehead.bundle import TokenizerSpec
from uehead.runtime.word_tokenize import WordTokenizer, WordWindows
from uehead.token_datasets import TokenSplit

#: Label of the positions the loss ignores (PyTorch's cross-entropy default).
IGNORE_INDEX = -100


def word_tokenizer(hf_tokenizer, max_length: int, input_names=("input_ids", "attention_mask")) -> WordTokenizer:
    """The runtime's word tokenizer over the backend of ``hf_tokenizer`` (truncation/padding off)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()
    spec = TokenizerSpec(file="tokenizer.json", sha256="", max_length=int(max_length),
                         pad_token_id=int(hf_tokenizer.pad_token_id), model_input_names=tuple(input_names))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        tok.save(str(path))
        return WordTokenizer(path, spec)


def sentence_subsample(n: int, max_rows: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``max_rows`` of ``n`` sentences drawn with ``RandomState(seed)``; all when None."""
    if max_rows is None or max_rows >= n:
        return np.arange(n)
    return np.sort(np.random.RandomState(seed).permutation(n)[:max_rows])


@dataclass(frozen=True, eq=False)
class TokenEncoded:
    """One split as windows: token ids, where each word is read, and each word's gold tag.

    ``tags`` (int64 [n_words]) and ``windows`` number words sentence after sentence."""

    windows: WordWindows
    tags: np.ndarray

    def __len__(self) -> int:
        return len(self.windows.ids)

    @property
    def ids(self) -> list[list[int]]:
        return self.windows.ids

    @property
    def scored(self) -> np.ndarray:
        return self.windows.scored

    def window_words(self) -> list[np.ndarray]:
        """For each window, the (scored) word indices predicted in it, in word order."""
        return self.windows.window_words()

    def labels(self, rows: np.ndarray, width: int, words: list[np.ndarray]) -> torch.Tensor:
        """[len(rows), width] labels of the windows ``rows``: the tag at each word's first
        sub-token, :data:`IGNORE_INDEX` elsewhere."""
        out = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for r, w in enumerate(rows):
            idx = words[w]
            out[r, torch.as_tensor(self.windows.word_position[idx])] = torch.as_tensor(self.tags[idx])
        return out


def encode_split(tok: WordTokenizer, split: TokenSplit) -> TokenEncoded:
    """Windows of every sentence of ``split`` and the flat gold tags."""
    return TokenEncoded(tok.encode_words(split.tokens), split.flat_tags())
