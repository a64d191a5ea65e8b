"""The output schema of batch jobs, in one place: the columns (which depend on the model), their
Arrow types, error rows, and how a ``Predictions`` becomes columns.

Every engine builds its rows here: the local job (:mod:`uehead.runtime.batch`), the Ray engine and
:class:`~uehead.runtime.ray_data.BundlePredictor`, and the Spark example; the sinks, the Arrow schema
and the resume check take their column names from the same :class:`OutputColumns`. An output row holds

* the id: the input's ``id_column`` value (by default its :data:`DEFAULT_ID_COLUMN` column, when it
  has one), or the 0-based data-row number in a column named :data:`ROW_ID_COLUMN`;
* the input columns passed through on request, as read (:func:`kept_names` names them);
* :data:`BASE_COLUMNS`, always: ``label``, ``label_id``, ``probs`` (list of floats), ``uncertainty``
  (the bundle's default score), ``softmax_response``, ``entropy``;
* one column per score (every score higher = more uncertain), named as everywhere else
  (:func:`uehead.scores.score_names`, in that order): ``sr``, each head kind (``adue``, ``alien``),
  and with ``distances`` ``md``, ``rmd``. The ``entropy`` score is the base column of that name (the
  same values, so not written twice); ``sr`` equals ``softmax_response``, which stays for outputs
  written before per-score columns existed. By default every score the bundle has (md/rmd only with
  ``distances``); ``scores=`` chooses (:func:`select_columns`);
* on a calibrated bundle, :data:`DECISION_COLUMNS`: ``p_error`` (calibrated probability that the
  label is wrong), ``accept`` (bool, at the selected risk level) and ``prediction_set`` (list of label
  names, at the selected coverage level);
* ``error``, always last: null, or why the row has no prediction (:func:`text_errors`). Such rows
  keep their place with null predictions.

:data:`PREDICTION_COLUMNS` is the column set of :data:`PLAIN` (no score or decision columns), what a
model that reports no bundle (no ``manifest``) gets. Plain Python lists throughout; pyarrow is
imported only by :func:`prediction_arrow_schema`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from uehead.errors import DataError, UnknownScoreError
from uehead.runtime.batch_formats import pyarrow_modules
from uehead.runtime.inputs import lone_surrogate, replace_surrogates, surrogate_message
from uehead.scores import DISTANCE_SCORES, score_names

__all__ = ["BASE_COLUMNS", "DECISION_COLUMNS", "ERROR_COLUMN", "PREDICTION_COLUMNS", "ROW_ID_COLUMN",
           "DEFAULT_ID_COLUMN", "KEPT_PREFIX", "OutputColumns", "PLAIN", "select_columns", "columns_for_model",
           "columns_for_bundle", "output_columns", "kept_names", "text_errors", "prediction_columns",
           "predict_columns", "prediction_arrow_schema"]

#: The prediction columns every output has, in order.
BASE_COLUMNS = ("label", "label_id", "probs", "uncertainty", "softmax_response", "entropy")
#: The columns of a calibrated bundle's decisions, after the score columns.
DECISION_COLUMNS = ("p_error", "accept", "prediction_set")
#: Why a row has no prediction (null when it has one); always the last column.
ERROR_COLUMN = "error"
#: The id column's name when the input has no id column: the rows are numbered from 0.
ROW_ID_COLUMN = "row"
#: The input column used as the id when none is named and the input has it.
DEFAULT_ID_COLUMN = "id"
#: Prefix of a passed-through input column whose name is an output column's (``label`` -> ``input_label``).
KEPT_PREFIX = "input_"
# Base columns that hold a score's values: a score column of that name would repeat them.
_SCORE_IN_BASE = ("entropy",)
# Where a score's values are when a Predictions' ``scores`` dict lacks it.
_SCORE_ATTRIBUTE = {"sr": "softmax_response", "entropy": "entropy"}


@dataclass(frozen=True)
class OutputColumns:
    """Which prediction columns a job writes and how it predicts them (see the module docstring).

    ``scores``: the per-score columns, in output order; ``decisions``: write
    :data:`DECISION_COLUMNS`; ``distances``: predict with ``distances=True`` (md/rmd asked for);
    ``risk`` / ``coverage``: the stored decision levels used (None = not calibrated).
    """

    scores: tuple[str, ...] = ()
    decisions: bool = False
    distances: bool = False
    risk: float | None = None
    coverage: float | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The prediction columns after the id and passed-through columns, ``error`` last."""
        return (*BASE_COLUMNS, *self.scores, *(DECISION_COLUMNS if self.decisions else ()), ERROR_COLUMN)

    def predict_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``model.predict`` beyond ``batch_size`` (none for :data:`PLAIN`,
        so any model with ``predict(texts, batch_size=)`` works)."""
        kwargs: dict[str, Any] = {"distances": True} if self.distances else {}
        if self.decisions:
            kwargs.update(risk=self.risk, coverage=self.coverage)
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: recorded in a resumable job's progress file, sent to Ray workers."""
        return {"scores": list(self.scores), "decisions": self.decisions, "distances": self.distances,
                "risk": self.risk, "coverage": self.coverage}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutputColumns:
        return cls(tuple(data["scores"]), bool(data["decisions"]), bool(data["distances"]), data["risk"],
                   data["coverage"])


