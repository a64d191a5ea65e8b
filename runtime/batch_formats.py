"""File formats of :mod:`uehead.runtime.batch`: chunked readers and resumable writers for JSONL, CSV, Parquet.

Readers yield :class:`Chunk` s of at most ``chunk_rows`` rows (the raw text values, the raw id values,
and where to re-enter the file after the chunk). Sinks write chunks to a partial output, report after
each chunk a small JSON state from which :meth:`open` can resume, and :meth:`finish` renames the
complete result onto the output path. pyarrow is imported only when a Parquet file is involved.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from uehead.datasets import DataError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
EXACT_COUNT_MAX_BYTES = 256 << 20   # count lines exactly up to this size, else extrapolate from a sample
MERGE_ROW_GROUP_ROWS = 65536        # rows per row group of a merged Parquet output


def pyarrow_modules():
    """(pyarrow, pyarrow.parquet), or ImportError naming the extra to install."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError("Parquet files need pyarrow, which is not installed. Install it with: "
                          "pip install 'uehead[parquet]' (or use a .jsonl / .csv file).") from exc
    return pa, pq


def file_format(path: Path, role: str) -> str:
    """'jsonl' | 'csv' | 'parquet' from the file's suffix, or DataError naming the supported ones."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown {role} file type {Path(path).suffix or '(no suffix)'!r}. "
                        f"Name the {role} file with one of the suffixes {', '.join(FORMATS)}.")
    return fmt


@dataclass(frozen=True)
class Chunk:
    texts: list             # raw values of the text column (None where absent)
    ids: list | None        # raw values of the id column, None when there is no id column
    position: dict | None   # where to re-enter the file after this chunk (JSONL: byte offset + line)


def _missing_column(path: Path, what: str, name: str, columns: list[str]) -> DataError:
    flag = "--text-column NAME" if what == "text" else "--id-column NAME (or leave it out to use row numbers)"
    shown = ", ".join(repr(c) for c in columns[:20]) + (" ..." if len(columns) > 20 else "")
    return DataError(f"{path}: no {what} column {name!r}; the columns are {shown or '(none)'}. Pass {flag}.")


def read_chunks(path: Path, fmt: str, *, text_column: str, id_column: str | None, chunk_rows: int,
                start_row: int = 0, position: dict | None = None) -> Iterator[Chunk]:
    """Chunks of the file's data rows from ``start_row`` on (JSONL re-enters at ``position`` instead)."""
    if fmt == "jsonl":
        return _read_jsonl(path, text_column, id_column, chunk_rows, position or {"offset": 0, "line": 0})
    if fmt == "csv":
        return _read_csv(path, text_column, id_column, chunk_rows, start_row)
    return _read_parquet(path, text_column, id_column, chunk_rows, start_row)


def _read_jsonl(path, text_column, id_column, chunk_rows, position) -> Iterator[Chunk]:
    offset, line_no = int(position["offset"]), int(position["line"])
    check = offset == 0  # check the columns on the first chunk of a fresh run
    texts: list = []
    ids: list = []
    seen_text = seen_id = False
    first_keys: list[str] = []
    with open(path, "rb") as f:
        f.seek(offset)
        for raw in f:
            offset += len(raw)
            line_no += 1
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
                raise DataError(f"{path}, line {line_no}: not valid JSON ({exc}). Each line must hold one JSON "
                                "object; fix or delete that line, then run again.") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}, line {line_no}: expected a JSON object ({{...}}), got a "
                                f"{type(obj).__name__}. Each line must hold one JSON object.")
            if check:
                first_keys = first_keys or list(obj)
                seen_text = seen_text or text_column in obj
                seen_id = seen_id or (id_column is not None and id_column in obj)
            texts.append(obj.get(text_column))
            if id_column is not None:
                ids.append(obj.get(id_column))
            if len(texts) >= chunk_rows:
                if check:
                    _check_seen(path, text_column, id_column, seen_text, seen_id, first_keys)
                    check = False
                yield Chunk(texts, ids if id_column is not None else None, {"offset": offset, "line": line_no})
                texts, ids = [], []
    if texts:
        if check:
            _check_seen(path, text_column, id_column, seen_text, seen_id, first_keys)
        yield Chunk(texts, ids if id_column is not None else None, {"offset": offset, "line": line_no})


def _check_seen(path, text_column, id_column, seen_text, seen_id, keys) -> None:
    if not seen_text:
        raise _missing_column(path, "text", text_column, keys)
    if id_column is not None and not seen_id:
        raise _missing_column(path, "id", id_column, keys)


