"""Validation of a token-classification export, per word: PyTorch and the runtime's code on the
same windows.

* :class:`TokenTorchReference` - the merged ``*ForTokenClassification`` model's own logits and its
  base model's hidden states, read at each word's first sub-token, plus the head weights applied
  with ``F.linear``; it shares no code with the graph wrappers.
* :class:`TokenOnnxPipeline` - backbone.onnx -> the same positions gathered in numpy -> head.onnx,
  in sessions built by the runtime.
* :func:`token_cases` - windows from the runtime's :class:`~uehead.runtime.word_tokenize.WordTokenizer`
  (batch 1 and 37 sentences, a one-word sentence, sentences long enough for several windows); each
  case is the padded tensors plus ``word_rows`` / ``word_cols``, the first sub-token of every word.
  :func:`uehead.export.validate.validate_graphs` compares the two per word (probabilities and
  every score within its tolerance).
* :func:`check_word_agreement` - the bundle's tokenizer.json splits words like the checkpoint's
  Hugging Face tokenizer (``is_split_into_words=True``).

Every score is **higher = more uncertain**.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from uehead.checkpoint import HeadWeights
from uehead.export.errors import ExportValidationError
from uehead.export.graphs import FEATURES, TASK_LOGITS, head_output_name
from uehead.export.validate import OnnxPipeline
from uehead.runtime.word_tokenize import WordTokenizer, WordWindows

WORD_ROWS, WORD_COLS = "word_rows", "word_cols"

#: Sentences used when no dataset is at hand (validation cases and the golden set). They include a
#: word with an inner space, an empty-string word, punctuation and non-Latin script.
SAMPLE_SENTENCES = (
    ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
    ["Peter", "Blackburn"],
    ["BRUSSELS", "1996-08-22"],
    ["Angela", "Merkel", "met", "Emmanuel", "Macron", "in", "New York", "on", "Tuesday", "."],
    ["@user", "lol", "going", "to", "see", "#StarWars", "tonight", "", "with", "Ana", "!!!"],
    ["café", "naïve", "Zürich", "東京", "Москва", "🙂"],
    ["ok"],
)


def long_sentence(sentences: Sequence[Sequence[str]], words: int = 300) -> list[str]:
    """A sentence of ``words`` words built from real sentences (several windows at any max_length)."""
    pool = [w for s in sentences for w in s if w.strip()] or ["word"]
    return [pool[i % len(pool)] for i in range(words)]


def case_of(tok: WordTokenizer, sentences: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
    """The padded windows of ``sentences`` and the (row, position) of each scored word's first sub-token."""
    windows = tok.encode_words([list(s) for s in sentences])
    return {**tok.pad(windows.ids), **word_index(windows)}


def word_index(windows: WordWindows) -> dict[str, np.ndarray]:
    scored = windows.scored
    return {WORD_ROWS: windows.word_window[scored], WORD_COLS: windows.word_position[scored]}


def token_cases(tok: WordTokenizer, sentences: Sequence[Sequence[str]]) -> dict[str, dict[str, np.ndarray]]:
    """Validation cases: batch 1 and 37 sentences at natural lengths, with long (multi-window)
    sentences, and a one-word sentence."""
    sentences = [list(s) for s in sentences if any(w.strip() for w in s)] or [list(s) for s in SAMPLE_SENTENCES]
    many = [sentences[i % len(sentences)] for i in range(37)]
    long = long_sentence(sentences)
    return {
        "batch1": case_of(tok, many[:1]),
        "batch37": case_of(tok, many),
        "batch1_windows": case_of(tok, [long]),
        "batch37_windows": case_of(tok, many[:36] + [long]),
        "batch1_one_word": case_of(tok, [[sentences[0][0]]]),
    }


class TokenTorchReference:
    """Plain transformers + head weights, per word: what the exported graphs must reproduce."""

    def __init__(self, model, heads: Mapping[str, HeadWeights]):
        self.model = model
        self.heads = dict(heads)

    def __call__(self, case: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch
        import torch.nn.functional as F

        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in case.items() if k not in (WORD_ROWS, WORD_COLS)}
        rows, cols = torch.from_numpy(case[WORD_ROWS]), torch.from_numpy(case[WORD_COLS])
        base = getattr(self.model, self.model.base_model_prefix)
        with torch.no_grad():
            task = self.model(**t).logits[rows, cols]
            z = base(**t).last_hidden_state[rows, cols]
            result = {FEATURES: z, TASK_LOGITS: task}
            for kind, head in self.heads.items():
                w = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in head.state_dict.items()}
                result[head_output_name(kind)] = F.linear(z, w["weight"], w.get("bias"))
        return {k: v.float().numpy() for k, v in result.items()}


