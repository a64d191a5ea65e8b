"""The job loop every batch engine shares: options checked up front, atomic output, progress, the report.

An engine (the local one in :mod:`uehead.runtime.batch`, the Ray one in :mod:`uehead.runtime.ray_data`)

1. checks its options with :func:`check_job` (before anything is written or started), which
   returns the :class:`BatchJob`: the resolved paths, formats and options;
2. gets its writer from :meth:`BatchJob.sink` (``<output>.partial``, renamed at the end);
3. hands :func:`run_job` the output columns piece by piece, in output order. ``run_job`` writes
   them, shows progress, renames the complete output onto ``output`` and returns the
   :class:`BatchReport`; if anything fails, no ``output`` appears and the partial output is
   removed, unless the engine recorded progress it can resume from.

The output's prediction columns are the job's :class:`~uehead.runtime.batch_schema.OutputColumns`
(chosen from the model by the engine). Ids may repeat: :class:`IdCounter` counts the rows whose id
an earlier row already had, for the report (8 bytes of memory per row).
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from uehead.errors import DataError
from uehead.runtime.batch_formats import file_format, pyarrow_modules
from uehead.runtime.batch_readers import Chunk, arrow_types, input_columns, read_chunks, row_count_estimate
from uehead.runtime.batch_schema import DEFAULT_ID_COLUMN, PLAIN, ROW_ID_COLUMN, OutputColumns, kept_names
from uehead.runtime.batch_sinks import make_sink
from uehead.runtime.inputs import replace_surrogates

__all__ = ["BatchJob", "BatchReport", "IdCounter", "check_job", "run_job"]


@dataclass(frozen=True)
class BatchReport:
    """What a batch job did. ``rows``/``error_rows`` count the whole output, resumed part included."""

    rows: int
    error_rows: int
    seconds: float        # wall time of this call
    output: Path
    resumed_from: int = 0  # rows already done by an earlier, interrupted run (0 = fresh run)
    duplicate_ids: int = 0  # rows whose id an earlier row of the output already had
    columns: tuple[str, ...] = ()  # the output's column names, in order

    @property
    def rows_per_second(self) -> float:
        done = self.rows - self.resumed_from
        return done / self.seconds if self.seconds > 0 else math.inf

    def summary(self) -> str:
        """One line for the end of a job: rows, error rows, where, how long, and (when they apply)
        the resumed row and the duplicate ids."""
        line = f"{self.rows} rows ({self.error_rows} error rows) -> {self.output} in {self.seconds:.1f} s"
        if self.resumed_from:
            line += f"; resumed an interrupted run at row {self.resumed_from}"
        if self.duplicate_ids:
            rows = "1 row repeats" if self.duplicate_ids == 1 else f"{self.duplicate_ids} rows repeat"
            line += f"; {rows} an earlier row's id (allowed, but join on the id with care)"
        return line


class IdCounter:
    """Counts ids already seen: an 8-byte digest per row, so a chance collision is negligible
    (about n^2 / 2^65 for n rows) and memory is 8 bytes per row."""

    def __init__(self):
        self._digests: list = []
        self.rows = 0

    def add(self, ids) -> None:
        import numpy as np

        keys = [hashlib.blake2b(json.dumps([type(v).__name__, v], default=repr).encode("utf-8", "surrogatepass"),
                                digest_size=8).digest() for v in ids]
        self._digests.append(np.frombuffer(b"".join(keys), dtype=np.uint64))
        self.rows += len(keys)

    @property
    def duplicates(self) -> int:
        """Rows whose id an earlier row had."""
        import numpy as np

        if not self.rows:
            return 0
        joined = np.concatenate(self._digests)
        self._digests = [joined]
        return int(joined.size - np.unique(joined).size)


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
    keep_columns: tuple[str, ...] = ()  # input columns passed through, in output order
    started: float = field(default_factory=time.perf_counter)  # when the job's call began
    columns: OutputColumns = PLAIN  # the prediction columns

    @property
    def kept(self) -> tuple[str, ...]:
        """The output names of ``keep_columns`` (:func:`~uehead.runtime.batch_schema.kept_names`)."""
        return kept_names(self.keep_columns, self.id_name, self.columns)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Every output column, in order (:func:`~uehead.runtime.batch_schema.output_columns`)."""
        return (self.id_name, *self.kept, *self.columns.names)

    @property
    def id_name(self) -> str:
        """The output's id column: ``id_column`` (a lone surrogate replaced by U+FFFD), else
        :data:`~uehead.runtime.batch_schema.ROW_ID_COLUMN`."""
        return replace_surrogates(self.id_column) if self.id_column else ROW_ID_COLUMN

    @property
    def partial(self) -> Path:
        """Where the output is written until it is complete."""
        return self.output.with_name(self.output.name + ".partial")

    def read(self) -> Iterable[Chunk]:
        """The input's chunks of ``chunk_rows`` rows (see :func:`read_chunks`)."""
        return read_chunks(self.input, self.input_format, text_column=self.text_column, id_column=self.id_column,
                           chunk_rows=self.chunk_rows, keep_columns=self.keep_columns)

    def sink(self):
        """The writer of ``partial`` (:mod:`uehead.runtime.batch_sinks`); a Parquet output takes the
        input's column types (int64 for row numbers)."""
        types = None
        if self.output_format == "parquet":
            pa, _ = pyarrow_modules()
            read = arrow_types(self.input, self.input_format, [c for c in (self.id_column,) if c] + list(self.keep_columns))
            types = {name: read[c] for name, c in zip(self.kept, self.keep_columns)}
            types[self.id_name] = read[self.id_column] if self.id_column else pa.int64()
        return make_sink(self.output_format, self.partial, id_name=self.id_name, kept=self.kept, types=types,
                         columns=self.columns)


