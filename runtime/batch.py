"""Batch prediction over files: JSONL, CSV and Parquet in and out, streaming, atomic, resumable.

    from uehead.runtime import load
    from uehead.runtime.batch import predict_file
    report = predict_file(load("bundle/"), "reviews.jsonl", "scores.parquet", id_column="id")

The format of each file is chosen by its suffix (``.jsonl``/``.ndjson``, ``.csv``, ``.parquet``/``.pq``;
Parquet needs ``pip install 'uehead[parquet]'``). Input is read and output written ``chunk_rows`` rows
at a time, so memory stays bounded whatever the file size.

Output: exactly the input's rows, in the input's order, with the columns of :func:`output_columns`:
the input's id (the ``id_column`` value; by default the input's ``id`` column when it has one, else
the 0-based data-row number in a column named ``row``), the input columns passed through on request
(``keep_columns``, or all of them with ``keep_all_columns``; one named like an output column gets an
``input_`` prefix), then ``label``, ``label_id``, ``probs`` (list of floats), ``uncertainty``,
``softmax_response``, ``entropy``, one column per score of the bundle (``sr``, ``adue``, ``alien``;
``md``, ``rmd`` with ``distances``; ``scores=`` chooses), on a calibrated bundle ``p_error``,
``accept`` and ``prediction_set`` (at the ``risk`` / ``coverage`` levels), and ``error``: null, or
why the row has no prediction (its text is missing, null, not a string, or not valid Unicode; in CSV
an empty cell counts as missing). Such rows keep their place with null predictions. Blank lines are
not rows. Parquet writes ``probs`` and ``prediction_set`` as list columns, CSV as JSON text. The one
place this schema lives is :mod:`uehead.runtime.batch_schema` (re-exported here); the Ray engine
(:mod:`uehead.runtime.ray_data`) writes the same rows.

Ids may repeat: the report's ``duplicate_ids`` counts the rows whose id an earlier row had.

Atomic and resumable: rows go to ``<output>.partial`` (Parquet: one part file per chunk in
``<output>.partial.parts/``, merged at the end) and, after each chunk is durably written,
``<output>.progress.json`` records how far the job got. ``output`` itself only appears, by rename, once
every row is written. ``resume=True`` continues a killed run: the partial output is cut back to the
last recorded chunk, the rows done are re-read (not predicted) and checked to be the ones the
interrupted run read, and prediction restarts at the next input row, so no row is duplicated or
skipped. A run with another bundle, other options (the output's columns and decision levels
included) or another input is refused (:mod:`~uehead.runtime.batch_progress`), and so is a partial
output whose columns are not the ones this run would write.

The pieces: :mod:`~uehead.runtime.batch_formats` (suffixes), :mod:`~uehead.runtime.batch_readers`,
:mod:`~uehead.runtime.batch_sinks`, :mod:`~uehead.runtime.batch_schema`,
:mod:`~uehead.runtime.batch_progress` (the progress file), and
:mod:`~uehead.runtime.batch_job`, the job loop this module shares with the Ray engine.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from uehead.errors import DataError
from uehead.runtime.batch_formats import FORMATS, file_format
from uehead.runtime.batch_job import BatchJob, BatchReport, IdCounter, check_job, run_job
from uehead.runtime.batch_progress import (RowsDigest, job_identity, load_progress, progress_path, save_progress,
                                           skip_done)
from uehead.runtime.batch_readers import Chunk, input_columns
from uehead.runtime.batch_schema import (PREDICTION_COLUMNS, ROW_ID_COLUMN, OutputColumns, columns_for_model,
                                         output_columns, predict_columns, prediction_arrow_schema,
                                         prediction_columns, text_errors)
from uehead.runtime.model import BLOCK_ROWS
from uehead.runtime.token_batch import TokenColumns, predict_token_columns, token_columns_for_model, words_column
from uehead.token_task import is_token_task

# The schema's names are re-exported: this module is the batch job's public entry point.
__all__ = ["BatchReport", "PREDICTION_COLUMNS", "ROW_ID_COLUMN", "FORMATS", "OutputColumns", "columns_for_model",
           "output_columns", "text_errors", "prediction_columns", "predict_columns", "prediction_arrow_schema",
           "predict_file"]


def predict_file(model: Any, input: str | os.PathLike, output: str | os.PathLike, *, text_column: str = "text",
                 id_column: str | None = None, keep_columns: Iterable[str] = (), keep_all_columns: bool = False,
                 batch_size: int = 32, resume: bool = False, progress: bool = True,
                 chunk_rows: int = BLOCK_ROWS, scores: Iterable[str] | None = None, distances: bool = False,
                 risk: float | None = None, coverage: float | None = None) -> BatchReport:
    """Predict every row of ``input`` with ``model`` (anything with ``predict(texts, batch_size=)``) into ``output``.

    See the module docstring for formats, columns, atomicity and ``resume``. ``id_column``: None =
    the input's ``id`` column when it has one, else row numbers; ``""`` = row numbers. ``progress``:
    True = a progress bar on stderr, a callable = called with the rows done after each chunk, False
    = silent. ``scores``, ``distances``, ``risk``, ``coverage``: which score and decision columns
    (:func:`~uehead.runtime.batch_schema.select_columns`). Raises :class:`~uehead.errors.DataError`
    (bad input / options, or a resume that is not the same job), ``FileNotFoundError`` (missing
    input) or ``ImportError`` (Parquet without pyarrow), each naming the file and the fix, before any
    row is predicted.
    """
    token = is_token_task(getattr(model, "manifest", None))
    select = token_columns_for_model if token else columns_for_model
    columns = select(model, scores=None if scores is None else tuple(scores), distances=distances,
                     risk=risk, coverage=coverage)
    if token:  # rows of words ("tokens") when the input has them, else raw texts
        text_column = words_column(model, input_columns(Path(input), file_format(Path(input), "input"))
                                   if Path(input).is_file() else (), text_column)
    job = check_job(input, output, text_column=text_column, id_column=id_column, batch_size=batch_size,
                    chunk_rows=chunk_rows, keep_columns=keep_columns, keep_all_columns=keep_all_columns,
                    columns=columns)
    sidecar = progress_path(job.output)
    identity = {**job_identity(job, model), "columns": list(job.column_names), "decisions": columns.to_dict()}
    saved = load_progress(sidecar, identity) if resume else None
    sink = job.sink()
    if saved is not None and not sink.can_resume(saved["sink"]):
        print(f"uehead: {job.partial} is missing or shorter than {sidecar} says; starting over.", file=sys.stderr)
        saved = None
    if saved is not None:
        _check_written_columns(job, sink)
    if saved is None:
        sidecar.unlink(missing_ok=True)  # an older run's progress must never describe this run's partial
    digest = RowsDigest()
    ids = IdCounter() if job.id_column is not None else None
    chunks = _counted(job.read(), ids)
    if saved is not None:
        chunks = skip_done(chunks, saved, digest, job.input)
        if progress:
            print(f"uehead: resuming {job.output.name}: rows 0-{saved['rows_done'] - 1} were written by the "
                  f"interrupted run; predicting from row {saved['rows_done']}.", file=sys.stderr)

    def record(rows_done: int, error_rows: int) -> None:
        save_progress(sidecar, {**identity, "rows_done": rows_done, "error_rows": error_rows,
                                "rows_sha256": digest.hexdigest(), "sink": sink.commit()})

    pieces = _predicted_chunks(model, job, chunks, digest, saved["rows_done"] if saved else 0)
    report = run_job(job, sink, pieces, progress=progress, resumed=saved, record=record, ids=ids)
    sidecar.unlink(missing_ok=True)
    return report


def _check_written_columns(job: BatchJob, sink) -> None:
    """Refuse to resume onto a partial output whose columns are not this run's."""
    written = sink.written_columns()
    if written is not None and written != job.column_names:
        raise DataError(f"{job.partial}: the partial output has the columns {list(written)}, this run would write "
                        f"{list(job.column_names)}. Resume with the options of the interrupted run, or run "
                        "without --resume to start over.")


def _counted(chunks: Iterator[Chunk], ids: IdCounter | None) -> Iterator[Chunk]:
    """``chunks``, their ids counted into ``ids`` as they are read (None: nothing to count)."""
    try:
        for chunk in chunks:
            if ids is not None:
                ids.add(chunk.ids)
            yield chunk
    finally:
        getattr(chunks, "close", lambda: None)()  # stop the reader now, not at GC


def _predicted_chunks(model: Any, job: BatchJob, chunks: Iterator[Chunk], digest: RowsDigest, start_row: int):
    """The output columns of each input chunk (rows ``start_row`` on), each chunk hashed into ``digest``
    before its columns are handed on (so the recorded hash always covers the rows recorded)."""
    row = start_row
    for chunk in chunks:
        digest.update(chunk)
        n = len(chunk)
        ids = chunk.ids if job.id_column is not None else list(range(row, row + n))
        kept = {name: chunk.extra[c] for name, c in zip(job.kept, job.keep_columns)}
        predict = predict_token_columns if isinstance(job.columns, TokenColumns) else predict_columns
        yield predict(model, chunk.texts, ids, id_name=job.id_name, text_column=job.text_column,
                      batch_size=job.batch_size, kept=kept, columns=job.columns)
        row += n
