"""Batch prediction over files: JSONL, CSV and Parquet in and out, streaming, atomic, resumable.

    from uehead.runtime import load
    from uehead.runtime.batch import predict_file
    report = predict_file(load("bundle/"), "reviews.jsonl", "scores.parquet", id_column="id")

The format of each file is chosen by its suffix (``.jsonl``/``.ndjson``, ``.csv``, ``.parquet``/``.pq``;
Parquet needs ``pip install 'uehead[parquet]'``). Input is read and output written ``chunk_rows`` rows
at a time, so memory stays bounded whatever the file size.

Output: exactly the input's rows, in the input's order, with the columns of :func:`output_columns`:
the input's id (the ``id_column`` value, or the 0-based data-row number in a column named ``row``),
then ``label``, ``label_id``, ``probs`` (list of floats), ``uncertainty``, ``softmax_response``,
``entropy`` and ``error``: null, or why the row has no prediction (its text is missing, null or not a
string; in CSV an empty cell counts as missing). Such rows keep their place with null predictions.
Blank lines are not rows. The one place this schema lives is :func:`prediction_columns` (and
:func:`prediction_arrow_schema` for Arrow); the Ray integration reuses :func:`predict_columns`.

Atomic and resumable: rows go to ``<output>.partial`` (Parquet: one part file per chunk in
``<output>.partial.parts/``, merged at the end) and, after each chunk is durably written,
``<output>.progress.json`` records how far the job got. ``output`` itself only appears, by rename, once
every row is written. ``resume=True`` continues a killed run: the partial output is cut back to the
last recorded chunk and reading restarts at the next input row, so no row is duplicated or skipped.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from uehead.datasets import DataError
from uehead.runtime.batch_formats import (FORMATS, file_format, make_sink, pyarrow_modules, read_chunks,
                                          row_count_estimate)

PREDICTION_COLUMNS = ("label", "label_id", "probs", "uncertainty", "softmax_response", "entropy", "error")
ROW_ID_COLUMN = "row"
PROGRESS_VERSION = 1

__all__ = ["BatchReport", "PREDICTION_COLUMNS", "ROW_ID_COLUMN", "FORMATS", "output_columns", "text_errors",
           "prediction_columns", "predict_columns", "prediction_arrow_schema", "predict_file"]


@dataclass(frozen=True)
class BatchReport:
    """What a :func:`predict_file` job did. ``rows``/``error_rows`` count the whole output, resumed part included."""

    rows: int
    error_rows: int
    seconds: float        # wall time of this call
    output: Path
    resumed_from: int = 0  # rows already done by an earlier, interrupted run (0 = fresh run)

    @property
    def rows_per_second(self) -> float:
        done = self.rows - self.resumed_from
        return done / self.seconds if self.seconds > 0 else math.inf


# ----------------------------------------------------------------------------- the column schema
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
                    text_column: str = "text", batch_size: int = 32) -> dict[str, list]:
    """Check the texts, predict the usable ones with ``model.predict``, return the output columns."""
    errors = text_errors(texts, text_column)
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


# ----------------------------------------------------------------------------- the job
def _check_args(src: Path, dst: Path, text_column: str, id_column: str | None, batch_size: int,
                chunk_rows: int) -> tuple[str, str]:
    in_fmt = file_format(src, "input")
    out_fmt = file_format(dst, "output")
    if not src.is_file():
        raise FileNotFoundError(f"{src}: input file not found (or not a file). Check the --input path.")
    if src.resolve() == dst.resolve():
        raise DataError(f"{dst}: the output would overwrite the input. Choose another --output path.")
    if not isinstance(batch_size, int) or batch_size < 1 or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"batch_size and chunk_rows must be positive integers, got {batch_size}, {chunk_rows}")
    if not text_column:
        raise DataError("the text column name is empty. Pass --text-column NAME.")
    id_name = id_column or ROW_ID_COLUMN
    if id_name in PREDICTION_COLUMNS:
        raise DataError(f"--id-column {id_name!r} clashes with an output column ({', '.join(PREDICTION_COLUMNS)}). "
                        "Rename that column in the input.")
    if "parquet" in (in_fmt, out_fmt):
        pyarrow_modules()  # fail before anything is written
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"{dst.parent}: the output folder does not exist. Create it first.")
    return in_fmt, out_fmt


def _identity(src: Path, in_fmt: str, out_fmt: str, text_column: str, id_column: str | None) -> dict:
    st = src.stat()
    return {"version": PROGRESS_VERSION, "input": str(src.resolve()), "input_size": st.st_size,
            "input_mtime_ns": st.st_mtime_ns, "input_format": in_fmt, "output_format": out_fmt,
            "text_column": text_column, "id_column": id_column}


def _load_progress(path: Path, identity: dict) -> dict | None:
    """The saved progress of an interrupted run of this same job, or None when there is none."""
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable progress file ({exc}). Delete it and run without --resume.") from exc
    changed = [k for k, v in identity.items() if saved.get(k) != v]
    if changed:
        raise DataError(
            f"{path}: the interrupted run was for a different job ({', '.join(changed)} changed: "
            f"{', '.join(f'{saved.get(k)!r} -> {identity[k]!r}' for k in changed)}). A resumed run must read the "
            "same, unmodified input with the same options; run without --resume to start over.")
    return saved


def _save_progress(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def predict_file(model: Any, input: str | os.PathLike, output: str | os.PathLike, *, text_column: str = "text",
                 id_column: str | None = None, batch_size: int = 32, resume: bool = False, progress: bool = True,
                 chunk_rows: int = 1024) -> BatchReport:
    """Predict every row of ``input`` with ``model`` (anything with ``predict(texts, batch_size=)``) into ``output``.

    See the module docstring for formats, columns, atomicity and ``resume``. Raises
    :class:`~uehead.datasets.DataError` (bad input / options), ``FileNotFoundError`` (missing input) or
    ``ImportError`` (Parquet without pyarrow), each naming the file and the fix.
    """
    start = time.perf_counter()
    src, dst = Path(input), Path(output)
    in_fmt, out_fmt = _check_args(src, dst, text_column, id_column, batch_size, chunk_rows)
    id_name = id_column or ROW_ID_COLUMN
    partial = dst.with_name(dst.name + ".partial")
    sidecar = dst.with_name(dst.name + ".progress.json")
    identity = _identity(src, in_fmt, out_fmt, text_column, id_column)

    saved = _load_progress(sidecar, identity) if resume else None
    sink = make_sink(out_fmt, partial, columns=output_columns(id_name), source=src, source_format=in_fmt,
                     id_column=id_column, arrow_schema=prediction_arrow_schema)
    if saved is not None and not sink.can_resume(saved["sink"]):
        print(f"uehead: {partial} is missing or shorter than {sidecar} says; starting over.", file=sys.stderr)
        saved = None
    if saved is None:
        sidecar.unlink(missing_ok=True)  # an older run's progress must never describe this run's partial
    rows_done = saved["rows_done"] if saved else 0
    error_rows = saved["error_rows"] if saved else 0
    resumed_from = rows_done
    bar = None
    if progress:  # before anything is written: counting reads the input, which may turn out unreadable
        from tqdm import tqdm

        bar = tqdm(total=row_count_estimate(src, in_fmt), initial=rows_done, unit=" rows", desc=src.name,
                   dynamic_ncols=True, file=sys.stderr)
    committed = saved is not None  # is there progress on disk worth keeping if this run fails?
    try:
        sink.open(saved["sink"] if saved else None)
        chunks = read_chunks(src, in_fmt, text_column=text_column, id_column=id_column, chunk_rows=chunk_rows,
                             start_row=rows_done, position=saved["reader"] if saved else None)
        for chunk in chunks:
            n = len(chunk.texts)
            ids = chunk.ids if id_column is not None else list(range(rows_done, rows_done + n))
            cols = predict_columns(model, chunk.texts, ids, id_name=id_name, text_column=text_column,
                                   batch_size=batch_size)
            sink.write(cols)
            rows_done += n
            error_rows += sum(e is not None for e in cols["error"])
            _save_progress(sidecar, {**identity, "rows_done": rows_done, "error_rows": error_rows,
                                     "reader": chunk.position, "sink": sink.commit()})
            committed = True
            if bar is not None:
                bar.update(n)
                if error_rows:
                    bar.set_postfix(error_rows=error_rows, refresh=False)
        sink.finish(dst)
    except BaseException:
        sink.close()
        if not committed:  # failed before the first chunk was recorded: nothing to resume from
            sink.discard()
        raise
    finally:
        sink.close()
        if bar is not None:
            if bar.total is not None and bar.n != bar.total and sink.finished:
                bar.total = bar.n  # the estimate counted blank lines / quoted newlines
                bar.refresh()
            bar.close()
    sidecar.unlink(missing_ok=True)
    return BatchReport(rows=rows_done, error_rows=error_rows, seconds=time.perf_counter() - start, output=dst,
                       resumed_from=resumed_from)
