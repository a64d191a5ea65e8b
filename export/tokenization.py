"""The bundle's tokenizer.json, read back through the runtime's own tokenizer.

The runtime tokenises with :class:`uehead.runtime.tokenize.TextTokenizer`: tokenizer.json (with
truncation and padding switched off inside the file) plus the manifest's
:class:`~uehead.bundle.TokenizerSpec` (right truncation to ``max_length``, right padding with
``pad_token_id``). :func:`write_tokenizer` writes the file and returns that very tokenizer, so
every token batch the export validates comes from the runtime's code. :func:`hf_encode` is the
checkpoint's Hugging Face tokenizer with the same settings, and :func:`check_tokenizer_agreement`
fails the export when the two disagree on any text (BOS/EOS handling, normalisation, truncation).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

from uehead.bundle import TOKENIZER_FILE, TokenizerSpec
from uehead.export.errors import ExportValidationError
from uehead.runtime.tokenize import TextTokenizer


def tokenizer_spec(*, max_length: int, pad_token_id: int, input_names: Sequence[str]) -> TokenizerSpec:
    """The manifest's tokenizer entry (its sha256 is filled when the manifest is written)."""
    return TokenizerSpec(file=TOKENIZER_FILE, sha256="", max_length=int(max_length), pad_token_id=int(pad_token_id),
                         truncation_side="right", model_input_names=tuple(input_names))


def bundle_tokenizer(hf_tokenizer) -> Tokenizer:
    """A copy of the fast tokenizer's backend with truncation and padding switched off."""
    tok = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()
    return tok


def write_tokenizer(hf_tokenizer, path: str | Path, spec: TokenizerSpec) -> TextTokenizer:
    """Write tokenizer.json (no truncation/padding inside) and return the runtime's tokenizer of it."""
    bundle_tokenizer(hf_tokenizer).save(str(path))
    return TextTokenizer(path, spec)


def hf_encode(hf_tokenizer, texts: Sequence[str], *, max_length: int, input_names: Sequence[str]
              ) -> dict[str, np.ndarray]:
    """The checkpoint's Hugging Face tokenizer with the runtime's settings (right truncation, right
    padding to the longest text)."""
    saved = hf_tokenizer.padding_side, hf_tokenizer.truncation_side
    hf_tokenizer.padding_side = hf_tokenizer.truncation_side = "right"
    try:
        enc = hf_tokenizer(list(texts), truncation=True, max_length=max_length, padding="longest",
                           return_tensors="np", return_token_type_ids="token_type_ids" in input_names)
    finally:
        hf_tokenizer.padding_side, hf_tokenizer.truncation_side = saved
    return {name: np.asarray(enc[name], dtype=np.int64) for name in input_names}


def check_tokenizer_agreement(hf_tokenizer, tok: TextTokenizer, texts: Sequence[str], *,
                              where: str | Path = TOKENIZER_FILE) -> dict[str, int]:
    """Raise :class:`ExportValidationError` unless the runtime's tokenizer and the HF tokenizer give
    the same tensors for every text; return {"texts": n, "max_tokens": longest}."""
    texts = list(texts)
    ours = tok(texts)
    theirs = hf_encode(hf_tokenizer, texts, max_length=tok.max_length, input_names=tok.input_names)
    for name in tok.input_names:
        a, b = ours[name], theirs[name]
        if a.shape != b.shape or not np.array_equal(a, b):
            rows = [i for i in range(min(len(a), len(b)))
                    if a.shape[1:] != b.shape[1:] or not np.array_equal(a[i], b[i])] or [0]
            i = rows[0]
            raise ExportValidationError(
                f"{name} from tokenizer.json differs from the checkpoint's Hugging Face tokenizer "
                f"(shapes {a.shape} vs {b.shape}; first differing text #{i}: {texts[i]!r}: "
                f"{a[i].tolist()[:12]} vs {b[i].tolist()[:12]}).", path=where,
                fix="save the checkpoint with a fast tokenizer whose backend matches its Python settings.")
    return {"texts": len(texts), "max_tokens": int(ours["input_ids"].shape[1])}