#: No score or decision columns: the columns of a model that reports no bundle.
PLAIN = OutputColumns()
#: The columns after the id of :data:`PLAIN` (every output starts with these, ``error`` aside).
PREDICTION_COLUMNS = PLAIN.names


def select_columns(head_kinds: Sequence[str], has_baselines: bool, calibration: Any = None, *,
                   scores: Sequence[str] | None = None, distances: bool = False, risk: float | None = None,
                   coverage: float | None = None) -> OutputColumns:
    """The :class:`OutputColumns` of a bundle with these heads, baselines and calibration.

    Args:
        scores: the score columns to write (names as in :func:`uehead.scores.score_names`); None =
            every score the bundle has, md/rmd only with ``distances``. Written in output order.
        distances: add ``md`` and ``rmd`` (the bundle must have baselines).
        risk, coverage: the stored decision levels of a calibrated bundle (None = its defaults).
    Raises:
        UnknownScoreError: a name in ``scores`` the bundle does not have (the message lists them).
        DataError: ``distances`` without baselines, or ``risk`` / ``coverage`` that is not a stored
            level (or given for a bundle without calibration).
    """
    available = score_names(tuple(head_kinds), has_baselines)
    if distances and not has_baselines:
        raise DataError("distances (md, rmd) were asked for, but the bundle has no baselines.npz.",
                        fix="export the bundle from a checkpoint with baselines, or leave out --distances.")
    if scores is None:
        wanted = set(score_names(tuple(head_kinds), distances))
    else:
        unknown = [s for s in scores if s not in available]
        if unknown:
            raise UnknownScoreError(f"score(s) {unknown} are not in this bundle; it has: {', '.join(available)}.",
                                    fix="pass --scores with names from that list.")
        wanted = set(scores) | (set(DISTANCE_SCORES) if distances else set())
    chosen = tuple(s for s in available if s in wanted and s not in _SCORE_IN_BASE)
    uses_distances = any(s in DISTANCE_SCORES for s in chosen)
    if calibration is None:
        if risk is not None or coverage is not None:
            raise DataError(f"--risk {risk} / --coverage {coverage} were given, but the bundle has no calibration.",
                            fix="run `uehead calibrate BUNDLE --data D --out CALIBRATED` and predict with the "
                                "calibrated bundle, or leave out --risk and --coverage.")
        return OutputColumns(chosen, distances=uses_distances)
    return OutputColumns(chosen, True, uses_distances, calibration.risk_level(risk).risk,
                         calibration.coverage_level(coverage).coverage)


