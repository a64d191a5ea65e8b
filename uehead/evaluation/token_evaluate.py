"""``uehead evaluate`` on a token-classification (NER) bundle (torch-free).

Runs the bundle's :meth:`~uehead.runtime.model.Model.predict_tokens` on one split of a
``{"tokens", "tags"}`` dataset, then :func:`uehead.evaluation.token_metrics.token_metrics`: entity
F1 (seqeval), word-level metrics of every score over all words and over words inside gold or
predicted entities, sentence-level metrics with max (and mean) aggregation. Prints the tables,
writes the JSON and, next to it, a word-level reliability diagram and risk-coverage plot (as
:mod:`uehead.evaluation.evaluate` does per text). Every score is **higher = more uncertain**.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from uehead.errors import DataError
from uehead.evaluation import metrics
from uehead.evaluation.token_metrics import token_metrics
from uehead.jsonio import write_json_atomic
from uehead.token_datasets import load_token_dataset

__all__ = ["evaluate_token_bundle"]


def _predict(model, sentences: list[list[str]], batch_size: int):
    """(flat predicted tag ids, name -> flat word scores, seconds)."""
    t0 = time.perf_counter()
    preds = model.predict_tokens(sentences, batch_size=batch_size, distances=True)
    seconds = time.perf_counter() - t0
    tags = np.concatenate([p.tag_ids for p in preds]) if preds else np.zeros(0, np.int64)
    names = list(preds[0].scores) if preds else []
    scores = {k: np.concatenate([p.scores[k] for p in preds]).astype(np.float64) for k in names}
    return tags, scores, seconds


def evaluate_token_bundle(model, data: str | os.PathLike, *, split: str = "test",
                          json_out: str | os.PathLike | None = None, plots: bool = True, max_rows: int | None = None,
                          batch_size: int = 32, probability_scores=metrics.PROBABILITY_SCORES,
                          verbose: bool = True, bundle: str | None = None) -> dict[str, Any]:
    """Evaluate every score of a loaded token-classification ``model`` on ``data[split]`` (a
    ``{"tokens", "tags"}`` dataset folder with the bundle's tag names). ``max_rows`` caps the
    sentences. Returns the record written as JSON (see :func:`token_metrics` for the metric keys,
    plus ``bundle, data, split, task, default_score, directions, plots, seconds``)."""
    ds = load_token_dataset(data, splits=(split,))
    if tuple(ds.tag_names) != tuple(model.labels):
        raise DataError(f"{data}: tags {list(ds.tag_names)} differ from the bundle's {list(model.labels)}; "
                        "evaluate a bundle on data with the tag set it was trained on.")
    rows = ds[split].head(max_rows)
    pred, scores, seconds = _predict(model, rows.tokens, batch_size)
    counts = np.asarray([len(t) for t in rows.tokens], np.int64)
    gold = rows.flat_tags()
    record: dict[str, Any] = {
        "bundle": bundle or str(getattr(model, "path", "")), "data": f"{ds.name}:{split}", "split": split,
        "task": "token-classification", "max_rows": max_rows,
        **token_metrics(gold, pred, scores, counts, ds.tag_names, probability_scores=probability_scores),
        "default_score": getattr(model, "uncertainty_kind", None), "directions": dict(metrics.DIRECTIONS),
        "bio_fixes": rows.bio_fixes, "seconds": {"predict": round(seconds, 4)}, "plots": {},
    }
    if plots and json_out is not None:
        record["plots"] = _draw(record, scores, (gold != pred).astype(np.int8), probability_scores, json_out)
    if json_out is not None:
        write_json_atomic(json_out, record)
    if verbose:
        _print(record, json_out)
    return record


def _draw(record, scores, errors, probability_scores, json_out) -> dict[str, str]:
    from uehead.evaluation import plots as plotting
    from uehead.evaluation.evaluate import plot_paths

    paths = plot_paths(json_out)
    title = f"{Path(record['bundle']).name} on {record['data']}, per word (n={record['n_words']})"
    out = {}
    prob = {k: v for k, v in scores.items() if k in set(probability_scores)}
    if prob:
        out["reliability"] = str(plotting.reliability_diagram(prob, errors, paths["reliability"], title=title))
    out["risk_coverage"] = str(plotting.risk_coverage_plot(scores, errors, paths["risk_coverage"], title=title))
    return out


def _print(record: dict[str, Any], json_out) -> None:
    e = record["entity"]
    print(f"{record['bundle']} on {record['data']}: {record['n_sentences']} sentences, {record['n_words']} words; "
          f"entity F1 {e['f1']:.4f} (P {e['precision']:.4f}, R {e['recall']:.4f}), word accuracy "
          f"{record['accuracy']:.4f}, {record['word_errors']} word errors, {record['sentence_errors']} sentences "
          "with an error")
    print("per word, all words:")
    print(metrics.format_table(record["word"], markdown=False))
    print(f"per word, the {record['words_in_entities']} words inside gold or predicted entities:")
    print(metrics.format_table(record["word_in_entities"], ("roc_auc", "prr"), markdown=False))
    print("per sentence (max over words):")
    print(metrics.format_table(record["sentence"]["max"], ("roc_auc", "prr", "aurc"), markdown=False))
    if json_out is not None:
        print(f"wrote {json_out}" + "".join(f", {p}" for p in record["plots"].values()))
    sys.stdout.flush()
