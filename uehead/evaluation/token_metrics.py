"""Token-classification (NER) metrics, torch-free: task F1 and how well each score flags errors.

* Task quality: entity-level precision / recall / F1 with ``seqeval`` (the standard scorer, in its
  default conlleval mode), micro-averaged over entity types, plus word accuracy.
* Word level: the error of a word is e = [predicted tag != gold tag]; every metric of
  :func:`uehead.evaluation.metrics.summarize` over **all words**, and ROC-AUC / PRR over the
  **words inside a gold or a predicted entity** (where the tagger's decisions are made; the
  many easy ``O`` words dominate the first view).
* Sentence level: a sentence is wrong when any of its words is; its score is the **max** over its
  words (the mean is reported too). An empty sentence has no error and score 0.

Every score is **higher = more uncertain**. Scores and tags are flat arrays over the words of all
sentences, sentence after sentence; ``words_per_sentence`` gives the cut.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from uehead.bio import BioTags
from uehead.evaluation import metrics

__all__ = ["split_sentences", "entity_f1", "entity_mask", "sentence_scores", "token_metrics", "WORD_METRICS",
           "AGGREGATIONS"]

#: Metrics of the words-inside-entities view.
WORD_METRICS = ("roc_auc", "prr")
#: How word scores become a sentence score; the first is the headline one.
AGGREGATIONS = ("max", "mean")


def split_sentences(flat, words_per_sentence) -> list[np.ndarray]:
    """The flat word array cut into one array per sentence."""
    flat = np.asarray(flat)
    cuts = np.cumsum(np.asarray(words_per_sentence, dtype=np.int64))[:-1]
    return np.split(flat, cuts) if len(words_per_sentence) else []


def entity_f1(gold: Sequence[np.ndarray], pred: Sequence[np.ndarray], tag_names: Sequence[str]) -> dict[str, float]:
    """seqeval's micro precision, recall and F1 (default mode) over sentences of tag ids."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    names = np.asarray(tag_names, dtype=object)
    y_true = [names[np.asarray(g, np.int64)].tolist() for g in gold]
    y_pred = [names[np.asarray(p, np.int64)].tolist() for p in pred]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no predicted samples": seqeval then returns 0, which we keep
        return {"precision": float(precision_score(y_true, y_pred)), "recall": float(recall_score(y_true, y_pred)),
                "f1": float(f1_score(y_true, y_pred))}


def entity_mask(gold: Sequence[np.ndarray], pred: Sequence[np.ndarray], scheme: BioTags) -> np.ndarray:
    """bool [n_words]: the word lies inside a gold entity or a predicted one."""
    parts = []
    for g, p in zip(gold, pred):
        inside = np.zeros(len(g), bool)
        for span in (*scheme.spans(g), *scheme.spans(p)):
            inside[span.start:span.end] = True
        parts.append(inside)
    return np.concatenate(parts) if parts else np.zeros(0, bool)


def sentence_scores(u, words_per_sentence, how: str = "max") -> np.ndarray:
    """One score per sentence from word scores: their max (or mean); 0 for an empty sentence."""
    if how not in AGGREGATIONS:
        raise ValueError(f"how={how!r}: choose from {AGGREGATIONS}")
    counts = np.asarray(words_per_sentence, dtype=np.int64)
    u = np.asarray(u, dtype=np.float64)
    out = np.zeros(len(counts), np.float64)
    full = counts > 0
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[full]
    if how == "max":
        out[full] = np.maximum.reduceat(u, starts) if len(starts) else out[full]
    else:
        out[full] = np.add.reduceat(u, starts) / counts[full] if len(starts) else out[full]
    return out


def _subset(scores: Mapping[str, np.ndarray], errors: np.ndarray, mask: np.ndarray) -> dict[str, dict[str, float]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
        return {name: {"roc_auc": metrics.roc_auc(u[mask], errors[mask]), "prr": metrics.prr(u[mask], errors[mask])}
                for name, u in scores.items()}


def token_metrics(gold_tags, pred_tags, scores: Mapping[str, np.ndarray], words_per_sentence,
                  tag_names: Sequence[str], *,
                  probability_scores=metrics.PROBABILITY_SCORES) -> dict[str, Any]:
    """Every token-classification metric (module docstring) from flat gold / predicted tag ids and
    flat word scores. Returns ``{"n_sentences", "n_words", "accuracy", "entity", "word_errors",
    "sentence_errors", "words_in_entities", "word", "word_in_entities", "sentence": {how: ...}}``;
    undefined metrics are NaN."""
    counts = np.asarray(words_per_sentence, dtype=np.int64)
    gold, pred = np.asarray(gold_tags, np.int64), np.asarray(pred_tags, np.int64)
    if gold.shape != pred.shape or gold.shape != (int(counts.sum()),):
        raise ValueError(f"gold {gold.shape} and predicted {pred.shape} tags must both hold one tag per word "
                         f"({int(counts.sum())} words)")
    u = {k: np.asarray(v, np.float64) for k, v in scores.items()}
    for name, v in u.items():
        if v.shape != gold.shape:
            raise ValueError(f"score {name!r} has shape {v.shape}; expected ({gold.size},), one value per word")
    errors = (gold != pred).astype(np.int8)
    gold_s, pred_s = split_sentences(gold, counts), split_sentences(pred, counts)
    inside = entity_mask(gold_s, pred_s, BioTags(tag_names))
    sent_err = (sentence_scores(errors, counts, "max") > 0).astype(np.int8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
        sentence = {how: metrics.summarize({k: sentence_scores(v, counts, how) for k, v in u.items()}, sent_err, ())
                    for how in AGGREGATIONS}
        word = metrics.summarize(u, errors, probability_scores)
    return {
        "n_sentences": int(len(counts)), "n_words": int(gold.size),
        "accuracy": float((gold == pred).mean()) if gold.size else float("nan"),
        "entity": entity_f1(gold_s, pred_s, tag_names),
        "word_errors": int(errors.sum()), "sentence_errors": int(sent_err.sum()),
        "words_in_entities": int(inside.sum()),
        "word": word,
        "word_in_entities": _subset(u, errors, inside),
        "sentence": sentence,
    }
