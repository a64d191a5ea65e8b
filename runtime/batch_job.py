"""The job loop every batch engine shares: options checked up front, atomic output, progress, the report.

An engine (the local one in :mod:`uehead.runtime.batch`, the Ray one in :mod:`uehead.runtime.ray_data`)

1. checks its options with :func:`check_job` (before anything is written or started), which
   returns the :class:`BatchJob`: the resolved paths, formats and options;
2. gets its writer from :meth:`BatchJob.sink` (``<output>.partial``, renamed at the end);
3. hands :func:`run_job` the output columns piece by piece, in output order. ``run_job`` writes
   them, shows progress, renames the complete output onto ``output`` and returns the
   :class:`BatchReport`; if anything fails, no ``output`` appears and the partial output is
   removed, unless the engine recorded progress it can resume from.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uehead.errors import DataError
from uehead.runtime.batch_formats import file_format, pyarrow_modules
from uehead.runtime.batch_readers import Chunk, id_arrow_type, read_chunks, row_count_estimate
from uehead.runtime.batch_schema import PREDICTION_COLUMNS, ROW_ID_COLUMN
from uehead.runtime.batch_sinks import make_sink

__all__ = ["BatchJob", "BatchReport", "check_job", "run_job"]


@dataclass(frozen=True)
class BatchReport:
    """What a batch job did. ``rows``/``error_rows`` count the whole output, resumed part included."""

    rows: int
    error_rows: int
    seconds: float        # wall time of this call
    output: Path
    resumed_from: int = 0  # rows already done by an earlier, interrupted run (0 = fresh run)

    @property
    def rows_per_second(self) -> float:
        done = self.rows - self.resumed_from
        return done / self.seconds if self.seconds > 0 else math.inf


@dataclass(frozen=True)
class BatchJob:
    """A checked batch job (see :func:`check_job`): what to read, what to write, with which options."""

    input: Path
    output: Path
    input_format: str
    output_format: str
    text_column: str
    id_column: str | None
    batch_size: int
    chunk_rows: int
    started: float = field(default_factory=time.perf_counter)  # when the job's call began

    @property
    def id_name(self) -> str:
        """The output's id column: ``id_column``, else :data:`~uehead.runtime.batch_schema.ROW_ID_COLUMN`."""
        return self.id_column or ROW_ID_COLUMN

    @property
    def partial(self) -> Path:
        """Where the output is written until it is complete."""
        return self.output.with_name(self.output.name + ".partial")

    def read(self, start_row: int = 0, position: dict | None = None) -> Iterable[Chunk]:
        """The input's chunks of ``chunk_rows`` rows from ``start_row`` (see :func:`read_chunks`)."""
        return read_chunks(self.input, self.input_format, text_column=self.text_column, id_column=self.id_column,
                           chunk_rows=self.chunk_rows, start_row=start_row, position=position)

    def sink(self):
        """The writer of ``partial`` (:mod:`uehead.runtime.batch_sinks`); a Parquet output takes the
        input's id type."""
        id_type = (id_arrow_type(self.input, self.input_format, self.id_column)
                   if self.output_format == "parquet" else None)
        return make_sink(self.output_format, self.partial, id_name=self.id_name, id_type=id_type)


def check_job(input, output, *, text_column: str, id_column: str | None, batch_size: int,
              chunk_rows: int) -> BatchJob:
    """The :class:`BatchJob`, or the error a bad option would cause later, raised now with the fix:
    :class:`~uehead.errors.DataError`, ``FileNotFoundError``, ``ValueError`` or ``ImportError``
    (Parquet without pyarrow)."""
    started = time.perf_counter()
    src, dst = Path(input), Path(output)
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
    return BatchJob(src, dst, in_fmt, out_fmt, text_column, id_column, batch_size, chunk_rows, started)


def run_job(job: BatchJob, sink, pieces: Iterable[tuple[dict[str, list], Any]], *,
            progress: bool | Callable[[int], object] = True, desc: str | None = None, resumed: dict | None = None,
            record: Callable[[int, int, Any], None] | None = None) -> BatchReport:
    """Write ``pieces`` through ``sink`` onto ``job.output``; return the report.

    Args:
        pieces: ``(columns, position)`` pairs in output order: the output columns of consecutive
            rows and where the input may be re-entered after them (passed to ``record``).
        progress: True = a progress bar on stderr (rows/s, ETA, error rows); a callable is called
            with the rows done so far after each piece; False = silent.
        desc: the progress bar's label (default: the input's file name).
        resumed: the saved progress of an interrupted run to continue (``rows_done``,
            ``error_rows``, ``sink``: the sink's state); None = a fresh run.
        record: called as ``record(rows_done, error_rows, position)`` after each piece is written,
            to make it durable. Once it was called (or when resuming), a failure keeps the partial
            output for a later resume; otherwise a failure removes it.
    """
    rows_done = resumed["rows_done"] if resumed else 0
    error_rows = resumed["error_rows"] if resumed else 0
    on_rows = progress if callable(progress) else None
    # Before anything is written: counting reads the input, which may turn out unreadable.
    bar = _progress_bar(job, rows_done, desc) if progress and on_rows is None else None
    committed = resumed is not None  # is there progress on disk worth keeping if this run fails?
    try:
        sink.open(resumed["sink"] if resumed else None)
        for cols, position in pieces:
            sink.write(cols)
            n = len(cols["error"])
            rows_done += n
            error_rows += sum(e is not None for e in cols["error"])
            if record is not None:
                record(rows_done, error_rows, position)
                committed = True
            if on_rows is not None:
                on_rows(rows_done)
            if bar is not None:
                bar.update(n)
                if error_rows:
                    bar.set_postfix(error_rows=error_rows, refresh=False)
        sink.finish(job.output)
    except BaseException:
        sink.close()
        if not committed:  # failed before any progress was recorded: nothing to resume from
            sink.discard()
        raise
    finally:
        sink.close()
        getattr(pieces, "close", lambda: None)()  # stop the reader (and what feeds it) now, not at GC
        if bar is not None:
            if bar.total is not None and bar.n != bar.total and sink.finished:
                bar.total = bar.n  # the estimate counted blank lines / quoted newlines
                bar.refresh()
            bar.close()
    return BatchReport(rows=rows_done, error_rows=error_rows, seconds=time.perf_counter() - job.started,
                       output=job.output, resumed_from=resumed["rows_done"] if resumed else 0)


def _progress_bar(job: BatchJob, initial: int, desc: str | None):
    from tqdm import tqdm

    return tqdm(total=row_count_estimate(job.input, job.input_format), initial=initial, unit=" rows",
                desc=desc or job.input.name, dynamic_ncols=True, file=sys.stderr)