def _read_csv(path, text_column, id_column, chunk_rows, start_row) -> Iterator[Chunk]:
    # Texts can be huge (the runtime truncates them); lift the csv module's 128 KiB cell cap.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty file; a CSV input needs a header row naming its columns.")
            if text_column not in header:
                raise _missing_column(path, "text", text_column, header)
            if id_column is not None and id_column not in header:
                raise _missing_column(path, "id", id_column, header)
            ti = header.index(text_column)
            ii = header.index(id_column) if id_column is not None else -1
            texts: list = []
            ids: list = []
            row = 0
            for rec in reader:
                if not rec:  # blank line
                    continue
                row += 1
                if row <= start_row:
                    continue
                text = rec[ti] if ti < len(rec) else None
                texts.append(text if text != "" else None)  # CSV cannot tell null from "": empty = missing
                if ii >= 0:
                    ids.append(rec[ii] if ii < len(rec) else None)
                if len(texts) >= chunk_rows:
                    yield Chunk(texts, ids if ii >= 0 else None, None)
                    texts, ids = [], []
        except csv.Error as exc:
            raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({exc}). Check the quoting "
                            "around that line.") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc}). Re-save the file as UTF-8.") from None
    if texts:
        yield Chunk(texts, ids if ii >= 0 else None, None)


def _open_parquet(path: Path):
    pa, pq = pyarrow_modules()
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc}). Check the file or its suffix.") from None


def _read_parquet(path, text_column, id_column, chunk_rows, start_row) -> Iterator[Chunk]:
    pf = _open_parquet(path)
    names = pf.schema_arrow.names
    if text_column not in names:
        raise _missing_column(path, "text", text_column, names)
    if id_column is not None and id_column not in names:
        raise _missing_column(path, "id", id_column, names)
    columns = [text_column] + ([id_column] if id_column not in (None, text_column) else [])
    md = pf.metadata
    group, before = 0, 0
    while group < md.num_row_groups and before + md.row_group(group).num_rows <= start_row:
        before += md.row_group(group).num_rows
        group += 1
    if group >= md.num_row_groups:
        return
    skip = start_row - before
    for batch in pf.iter_batches(batch_size=chunk_rows, row_groups=list(range(group, md.num_row_groups)),
                                 columns=columns):
        if skip:
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            batch, skip = batch.slice(skip), 0
        texts = batch.column(text_column).to_pylist()
        ids = batch.column(id_column).to_pylist() if id_column is not None else None
        yield Chunk(texts, ids, None)


def row_count_estimate(path: Path, fmt: str) -> int | None:
    """Rows in the file for the progress bar's ETA: exact for Parquet (metadata) and small text files."""
    if fmt == "parquet":
        return _open_parquet(path).metadata.num_rows
    size = path.stat().st_size
    lines, read, last = 0, 0, b""
    with open(path, "rb") as f:
        while read < min(size, EXACT_COUNT_MAX_BYTES) and (block := f.read(1 << 20)):
            lines += block.count(b"\n")
            read += len(block)
            last = block[-1:]
    if read < size:  # a big file: extrapolate from the sample
        lines = int(lines * size / max(read, 1))
    elif last not in (b"", b"\n"):
        lines += 1
    return max(lines - (1 if fmt == "csv" else 0), 0)


# ----------------------------------------------------------------------------- sinks
def make_sink(fmt: str, partial: Path, *, columns: tuple[str, ...], source: Path, source_format: str,
              id_column: str | None, arrow_schema: Callable[[str, Any], Any]):
    if fmt == "parquet":
        return ParquetSink(partial, columns[0], _id_arrow_type(source, source_format, id_column), arrow_schema)
    return TextSink(fmt, partial, columns)


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


def _id_arrow_type(source: Path, source_format: str, id_column: str | None):
    """Arrow type of the output id: int64 row numbers, CSV strings, the Parquet input's own type; None =
    infer from the first chunk (JSONL)."""
    pa, _ = pyarrow_modules()
    if id_column is None:
        return pa.int64()
    if source_format == "csv":
        return pa.string()
    if source_format == "parquet":
        schema = _open_parquet(source).schema_arrow
        if id_column not in schema.names:
            return None  # read_chunks reports the missing column
        t = schema.field(id_column).type
        return t.value_type if pa.types.is_dictionary(t) else t
    return None


def _part_name(i: int) -> str:
    return f"part-{i:06d}.parquet"


class ParquetSink:
    """One complete Parquet file per chunk in ``<output>.partial.parts/`` (a Parquet file cannot be
    appended to after a crash), merged into ``<output>.partial`` and renamed at the end."""

    def __init__(self, partial: Path, id_name: str, id_type, arrow_schema: Callable[[str, Any], Any]):
        self.partial, self.id_name, self.id_type, self.arrow_schema = partial, id_name, id_type, arrow_schema
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
                raise DataError(f"the ids in column {self.id_name!r} cannot be stored in Parquet ({exc}). Parquet "
                                "needs one type per column: make the ids one type, or write a .jsonl / .csv "
                                "output.") from None
            self.id_type = pa.string() if pa.types.is_null(inferred) else inferred
        schema = self.arrow_schema(self.id_name, self.id_type)
        arrays = []
        for field in schema:
            try:
                arrays.append(pa.array(cols[field.name], type=field.type))
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                raise DataError(f"column {field.name!r} cannot be stored as Parquet {field.type} ({exc}). Parquet "
                                "needs one type per column: make the ids one type, or write a .jsonl / .csv "
                                "output.") from None
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
        schema = self.arrow_schema(self.id_name, self.id_type if self.id_type is not None else pa.string())
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