def columns_for_model(model: Any, **options) -> OutputColumns:
    """:func:`select_columns` for a loaded model (its manifest's heads, its baselines and
    calibration). A model without a ``manifest`` gets :data:`PLAIN` unless ``options`` ask for more."""
    manifest = getattr(model, "manifest", None)
    if manifest is None:
        if any(v not in (None, False) for v in options.values()):
            return select_columns((), False, getattr(model, "calibration", None), **options)
        return PLAIN
    return select_columns([h.kind for h in manifest.head.heads], getattr(model, "baselines", None) is not None,
                          getattr(model, "calibration", None), **options)


def columns_for_bundle(bundle, **options) -> OutputColumns:
    """:func:`select_columns` for the bundle folder ``bundle``, from its manifest and calibration
    (no graph is loaded: what a Ray driver needs before its workers start)."""
    from uehead.bundle import load_manifest
    from uehead.calibration.apply import load_calibration

    manifest = load_manifest(bundle)
    return select_columns([h.kind for h in manifest.head.heads], manifest.baselines is not None,
                          load_calibration(bundle, manifest), **options)


def output_columns(id_name: str = ROW_ID_COLUMN, kept: Sequence[str] = (),
                   columns: OutputColumns = PLAIN) -> tuple[str, ...]:
    """Column names of an output row, in order: the id, the passed-through columns (their output
    names, :func:`kept_names`), then ``columns.names``."""
    return (id_name, *kept, *columns.names)


def kept_names(keep: Sequence[str], id_name: str, columns: OutputColumns = PLAIN) -> tuple[str, ...]:
    """The output names of passed-through input columns ``keep``: their own (a lone surrogate
    replaced by U+FFFD: every output format needs valid Unicode names), or :data:`KEPT_PREFIX` +
    name where that would clash with the id or a prediction column. ValueError when names repeat."""
    taken = {id_name, *columns.names}
    out = tuple(KEPT_PREFIX + c if c in taken else c for c in map(replace_surrogates, keep))
    clash = sorted({n for n in out if out.count(n) > 1 or n in taken})
    if clash:
        raise ValueError(f"passed-through column name(s) {clash} repeat or clash with the output's columns "
                         f"({', '.join(output_columns(id_name, (), columns))}); keep fewer columns.")
    return out


def text_errors(values: Sequence[Any], text_column: str = "text") -> list[str | None]:
    """Per value: None when it is a usable text (a ``str``, empty allowed), else the row's error message.

    None and float NaN (how pandas spells a missing cell) count as missing; a str holding a lone
    surrogate (:mod:`uehead.runtime.inputs`) is not valid Unicode text.
    """
    out: list[str | None] = []
    for v in values:
        if isinstance(v, str):
            at = lone_surrogate(v)
            out.append(None if at is None else f"text is not valid Unicode: column {text_column!r} "
                                               f"{surrogate_message(v, at)}")
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(f"text missing: column {text_column!r} is absent, null or empty")
        else:
            out.append(f"text is not a string: column {text_column!r} holds a {type(v).__name__}")
    return out


def _prediction_values(preds: Any, columns: OutputColumns) -> dict[str, list]:
    """Each prediction column's values (plain Python) over the rows ``preds`` covers."""
    import numpy as np

    def floats(values) -> list:
        return np.asarray(values, dtype=np.float64).tolist()

    out = {"label": [str(x) for x in preds.labels], "label_id": np.asarray(preds.label_ids, dtype=np.int64).tolist(),
           "probs": floats(preds.probs), "uncertainty": floats(preds.uncertainty),
           "softmax_response": floats(preds.softmax_response), "entropy": floats(preds.entropy)}
    given = getattr(preds, "scores", None) or {}
    for name in columns.scores:
        values = given.get(name)
        if values is None and name in _SCORE_ATTRIBUTE:
            values = getattr(preds, _SCORE_ATTRIBUTE[name])
        if values is None:
            raise ValueError(f"the model returned no {name!r} score (it returned {sorted(given)})")
        out[name] = floats(values)
    if columns.decisions:
        if getattr(preds, "p_error", None) is None:
            raise ValueError("the model returned no calibrated decisions (p_error, accept, prediction_sets)")
        out.update(p_error=floats(preds.p_error), accept=np.asarray(preds.accept, dtype=bool).tolist(),
                   prediction_set=[list(s) for s in preds.prediction_sets])
    return out


