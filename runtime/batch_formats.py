"""The file formats of batch jobs: which suffix is which format, and the optional pyarrow Parquet needs.

JSON Lines and CSV need nothing beyond the standard library. Parquet needs pyarrow
(``pip install 'uehead[parquet]'``), imported only when a Parquet file is involved, through
:func:`pyarrow_modules`, so that a missing install fails with the extra to install.
"""
from __future__ import annotations

from pathlib import Path

from uehead.errors import DataError

__all__ = ["FORMATS", "file_format", "pyarrow_modules"]

#: File suffix (lower case) -> format name.
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


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
    """'jsonl' | 'csv' | 'parquet' from the file's suffix, or DataError naming the supported ones.

    ``role`` ("input" or "output") goes into the message.
    """
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown {role} file type {Path(path).suffix or '(no suffix)'!r}. "
                        f"Name the {role} file with one of the suffixes {', '.join(FORMATS)}.")
    return fmt
