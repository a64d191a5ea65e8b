"""A Ray Data datasource over ONE input file, read by the batch job's own readers.

Imported only by :mod:`uehead.runtime.ray_data`, after ``ray`` was found. Why not ``ray.data.read_json``
and friends: Ray reads JSON Lines with pandas, which turns the id ``"007"`` into ``7`` and the text
``"1"`` into a number; reading with :func:`uehead.runtime.batch_readers.read_chunks` gives the
single-process job's exact values, blank-line and CSV-cell rules, and error messages, streaming.

Each block holds ``chunk_rows`` consecutive rows with the columns

* ``__row``: the 0-based row number in the file (the order key, checked by the driver);
* ``__text``: the text, null where the row has none that can be predicted;
* ``__error``: null, or why the row has no usable text (:func:`uehead.runtime.batch_schema.text_errors`);
* ``__id`` (with an id column): the id in its Arrow type (CSV: string; Parquet: the file's type),
  or JSON-encoded for JSONL, whose ids may be of any JSON type (the driver decodes them);
* ``__keep<i>`` for the i-th passed-through column (:func:`kept_column`), typed like ``__id``.
"""
from __future__ import annotations

import os
from pathlib import Path

from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

ROW, TEXT, ERROR, ID = "__row", "__text", "__error", "__id"


def kept_column(i: int) -> str:
    """The block column carrying the i-th passed-through input column."""
    return f"__keep{i}"


def read_blocks(path: str, fmt: str, text_column: str, id_column: str | None, chunk_rows: int,
                keep_columns: tuple[str, ...] = ()):
    """Yield the file's rows as pyarrow Tables of ``chunk_rows`` rows (see the module docstring)."""
    import json

    import pyarrow as pa

    from uehead.runtime.batch_readers import arrow_types, read_chunks
    from uehead.runtime.batch_schema import text_errors

    src = Path(path)
    passed = ([(ID, id_column)] if id_column is not None else []) + [(kept_column(i), c)
                                                                     for i, c in enumerate(keep_columns)]
    types = arrow_types(src, fmt, [c for _, c in passed]) if fmt != "jsonl" else {}
    row = 0
    for chunk in read_chunks(src, fmt, text_column=text_column, id_column=id_column, chunk_rows=chunk_rows,
                             keep_columns=keep_columns):
        n = len(chunk.texts)
        errors = text_errors(chunk.texts, text_column)
        cols = {ROW: pa.array(range(row, row + n), pa.int64()),
                TEXT: pa.array([t if e is None else None for t, e in zip(chunk.texts, errors)], pa.large_string()),
                ERROR: pa.array(errors, pa.string())}
        for name, c in passed:
            values = chunk.ids if name == ID else chunk.extra[c]
            if fmt == "jsonl":
                cols[name] = pa.array([json.dumps(v) for v in values], pa.large_string())
            else:
                cols[name] = pa.array(values, types[c])
        yield pa.table(cols)
        row += n


class FileRowsDatasource(Datasource):
    """One read task streaming one JSONL / CSV / Parquet file on the driver's node."""

    def __init__(self, path: str | os.PathLike, fmt: str, *, text_column: str, id_column: str | None,
                 chunk_rows: int, keep_columns: tuple[str, ...] = ()):
        self.path, self.fmt = str(path), fmt
        self.text_column, self.id_column, self.chunk_rows = text_column, id_column, chunk_rows
        self.keep_columns = tuple(keep_columns)

    def get_name(self) -> str:
        return f"UeheadFile({Path(self.path).name})"

    def estimate_inmemory_data_size(self) -> int | None:
        return os.path.getsize(self.path)

    def supports_distributed_reads(self) -> bool:
        return False  # the file is a path on the driver's machine

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list[ReadTask]:
        args = (self.path, self.fmt, self.text_column, self.id_column, self.chunk_rows, self.keep_columns)
        meta = BlockMetadata(num_rows=None, size_bytes=os.path.getsize(self.path), exec_stats=None,
                             input_files=[self.path])
        return [ReadTask(lambda: read_blocks(*args), meta, per_task_row_limit=per_task_row_limit)]
