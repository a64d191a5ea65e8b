"""Chunked readers of batch-job inputs: JSON Lines, CSV and Parquet, streamed ``chunk_rows`` rows at a time.

:func:`read_chunks` yields :class:`Chunk` s: the raw values of the text column, of the id column and
of any input columns the job passes through, for consecutive data rows. The rules every engine
shares live here: blank lines are not rows; a CSV's empty text cell is a missing text; CSV quoting
is read strictly (a quote left open is an error, not a cell swallowing the following lines); a
missing column, malformed line or unreadable file raises :class:`~uehead.errors.DataError` naming
the file, the line and the fix. pyarrow is imported only for Parquet.

Which columns a file has (:func:`input_columns`): a CSV's header, a Parquet file's schema, the keys
of a JSON Lines file's first object.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from uehead.errors import DataError
from uehead.runtime.batch_formats import pyarrow_modules

__all__ = ["Chunk", "read_chunks", "input_columns", "row_count_estimate", "arrow_types", "EXACT_COUNT_MAX_BYTES"]

EXACT_COUNT_MAX_BYTES = 256 << 20   # count lines exactly up to this size, else extrapolate from a sample
_CSV_FIX = "Check the quoting of the record starting on that line: a field that opens with a quote must end with one."


@dataclass(frozen=True)
class Chunk:
    """Consecutive data rows of an input file, as read."""

    texts: list             # raw values of the text column (None where absent)
    ids: list | None        # raw values of the id column, None when there is no id column
    extra: dict[str, list] = field(default_factory=dict)  # passed-through columns by input name

    def __len__(self) -> int:
        return len(self.texts)

    def split(self, k: int) -> tuple["Chunk", "Chunk"]:
        """(the first ``k`` rows, the rest)."""
        def part(sl):
            return Chunk(self.texts[sl], None if self.ids is None else self.ids[sl],
                         {c: v[sl] for c, v in self.extra.items()})
        return part(slice(None, k)), part(slice(k, None))

    def rows(self) -> Iterator[tuple]:
        """Each row's values: (text, id, *passed-through columns)."""
        ids = self.ids if self.ids is not None else [None] * len(self.texts)
        return zip(self.texts, ids, *self.extra.values())


def _missing_column(path: Path, what: str, name: str, columns: Sequence[str]) -> DataError:
    flag = {"text": "--text-column NAME", "id": "--id-column NAME (or leave it out to use row numbers)",
            "kept": "only columns the input has to --keep-columns"}[what]
    shown = ", ".join(repr(c) for c in list(columns)[:20]) + (" ..." if len(columns) > 20 else "")
    return DataError(f"{path}: no {what} column {name!r}; the columns are {shown or '(none)'}. Pass {flag}.")


def _check_present(path: Path, present, columns: Sequence[str], text_column: str, id_column: str | None,
                   keep: Sequence[str]) -> None:
    if text_column not in present:
        raise _missing_column(path, "text", text_column, columns)
    if id_column is not None and id_column not in present:
        raise _missing_column(path, "id", id_column, columns)
    for c in keep:
        if c not in present:
            raise _missing_column(path, "kept", c, columns)


def read_chunks(path: Path, fmt: str, *, text_column: str, id_column: str | None, chunk_rows: int,
                keep_columns: Sequence[str] = ()) -> Iterator[Chunk]:
    """Chunks of the file's data rows, from the first; ``keep_columns`` fill :attr:`Chunk.extra`."""
    keep = tuple(keep_columns)
    if fmt == "jsonl":
        return _read_jsonl(path, text_column, id_column, keep, chunk_rows)
    if fmt == "csv":
        return _read_csv(path, text_column, id_column, keep, chunk_rows)
    return _read_parquet(path, text_column, id_column, keep, chunk_rows)


def _json_object(path: Path, raw: bytes, line_no: int) -> dict:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, too deeply nested
        raise DataError(f"{path}, line {line_no}: not valid JSON ({exc}). Each line must hold one JSON "
                        "object; fix or delete that line, then run again.") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}, line {line_no}: expected a JSON object ({{...}}), got a "
                        f"{type(obj).__name__}. Each line must hold one JSON object.")
    return obj


def _read_jsonl(path, text_column, id_column, keep, chunk_rows) -> Iterator[Chunk]:
    wanted = {text_column, *keep} | ({id_column} if id_column is not None else set())
    seen: set | None = set()  # columns met in the first chunk (then None: checked)
    first_keys: list[str] = []
    texts, ids, extra = [], [], {c: [] for c in keep}

    def chunk() -> Chunk:
        nonlocal seen
        if seen is not None:
            _check_present(path, seen, first_keys, text_column, id_column, keep)
            seen = None
        return Chunk(texts, ids if id_column is not None else None, extra)

    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            obj = _json_object(path, raw, line_no)
            if seen is not None:
                first_keys = first_keys or list(obj)
                seen.update(wanted.intersection(obj))
            texts.append(obj.get(text_column))
            if id_column is not None:
                ids.append(obj.get(id_column))
            for c in keep:
                extra[c].append(obj.get(c))
            if len(texts) >= chunk_rows:
                yield chunk()
                texts, ids, extra = [], [], {c: [] for c in keep}
    if texts:
        yield chunk()


