"""Token classification on a loaded bundle: words -> windows -> backbone -> first sub-tokens -> head.

    model = runtime.load("ner-bundle/")
    [p] = model.predict_tokens([["EU", "rejects", "German", "call"]])
    p.tags, p.uncertainty, p.sentence_uncertainty, p.entities
    [e] = model.predict_entities(["Angela Merkel met Emmanuel Macron in Paris."])
    e.entities   # [Entity(text='Angela Merkel', label='PER', start=0, end=13, uncertainty=...), ...]

The backbone graph returns every position's features [batch, sequence, H]; the features of each
word's first sub-token are gathered here, in numpy, and the head graph runs on blocks of up to
:data:`~uehead.runtime.model.BLOCK_ROWS` words. Gathering outside the graphs keeps head.onnx the
same [N, H] -> [N, C] graph as for sequence classification (one fused Gemm, the same scores.onnx,
the same overhead benchmark) and lets words of windows of any length share one head call.

Windows, words that make no token and the alignment rule: :mod:`uehead.token_task` and
:mod:`uehead.runtime.word_tokenize`. Every score is **higher = more uncertain**. Torch-free.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from uehead.bio import BioTags
from uehead.bundle import IncompatibleBundleError
from uehead.runtime.inputs import as_text_list, check_batch_size, lone_surrogate, reject_unordered, surrogate_message
from uehead.runtime.model import BLOCK_ROWS
from uehead.runtime.predictions import Predictions
from uehead.runtime.token_predictions import EntityPrediction, TokenPrediction
from uehead.runtime.word_tokenize import WordWindows
from uehead.token_task import TOKEN_CLASSIFICATION, require_task

__all__ = ["predict_tokens", "predict_entities", "check_sentences", "word_outputs", "sentence_predictions",
           "sentence_head_outputs", "golden_predictions"]

_FIX = "re-export the bundle with `uehead export`."


def check_sentences(words, offset: int = 0) -> list[list[str]]:
    """``words`` (an ordered iterable of sentences, each an ordered iterable of str) as lists.

    Raises TypeError (a sentence given as a str, an item that is not a str) or ValueError (a word
    holding a lone surrogate), naming ``words[i][j]``.
    """
    if isinstance(words, str):
        raise TypeError("words must be a list of sentences, each a list of str; got one str (for raw text "
                        "call predict_entities([text]); for one sentence pass [text.split()]).")
    reject_unordered(words)
    out = []
    for i, sentence in enumerate(words):
        if isinstance(sentence, str):
            raise TypeError(f"words[{offset + i}] is a str; each sentence must be a list of words "
                            f"(wrap one sentence as [words], or split it: {sentence[:30]!r:.40}.split()).")
        reject_unordered(sentence)
        items = list(sentence)
        for j, w in enumerate(items):
            if not isinstance(w, str):
                raise TypeError(f"words[{offset + i}][{j}] is {type(w).__name__} ({w!r:.60}), expected str.")
            at = lone_surrogate(w)
            if at is not None:
                raise ValueError(f"words[{offset + i}][{j}] {surrogate_message(w, at)}.")
        out.append(items)
    return out


def _head_names(model) -> list[str]:
    head = model.manifest.head
    return [head.task_logits_name, *(h.output_name for h in head.heads)]


def word_outputs(model, windows: WordWindows, batch_size: int, keep_z: bool) -> tuple[np.ndarray, dict, np.ndarray]:
    """Head-graph outputs of the scored words of ``windows``, in word order: (task logits [n, C],
    kind -> head logits [n, C], z [n, H] or None). Windows run in length order, ``batch_size`` at a time."""
    m = model.manifest
    h, names = m.backbone.feature_size, _head_names(model)
    scored = np.flatnonzero(windows.scored)
    slot = np.full(windows.n_words, -1, np.int64)
    slot[scored] = np.arange(len(scored))
    z = np.empty((len(scored), h), np.float32)
    words = windows.window_words()
    lengths = np.fromiter((len(x) for x in windows.ids), np.int64, len(windows.ids))
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        feeds = model.word_tokenizer.pad([windows.ids[i] for i in batch])
        hidden = model.backbone_session.run([m.backbone.output_name], feeds)[0]
        if hidden.ndim != 3 or hidden.shape[0] != len(batch) or hidden.shape[2] != h:
            raise IncompatibleBundleError(
                f"output {m.backbone.output_name!r} has shape {hidden.shape}, expected ({len(batch)}, "
                f"{feeds['input_ids'].shape[1]}, {h}) (per-token features).", path=model.path / m.backbone.file,
                fix=_FIX)
        rows = np.concatenate([np.full(len(words[w]), r, np.int64) for r, w in enumerate(batch)])
        which = np.concatenate([words[w] for w in batch])
        z[slot[which]] = hidden[rows, windows.word_position[which]]
    outs = [np.empty((len(scored), m.head.num_classes), np.float32) for _ in names]
    for start in range(0, len(scored), BLOCK_ROWS):
        block = model.head_session.run(names, {m.head.input_name: z[start:start + BLOCK_ROWS]})
        for arr, out in zip(outs, block):
            arr[start:start + BLOCK_ROWS] = out
    return outs[0], dict(zip([x.kind for x in m.head.heads], outs[1:])), z if keep_z else None


def _per_word(model, scheme: BioTags, preds: Predictions, windows: WordWindows) -> dict[str, np.ndarray]:
    """Flat arrays over every word: the scored words' own values, "O" / 0 for the others."""
    n, scored = windows.n_words, windows.scored
    tag_ids = np.full(n, scheme.outside_id, np.int64)
    tag_ids[scored] = preds.label_ids
    probs = np.zeros((n, model.num_classes), np.float32)
    probs[~scored, scheme.outside_id] = 1.0
    probs[scored] = preds.probs
    out = {"tag_ids": tag_ids, "probs": probs}
    for name, values in preds.scores.items():
        full = np.zeros(n, np.float32)
        full[scored] = values
        out[name] = full
    return out