def prediction_columns(preds: Any, ids: Sequence[Any], errors: Sequence[str | None], *,
                       id_name: str = ROW_ID_COLUMN, kept: dict[str, Sequence] | None = None,
                       columns: OutputColumns = PLAIN) -> dict[str, list]:
    """Turn a Predictions over the error-free rows into the output's columns (plain Python lists).

    ``ids``, ``errors`` and each of ``kept`` (output name -> values of a passed-through column) cover
    every row; ``preds`` covers, in order, only the rows whose error is None (it may be None when
    there are none). Rows with an error get null predictions.
    """
    n = len(errors)
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} ids for {n} rows")
    for name, values in (kept or {}).items():
        if len(values) != n:
            raise ValueError(f"got {len(values)} values of column {name!r} for {n} rows")
    valid = [i for i, e in enumerate(errors) if e is None]
    cols: dict[str, list] = {id_name: list(ids), **{name: list(v) for name, v in (kept or {}).items()}}
    for name in columns.names[:-1]:
        cols[name] = [None] * n
    cols[ERROR_COLUMN] = list(errors)
    if not valid:
        return cols
    if preds is None:
        raise ValueError(f"{len(valid)} rows have a text but no predictions were given")
    for name, vals in _prediction_values(preds, columns).items():
        if len(vals) != len(valid):
            raise ValueError(f"the model returned {len(vals)} {name} values for {len(valid)} texts")
        col = cols[name]
        for i, v in zip(valid, vals):
            col[i] = v
    return cols


def predict_columns(model: Any, texts: Sequence[Any], ids: Sequence[Any], *, id_name: str = ROW_ID_COLUMN,
                    text_column: str = "text", batch_size: int = 32, upstream_errors: Sequence[Any] | None = None,
                    kept: dict[str, Sequence] | None = None, columns: OutputColumns = PLAIN) -> dict[str, list]:
    """Check the texts, predict the usable ones with ``model.predict``, return the output columns.

    ``upstream_errors``: one value per text, errors found before this call (a ``str`` is that row's
    error and wins over the text check; anything else means none). Those rows are not predicted.
    ``kept``: passed-through columns (see :func:`prediction_columns`); ``columns``: which prediction
    columns (:func:`columns_for_model`).
    """
    errors = text_errors(texts, text_column)
    if upstream_errors is not None:
        errors = [u if isinstance(u, str) else e for u, e in zip(upstream_errors, errors)]
    usable = [t for t, e in zip(texts, errors) if e is None]
    preds = model.predict(usable, batch_size=batch_size, **columns.predict_kwargs()) if usable else None
    return prediction_columns(preds, ids, errors, id_name=id_name, kept=kept, columns=columns)


def prediction_arrow_schema(id_name: str = ROW_ID_COLUMN, id_type: Any = None, kept_types: dict | None = None,
                            columns: OutputColumns = PLAIN):
    """The Arrow schema of the output (``id_type`` defaults to int64, the type of row numbers;
    ``kept_types``: output name -> Arrow type of each passed-through column, in order). ``probs``
    and ``prediction_set`` are list columns."""
    pa, _ = pyarrow_modules()
    f64 = pa.float64()
    types = {"label": pa.string(), "label_id": pa.int64(), "probs": pa.list_(f64), "accept": pa.bool_(),
             "prediction_set": pa.list_(pa.string()), ERROR_COLUMN: pa.string()}
    types.update(getattr(columns, "arrow_types", dict)())  # token classification: list columns
    return pa.schema([(id_name, id_type if id_type is not None else pa.int64()), *(kept_types or {}).items(),
                      *((name, types.get(name, f64)) for name in columns.names)])