def _csv_records(path: Path):
    """(line where the record starts, record) of each non-blank CSV record, header first."""
    # Texts can be huge (the runtime truncates them); lift the csv module's 128 KiB cell cap.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, strict=True)
        start = 1
        try:
            for rec in reader:
                if rec:  # a blank line is not a record
                    yield start, rec
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DataError(f"{path}, line {start}: malformed CSV ({exc}). {_CSV_FIX}") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}, line {start}: not UTF-8 text ({exc}). Re-save the file as UTF-8.") from None


def _read_csv(path, text_column, id_column, keep, chunk_rows) -> Iterator[Chunk]:
    records = _csv_records(path)
    try:
        _, header = next(records)
    except StopIteration:
        raise DataError(f"{path}: empty file; a CSV input needs a header row naming its columns.") from None
    _check_present(path, header, header, text_column, id_column, keep)
    ti = header.index(text_column)
    ii = header.index(id_column) if id_column is not None else -1
    ki = [header.index(c) for c in keep]
    texts, ids, extra = [], [], {c: [] for c in keep}
    for _, rec in records:
        n = len(rec)
        text = rec[ti] if ti < n else None
        texts.append(text if text != "" else None)  # CSV cannot tell null from "": empty = missing
        if ii >= 0:
            ids.append(rec[ii] if ii < n else None)
        for c, i in zip(keep, ki):
            extra[c].append(rec[i] if i < n else None)
        if len(texts) >= chunk_rows:
            yield Chunk(texts, ids if ii >= 0 else None, extra)
            texts, ids, extra = [], [], {c: [] for c in keep}
    if texts:
        yield Chunk(texts, ids if ii >= 0 else None, extra)


def _open_parquet(path: Path):
    pa, pq = pyarrow_modules()
    try:
        pf = pq.ParquetFile(path)
        pf.schema_arrow  # noqa: B018  (decoded lazily: a corrupt schema fails here, not mid-job)
        return pf
    except (pa.ArrowException, OSError, ValueError) as exc:  # ValueError: column names not UTF-8
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc}). Check the file or "
                        "its suffix.") from None


def _read_parquet(path, text_column, id_column, keep, chunk_rows) -> Iterator[Chunk]:
    pa, _ = pyarrow_modules()
    pf = _open_parquet(path)
    names = pf.schema_arrow.names
    _check_present(path, names, names, text_column, id_column, keep)
    columns = list(dict.fromkeys([text_column, *([id_column] if id_column is not None else []), *keep]))
    batches = pf.iter_batches(batch_size=chunk_rows, columns=columns)
    while True:
        try:
            batch = next(batches, None)
            if batch is None:
                return
            values = {c: batch.column(c).to_pylist() for c in columns}
        except (pa.ArrowException, OSError, ValueError) as exc:  # corrupt pages, invalid UTF-8
            raise DataError(f"{path}: a row group cannot be read ({type(exc).__name__}: {exc}). "
                            "Check the file, or rewrite it.") from None
        yield Chunk(values[text_column], values[id_column] if id_column is not None else None,
                    {c: values[c] for c in keep})


def input_columns(path: Path, fmt: str) -> list[str]:
    """The file's column names (JSON Lines: the keys of its first object; [] when it has none)."""
    if fmt == "parquet":
        return list(_open_parquet(path).schema_arrow.names)
    if fmt == "csv":
        records = _csv_records(path)
        try:
            return next(records, (0, []))[1]
        finally:
            records.close()
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if raw.strip():
                return list(_json_object(path, raw, line_no))
    return []


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


def arrow_types(source: Path, source_format: str, columns: Sequence[str]) -> dict:
    """Arrow type of each of ``columns`` as :func:`read_chunks` yields them: string for CSV, the
    Parquet input's own type (a dictionary's value type); None for JSON Lines, whose values may be
    of any JSON type (infer them from the values), or for a column the file lacks."""
    pa, _ = pyarrow_modules()
    if source_format == "csv":
        return {c: pa.string() for c in columns}
    if source_format != "parquet":
        return {c: None for c in columns}
    schema = _open_parquet(source).schema_arrow
    out = {}
    for c in columns:
        t = schema.field(c).type if c in schema.names else None
        out[c] = t.value_type if t is not None and pa.types.is_dictionary(t) else t
    return out
