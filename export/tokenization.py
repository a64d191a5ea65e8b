"""The bundle's tokenizer.json, and token tensors made exactly the way the runtime makes them.

The runtime tokenises with the ``tokenizers`` library from tokenizer.json, truncating on the right
to ``max_length`` and padding on the right with ``pad_token_id`` (both taken from the manifest,
so they are disabled inside the file). :func:`encode` does the same here; :func:`hf_encode` is the
checkpoint's Hugging Face tokenizer with the same settings, and :func:`check_tokenizer_agreement`
fails the export when the two disagree on any text (BOS/EOS handling, normalisation, truncation).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

from uehead.export.errors import ExportValidationError


def bundle_tokenizer(hf_tokenizer) -> Tokenizer:
    """A copy of the fast tokenizer's backend with truncation and padding switched off."""
    tok = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()
    return tok


def write_tokenizer(hf_tokenizer, path: str | Path) -> Tokenizer:
    """Write tokenizer.json (no truncation/padding inside) and return the tokenizer written."""
    tok = bundle_tokenizer(hf_tokenizer)
    tok.save(str(path))
    return Tokenizer.from_file(str(path))


def encode(tok: Tokenizer, texts: Sequence[str], *, max_length: int, pad_token_id: int,
           input_names: Sequence[str], pad_to: int | None = None) -> dict[str, np.ndarray]:
    """Token tensors (int64 [batch, seq]) as the runtime builds them: right truncation to
    ``max_length``, right padding to the longest text (or to ``pad_to``)."""
    tok = Tokenizer.from_str(tok.to_str())  # settings below must not leak into the caller's object
    tok.enable_truncation(max_length=max_length, direction="right")
    pad_token = tok.id_to_token(pad_token_id) or ""
    tok.enable_padding(direction="right", pad_id=pad_token_id, pad_token=pad_token, length=pad_to)
    encs = tok.encode_batch(list(texts))
    fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
    return {name: np.array([getattr(e, fields[name]) for e in encs], dtype=np.int64).reshape(len(encs), -1)
            for name in input_names}


def hf_encode(hf_tokenizer, texts: Sequence[str], *, max_length: int, input_names: Sequence[str],
              pad_to: int | None = None) -> dict[str, np.ndarray]:
    """The checkpoint's Hugging Face tokenizer with the runtime's settings (right truncation/padding)."""
    saved = hf_tokenizer.padding_side, hf_tokenizer.truncation_side
    hf_tokenizer.padding_side = hf_tokenizer.truncation_side = "right"
    try:
        enc = hf_tokenizer(list(texts), truncation=True, max_length=max_length,
                           padding="max_length" if pad_to else "longest", return_tensors="np",
                           return_token_type_ids="token_type_ids" in input_names)
    finally:
        hf_tokenizer.padding_side, hf_tokenizer.truncation_side = saved
    if pad_to and enc["input_ids"].shape[1] != pad_to:
        raise ValueError(f"pad_to={pad_to} must equal max_length={max_length} for the HF tokenizer")
    return {name: np.asarray(enc[name], dtype=np.int64) for name in input_names}


def check_tokenizer_agreement(hf_tokenizer, tok: Tokenizer, texts: Sequence[str], *, max_length: int,
                              pad_token_id: int, input_names: Sequence[str], where: str | Path = "tokenizer.json"
                              ) -> dict[str, int]:
    """Raise :class:`ExportValidationError` unless tokenizer.json and the HF tokenizer give the same
    tensors for every text; return {"texts": n, "max_tokens": longest}."""
    ours = encode(tok, texts, max_length=max_length, pad_token_id=pad_token_id, input_names=input_names)
    theirs = hf_encode(hf_tokenizer, texts, max_length=max_length, input_names=input_names)
    for name in input_names:
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
