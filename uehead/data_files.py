"""A user's own labelled data file: ``.csv``, ``.jsonl`` (``.ndjson``, ``.jsonl.gz``), ``.parquet``
(torch-free; :mod:`uehead.datasets` turns what is read here into a :class:`~uehead.datasets.Dataset`).

The rules, in one place (the README's "Your own data file" says the same):

* **Columns** (:class:`DataFileOptions`): ``text_column`` holds strings, ``label_column`` the
  labels, an optional ``split_column`` the split of each row.
* **Labels** are names or integer ids (a CSV cell of digits is an integer). Training reads the
  label set from the file and orders it **sorted**: names as strings (``negative`` < ``positive``),
  integers by value. Integers 0..K-1 therefore keep their ids; other integers (stars 1..5) become the
  names ``"1"``..``"5"`` with ids 0..4. A column mixing names and integers is refused. Reading
  against known label names (a bundle's, for evaluate / calibrate): a value equal to a name is that
  name, else an integer is an id.
* **Splits**: with ``split_column``, its values ``train`` / ``valid`` / ``test`` (any case; also
  ``training``, ``validation``, ``val``, ``dev``, ``testing``); every label must have train rows.
  Without it, each class is split on its own (:func:`stratified_split`, seeded by ``seed``):
  ``floor(valid_fraction * n)`` rows to valid, ``floor(test_fraction * n)`` to test, the rest to
  train; a class too small to give valid and test one row each is refused (the message gives the
  minimum, 10 rows at the default fractions).

Every problem raises :class:`DataError` naming the file, the row or column, and the fix.
"""
from __future__ import annotations

import csv
import gzip
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uehead.errors import DataError

SPLITS = ("train", "valid", "test")
#: Values a split column may hold (compared lower-cased and stripped) -> the split they mean.
SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "valid", "validation": "valid", "val": "valid",
                 "dev": "valid", "test": "test", "testing": "test"}
#: File suffixes of a data file, and their format.
LABELLED_FILE_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".jsonl.gz": "jsonl", ".csv": "csv",
                         ".parquet": "parquet", ".pq": "parquet"}
#: The command-line option that names each column, for the fixes in error messages.
_OPTION_OF = {"text_column": "--text-column", "label_column": "--label-column", "split_column": "--split-column"}
_INTEGER = re.compile(r"\s*[-+]?[0-9]+\s*\Z")


