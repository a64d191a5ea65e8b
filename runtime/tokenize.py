"""Text -> token tensors with the bundle's ``tokenizer.json`` (``tokenizers`` only, no transformers).

Two steps, so the model can batch by length:

1. :meth:`TextTokenizer.encode` turns texts into unpadded token-id lists, special tokens included,
   truncated to ``max_length`` tokens on the manifest's ``truncation_side``.
2. :meth:`TextTokenizer.pad` pads a group of those lists on the right into int64 numpy arrays
   named after the backbone's inputs (``input_ids``, ``attention_mask``, ``token_type_ids``
   as zeros).

Huge texts: a text longer than ``max_chars = max_length * CHARS_PER_TOKEN`` characters is never
tokenised whole, so a text of many megabytes, whatever its shape, costs about as much as a few
windows of ``max_chars`` characters:

1. Runs of whitespace are collapsed to one space first, when the tokenizer makes no tokens of them
   (probed once when the tokenizer is built; a byte-level tokenizer makes tokens of spaces, and
   keeps them). Only as much of the text as the widest window needs is scanned.
2. The window of ``max_chars`` characters (the text's beginning for right-side truncation, its end
   for left-side) is tokenised. The result equals tokenising the whole text whenever the kept
   tokens lie in the half of the window away from the cut; while they do not, the window is
   doubled, at most :data:`MAX_WIDENINGS` times.

Hence the output is that of the whole text, except when the final window holds too few tokens: a
word longer than half the window straddling the cut (such a word is one unknown token for most
vocabularies either way), or more than ``max_chars * 2**MAX_WIDENINGS`` characters that make no
token (control characters) before the kept ones. Empty strings give the special tokens only.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from uehead.bundle import IncompatibleBundleError, TokenizerSpec

__all__ = ["TextTokenizer", "CHARS_PER_TOKEN", "MAX_WIDENINGS"]

#: Characters kept per allowed token before tokenising (see the module docstring).
CHARS_PER_TOKEN = 32
#: How many times the window of a huge text may be doubled (see the module docstring).
MAX_WIDENINGS = 3
_KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Unicode White_Space, which every pre-tokenizer splits on (str.isspace() also counts U+001C-U+001F,
# which BERT's normaliser deletes instead: collapsing those could join two words).
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_WHITESPACE_RUN = re.compile(f"[{_WHITESPACE}]{{2,}}")
_PROBE = "a" + "".join(chr(c) for c in (9, 10, 11, 12, 13, 32, 0x85, 0xA0, 0x1680, 0x2000, 0x2028, 0x3000)) * 2 + "b"


def _collapse_whitespace(text: str) -> str:
    return _WHITESPACE_RUN.sub(" ", text)


class TextTokenizer:
    """Tokeniser of a bundle: ``tokenizer.json`` + the manifest's :class:`TokenizerSpec`.

    Thread-safe: the underlying tokenizer is configured once here and only read afterwards.
    """

    def __init__(self, tokenizer_file: str | os.PathLike, spec: TokenizerSpec):
        path = Path(tokenizer_file)
        fix = "re-export the bundle with `uehead export`."
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise IncompatibleBundleError(f"cannot be read by `tokenizers` ({exc}).", path=path, fix=fix) from exc
        if spec.truncation_side not in ("right", "left"):
            raise IncompatibleBundleError(
                f"tokenizer.truncation_side is {spec.truncation_side!r}; expected 'right' or 'left'.",
                path=path.with_name("manifest.json"), fix=fix)
        unknown = [n for n in spec.model_input_names if n not in _KNOWN_INPUTS]
        if unknown or "input_ids" not in spec.model_input_names:
            raise IncompatibleBundleError(
                f"tokenizer.model_input_names {list(spec.model_input_names)} must include 'input_ids' and "
                f"only name {list(_KNOWN_INPUTS)}.", path=path.with_name("manifest.json"), fix=fix)
        n_special = tok.num_special_tokens_to_add(False)
        if spec.max_length < n_special:
            raise IncompatibleBundleError(
                f"tokenizer.max_length {spec.max_length} is smaller than the {n_special} special tokens "
                "the tokenizer adds.", path=path.with_name("manifest.json"), fix=fix)
        tok.no_padding()
        tok.no_truncation()
        # Are whitespace runs token-neutral (equal to one space)? Then huge texts may collapse them.
        self.collapse_whitespace = (tok.encode(_PROBE, add_special_tokens=False).ids
                                    == tok.encode(_collapse_whitespace(_PROBE), add_special_tokens=False).ids)
        tok.enable_truncation(spec.max_length, direction=spec.truncation_side)
        self._tok = tok
        self.spec = spec
        self.max_length = int(spec.max_length)
        self.pad_token_id = int(spec.pad_token_id)
        self.input_names = tuple(spec.model_input_names)
        self.max_chars = self.max_length * CHARS_PER_TOKEN

    # -- step 1 ---------------------------------------------------------------------------
    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text (special tokens included, at most ``max_length`` each), unpadded."""
        if not texts:
            return []
        out = [enc.ids for enc in self._encode_batch(texts)]
        left = self.spec.truncation_side == "left"
        for i, text in enumerate(texts):
            if len(text) > self.max_chars:  # rare: huge texts go the careful way
                out[i] = self._encode_huge(text, left)
        return out

    def _encode_batch(self, texts: list[str]):
        short = [t if len(t) <= self.max_chars else "" for t in texts]
        # encode_batch_fast (tokenizers >= 0.21) skips character offsets: ~30% faster.
        fast = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        return fast(short, add_special_tokens=True)

    def _encode_huge(self, text: str, left: bool) -> list[int]:
        if self.collapse_whitespace:
            text = self._collapsed(text, left)
        window = self.max_chars
        for _ in range(MAX_WIDENINGS + 1):
            piece = self._cut(text, window, left)
            enc = self._tok.encode(piece, add_special_tokens=True)
            if len(piece) == len(text) or self._safe(enc, len(piece), left):
                break
            window *= 2
        return enc.ids

    def _collapsed(self, text: str, left: bool) -> str:
        """The text's whitespace runs collapsed, at least as far as the widest window reaches (the
        collapse of a prefix is a prefix of the collapse; likewise for suffixes)."""
        need = self.max_chars << MAX_WIDENINGS
        size = 2 * need
        while True:
            part = self._cut(text, size, left)
            short = _collapse_whitespace(part)
            if len(short) >= need or len(part) == len(text):
                return short
            size *= 4  # mostly whitespace: scanning it is cheap, widen fast

    @staticmethod
    def _cut(text: str, n: int, left: bool) -> str:
        if len(text) <= n:
            return text
        return text[-n:] if left else text[:n]

    @staticmethod
    def _safe(enc, n_chars: int, left: bool) -> bool:
        """Were tokens dropped, and do the kept ones lie in the half of the window away from the cut?"""
        if not enc.overflowing:
            return False
        spans = [o for o, special in zip(enc.offsets, enc.special_tokens_mask) if not special]
        if not spans:
            return True
        half = n_chars // 2
        return spans[0][0] >= n_chars - half if left else spans[-1][1] <= half

    # -- step 2 ---------------------------------------------------------------------------
    def pad(self, ids: list[list[int]]) -> dict[str, np.ndarray]:
        """Pad token-id lists on the right into int64 arrays ``[len(ids), longest]`` per input name.

        The width is at least 1 when ``ids`` is not empty (a tokenizer without special tokens gives
        an empty list for ""; ONNX graphs do not take zero-length sequences).
        """
        n = len(ids)
        width = max((len(x) for x in ids), default=0)
        if n and not width:
            width = 1
        input_ids = np.full((n, width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        arrays = {"input_ids": input_ids, "attention_mask": mask,
                  "token_type_ids": np.zeros((n, width), dtype=np.int64)}
        return {name: arrays[name] for name in self.input_names}

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Encode and pad in one go (no length bucketing)."""
        return self.pad(self.encode(texts))
