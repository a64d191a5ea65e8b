"""The data-file options of ``uehead train`` / ``evaluate`` / ``calibrate``: their arguments and the
:class:`uehead.data_files.DataFileOptions` they build (one home, shared by the three verbs)."""
from __future__ import annotations

import argparse

#: The data-file options of train / evaluate / calibrate: (argparse dest, DataFileOptions field).
_DATA_FILE_OPTIONS = (("text_column", "text_column"), ("label_column", "label_column"),
                      ("split_column", "split_column"), ("valid_fraction", "valid_fraction"),
                      ("test_fraction", "test_fraction"), ("split_seed", "seed"))
_SPLIT_OPTIONS = ("split_column", "valid_fraction", "test_fraction", "split_seed")


def data_options(a: argparse.Namespace, *, split_by_default: bool):
    """The DataFileOptions of ``--data`` when it is a data file (None for a dataset folder or name).

    ``split_by_default`` (train): the file is always split; otherwise (evaluate, calibrate) only
    when a split option is given, and None means every row of the file."""
    from uehead.datasets import BUILTIN, DataError, DataFileOptions, is_data_file

    given = [dest for dest, _ in _DATA_FILE_OPTIONS if getattr(a, dest) is not None]
    if str(a.data) in BUILTIN or not is_data_file(a.data):
        if given:
            flags = ", ".join("--" + d.replace("_", "-") for d in given)
            raise DataError(f"--data {a.data}: {flags} apply to a .csv / .jsonl / .parquet data file only; a dataset "
                            "folder has text and label fields and its own split files. Drop them.")
        return None
    if not split_by_default and not any(getattr(a, d) is not None for d in _SPLIT_OPTIONS):
        return None
    defaults = DataFileOptions()
    return DataFileOptions(**{field: getattr(defaults, field) if getattr(a, dest) is None else getattr(a, dest)
                              for dest, field in _DATA_FILE_OPTIONS})


def columns(a: argparse.Namespace) -> dict:
    """text_column / label_column of a labelled file read whole (no split options)."""
    return {"text_column": a.text_column or "text", "label_column": a.label_column or "label"}


def add_data_file_arguments(p: argparse.ArgumentParser, *, splits: str) -> None:
    """--text-column ... --split-seed; ``splits`` says what happens to a file without a split column."""
    p.add_argument("--text-column", default=None, help="column of a data file holding the texts (default: text)")
    p.add_argument("--label-column", default=None,
                   help="column of a data file holding the labels, names or integer ids (default: label)")
    p.add_argument("--split-column", default=None,
                   help="column of a data file giving each row's split: train, valid or test (any case; also "
                        f"training, validation, val, dev, testing) (default: none; {splits})")
    p.add_argument("--valid-fraction", type=float, default=None,
                   help="share of each class held out as valid when a data file has no split column "
                        "(default: 0.1)")
    p.add_argument("--test-fraction", type=float, default=None,
                   help="share of each class held out as test when a data file has no split column "
                        "(default: 0.1)")
    p.add_argument("--split-seed", type=int, default=None,
                   help="seed of that per-class split; the same file, fractions and seed give the same rows "
                        "(default: 0)")
