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
Blank lines are not rows. The one place this schema lives is :mod:`uehead.runtime.batch_schema`
(re-exported here); the Ray engine (:mod:`uehead.runtime.ray_data`) writes the same rows.

Atomic and resumable: rows go to ``<output>.partial`` (Parquet: one part file per chunk in
``<output>.partial.parts/``, merged at the end) and, after each chunk is durably written,
``<output>.progress.json`` records how far the job got. ``output`` itself only appears, by rename, once
every row is written. ``resume=True`` continues a killed run: the partial output is cut back to the
last recorded chunk and reading restarts at the next input row, so no row is duplicated or skipped.

The pieces: :mod:`~uehead.runtime.batch_formats` (suffixes), :mod:`~uehead.runtime.batch_readers`,
:mod:`~uehead.runtime.batch_sinks`, :mod:`~uehead.runtime.batch_schema`, and
:mod:`~uehead.runtime.batch_job`, the job loop this module shares with the Ray engine.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from uehead.errors import DataError
from uehead.runtime.batch_formats import FORMATS
from uehead.runtime.batch_job import BatchJob, BatchReport, check_job, run_job
from uehead.runtime.batch_schema import (PREDICTION_COLUMNS, ROW_ID_COLUMN, output_columns, predict_columns,
                                         prediction_arrow_schema, prediction_columns, text_errors)
from uehead.runtime.model import BLOCK_ROWS

# The schema's names are re-exported: this module is the batch job's public entry point.
__all__ = ["BatchReport", "PREDICTION_COLUMNS", "ROW_ID_COLUMN", "FORMATS", "output_columns", "text_errors",
           "prediction_columns", "predict_columns", "prediction_arrow_schema", "predict_file"]

PROGRESS_VERSION = 1


def predict_file(model: Any, input: str | os.PathLike, output: str | os.PathLike, *, text_column: str = "text",
                 id_column: str | None = None, batch_size: int = 32, resume: bool = False, progress: bool = True,
                 chunk_rows: int = BLOCK_ROWS) -> BatchReport:
    """Predict every row of ``input`` with ``model`` (anything with ``predict(texts, batch_size=)``) into ``output``.

    See the module docstring for formats, columns, atomicity and ``resume``. ``progress``: True = a
    progress bar on stderr, a callable = called with the rows done after each chunk, False = silent.
    Raises :class:`~uehead.errors.DataError` (bad input / options), ``FileNotFoundError`` (missing
    input) or ``ImportError`` (Parquet without pyarrow), each naming the file and the fix.
    """
    job = check_job(input, output, text_column=text_column, id_column=id_column, batch_size=batch_size,
                    chunk_rows=chunk_rows)
    sidecar = job.output.with_name(job.output.name + ".progress.json")
    identity = _identity(job)
    saved = _load_progress(sidecar, identity) if resume else None
    sink = job.sink()
    if saved is not None and not sink.can_resume(saved["sink"]):
        print(f"uehead: {job.partial} is missing or shorter than {sidecar} says; starting over.", file=sys.stderr)
        saved = None
    if saved is None:
        sidecar.unlink(missing_ok=True)  # an older run's progress must never describe this run's partial

    def record(rows_done: int, error_rows: int, position: dict | None) -> None:
        _save_progress(sidecar, {**identity, "rows_done": rows_done, "error_rows": error_rows,
                                 "reader": position, "sink": sink.commit()})

    start_row = saved["rows_done"] if saved else 0
    pieces = _predicted_chunks(model, job, start_row, saved["reader"] if saved else None)
    report = run_job(job, sink, pieces, progress=progress, resumed=saved, record=record)
    sidecar.unlink(missing_ok=True)
    return report


def _predicted_chunks(model: Any, job: BatchJob, start_row: int, position: dict | None):
    """(output columns, reader position) per input chunk from ``start_row`` on."""
    row = start_row
    for chunk in job.read(start_row=start_row, position=position):
        n = len(chunk.texts)
        ids = chunk.ids if job.id_column is not None else list(range(row, row + n))
        yield predict_columns(model, chunk.texts, ids, id_name=job.id_name, text_column=job.text_column,
                              batch_size=job.batch_size), chunk.position
        row += n


# ----------------------------------------------------------------------------- the progress file
def _identity(job: BatchJob) -> dict:
    """What a resumed run must share with the interrupted one."""
    st = job.input.stat()
    return {"version": PROGRESS_VERSION, "input": str(job.input.resolve()), "input_size": st.st_size,
            "input_mtime_ns": st.st_mtime_ns, "input_format": job.input_format, "output_format": job.output_format,
            "text_column": job.text_column, "id_column": job.id_column}


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
