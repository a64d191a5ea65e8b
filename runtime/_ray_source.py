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
  or JSON-encoded for JSONL, whose ids may be of any JSON type (the driver decodes them).
"""
from __future__ import annotations

import os
from pathlib import Path

from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

ROW, TEXT, ERROR, ID = "__row", "__text", "__error", "__id"


def read_blocks(path: str, fmt: str, text_column: str, id_column: str | None, chunk_rows: int):
    """Yield the file's rows as pyarrow Tables of ``chunk_rows`` rows (see the module docstring)."""
    import json

    import pyarrow as pa

    from uehead.runtime.batch_readers import id_arrow_type, read_chunks
    from uehead.runtime.batch_schema import text_errors

    src = Path(path)
    id_type = id_arrow_type(src, fmt, id_column) if id_column is not None and fmt != "jsonl" else None
    row = 0
    for chunk in read_chunks(src, fmt, text_column=text_column, id_column=id_column, chunk_rows=chunk_rows):
        n = len(chunk.texts)
        errors = text_errors(chunk.texts, text_column)
        cols = {ROW: pa.array(range(row, row + n), pa.int64()),
                TEXT: pa.array([t if e is None else None for t, e in zip(chunk.texts, errors)], pa.large_string()),
                ERROR: pa.array(errors, pa.string())}
        if id_column is not None:
            if fmt == "jsonl":
                cols[ID] = pa.array([json.dumps(v) for v in chunk.ids], pa.large_string())
            else:
                cols[ID] = pa.array(chunk.ids, id_type)
        yield pa.table(cols)
        row += n


class FileRowsDatasource(Datasource):
    """One read task streaming one JSONL / CSV / Parquet file on the driver's node."""

    def __init__(self, path: str | os.PathLike, fmt: str, *, text_column: str, id_column: str | None,
                 chunk_rows: int):
        self.path, self.fmt = str(path), fmt
        self.text_column, self.id_column, self.chunk_rows = text_column, id_column, chunk_rows

    def get_name(self) -> str:
        return f"UeheadFile({Path(self.path).name})"

    def estimate_inmemory_data_size(self) -> int | None:
        return os.path.getsize(self.path)

    def supports_distributed_reads(self) -> bool:
        return False  # the file is a path on the driver's machine

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list[ReadTask]:
        args = (self.path, self.fmt, self.text_column, self.id_column, self.chunk_rows)
        meta = BlockMetadata(num_rows=None, size_bytes=os.path.getsize(self.path), exec_stats=None,
                             input_files=[self.path])
        return [ReadTask(lambda: read_blocks(*args), meta, per_task_row_limit=per_task_row_limit)]