class TokenOnnxPipeline(OnnxPipeline):
    """backbone.onnx -> first sub-token features (gathered in numpy, as the runtime does) -> head.onnx."""

    def __call__(self, case: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {n: np.ascontiguousarray(case[n], dtype=np.int64) for n in self.input_names}
        (hidden,) = self.backbone.run([FEATURES], feed)
        z = np.ascontiguousarray(hidden[case[WORD_ROWS], case[WORD_COLS]])
        outs = self.head.run(None, {FEATURES: z})
        return {FEATURES: z, **dict(zip(self.output_names, outs))}


def per_sentence(pipeline, tok: WordTokenizer, sentences: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
    """Outputs of each sentence run alone (its windows in one call), joined word after word: a
    reference that does not depend on batching (int8 quantises activations per batch)."""
    parts = [pipeline(case_of(tok, [s])) for s in sentences]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def check_word_agreement(hf_tokenizer, tok: WordTokenizer, sentences: Sequence[Sequence[str]], *,
                         where: str | Path) -> dict[str, int]:
    """Raise :class:`ExportValidationError` unless tokenizer.json and the Hugging Face tokenizer give
    the same token ids and first sub-tokens for every sentence that fits one window (and has no
    word cut to ``tok.max_word_tokens``)."""
    checked = 0
    for i, sentence in enumerate(sentences):
        windows = tok.encode_words([list(sentence)])
        if len(windows.ids) != 1 or not sentence:
            continue
        enc = hf_tokenizer(list(sentence), is_split_into_words=True, truncation=False)
        word_ids = [w for w in enc.word_ids() if w is not None]
        if word_ids and max(np.bincount(word_ids)) > tok.max_word_tokens:
            continue
        first = {}
        for pos, wid in enumerate(enc.word_ids()):
            if wid is not None:
                first.setdefault(wid, pos)
        ours = {int(w): int(p) for w, p in enumerate(windows.word_position) if windows.scored[w]}
        if list(enc["input_ids"]) != windows.ids[0] or first != ours:
            raise ExportValidationError(
                f"tokenizer.json splits sentence #{i} ({sentence[:8]!r}) differently from the checkpoint's Hugging "
                f"Face tokenizer: {windows.ids[0][:12]} vs {list(enc['input_ids'])[:12]}.", path=where,
                fix="save the checkpoint with a fast tokenizer whose backend matches its Python settings.")
        checked += 1
    return {"sentences": checked}


def hf_case(hf_tokenizer, sentences: Sequence[Sequence[str]], input_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The checkpoint's Hugging Face tokenizer on pre-split words (right padding), with each word's
    first sub-token: the PyTorch side of :func:`compare_runtime_to_pytorch_words`."""
    enc = hf_tokenizer([list(s) for s in sentences], is_split_into_words=True, padding="longest", truncation=False,
                       return_tensors="np", return_token_type_ids="token_type_ids" in input_names)
    rows, cols = [], []
    for r in range(len(sentences)):
        seen = set()
        for pos, wid in enumerate(enc.word_ids(r)):
            if wid is not None and wid not in seen:
                seen.add(wid)
                rows.append(r)
                cols.append(pos)
    return {**{n: np.asarray(enc[n], np.int64) for n in input_names}, WORD_ROWS: np.asarray(rows, np.int64),
            WORD_COLS: np.asarray(cols, np.int64)}


def compare_runtime_to_pytorch_words(checkpoint: str | Path, bundle: str | Path, sentences: Sequence[Sequence[str]],
                                     *, tolerance: float = 1e-4, batch_size: int = 32,
                                     raise_on_failure: bool = True) -> dict:
    """``uehead.runtime.load(bundle).predict_tokens`` against the PyTorch checkpoint (plain
    transformers, its own tokenizer with ``is_split_into_words``), per word: max abs diff of the
    probabilities and every score. Sentences that need several windows, or hold a word cut to
    ``max_word_tokens``, have no one-call PyTorch equivalent and are skipped (counted)."""
    from uehead import runtime
    from uehead.checkpoint import read_checkpoint
    from uehead.export.hf import load_model, load_tokenizer
    from uehead.export.validate import checked_names, max_abs_diffs, scores
    from uehead.scores import head_params

    ckpt, model = read_checkpoint(checkpoint), runtime.load(bundle)
    hf_tok, tok = load_tokenizer(ckpt), model.word_tokenizer
    heads = {h.kind: head_params(h.kind, h) for h in model.manifest.head.heads}
    ref = TokenTorchReference(load_model(ckpt), ckpt.heads)

    def fits(s) -> bool:
        w = tok.encode_words([list(s)])
        ids = [x for x in hf_tok(list(s), is_split_into_words=True).word_ids() if x is not None]
        return bool(s) and len(w.ids) == 1 and (not ids or max(np.bincount(ids)) <= tok.max_word_tokens)

    kept = [list(s) for s in sentences if fits(s)]
    parts = [scores(ref(hf_case(hf_tok, kept[i:i + batch_size], tok.input_names)), heads)
             for i in range(0, len(kept), batch_size)]
    expected = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    preds = model.predict_tokens(kept, batch_size=batch_size)
    got = {"probs": np.concatenate([p.probs[p.scored] for p in preds]) if preds else np.zeros((0, 1)),
           "label_ids": np.concatenate([p.tag_ids[p.scored] for p in preds]) if preds else np.zeros(0),
           **{k: np.concatenate([p.scores[k][p.scored] for p in preds]) for k in (preds[0].scores if preds else ())}}
    diffs = max_abs_diffs(expected, got) if parts else {}
    failed = sorted(k for k, v in diffs.items() if k in checked_names(heads) and not v <= tolerance)
    report = {"sentences": len(kept), "skipped": len(sentences) - len(kept), "words": int(len(got["label_ids"])),
              "tolerance": tolerance, "max_abs_diff": diffs, "failed": failed, "passed": not failed,
              "label_flips": int((expected["label_ids"] != got["label_ids"]).sum()) if parts else 0}
    if raise_on_failure and failed:
        raise ExportValidationError(f"the runtime differs from the PyTorch checkpoint per word beyond {tolerance:g} "
                                    f"on { {k: diffs[k] for k in failed} }.", path=bundle, report=report,
                                    fix="re-export the bundle from this checkpoint and check `uehead verify`.")
    return report