@dataclass(frozen=True)
class DataFileOptions:
    """How to read a labelled data file (recorded in training.json as ``data_options``).

    Fields:
        text_column: the column of texts, every value a string (default ``"text"``).
        label_column: the column of labels, names or integer ids (default ``"label"``).
        split_column: a column of ``train`` / ``valid`` / ``test`` values (see :data:`SPLIT_ALIASES`)
            giving each row's split; None (default) splits the file by the two fractions.
        valid_fraction: share of each class put in valid when there is no split column, in (0, 1)
            (default 0.1).
        test_fraction: share of each class put in test when there is no split column, in (0, 1);
            the two fractions sum to less than 1, the rest is train (default 0.1).
        seed: seed of that split, in [0, 2**32) (default 0); the same file, fractions and seed give
            the same rows in each split.
    """

    text_column: str = "text"
    label_column: str = "label"
    split_column: str | None = None
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self):
        for name in ("text_column", "label_column", "split_column"):
            value = getattr(self, name)
            if not (value is None and name == "split_column") and (not isinstance(value, str) or not value):
                raise DataError(f"{_OPTION_OF[name]} must name a column, got {value!r}.")
        for name in ("valid_fraction", "test_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise DataError(f"--{name.replace('_', '-')} {value!r} must be a number in (0, 1), e.g. 0.1.")
        if self.valid_fraction + self.test_fraction >= 1:
            raise DataError(f"--valid-fraction {self.valid_fraction:g} + --test-fraction {self.test_fraction:g} "
                            "must be below 1, leaving rows to train on.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 32:
            raise DataError(f"--split-seed {self.seed!r} must be an integer in [0, 2**32).")


def labelled_file_format(path: str | os.PathLike) -> str | None:
    """'jsonl' | 'csv' | 'parquet' from the suffix of ``path``, None for anything else."""
    name = Path(path).name.lower()
    for suffix, fmt in LABELLED_FILE_FORMATS.items():
        if name.endswith(suffix):
            return fmt
    return None


def is_data_file(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` means a single data file: a known suffix, or any existing file (whose
    unknown suffix is then reported by :func:`read_file_rows`)."""
    return labelled_file_format(spec) is not None or Path(spec).is_file()


def json_lines(path: Path):
    """(line number, parsed value) of each non-blank line of a JSONL file (gzip when named .gz)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg}).") from exc


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int = 0) -> list[np.ndarray]:
    """Deterministic stratified split of row indices.

    For each class (ascending id) its row indices are permuted with one
    ``numpy.random.RandomState(seed)`` and cut by ``fractions`` (rounded down; the remainder goes
    to the first part). Each returned index array is sorted, so rows keep their file order.
    """
    rng = np.random.RandomState(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        sizes = [math.floor(f * len(idx)) for f in fractions]
        sizes[0] += len(idx) - sum(sizes)
        start = 0
        for k, size in enumerate(sizes):
            parts[k].append(idx[start:start + size])
            start += size
    return [np.sort(np.concatenate(p)) for p in parts]


# ------------------------------------------------------------------------------ reading rows
@dataclass(frozen=True)
class FileRows:
    """The rows of a data file as read: texts (checked to be strings), raw label values (checked
    to be present), raw split values (None without a split column) and where each row is."""

    path: Path
    fmt: str
    texts: list[str]
    labels: list
    splits: list | None
    lines: list[int]  # JSONL: the line number of each row; CSV / Parquet: its row number (header excluded)
    label_column: str

    def where(self, i: int) -> str:
        """``file:line`` (JSONL) or ``file: row n`` (CSV, Parquet) of row ``i``."""
        return f"{self.path}:{self.lines[i]}" if self.fmt == "jsonl" else f"{self.path}: row {self.lines[i]}"


def read_file_rows(path: str | os.PathLike, text_column: str = "text", label_column: str = "label",
                   split_column: str | None = None) -> FileRows:
    """Read and check every row of a data file (the format follows its suffix)."""
    path = Path(path)
    fmt = labelled_file_format(path)
    if fmt is None:
        raise DataError(f"{path}: unknown labelled file type {''.join(path.suffixes) or '(no suffix)'!r}; name it "
                        f"with one of the suffixes {', '.join(LABELLED_FILE_FORMATS)}.")
    if not path.is_file():
        raise DataError(f"{path}: no such file.")
    columns = {"text_column": text_column, "label_column": label_column}
    if split_column is not None:
        columns["split_column"] = split_column
    reader = {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}[fmt]
    texts, labels, splits, lines = [], [], [], []
    try:
        for where, pos, values in reader(path, columns):
            text, label = values[0], values[1]
            if not isinstance(text, str):
                raise DataError(f"{where}: column {text_column!r} must hold a string, got {type(text).__name__} "
                                f"({text!r:.40}); fill in or drop that row.")
            if label is None or (isinstance(label, str) and not label.strip()):
                raise DataError(f"{where}: column {label_column!r} is empty; every row needs a label "
                                "(fill it in or drop that row).")
            texts.append(text)
            labels.append(label)
            lines.append(pos)
            if split_column is not None:
                splits.append(values[2])
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}). Re-encode it as UTF-8.") from exc
    except (OSError, EOFError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read ({exc}).") from exc
    if not texts:
        raise DataError(f"{path}: the file has no rows; it needs a row per labelled text.")
    return FileRows(path, fmt, texts, labels, splits if split_column is not None else None, lines, label_column)


def _missing_column(where, option: str, column: str, present) -> DataError:
    return DataError(f"{where}: has no column {column!r}; its columns are {sorted(present)}. "
                     f"Name the right one with {_OPTION_OF[option]}.")


def _jsonl_rows(path: Path, columns: dict[str, str]):
    for lineno, row in json_lines(path):
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: each line must be a JSON object, got {type(row).__name__}.")
        for option, column in columns.items():
            if column not in row:
                raise _missing_column(f"{path}:{lineno}", option, column, row)
        yield f"{path}:{lineno}", lineno, [row[c] for c in columns.values()]


def _csv_rows(path: Path, columns: dict[str, str]):
    # utf-8-sig: a spreadsheet's byte-order mark would otherwise become part of the first column's name
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise DataError(f"{path}: the file is empty (no header line, no rows); it needs a header naming "
                            "its columns and a row per labelled text.")
        for option, column in columns.items():
            if column not in reader.fieldnames:
                raise _missing_column(path, option, column, reader.fieldnames)
        for rowno, row in enumerate(reader, 1):
            yield f"{path}: row {rowno}", rowno, [row[c] for c in columns.values()]


def _parquet_rows(path: Path, columns: dict[str, str]):
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError as exc:
        raise DataError(f"{path}: Parquet files need pyarrow: pip install 'uehead[parquet]' "
                        "(or use a .jsonl / .csv file).") from exc
    try:
        present = pq.read_schema(path).names
        for option, column in columns.items():
            if column not in present:
                raise _missing_column(path, option, column, present)
        table = pq.read_table(path, columns=list(dict.fromkeys(columns.values())))
    except DataError:
        raise
    except Exception as exc:  # pyarrow's own error types (ArrowInvalid, ...)
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc}).") from exc
    values = [table.column(c).to_pylist() for c in columns.values()]
    for rowno, row in enumerate(zip(*values), 1):
        yield f"{path}: row {rowno}", rowno, list(row)


# ------------------------------------------------------------------------------------ labels
def _label_value(value, where: str):
    """An int for an integer label (a digit string included), the string for a name."""
    if isinstance(value, str):
        return int(value) if _INTEGER.match(value) else value
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}: label {value!r} must be a label name or an integer id.")
    return value


def label_vocabulary(rows: FileRows) -> tuple[tuple[str, ...], np.ndarray]:
    """The label names of a file (sorted: names as strings, integers by value) and each row's id."""
    values = [_label_value(v, rows.where(i)) for i, v in enumerate(rows.labels)]
    ints = [isinstance(v, int) for v in values]
    if any(ints) and not all(ints):
        i, j = ints.index(True), ints.index(False)
        raise DataError(f"{rows.path}: column {rows.label_column!r} mixes integer ids ({rows.where(i)}: "
                        f"{rows.labels[i]!r}) and label names ({rows.where(j)}: {rows.labels[j]!r}). Write every "
                        "label as a name, or every label as an id.")
    distinct = sorted(set(values))
    if len(distinct) < 2:
        raise DataError(f"{rows.path}: column {rows.label_column!r} holds one label only ({distinct[0]!r}); a "
                        "classifier needs at least 2. Check --label-column.")
    index = {v: k for k, v in enumerate(distinct)}
    return tuple(str(v) for v in distinct), np.asarray([index[v] for v in values], dtype=np.int64)


def label_ids(rows: FileRows, label_names: tuple[str, ...]) -> np.ndarray:
    """Each row's id given known ``label_names``: a value equal to a name is that name (an integer
    too, by its decimal text), else an integer is an id in [0, len(label_names))."""
    names = tuple(label_names)
    if len(names) < 2:
        raise DataError(f"{rows.path}: reading labels needs the label names (at least 2), got {list(names)}.")
    index = {name: i for i, name in enumerate(names)}
    return np.asarray([_label_id(v, names, index, rows.where(i)) for i, v in enumerate(rows.labels)],
                      dtype=np.int64)


def _label_id(value, names: tuple[str, ...], index: dict[str, int], where: str) -> int:
    if isinstance(value, str):
        if value in index:
            return index[value]
        if not _INTEGER.match(value):
            raise DataError(f"{where}: unknown label name {value!r}; the known labels are {list(names)}.")
        value = int(value)
    elif isinstance(value, int) and not isinstance(value, bool) and str(value) in index:
        return index[str(value)]
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}: label {value!r} must be a label name or an integer id; the known labels are "
                        f"{list(names)}.")
    if not 0 <= value < len(names):
        raise DataError(f"{where}: label id {value} is out of range [0, {len(names)}) for labels {list(names)}.")
    return value


# ------------------------------------------------------------------------------------ splits
def split_name(value, where: str, column: str) -> str:
    """The split a split-column value (or a ``--split`` argument) means (see :data:`SPLIT_ALIASES`)."""
    split = SPLIT_ALIASES.get(value.strip().lower()) if isinstance(value, str) else None
    if split is None:
        raise DataError(f"{where}: column {column!r} holds {value!r}; a split is train, valid or test "
                        f"(also accepted: {', '.join(k for k in SPLIT_ALIASES if k not in SPLITS)}).")
    return split


def min_rows_per_class(valid_fraction: float, test_fraction: float) -> int:
    """The fewest rows of a class that give valid and test at least one row each."""
    n = max(1, int(1 / min(valid_fraction, test_fraction)) - 1)
    while math.floor(valid_fraction * n) < 1 or math.floor(test_fraction * n) < 1:
        n += 1
    return n


def split_rows(rows: FileRows, ids: np.ndarray, label_names: tuple[str, ...], options: DataFileOptions,
               splits: tuple[str, ...] = SPLITS, *, every_label_in_train: bool = True) -> dict[str, np.ndarray]:
    """Row indices of each split in ``splits`` (sorted, file order), by the split column or by
    the seeded stratified fractions. ``every_label_in_train``: refuse a label that has valid or
    test rows but no train rows (training reads its label set from the file)."""
    if options.split_column is not None:
        column = options.split_column
        assigned = np.asarray([split_name(v, rows.where(i), column) for i, v in enumerate(rows.splits)])
        parts = {s: np.flatnonzero(assigned == s) for s in SPLITS}
        if every_label_in_train:
            _check_labels_in_train(rows, ids, label_names, parts, column)
        for s in splits:
            if len(parts[s]) == 0:
                raise DataError(f"{rows.path}: no row has split {s!r} in column {column!r} (its values: "
                                f"{sorted(set(map(str, rows.splits)))}). Add {s} rows, or drop --split-column to "
                                "split by --valid-fraction / --test-fraction.")
        return {s: parts[s] for s in splits}
    vf, tf = options.valid_fraction, options.test_fraction
    need = min_rows_per_class(vf, tf)
    counts = np.bincount(ids, minlength=len(label_names))
    for c in np.flatnonzero((counts > 0) & (counts < need)):
        raise DataError(f"{rows.path}: class {label_names[c]!r} (column {rows.label_column!r}) has {counts[c]} "
                        f"row{'s' if counts[c] != 1 else ''}; splitting by --valid-fraction {vf:g} / "
                        f"--test-fraction {tf:g} needs at least {need} rows per class. Add rows of that class, "
                        "drop it, raise the fractions, or give the rows' splits with --split-column.")
    train, valid, test = stratified_split(ids, (1.0 - vf - tf, vf, tf), seed=options.seed)
    parts = {"train": train, "valid": valid, "test": test}
    return {s: parts[s] for s in splits}


def _check_labels_in_train(rows: FileRows, ids: np.ndarray, label_names, parts, column: str) -> None:
    in_train = set(ids[parts["train"]].tolist())
    for c, name in enumerate(label_names):
        if c in in_train:
            continue
        seen = {s: int((ids[parts[s]] == c).sum()) for s in ("valid", "test")}
        where = ", ".join(f"{n} in {s}" for s, n in seen.items() if n)
        raise DataError(f"{rows.path}: label {name!r} (column {rows.label_column!r}) has rows only outside train "
                        f"({where}) by column {column!r}; a model cannot learn a label it never trains on. Give "
                        f"some {name!r} rows the split train, or drop those rows.")
