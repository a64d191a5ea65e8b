"""The progress file of a resumable batch job, and what makes a resumed run the same job.

``<output>.progress.json`` holds the job's identity (:func:`job_identity`): the input's path and
format, the output format, the columns read and passed through, and the model: for a loaded bundle,
the sha256 of its ``manifest.json`` (which lists every other file's sha256), so an output can only
be continued by the bundle that began it. After each chunk it also records ``rows_done``,
``error_rows``, the sink's state and ``rows_sha256``: the sha256 of the values of every row read so
far (:class:`RowsDigest`: text, id and passed-through columns, as read).

A resumed run re-reads the rows already done without predicting them and checks that hash
(:func:`skip_done`) before writing anything: an input that changed, even to one of the same size
and modification time, is refused, while the same content under a newer timestamp resumes.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any, Iterator

from uehead.bundle import MANIFEST_FILE
from uehead.errors import DataError
from uehead.manifest_checksum import manifest_sha256
from uehead.runtime.batch_readers import Chunk

__all__ = ["PROGRESS_VERSION", "RowsDigest", "progress_path", "job_identity", "model_identity",
           "load_progress", "save_progress", "skip_done"]

#: Bumped when the progress file changes meaning; an older file is then refused (start over).
PROGRESS_VERSION = 2
_FRESH = "run without --resume to start over."


class RowsDigest:
    """Running sha256 of the rows read: one canonical JSON line per row, chunking-independent."""

    def __init__(self):
        self._hash = hashlib.sha256()
        self.rows = 0

    def update(self, chunk: Chunk) -> None:
        for row in chunk.rows():
            # ASCII JSON: lone surrogates are escaped; repr() covers Parquet's non-JSON values
            self._hash.update(json.dumps(row, default=repr).encode("ascii") + b"\n")
        self.rows += len(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def progress_path(output: Path) -> Path:
    """Where the progress of a job writing ``output`` is recorded."""
    return output.with_name(output.name + ".progress.json")


def model_identity(model: Any) -> str:
    """The model part of a job's identity: the sha256 of a bundle's manifest for a loaded bundle
    (anything with a ``path`` holding a ``manifest.json``), else the model's class."""
    path = getattr(model, "path", None)
    if path is not None and (Path(path) / MANIFEST_FILE).is_file():
        return f"manifest sha256 {manifest_sha256(path)}"
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def job_identity(job, model: Any) -> dict:
    """What a resumed run must share with the interrupted one (its input's content is checked apart)."""
    return {"version": PROGRESS_VERSION, "input": str(job.input.resolve()), "input_format": job.input_format,
            "output_format": job.output_format, "text_column": job.text_column, "id_column": job.id_column,
            "keep_columns": list(job.keep_columns), "bundle": model_identity(model)}


def load_progress(path: Path, identity: dict) -> dict | None:
    """The saved progress of an interrupted run of this same job, or None when there is none."""
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable progress file ({exc}). Delete it and {_FRESH}") from None
    changed = [k for k, v in identity.items() if saved.get(k) != v]
    if changed:
        raise DataError(
            f"{path}: the interrupted run was a different job ({', '.join(changed)} changed: "
            f"{', '.join(f'{saved.get(k)!r} -> {identity[k]!r}' for k in changed)}). A resumed run must read the "
            f"same input with the same bundle and options; {_FRESH}")
    missing = [k for k in ("rows_done", "error_rows", "rows_sha256", "sink") if k not in saved]
    if missing:
        raise DataError(f"{path}: progress file lacks {missing}. Delete it and {_FRESH}")
    return saved


def save_progress(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` durably and atomically (a crash leaves the old or the new file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        # dumps, not dump: json.dump always takes the pure-Python encoder, whose closures are
        # reference cycles left for the collector once per chunk of a job.
        f.write(json.dumps(data))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def skip_done(chunks: Iterator[Chunk], saved: dict, digest: RowsDigest, source: Path) -> Iterator[Chunk]:
    """Read the ``saved["rows_done"]`` rows already done into ``digest``, check them against the
    saved hash, and return the chunks of the rows after them. Raises DataError, before anything is
    written, when the rows differ."""
    rows_done, rest = int(saved["rows_done"]), []
    while digest.rows < rows_done:
        chunk = next(chunks, None)
        if chunk is None:
            break
        need = rows_done - digest.rows
        if len(chunk) > need:
            chunk, tail = chunk.split(need)
            rest = [tail]
        digest.update(chunk)
    if digest.rows != rows_done or digest.hexdigest() != saved["rows_sha256"]:
        getattr(chunks, "close", lambda: None)()
        short = f" (it now has {digest.rows})" if digest.rows < rows_done else ""
        raise DataError(f"{source}: the first {rows_done} rows differ from those the interrupted run read{short}: "
                        f"the input changed since. A resumed run must read the same input; {_FRESH}")
    return itertools.chain(rest, chunks)