def check_job(input, output, *, text_column: str, id_column: str | None, batch_size: int, chunk_rows: int,
              keep_columns: Iterable[str] = (), keep_all_columns: bool = False,
              columns: OutputColumns = PLAIN) -> BatchJob:
    """The :class:`BatchJob`, or the error a bad option would cause later, raised now with the fix:
    :class:`~uehead.errors.DataError`, ``FileNotFoundError``, ``ValueError`` or ``ImportError``
    (Parquet without pyarrow).

    ``id_column`` None: the input's ``id`` column when it has one, else row numbers; ``""``: row
    numbers. ``keep_all_columns``: pass through every input column but the text and the id.
    ``columns``: the prediction columns (:func:`~uehead.runtime.batch_schema.columns_for_model`).
    """
    started = time.perf_counter()
    src, dst = Path(input), Path(output)
    in_fmt = file_format(src, "input")
    out_fmt = file_format(dst, "output")
    if not src.is_file():
        raise FileNotFoundError(f"{src}: input file not found (or not a file). Check the --input path.")
    if src.resolve() == dst.resolve():
        raise DataError(f"{dst}: the output would overwrite the input. Choose another --output path.")
    for path in (dst, dst.with_name(dst.name + ".partial"), dst.with_name(dst.name + ".progress.json")):
        if path.is_dir():
            raise DataError(f"{path}: is a folder, so the output cannot be written there. Name a file in it "
                            f"(e.g. {dst / ('predictions' + dst.suffix)}), or remove the folder.")
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"{dst.parent}: the output folder does not exist. Create it first.")
    if not isinstance(batch_size, int) or batch_size < 1 or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"batch_size and chunk_rows must be positive integers, got {batch_size}, {chunk_rows}")
    if not text_column:
        raise DataError("the text column name is empty. Pass --text-column NAME.")
    if "parquet" in (in_fmt, out_fmt):
        pyarrow_modules()  # fail before anything is written
    keep = tuple(dict.fromkeys(keep_columns))
    if id_column is None or keep_all_columns:
        present = input_columns(src, in_fmt)
        if id_column is None:
            id_column = DEFAULT_ID_COLUMN if DEFAULT_ID_COLUMN in present and text_column != DEFAULT_ID_COLUMN else ""
        if keep_all_columns:
            keep += tuple(c for c in present if c not in (text_column, id_column, *keep))
    id_column = id_column or None
    id_name = id_column or ROW_ID_COLUMN
    if id_name in columns.names:
        raise DataError(f"--id-column {id_name!r} clashes with an output column ({', '.join(columns.names)}). "
                        "Rename that column in the input.")
    job = BatchJob(src, dst, in_fmt, out_fmt, text_column, id_column, batch_size, chunk_rows, keep, started,
                   columns)
    try:
        job.kept
    except ValueError as exc:
        raise DataError(f"{src}: {exc}") from None
    return job


def run_job(job: BatchJob, sink, pieces: Iterable[dict[str, list]], *,
            progress: bool | Callable[[int], object] = True, desc: str | None = None, resumed: dict | None = None,
            record: Callable[[int, int], None] | None = None, ids: IdCounter | None = None) -> BatchReport:
    """Write ``pieces`` through ``sink`` onto ``job.output``; return the report.

    Args:
        pieces: the output columns of consecutive rows, piece by piece, in output order.
        progress: True = a progress bar on stderr (rows/s, ETA, error rows); a callable is called
            with the rows done so far after each piece; False = silent.
        desc: the progress bar's label (default: the input's file name).
        resumed: the saved progress of an interrupted run to continue (``rows_done``,
            ``error_rows``, ``sink``: the sink's state); None = a fresh run.
        record: called as ``record(rows_done, error_rows)`` after each piece is written,
            to make it durable. Once it was called (or when resuming), a failure keeps the partial
            output for a later resume; otherwise a failure removes it.
        ids: the counter of the output's ids, filled by the engine (None: the ids are row numbers,
            which never repeat).
    """
    rows_done = resumed["rows_done"] if resumed else 0
    error_rows = resumed["error_rows"] if resumed else 0
    on_rows = progress if callable(progress) else None
    # Before anything is written: counting reads the input, which may turn out unreadable.
    bar = _progress_bar(job, rows_done, desc) if progress and on_rows is None else None
    committed = resumed is not None  # is there progress on disk worth keeping if this run fails?
    try:
        sink.open(resumed["sink"] if resumed else None)
        for cols in pieces:
            sink.write(cols)
            n = len(cols["error"])
            rows_done += n
            error_rows += sum(e is not None for e in cols["error"])
            if record is not None:
                record(rows_done, error_rows)
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
                       output=job.output, resumed_from=resumed["rows_done"] if resumed else 0,
                       duplicate_ids=ids.duplicates if ids is not None else 0, columns=job.column_names)


def _progress_bar(job: BatchJob, initial: int, desc: str | None):
    from tqdm import tqdm

    return tqdm(total=row_count_estimate(job.input, job.input_format), initial=initial, unit=" rows",
                desc=desc or job.input.name, dynamic_ncols=True, file=sys.stderr)
