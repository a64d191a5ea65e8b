"""Resumable writers of batch-job outputs: JSON Lines, CSV and Parquet, all written atomically.

A sink writes the output's columns (:mod:`uehead.runtime.batch_schema`) to ``<output>.partial``,
piece by piece, and:

* ``commit()`` makes what was written durable and returns a small JSON state;
* ``can_resume(state)`` / ``open(state)`` continue from such a state after a crash, cutting off
  whatever was written after it (``open(None)`` starts fresh);
* ``finish(dst)`` renames the complete result onto ``dst`` (and sets ``finished``); ``discard()``
  removes the partial output; ``close()`` releases the file and may be called more than once.

:class:`BufferedSink` wraps a sink to hand it fewer, larger pieces. pyarrow is imported only for Parquet.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

from uehead.errors import DataError
from uehead.runtime.batch_formats import pyarrow_modules
from uehead.runtime.batch_schema import output_columns, prediction_arrow_schema

__all__ = ["make_sink", "TextSink", "ParquetSink", "BufferedSink", "MERGE_ROW_GROUP_ROWS"]

MERGE_ROW_GROUP_ROWS = 65536        # rows per row group of a merged Parquet output
_ONE_TYPE_FIX = "Parquet needs one type per column: make the ids one type, or write a .jsonl / .csv output."


def make_sink(fmt: str, partial: Path, *, id_name: str, id_type=None):
    """The sink of format ``fmt`` writing ``partial``. ``id_type``: the Arrow type of the id column
    (Parquet only; None = infer it from the first piece's ids)."""
    if fmt == "parquet":
        return ParquetSink(partial, id_name, id_type)
    return TextSink(fmt, partial, output_columns(id_name))
class TextSink:
    """JSONL or CSV appended to ``<output>.partial``; the state is the byte length after the last chunk."""

    def __init__(self, fmt: str, partial: Path, columns: tuple[str, ...]):
        self.fmt, self.partial, self.columns = fmt, partial, columns
        self.f = None
        self.finished = False

    def can_resume(self, state: dict) -> bool:
        return self.partial.is_file() and self.partial.stat().st_size >= state["partial_bytes"]

    def open(self, state: dict | None) -> None:
        if state is None:
            self.f = open(self.partial, "wb")
            if self.fmt == "csv":
                self.f.write(self._csv_lines([self.columns]))
        else:  # cut off whatever was written after the last recorded chunk
            self.f = open(self.partial, "r+b")
            self.f.truncate(state["partial_bytes"])
            self.f.seek(0, os.SEEK_END)

    @staticmethod
    def _csv_lines(rows) -> bytes:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for r in rows:
            w.writerow(["" if v is None else json.dumps(v) if isinstance(v, (list, dict)) else v for v in r])
        return buf.getvalue().encode("utf-8")

    def write(self, cols: dict[str, list]) -> None:
        rows = zip(*(cols[c] for c in self.columns))
        if self.fmt == "csv":
            data = self._csv_lines(rows)
        else:
            data = "".join(json.dumps(dict(zip(self.columns, r)), ensure_ascii=False, default=str) + "\n"
                           for r in rows).encode("utf-8")
        self.f.write(data)

    def commit(self) -> dict:
        self.f.flush()
        os.fsync(self.f.fileno())
        return {"partial_bytes": self.f.tell()}

    def finish(self, dst: Path) -> None:
        self.commit()
        self.f.close()
        os.replace(self.partial, dst)
        self.finished = True

    def close(self) -> None:
        if self.f is not None and not self.f.closed:
            self.f.close()

    def discard(self) -> None:
        self.partial.unlink(missing_ok=True)


def _part_name(i: int) -> str:
    return f"part-{i:06d}.parquet"


class ParquetSink:
    """One complete Parquet file per chunk in ``<output>.partial.parts/`` (a Parquet file cannot be
    appended to after a crash), merged into ``<output>.partial`` and renamed at the end."""

    def __init__(self, partial: Path, id_name: str, id_type=None):
        self.partial, self.id_name, self.id_type = partial, id_name, id_type
        self.parts = partial.with_name(partial.name + ".parts")
        self.count = 0
        self.finished = False

    def can_resume(self, state: dict) -> bool:
        return all((self.parts / _part_name(i)).is_file() for i in range(state["parts"]))

    def open(self, state: dict | None) -> None:
        pa, pq = pyarrow_modules()
        if state is None:
            shutil.rmtree(self.parts, ignore_errors=True)
            self.parts.mkdir()
            return
        self.count = state["parts"]
        keep = {_part_name(i) for i in range(self.count)}
        for p in self.parts.iterdir():
            if p.name not in keep:
                p.unlink()
        if self.count:
            self.id_type = pq.read_schema(self.parts / _part_name(0)).field(self.id_name).type

    def _table(self, cols: dict[str, list]):
        pa, _ = pyarrow_modules()
        if self.id_type is None:
            try:
                inferred = pa.array(cols[self.id_name]).type
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                raise DataError(f"the ids in column {self.id_name!r} cannot be stored in Parquet ({exc}). "
                                f"{_ONE_TYPE_FIX}") from None
            self.id_type = pa.string() if pa.types.is_null(inferred) else inferred
        schema = prediction_arrow_schema(self.id_name, self.id_type)
        arrays = []
        for field in schema:
            try:
                arrays.append(pa.array(cols[field.name], type=field.type))
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                raise DataError(f"column {field.name!r} cannot be stored as Parquet {field.type} ({exc}). "
                                f"{_ONE_TYPE_FIX}") from None
        return pa.Table.from_arrays(arrays, schema=schema)

    def write(self, cols: dict[str, list]) -> None:
        _, pq = pyarrow_modules()
        table = self._table(cols)
        final = self.parts / _part_name(self.count)
        tmp = final.with_name(final.name + ".tmp")
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        self.count += 1

    def commit(self) -> dict:
        return {"parts": self.count}

    def finish(self, dst: Path) -> None:
        pa, pq = pyarrow_modules()
        schema = prediction_arrow_schema(self.id_name, self.id_type if self.id_type is not None else pa.string())
        with open(self.partial, "wb") as fh:
            with pq.ParquetWriter(fh, schema) as writer:
                buffered, rows = [], 0
                for i in range(self.count):
                    t = pq.read_table(self.parts / _part_name(i), schema=schema)
                    buffered.append(t)
                    rows += t.num_rows
                    if rows >= MERGE_ROW_GROUP_ROWS:
                        writer.write_table(pa.concat_tables(buffered))
                        buffered, rows = [], 0
                if buffered:
                    writer.write_table(pa.concat_tables(buffered))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(self.partial, dst)
        shutil.rmtree(self.parts, ignore_errors=True)
        self.finished = True

    def close(self) -> None:
        pass

    def discard(self) -> None:
        shutil.rmtree(self.parts, ignore_errors=True)
        self.partial.unlink(missing_ok=True)


class BufferedSink:
    """Hands ``sink`` the written pieces joined into pieces of at least ``min_rows`` rows (the rest at
    :meth:`finish`), for writers that pay per piece (a Parquet part file, an fsync). No ``commit``:
    rows held in the buffer are not written yet, so its state could not be resumed from."""

    def __init__(self, sink, min_rows: int):
        self.sink, self.min_rows = sink, min_rows
        self.pending: dict[str, list] | None = None

    @property
    def finished(self) -> bool:
        return self.sink.finished

    def open(self, state: dict | None) -> None:
        if state is not None:
            raise ValueError("a BufferedSink cannot resume: it commits nothing")
        self.sink.open(None)

    def write(self, cols: dict[str, list]) -> None:
        if self.pending is None:
            self.pending = {name: [] for name in cols}
        for name, values in cols.items():
            self.pending[name].extend(values)
        if len(next(iter(self.pending.values()), ())) >= self.min_rows:
            self._flush()

    def _flush(self) -> None:
        if self.pending is not None and len(next(iter(self.pending.values()), ())):
            self.sink.write(self.pending)
        self.pending = None

    def finish(self, dst: Path) -> None:
        self._flush()
        self.sink.finish(dst)

    def close(self) -> None:
        self.sink.close()

    def discard(self) -> None:
        self.pending = None
        self.sink.discard()
