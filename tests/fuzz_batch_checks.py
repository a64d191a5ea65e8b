"""The invariants every batch job must keep on any input file, checked on one file at a time.

Shared by the hypothesis tests (``test_fuzz_batch.py``) and the coverage-guided fuzzer
(``benchmarks/fuzz_atheris.py``). :func:`check_batch_job` runs ``predict_file`` with the
deterministic :class:`FakeModel` of ``test_batch.py`` and asserts:

* the job either completes or raises :class:`~uehead.errors.DataError` (never another exception);
  a refused job leaves nothing behind but, when it was refused mid-way, its resumable progress;
* a completed output holds exactly the rows the reader yields, in order (nothing lost, nothing
  duplicated), each with a prediction or an error;
* a job killed at a given point (an exception in the model, a crash between writing a chunk and
  recording it, a torn write after recording) and resumed gives byte for byte the uninterrupted
  output;
* a resume with another model, or against an input whose done rows changed, is refused; any
  resume that completes equals an uninterrupted run on the input it finished on (jobs never mix).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from batch_files import FakeModel, read_output
from uehead.errors import DataError
from uehead.runtime import batch
from uehead.runtime.batch_job import check_job
from uehead.runtime.batch_readers import read_chunks

KILL_MODES = ("model", "record", "torn")


class Killed(Exception):
    """Stands for the process dying at that point."""


class OtherModel(FakeModel):
    """Another model: resuming a job begun by FakeModel with it must be refused."""


@dataclass(frozen=True)
class Kill:
    """Where the interrupted run dies: ``mode`` (one of :data:`KILL_MODES`) at its ``at``-th chance."""

    mode: str
    at: int


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def check_batch_job(src: Path, work: Path, *, out_fmt: str, chunk_rows: int, kill: Kill,
                    keep_all_columns: bool = False) -> str:
    """Run the checks of the module docstring on ``src`` (outputs go to the empty folder ``work``);
    return "rejected" (a DataError, as it must be) or "ok". Raises AssertionError on a broken
    invariant, or the unexpected exception itself."""
    work.mkdir(parents=True, exist_ok=True)
    opts = dict(chunk_rows=chunk_rows, progress=False, keep_all_columns=keep_all_columns)
    reference = work / f"reference.{out_fmt}"
    try:
        report = batch.predict_file(FakeModel(), src, reference, **opts)
    except DataError:
        # Refused before writing: nothing left. Refused mid-way (a bad line in a later chunk): the
        # rows done so far stay resumable, and only the partial output and its progress file remain.
        left = _leftovers(work, set())
        resumable = {reference.name + s for s in (".partial", ".partial.parts", ".progress.json")}
        assert set(left) <= resumable and (not left or reference.name + ".progress.json" in left), left
        for name in left:
            shutil.rmtree(work / name) if (work / name).is_dir() else (work / name).unlink()
        return "rejected"
    got = read_output(reference)
    job = check_job(src, reference, text_column="text", id_column=None, batch_size=32, chunk_rows=chunk_rows,
                    keep_all_columns=keep_all_columns)
    rows = sum(len(c) for c in read_chunks(src, job.input_format, text_column="text", id_column=job.id_column,
                                           chunk_rows=chunk_rows, keep_columns=job.keep_columns))
    assert report.rows == len(got) == rows, f"rows: report {report.rows}, output {len(got)}, input {rows}"
    if job.id_column is None:
        assert [int(r["row"]) for r in got] == list(range(rows)), "row numbers lost, repeated or reordered"
    assert all((r["error"] is None) != (r["label"] is None) for r in got), "a row is neither predicted nor an error"
    _check_kill_and_resume(src, work / f"out.{out_fmt}", opts, kill, reference)
    reference.unlink()
    assert _leftovers(work, set()) == [], "a finished job left files behind"
    return "ok"


def _killed_run(src: Path, dst: Path, opts: dict, kill: Kill) -> bool:
    """Run the job until it dies at ``kill``; False when it completed before that point."""
    calls = {"n": 0}
    real_save = batch.save_progress

    def dying_save(path, data):
        calls["n"] += 1
        if kill.mode == "record" and calls["n"] == kill.at:
            raise Killed("after the chunk was written, before it was recorded")
        real_save(path, data)
        if kill.mode == "torn" and calls["n"] == kill.at:
            partial = dst.with_name(dst.name + ".partial")
            parts = partial.with_name(partial.name + ".parts")
            torn = partial if partial.is_file() else parts / f"part-{data['sink'].get('parts', 0):06d}.parquet"
            with open(torn, "ab") as f:
                f.write(b'{"row": 1, "label": "torn wr')
            raise Killed("in the middle of the next write")

    model = FakeModel(fail_on_call=kill.at if kill.mode == "model" else None)
    try:
        with mock.patch.object(batch, "save_progress", dying_save):
            batch.predict_file(model, src, dst, **opts)
    except Killed:
        return True
    except RuntimeError as exc:
        if "injected failure" not in str(exc):
            raise
        return True
    return False


def _resumed_as_fresh(src: Path, dst: Path, opts: dict) -> bool:
    """Resume ``dst``: False when refused (a DataError, nothing written); else True, after checking
    that the output equals an uninterrupted run on ``src``."""
    try:
        batch.predict_file(FakeModel(), src, dst, resume=True, **opts)
    except DataError:
        assert not dst.exists()
        return False
    fresh = dst.with_name("fresh" + dst.suffix)
    try:
        batch.predict_file(FakeModel(), src, fresh, **opts)
    except DataError as exc:
        raise AssertionError(f"a resume completed on an input a fresh run refuses: {exc}") from None
    assert dst.read_bytes() == fresh.read_bytes(), "a resumed job differs from an uninterrupted run on its input"
    fresh.unlink()
    dst.unlink()
    return True


def _rows_done(sidecar: Path) -> int | None:
    return json.loads(sidecar.read_text())["rows_done"] if sidecar.is_file() else None


def _check_kill_and_resume(src: Path, dst: Path, opts: dict, kill: Kill, reference: Path) -> None:
    if not _killed_run(src, dst, opts, kill):
        assert dst.read_bytes() == reference.read_bytes()
        dst.unlink()
        return
    assert not dst.exists(), "a killed job left an output that looks complete"
    sidecar = batch.progress_path(dst)
    advanced = False
    if sidecar.is_file():
        try:
            batch.predict_file(OtherModel(), src, dst, resume=True, **opts)
            raise AssertionError("a job begun by one model was resumed by another")
        except DataError as exc:
            assert "different job" in str(exc) and "bundle" in str(exc), str(exc)
        before, backup = _rows_done(sidecar), dst.with_name("input.bak")
        shutil.copyfile(src, backup)
        _change_first_row(src)
        try:
            if _resumed_as_fresh(src, dst, opts):
                return  # the change missed the rows already done: resuming on it was legitimate
            advanced = _rows_done(sidecar) != before  # it went on past the change before failing
        finally:
            shutil.copyfile(backup, src)
            backup.unlink()
    if _resumed_as_fresh(src, dst, opts):
        return
    assert advanced, "the resume of an unchanged input was refused"
    batch.predict_file(FakeModel(), src, dst, **opts)  # start over, as the refusal says
    assert dst.read_bytes() == reference.read_bytes()
    dst.unlink()


def _change_first_row(src: Path) -> None:
    """Change one letter early in the file, as another input of the same size would."""
    data = bytearray(src.read_bytes())
    for i, b in enumerate(data):
        if chr(b).isalpha():
            data[i] = ord("Q") if b != ord("Q") else ord("R")
            break
    src.write_bytes(bytes(data))
