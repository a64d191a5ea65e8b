"""Resumable writers of batch-job outputs: JSON Lines, CSV and Parquet, all written atomically.

A sink writes the output's columns (:mod:`uehead.runtime.batch_schema`) to ``<output>.partial``,
piece by piece, and:

* ``commit()`` makes what was written durable and returns a small JSON state;
* ``can_resume(state)`` / ``open(state)`` continue from such a state after a crash, cutting off
  whatever was written after it (``open(None)`` starts fresh); ``written_columns()`` names the
  columns the partial output already has (None when it holds no row yet), for the resume check;
* ``finish(dst)`` renames the complete result onto ``dst`` (and sets ``finished``); ``discard()``
  removes the partial output; ``close()`` releases the file and may be called more than once.

:class:`BufferedSink` wraps a sink to hand it fewer, larger pieces. pyarrow is imported only for Parquet.

Ids and passed-through values are written as read, except that UTF-8 cannot store a lone surrogate
(:mod:`uehead.runtime.inputs`): JSON Lines writes it as its ``\\udXXX`` escape, which reads back as the
same string; CSV and Parquet write U+FFFD in its place.
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
from uehead.runtime.batch_schema import PLAIN, OutputColumns, output_columns, prediction_arrow_schema
from uehead.runtime.inputs import replace_surrogates

__all__ = ["make_sink", "TextSink", "ParquetSink", "BufferedSink", "MERGE_ROW_GROUP_ROWS"]

MERGE_ROW_GROUP_ROWS = 65536        # rows per row group of a merged Parquet output
# Line breaks other than "\n" that str.splitlines() and JavaScript honour; JSON may escape them.
_LINE_BREAK_ESCAPES = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
_ONE_TYPE_FIX = ("Parquet needs one type per column: make that column's values one type, or write a .jsonl / .csv "
                 "output.")


def make_sink(fmt: str, partial: Path, *, id_name: str, kept: tuple[str, ...] = (), types: dict | None = None,
              columns: OutputColumns = PLAIN):
    """The sink of format ``fmt`` writing ``partial``, with the id column ``id_name``, the
    passed-through columns ``kept`` (output names) and the prediction columns ``columns``. ``types``:
    the Arrow type of the id and each passed-through column (Parquet only; a missing or None type is
    inferred from the first piece's values)."""
    if fmt == "parquet":
        return ParquetSink(partial, id_name, {c: (types or {}).get(c) for c in (id_name, *kept)}, columns)
    return TextSink(fmt, partial, output_columns(id_name, kept, columns))


def _scrubbed(value):
    """``value`` with every lone surrogate in its strings (nested ones too) replaced by U+FFFD."""
    if isinstance(value, str):
        return replace_surrogates(value)
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    return value


class TextSink:
    """JSONL or CSV appended to ``<output>.partial``; the state is the byte length after the last chunk."""

    def __init__(self, fmt: str, partial: Path, columns: tuple[str, ...]):
        self.fmt, self.partial, self.columns = fmt, partial, columns
        self.f = None
        self.finished = False

    def can_resume(self, state: dict) -> bool:
        return self.partial.is_file() and self.partial.stat().st_size >= state["partial_bytes"]

    def written_columns(self) -> tuple[str, ...] | None:
        """The columns of the partial output's header (CSV) or first row (JSON Lines)."""
        if not self.partial.is_file():
            return None
        with open(self.partial, "rb") as f:
            first = f.readline().decode("utf-8", "surrogateescape")
        if not first.strip():
            return None
        if self.fmt == "csv":
            return tuple(next(csv.reader([first])))
        try:
            return tuple(json.loads(first))
        except ValueError:
            return None

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
        # The csv module quotes only the line terminator's characters: a bare "\r" in a cell would
        # read back as a line break, so such rows are written fully quoted.
        w_quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
        for r in rows:
            cells = ["" if v is None else json.dumps(v) if isinstance(v, (list, dict)) else v for v in r]
            (w_quoted if any(isinstance(c, str) and "\r" in c for c in cells) else w).writerow(cells)
        return buf.getvalue().encode("utf-8")

    def write(self, cols: dict[str, list]) -> None:
        rows = list(zip(*(cols[c] for c in self.columns)))
        if self.fmt == "jsonl":
            self.f.write(b"".join(self._json_line(r) for r in rows))
            return
        try:
            self.f.write(self._csv_lines(rows))
        except UnicodeEncodeError:
            self.f.write(self._csv_lines([_scrubbed(list(r)) for r in rows]))

    def _json_line(self, row: tuple) -> bytes:
        record = dict(zip(self.columns, row))
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        if not line.isascii():  # readers that split on every Unicode line break must still see one line
            line = line.translate(_LINE_BREAK_ESCAPES)
        try:
            return line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: its JSON escape reads back as the same string
            return (json.dumps(record, default=str) + "\n").encode("ascii")

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


def _arrow_array(pa, values: list, arrow_type, name: str):
    """``values`` as an Arrow array of ``arrow_type`` (None = inferred), lone surrogates replaced."""
    try:
        try:
            return pa.array(values, type=arrow_type)
        except UnicodeEncodeError:
            return pa.array(_scrubbed(values), type=arrow_type)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"column {name!r} cannot be stored as Parquet{f' {arrow_type}' if arrow_type else ''} "
                        f"({exc}). {_ONE_TYPE_FIX}") from None


def _part_name(i: int) -> str:
    return f"part-{i:06d}.parquet"


class ParquetSink:
    """One complete Parquet file per chunk in ``<output>.partial.parts/`` (a Parquet file cannot be
    appended to after a crash), merged into ``<output>.partial`` and renamed at the end."""

    def __init__(self, partial: Path, id_name: str, types: dict, columns: OutputColumns = PLAIN):
        # types: Arrow type (None = infer from the first piece) of the id and each passed-through column
        self.partial, self.id_name, self.types, self.columns = partial, id_name, dict(types), columns
        self.parts = partial.with_name(partial.name + ".parts")
        self.count = 0
        self.finished = False

    def can_resume(self, state: dict) -> bool:
        return all((self.parts / _part_name(i)).is_file() for i in range(state["parts"]))

    def written_columns(self) -> tuple[str, ...] | None:
        """The columns of the first part file."""
        first = self.parts / _part_name(0)
        if not first.is_file():
            return None
        _, pq = pyarrow_modules()
        return tuple(pq.read_schema(first).names)

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
            schema = pq.read_schema(self.parts / _part_name(0))
            self.types = {c: schema.field(c).type for c in self.types}

    def _schema(self, default=None):
        kept = {c: t if t is not None else default for c, t in self.types.items() if c != self.id_name}
        return prediction_arrow_schema(self.id_name, self.types[self.id_name] or default, kept, self.columns)

    def _table(self, cols: dict[str, list]):
        pa, _ = pyarrow_modules()
        for name, t in self.types.items():
            if t is None:
                inferred = _arrow_array(pa, cols[name], None, name).type
                self.types[name] = pa.string() if pa.types.is_null(inferred) else inferred
        schema = self._schema()
        arrays = [_arrow_array(pa, cols[f.name], f.type, f.name) for f in schema]
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
        schema = self._schema(default=pa.string())
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
