"""Chunked readers of batch-job inputs: JSON Lines, CSV and Parquet, streamed ``chunk_rows`` rows at a time.

:func:`read_chunks` yields :class:`Chunk` s: the raw text values, the raw id values, and where to
re-enter the file after the chunk (so a resumed job restarts at the next row). The rules every
engine shares live here: blank lines are not rows; a CSV's empty cell is a missing text; a missing
column, malformed line or unreadable file raises :class:`~uehead.errors.DataError` naming the
file, the line and the fix. pyarrow is imported only for Parquet.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from uehead.errors import DataError
from uehead.runtime.batch_formats import pyarrow_modules

__all__ = ["Chunk", "read_chunks", "row_count_estimate", "id_arrow_type", "EXACT_COUNT_MAX_BYTES"]

EXACT_COUNT_MAX_BYTES = 256 << 20   # count lines exactly up to this size, else extrapolate from a sample


@dataclass(frozen=True)
class Chunk:
    """Consecutive data rows of an input file, as read."""

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



def id_arrow_type(source: Path, source_format: str, id_column: str | None):
    """Arrow type of the ids as :func:`read_chunks` yields them: int64 row numbers (no id column),
    string for CSV, the Parquet input's own type (a dictionary's value type); None for JSON Lines,
    whose ids may be of any JSON type (infer it from the values), or when the column is missing
    (:func:`read_chunks` reports that)."""
    pa, _ = pyarrow_modules()
    if id_column is None:
        return pa.int64()
    if source_format == "csv":
        return pa.string()
    if source_format == "parquet":
        schema = _open_parquet(source).schema_arrow
        if id_column not in schema.names:
            return None
        t = schema.field(id_column).type
        return t.value_type if pa.types.is_dictionary(t) else t
    return None
