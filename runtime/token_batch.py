"""Batch jobs on a token-classification bundle: the output columns and how rows become them.

``uehead predict NER-BUNDLE --input rows.jsonl --output out.jsonl`` runs the same job loop as for
sequence classification (:mod:`uehead.runtime.batch`: input order kept, error rows, atomic output,
``--resume``). What differs is the row and the columns:

* the input column is ``tokens`` when the input has one (its first row's keys for JSON Lines), else
  the text column. A value that is a list of str is one sentence's words (``predict_tokens``); a
  str is raw text, split into words with character offsets (``predict_entities``); anything else
  (missing, null, a list holding a non-str, a lone surrogate) makes an error row;
* after the id and the passed-through columns, :data:`TOKEN_COLUMNS`: ``words``, ``offsets`` (each
  word's ``[start, end)`` in the text; null for rows of words), ``tags``, ``uncertainty`` (the
  default score per word), ``sentence_uncertainty`` (its max over the words), ``entities`` (objects
  ``{text, label, start, end, uncertainty, word_start, word_end}``), then one list per score (``sr``,
  ``entropy``, each head kind, and ``md``, ``rmd`` with ``distances``), ``error`` last.

Every score is **higher = more uncertain**. Lists of lists are written as JSON in CSV cells.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from uehead.runtime.batch_formats import pyarrow_modules
from uehead.runtime.batch_schema import ERROR_COLUMN, ROW_ID_COLUMN, OutputColumns, select_columns, text_errors
from uehead.runtime.token_model import check_sentences
from uehead.scores import score_names
from uehead.token_task import TOKEN_CLASSIFICATION, is_token_task

__all__ = ["TOKEN_COLUMNS", "TOKENS_COLUMN", "TokenColumns", "token_columns_for_model", "words_column",
           "predict_token_columns"]

#: The per-row columns of a token-classification job, before the score columns.
TOKEN_COLUMNS = ("words", "offsets", "tags", "uncertainty", "sentence_uncertainty", "entities")
#: The input column read for rows of words when the input has it.
TOKENS_COLUMN = "tokens"


@dataclass(frozen=True)
class TokenColumns(OutputColumns):
    """The prediction columns of a token-classification job (``scores``: one list column each)."""

    @property
    def names(self) -> tuple[str, ...]:
        return (*TOKEN_COLUMNS, *self.scores, ERROR_COLUMN)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "task": TOKEN_CLASSIFICATION}

    def arrow_types(self) -> dict:
        """Arrow types of the columns that are not float64 (the Parquet output's schema)."""
        pa, _ = pyarrow_modules()
        f64, i64, s = pa.float64(), pa.int64(), pa.string()
        entity = pa.struct([("text", s), ("label", s), ("start", i64), ("end", i64), ("uncertainty", f64),
                            ("word_start", i64), ("word_end", i64)])
        return {"words": pa.list_(s), "offsets": pa.list_(pa.list_(i64)), "tags": pa.list_(s),
                "uncertainty": pa.list_(f64), "entities": pa.list_(entity),
                **{name: pa.list_(f64) for name in self.scores}}


def token_columns_for_model(model, *, scores: Sequence[str] | None = None, distances: bool = False,
                            risk=None, coverage=None) -> TokenColumns:
    """The columns of a job on a token-classification ``model``, chosen by
    :func:`~uehead.runtime.batch_schema.select_columns` (the same names and checks): every score it
    has by default, ``md`` / ``rmd`` with ``distances``. There are no per-word decisions, so
    ``risk`` / ``coverage`` raise as for a bundle without calibration."""
    kinds = tuple(h.kind for h in model.manifest.head.heads)
    plain = select_columns(kinds, model.baselines is not None, None, scores=scores, distances=distances, risk=risk,
                           coverage=coverage)
    entropy = scores is None or "entropy" in scores  # a base column of text jobs, a score list here
    chosen = tuple(s for s in score_names(kinds, True) if s in plain.scores or (s == "entropy" and entropy))
    return TokenColumns(chosen, distances=plain.distances)


def words_column(model, present: Sequence[str], text_column: str) -> str:
    """The input column a job on ``model`` reads: ``tokens`` for a token-classification bundle whose
    input has it, else ``text_column``."""
    return TOKENS_COLUMN if is_token_task(model.manifest) and TOKENS_COLUMN in present else text_column


def _row_errors(values: Sequence[Any], column: str) -> list[str | None]:
    """None for a usable row (a list of str, or a str), else why it has no prediction."""
    out = []
    for v, text_error in zip(values, text_errors(values, column)):
        if isinstance(v, (list, tuple)):
            try:
                check_sentences([v])
                out.append(None)
            except (TypeError, ValueError) as exc:
                out.append(f"words are not usable: column {column!r}: {str(exc).replace('words[0]', 'value')}")
        elif v is None:
            out.append(f"no words: column {column!r} is absent or null (a job reads one column, chosen on the "
                       f"input's first row: {TOKENS_COLUMN!r} when it has one, else the text column)")
        else:
            out.append(text_error)
    return out


def _row_values(pred, offsets, entities, columns: TokenColumns) -> dict[str, Any]:
    return {"words": list(pred.words), "offsets": offsets, "tags": list(pred.tags),
            "uncertainty": pred.uncertainty.astype(float).tolist(), "sentence_uncertainty": pred.sentence_uncertainty,
            "entities": [e.to_dict() for e in entities],
            **{name: pred.scores[name].astype(float).tolist() for name in columns.scores}}


def predict_token_columns(model, values: Sequence[Any], ids: Sequence[Any], *, id_name: str = ROW_ID_COLUMN,
                          text_column: str = TOKENS_COLUMN, batch_size: int = 32,
                          kept: dict[str, Sequence] | None = None, columns: TokenColumns | None = None,
                          **_) -> dict[str, list]:
    """Check the rows, predict the usable ones (words with ``predict_tokens``, texts with
    ``predict_entities``, in one call each), return the output columns (plain Python lists)."""
    columns = columns or token_columns_for_model(model)
    errors = _row_errors(values, text_column)
    n = len(values)
    cols: dict[str, list] = {id_name: list(ids), **{k: list(v) for k, v in (kept or {}).items()}}
    cols.update({name: [None] * n for name in columns.names[:-1]})
    cols[ERROR_COLUMN] = errors
    words = [i for i, (v, e) in enumerate(zip(values, errors)) if e is None and not isinstance(v, str)]
    texts = [i for i, (v, e) in enumerate(zip(values, errors)) if e is None and isinstance(v, str)]
    rows: dict[int, dict[str, Any]] = {}
    if words:
        preds = model.predict_tokens([list(values[i]) for i in words], batch_size=batch_size,
                                     distances=columns.distances)
        rows.update({i: _row_values(p, None, p.entities, columns) for i, p in zip(words, preds)})
    if texts:
        preds = model.predict_entities([values[i] for i in texts], batch_size=batch_size, distances=columns.distances)
        rows.update({i: _row_values(p.tokens, p.offsets.tolist(), p.entities, columns) for i, p in zip(texts, preds)})
    for i, row in rows.items():
        for name, v in row.items():
            cols[name][i] = v
    return cols