def predict_tokens(model, words, *, batch_size: int = 32, distances: bool = False) -> list[TokenPrediction]:
    """Tags, probabilities and every score per word, one :class:`TokenPrediction` per sentence.

    Args:
        words: a list of sentences, each a list of str (an empty sentence, empty-string words,
            words with inner spaces and sentences of any length are fine: see :mod:`uehead.token_task`).
        batch_size: windows per backbone call (sorted by length; the output keeps the input order).
        distances: also compute "md" and "rmd" per word (when the bundle has baselines).
    Raises:
        TaskMismatchError: the bundle is for sequence classification (use ``predict``).
        TypeError / ValueError: a malformed sentence or word (the message names ``words[i][j]``).
    """
    require_task(model.manifest, TOKEN_CLASSIFICATION, "predict_tokens(words)", model.path)
    check_batch_size(batch_size)
    sentences = check_sentences(words)
    windows = model.word_tokenizer.encode_words(sentences)
    keep_z = distances and model.baselines is not None
    task, heads, z = word_outputs(model, windows, batch_size, keep_z)
    preds = model.score_outputs(task, heads, z, distances=keep_z)
    scheme = BioTags(model.labels)
    flat = _per_word(model, scheme, preds, windows)
    names = np.asarray(model.labels, dtype=object)
    kind = model.uncertainty_kind
    n_windows = np.bincount(windows.window_sentence, minlength=len(sentences))
    out, start = [], 0
    for i, sentence in enumerate(sentences):
        cut = slice(start, start + len(sentence))
        start += len(sentence)
        ids = flat["tag_ids"][cut]
        scores = {k: flat[k][cut] for k in preds.scores}
        out.append(TokenPrediction(words=sentence, tags=names[ids].tolist(), tag_ids=ids, probs=flat["probs"][cut],
                                   uncertainty=scores[kind], uncertainty_kind=kind,
                                   scores=scores, scored=windows.scored[cut], windows=int(n_windows[i]),
                                   scheme=scheme))
    return out


def predict_entities(model, texts: str | Iterable[str], *, batch_size: int = 32,
                     distances: bool = False) -> list[EntityPrediction]:
    """Entities of raw strings, one :class:`EntityPrediction` per text.

    Each text is split into words with character offsets by the bundle tokenizer's normaliser and
    pre-tokenizer (:meth:`~uehead.runtime.word_tokenize.WordTokenizer.split_words`), the words are
    tagged by :func:`predict_tokens`, and the tags are BIO-decoded into entities
    ``{text, label, start, end, uncertainty}`` (an entity's uncertainty is the max over its words).
    """
    require_task(model.manifest, TOKEN_CLASSIFICATION, "predict_entities(texts)", model.path)
    items = as_text_list(texts)
    split = [model.word_tokenizer.split_words(t) for t in items]
    tokens = predict_tokens(model, [[w for w, _, _ in s] for s in split], batch_size=batch_size, distances=distances)
    out = []
    for text, words, pred in zip(items, split, tokens):
        offsets = np.asarray([(a, b) for _, a, b in words], np.int64).reshape(-1, 2)
        out.append(EntityPrediction(text, pred.entities_at(offsets[:, 0], offsets[:, 1], text), pred, offsets))
    return out


def sentence_predictions(model, sentences: list[list[str]], *, distances: bool = False) -> Predictions:
    """:class:`Predictions` of every word that makes a token, word after word, each sentence run
    alone (all its windows in one call): what golden.json of a token bundle records."""
    parts = []
    for sentence in check_sentences(sentences):
        windows = model.word_tokenizer.encode_words([sentence])
        if not windows.scored.any():
            continue
        keep_z = distances and model.baselines is not None
        task, heads, z = word_outputs(model, windows, max(1, len(windows.ids)), keep_z)
        parts.append(model.score_outputs(task, heads, z, distances=keep_z))
    if not parts:
        empty = {h.kind: np.zeros((0, model.num_classes), np.float32) for h in model.manifest.head.heads}
        return model.score_outputs(np.zeros((0, model.num_classes), np.float32), empty)
    return Predictions.concat(parts)


def sentence_head_outputs(model, sentences: list[list[str]]) -> dict[str, np.ndarray]:
    """head.onnx's outputs (name -> [n, C]) for the words of ``sentences`` that make a token."""
    windows = model.word_tokenizer.encode_words(check_sentences(sentences))
    task, heads, _ = word_outputs(model, windows, 32, False)
    by_kind = {h.kind: h.output_name for h in model.manifest.head.heads}
    return {model.manifest.head.task_logits_name: task, **{by_kind[k]: v for k, v in heads.items()}}


def golden_predictions(model, golden: dict, *, distances: bool = False) -> Predictions:
    """The runtime's :class:`Predictions` of golden.json's rows (:mod:`uehead.golden`): each text
    alone, or for a token-classification bundle the words of each sentence, one sentence per call."""
    if model.manifest.task == TOKEN_CLASSIFICATION:
        return sentence_predictions(model, golden.get("sentences") or [], distances=distances)
    return model.predict(golden["texts"], batch_size=1, distances=distances)
