"""The output schema of batch jobs, in one place: the columns, their Arrow types, error rows, and how
a ``Predictions`` becomes columns.

Every engine builds its rows here: the local job (:mod:`uehead.runtime.batch`), the Ray engine and
:class:`~uehead.runtime.ray_data.BundlePredictor`, and the Spark example. An output row holds

* the id: the input's ``id_column`` value, or the 0-based data-row number in a column named
  :data:`ROW_ID_COLUMN`;
* :data:`PREDICTION_COLUMNS`: ``label``, ``label_id``, ``probs`` (list of floats), ``uncertainty``,
  ``softmax_response``, ``entropy`` (every score higher = more uncertain) and ``error``: null, or
  why the row has no prediction (:func:`text_errors`). Such rows keep their place with null
  predictions.

Plain Python lists throughout; pyarrow is imported only by :func:`prediction_arrow_schema`.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from uehead.runtime.batch_formats import pyarrow_modules

__all__ = ["PREDICTION_COLUMNS", "ROW_ID_COLUMN", "output_columns", "text_errors", "prediction_columns",
           "predict_columns", "prediction_arrow_schema"]

#: The columns after the id, in order; ``error`` is always last.
PREDICTION_COLUMNS = ("label", "label_id", "probs", "uncertainty", "softmax_response", "entropy", "error")
#: The id column's name when the input has no id column: the rows are numbered from 0.
ROW_ID_COLUMN = "row"


def output_columns(id_name: str = ROW_ID_COLUMN) -> tuple[str, ...]:
    """Column names of an output row, in order: the id, then :data:`PREDICTION_COLUMNS`."""
    return (id_name, *PREDICTION_COLUMNS)


def text_errors(values: Sequence[Any], text_column: str = "text") -> list[str | None]:
    """Per value: None when it is a usable text (a ``str``, empty allowed), else the row's error message.

    None and float NaN (how pandas spells a missing cell) count as missing.
    """
    out: list[str | None] = []
    for v in values:
        if isinstance(v, str):
            out.append(None)
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(f"text missing: column {text_column!r} is absent, null or empty")
        else:
            out.append(f"text is not a string: column {text_column!r} holds a {type(v).__name__}")
    return out


def prediction_columns(preds: Any, ids: Sequence[Any], errors: Sequence[str | None], *,
                       id_name: str = ROW_ID_COLUMN) -> dict[str, list]:
    """Turn a Predictions over the error-free rows into the output's columns (plain Python lists).

    ``ids`` and ``errors`` cover every row; ``preds`` covers, in order, only the rows whose error is
    None (it may be None when there are none). Rows with an error get null predictions.
    """
    n = len(errors)
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} ids for {n} rows")
    valid = [i for i, e in enumerate(errors) if e is None]
    cols: dict[str, list] = {id_name: list(ids)}
    for name in PREDICTION_COLUMNS[:-1]:
        cols[name] = [None] * n
    cols["error"] = list(errors)
    if not valid:
        return cols
    if preds is None:
        raise ValueError(f"{len(valid)} rows have a text but no predictions were given")
    import numpy as np

    values = {
        "label": [str(x) for x in preds.labels],
        "label_id": np.asarray(preds.label_ids, dtype=np.int64).tolist(),
        "probs": np.asarray(preds.probs, dtype=np.float64).tolist(),
        "uncertainty": np.asarray(preds.uncertainty, dtype=np.float64).tolist(),
        "softmax_response": np.asarray(preds.softmax_response, dtype=np.float64).tolist(),
        "entropy": np.asarray(preds.entropy, dtype=np.float64).tolist(),
    }
    for name, vals in values.items():
        if len(vals) != len(valid):
            raise ValueError(f"the model returned {len(vals)} {name} values for {len(valid)} texts")
        col = cols[name]
        for i, v in zip(valid, vals):
            col[i] = v
    return cols


def predict_columns(model: Any, texts: Sequence[Any], ids: Sequence[Any], *, id_name: str = ROW_ID_COLUMN,
                    text_column: str = "text", batch_size: int = 32,
                    upstream_errors: Sequence[Any] | None = None) -> dict[str, list]:
    """Check the texts, predict the usable ones with ``model.predict``, return the output columns.

    ``upstream_errors``: one value per text, errors found before this call (a ``str`` is that row's
    error and wins over the text check; anything else means none). Those rows are not predicted.
    """
    errors = text_errors(texts, text_column)
    if upstream_errors is not None:
        errors = [u if isinstance(u, str) else e for u, e in zip(upstream_errors, errors)]
    usable = [t for t, e in zip(texts, errors) if e is None]
    preds = model.predict(usable, batch_size=batch_size) if usable else None
    return prediction_columns(preds, ids, errors, id_name=id_name)


def prediction_arrow_schema(id_name: str = ROW_ID_COLUMN, id_type: Any = None):
    """The Arrow schema of the output (``id_type`` defaults to int64, the type of row numbers)."""
    pa, _ = pyarrow_modules()
    f64 = pa.float64()
    return pa.schema([(id_name, id_type if id_type is not None else pa.int64()), ("label", pa.string()),
                      ("label_id", pa.int64()), ("probs", pa.list_(f64)), ("uncertainty", f64),
                      ("softmax_response", f64), ("entropy", f64), ("error", pa.string())])
