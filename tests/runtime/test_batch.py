"""Batch prediction over files (uehead.runtime.batch): formats, row contract, errors, atomicity, resume.

Most tests drive ``predict_file`` with :class:`FakeModel` (same ``predict`` contract as
``uehead.runtime.Model``, deterministic, instant); the last ones use the real runtime on the suite's
tiny torch-free bundle (``tests/conftest.py``), through Python and through ``uehead predict``.
"""
from __future__ import annotations

import gc
import json
import math
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from batch_files import (FORMATS, FakeModel, assert_rows_match, expected_for, expected_row, make_records,
                         read_output, write_input)
from uehead.errors import DataError
from uehead.runtime.batch import predict_file
from uehead.runtime.batch_schema import (PREDICTION_COLUMNS, output_columns, predict_columns, prediction_columns,
                                         text_errors)

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- the column schema
def test_text_errors_classifies_values():
    errs = text_errors(["ok", "", None, 3, 2.5, float("nan"), ["a"], True], "body")
    assert errs[0] is None and errs[1] is None
    assert "missing" in errs[2] and "'body'" in errs[2]
    assert "missing" in errs[5]  # pandas' NaN
    for e, tname in zip(errs[3:], ["int", "float", None, "list", "bool"]):
        if tname:
            assert "not a string" in e and tname in e


def test_prediction_columns_scatters_predictions_around_error_rows():
    preds = FakeModel().predict(["a b", "c"])
    cols = prediction_columns(preds, [10, 11, 12, 13], [None, "bad", None, "bad"], id_name="key")
    assert list(cols) == ["key", *PREDICTION_COLUMNS]
    assert cols["key"] == [10, 11, 12, 13]
    assert cols["label"] == [preds.labels[0], None, preds.labels[1], None]
    assert cols["probs"][2] == [float(v) for v in preds.probs[1]] and cols["probs"][1] is None
    assert cols["error"] == [None, "bad", None, "bad"]
    assert all(isinstance(v, int) for v in cols["label_id"] if v is not None)
    with pytest.raises(ValueError, match="3 ids for 4 rows"):
        prediction_columns(preds, [1, 2, 3], [None, "x", None, "x"])
    with pytest.raises(ValueError, match="2 label values for 3 texts"):
        prediction_columns(preds, [1, 2, 3], [None, None, None])
    none = prediction_columns(None, ["a"], ["bad"])
    assert none["label"] == [None] and none["row"] == ["a"]


def test_predict_columns_never_passes_bad_texts_to_the_model():
    cols = predict_columns(FakeModel(), ["good", None, 7, ""], [0, 1, 2, 3])  # FakeModel raises on non-str
    assert [e is None for e in cols["error"]] == [True, False, False, True]


# ----------------------------------------------------------------------------- formats in and out
@pytest.mark.parametrize("out_fmt", FORMATS)
@pytest.mark.parametrize("in_fmt", FORMATS)
def test_every_format_pair_keeps_every_row_in_order(tmp_path, in_fmt, out_fmt):
    records = make_records(1100)
    src = write_input(tmp_path / f"in.{in_fmt}", records, row_group_size=300)
    dst = tmp_path / f"out.{out_fmt}"
    report = predict_file(FakeModel(), src, dst, id_column="id", chunk_rows=256, progress=False)
    assert report.rows == 1100 and report.resumed_from == 0 and report.output == dst
    assert report.error_rows == sum(r["text"] is None for r in records)
    assert_rows_match(read_output(dst), expected_for(FakeModel(), records, "id"), "id")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, dst.name])  # no leftovers


@pytest.mark.parametrize("in_fmt", FORMATS)
def test_without_id_column_rows_are_numbered_from_zero(tmp_path, in_fmt):
    records = [{k: v for k, v in r.items() if k != "id"} for r in make_records(40)]
    src = write_input(tmp_path / f"in.{in_fmt}", records)
    dst = tmp_path / "out.parquet"
    predict_file(FakeModel(), src, dst, chunk_rows=7, progress=False)
    got = read_output(dst)
    assert [r["row"] for r in got] == list(range(40))
    assert_rows_match(got, expected_for(FakeModel(), records, None), "row")
    assert pq.read_schema(dst).field("row").type == pa.int64()


def test_jsonl_bad_texts_become_error_rows_and_blank_lines_are_not_rows(tmp_path):
    lines = [{"text": "good", "id": 1}, {"id": 2}, {"text": None, "id": 3}, {"text": 42, "id": 4},
             {"text": ["a"], "id": 5}, {"text": {"x": 1}, "id": 6}, {"text": "", "id": 7}, {"text": "fine"}]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in lines[:4]) + "\n\n   \n"
                   + "\n".join(json.dumps(r) for r in lines[4:]), encoding="utf-8")  # no final newline
    dst = tmp_path / "out.jsonl"
    report = predict_file(FakeModel(), src, dst, id_column="id", progress=False)
    got = read_output(dst)
    assert [r["id"] for r in got] == [1, 2, 3, 4, 5, 6, 7, None]
    assert [r["error"] is None for r in got] == [True, False, False, False, False, False, True, True]
    assert "missing" in got[1]["error"] and "not a string" in got[3]["error"] and "int" in got[3]["error"]
    assert report.rows == 8 and report.error_rows == 5


def test_csv_empty_or_short_rows_are_missing_texts(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text('id,text\n1,good\n2,\n3\n\n4,"multi\nline, quoted"\n', encoding="utf-8")
    dst = tmp_path / "out.csv"
    predict_file(FakeModel(), src, dst, id_column="id", progress=False)
    got = read_output(dst)
    assert [r["id"] for r in got] == ["1", "2", "3", "4"]
    assert [r["error"] is None for r in got] == [True, False, False, True]
    assert got[3] == expected_row(FakeModel(), "multi\nline, quoted", "id", "4")


def test_huge_texts_are_predicted_in_every_format(tmp_path):
    huge = "good film " * 60_000  # 600k characters: past the csv module's default 128 KiB cell cap
    records = [{"id": "a", "text": "fine"}, {"id": "b", "text": huge}, {"id": "c", "text": "bad"}]
    for fmt in ("csv", "jsonl", "parquet"):
        src = write_input(tmp_path / f"in.{fmt}", records)
        dst = tmp_path / f"out.{fmt}"
        predict_file(FakeModel(), src, dst, id_column="id", progress=False)
        got = read_output(dst)
        assert [r["id"] for r in got] == ["a", "b", "c"]
        assert all(r["error"] is None for r in got), fmt
        assert got[1] == expected_row(FakeModel(), huge, "id", "b")


@pytest.mark.parametrize("in_fmt,out_fmt", [("jsonl", "jsonl"), ("csv", "csv"), ("parquet", "parquet")])
def test_empty_input_gives_an_empty_output(tmp_path, in_fmt, out_fmt):
    src = write_input(tmp_path / f"in.{in_fmt}", [])
    dst = tmp_path / f"out.{out_fmt}"
    assert predict_file(FakeModel(), src, dst, progress=False).rows == 0
    assert read_output(dst) == []
    if out_fmt == "csv":
        assert dst.read_text() == ",".join(output_columns("row")) + "\n"
    if out_fmt == "parquet":
        assert pq.read_schema(dst).names == list(output_columns("row"))


def test_parquet_output_keeps_the_parquet_input_id_type(tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a", None, "b"], "key": pa.array([5, 6, 7], pa.int32())}), src)
    predict_file(FakeModel(), src, tmp_path / "out.parquet", id_column="key", progress=False)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.field("key").type == pa.int32() and table.column("key").to_pylist() == [5, 6, 7]
    assert table.schema.field("probs").type == pa.list_(pa.float64())


def test_progress_bar_shows_rate_and_total(tmp_path, capsys):
    src = write_input(tmp_path / "in.jsonl", make_records(300))
    predict_file(FakeModel(), src, tmp_path / "out.jsonl", chunk_rows=100)
    err = capsys.readouterr().err
    assert "300/300" in err and "rows/s" in err


# ----------------------------------------------------------------------------- bad input
def test_missing_input_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl.*--input"):
        predict_file(FakeModel(), tmp_path / "nope.jsonl", tmp_path / "out.jsonl", progress=False)


@pytest.mark.parametrize("name,role", [("in.txt", "input"), ("out.xlsx", "output")])
def test_unknown_suffix_names_the_supported_ones(tmp_path, name, role):
    src = write_input(tmp_path / "in.jsonl", make_records(3))
    if role == "input":
        src = src.rename(tmp_path / name)
    dst = tmp_path / (name if role == "output" else "out.jsonl")
    with pytest.raises(DataError, match=rf"unknown {role} file type.*\.jsonl.*\.csv.*\.parquet"):
        predict_file(FakeModel(), src, dst, progress=False)


@pytest.mark.parametrize("in_fmt", FORMATS)
def test_missing_text_or_id_column_names_the_columns_and_the_flag(tmp_path, in_fmt):
    src = write_input(tmp_path / f"in.{in_fmt}", [{"body": "good", "id": 1}, {"body": "bad", "id": 2}])
    with pytest.raises(DataError, match=r"no text column 'text'.*'body'.*--text-column"):
        predict_file(FakeModel(), src, tmp_path / "out.jsonl", progress=False)
    with pytest.raises(DataError, match=r"no id column 'key'.*--id-column"):
        predict_file(FakeModel(), src, tmp_path / "out.parquet", text_column="body", id_column="key", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [src.name]  # no partial output left behind


def test_malformed_json_line_names_the_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "good"}\n\n{"text": "bad"\n{"text": "fine"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"in\.jsonl, line 3: not valid JSON"):
        predict_file(FakeModel(), src, tmp_path / "out.jsonl", progress=False)
    src.write_text('{"text": "good"}\n["text"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: expected a JSON object"):
        predict_file(FakeModel(), src, tmp_path / "out.csv", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [src.name]


def test_other_bad_options(tmp_path):
    src = write_input(tmp_path / "in.jsonl", make_records(3))
    with pytest.raises(DataError, match="overwrite the input"):
        predict_file(FakeModel(), src, src, progress=False)
    with pytest.raises(DataError, match="clashes with an output column"):
        predict_file(FakeModel(), src, tmp_path / "o.jsonl", id_column="label", progress=False)
    with pytest.raises(FileNotFoundError, match="output folder does not exist"):
        predict_file(FakeModel(), src, tmp_path / "no" / "o.jsonl", progress=False)
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    for progress in (False, True):
        with pytest.raises(DataError, match="not a readable Parquet file"):
            predict_file(FakeModel(), bad, tmp_path / "o.jsonl", progress=progress)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "in.jsonl"]


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    src = write_input(tmp_path / "in.jsonl", make_records(3))
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match=r"pip install 'uehead\[parquet\]'"):
        predict_file(FakeModel(), src, tmp_path / "out.parquet", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    predict_file(FakeModel(), src, tmp_path / "out.csv", progress=False)  # text formats need no pyarrow


# ----------------------------------------------------------------------------- atomicity and resume
def _interrupted_run(tmp_path, in_fmt, out_fmt, n=2500, chunk_rows=300, fail_on_call=4):
    records = make_records(n)
    src = write_input(tmp_path / f"in.{in_fmt}", records, row_group_size=700)
    reference = tmp_path / f"reference.{out_fmt}"
    predict_file(FakeModel(), src, reference, id_column="id", chunk_rows=chunk_rows, progress=False)
    dst = tmp_path / f"out.{out_fmt}"
    with pytest.raises(RuntimeError, match="injected failure"):
        predict_file(FakeModel(fail_on_call=fail_on_call), src, dst, id_column="id", chunk_rows=chunk_rows,
                     progress=False)
    return src, dst, reference, records


def _same_output(a: Path, b: Path) -> None:
    assert read_output(a) == read_output(b)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("out_fmt", FORMATS)
@pytest.mark.parametrize("in_fmt", FORMATS)
def test_failed_run_leaves_no_output_and_resume_matches_an_uninterrupted_run(tmp_path, in_fmt, out_fmt):
    src, dst, reference, _ = _interrupted_run(tmp_path, in_fmt, out_fmt)
    assert not dst.exists()  # nothing that looks complete
    sidecar = tmp_path / f"out.{out_fmt}.progress.json"
    assert json.loads(sidecar.read_text())["rows_done"] == 900
    assert (tmp_path / f"out.{out_fmt}.partial{'.parts' if out_fmt == 'parquet' else ''}").exists()
    model = FakeModel()
    report = predict_file(model, src, dst, id_column="id", chunk_rows=300, resume=True, progress=False)
    assert report.resumed_from == 900 and report.rows == 2500
    assert report.error_rows == sum(r["text"] is None for r in make_records(2500))
    assert model.calls == math.ceil(1600 / 300)  # only the rows not done before were predicted
    _same_output(dst, reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, dst.name, reference.name])


@pytest.mark.parametrize("out_fmt", FORMATS)
def test_resume_discards_writes_after_the_last_recorded_chunk(tmp_path, out_fmt):
    src, dst, reference, _ = _interrupted_run(tmp_path, "jsonl", out_fmt)
    if out_fmt == "parquet":  # a half-written and a finished-but-unrecorded part file
        parts = tmp_path / "out.parquet.partial.parts"
        (parts / "part-000003.parquet.tmp").write_bytes(b"PAR1 torn")
        (parts / "part-000003.parquet").write_bytes((parts / "part-000000.parquet").read_bytes())
    else:
        with open(tmp_path / f"out.{out_fmt}.partial", "ab") as f:
            f.write(b'{"id": "torn write", "label": "po')
    report = predict_file(FakeModel(), src, dst, id_column="id", chunk_rows=300, resume=True, progress=False)
    assert report.resumed_from == 900
    _same_output(dst, reference)


def test_resume_with_another_chunk_size_still_loses_nothing(tmp_path):
    src, dst, reference, _ = _interrupted_run(tmp_path, "parquet", "jsonl")
    predict_file(FakeModel(), src, dst, id_column="id", chunk_rows=77, resume=True, progress=False)
    _same_output(dst, reference)


def test_resume_refuses_a_different_job_and_starts_fresh_without_a_sidecar(tmp_path):
    src, dst, reference, records = _interrupted_run(tmp_path, "jsonl", "jsonl")
    with pytest.raises(DataError, match=r"different job.*id_column.*without --resume"):
        predict_file(FakeModel(), src, dst, id_column="", resume=True, progress=False)
    records[17]["text"] = "changed"
    write_input(src, records[:-1])  # the input changed since the interrupted run
    with pytest.raises(DataError, match=r"first 900 rows differ.*without --resume"):
        predict_file(FakeModel(), src, dst, id_column="id", resume=True, progress=False)
    report = predict_file(FakeModel(), src, dst, id_column="id", resume=False, progress=False)
    assert report.resumed_from == 0 and report.rows == 2499
    report = predict_file(FakeModel(), src, dst, id_column="id", resume=True, progress=False)  # no sidecar now
    assert report.resumed_from == 0 and report.rows == 2499


_KILL_SCRIPT = """
import sys
sys.path[:0] = [{here!r}, {tests!r}]
from batch_files import FakeModel
from uehead.runtime.batch import predict_file
predict_file(FakeModel(delay=0.02), {src!r}, {dst!r}, id_column="id", chunk_rows=40, progress=False)
"""


@pytest.mark.parametrize("out_fmt", ["jsonl", "parquet"])
def test_sigkilled_run_resumes_without_duplicating_or_skipping_rows(tmp_path, out_fmt):
    records = make_records(3000)
    src = write_input(tmp_path / "in.jsonl", records)
    dst = tmp_path / f"out.{out_fmt}"
    sidecar = tmp_path / f"out.{out_fmt}.progress.json"
    script = _KILL_SCRIPT.format(here=str(HERE), tests=str(HERE.parent), src=str(src), dst=str(dst))
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if sidecar.is_file() and json.loads(sidecar.read_text() or "{}").get("rows_done", 0) >= 400:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the job ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not dst.exists()
    done = json.loads(sidecar.read_text())["rows_done"]
    assert 400 <= done < 3000
    report = predict_file(FakeModel(), src, dst, id_column="id", chunk_rows=40, resume=True, progress=False)
    assert report.resumed_from == done and report.rows == 3000
    reference = tmp_path / f"reference.{out_fmt}"
    predict_file(FakeModel(), src, reference, id_column="id", chunk_rows=40, progress=False)
    _same_output(dst, reference)


def test_memory_stays_bounded_whatever_the_file_size(tmp_path):
    def peak(n: int) -> int:
        src = write_input(tmp_path / f"in{n}.jsonl", make_records(n))
        gc.collect()  # no garbage of earlier tests or runs left for the collector to free mid-run
        tracemalloc.start()
        try:
            predict_file(FakeModel(), src, tmp_path / f"out{n}.csv", id_column="id", chunk_rows=100, progress=False)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(100)  # one-time allocations (imports, caches) out of the way
    small, large = peak(1000), peak(10000)
    # What grows with the file is the duplicate-id check's 8-byte digest per row (and its final
    # unique pass); a retained row, text or prediction would cost hundreds of bytes per row.
    assert (large - small) / 9000 < 48, (small, large)


# ----------------------------------------------------------------------------- the real runtime
@pytest.mark.parametrize("out_fmt", FORMATS)
def test_model_predict_file_matches_model_predict(tmp_path, tiny_model, out_fmt):
    model = tiny_model
    records = make_records(300) + [{"id": "empty", "text": ""}, {"id": "num", "text": 5}]
    src = write_input(tmp_path / "in.jsonl", records)
    dst = tmp_path / f"out.{out_fmt}"
    report = model.predict_file(src, dst, id_column="id", batch_size=16, progress=False, chunk_rows=64)
    assert report.rows == len(records)
    got = read_output(dst)
    ok = [i for i, r in enumerate(records) if isinstance(r["text"], str)]
    preds = model.predict([records[i]["text"] for i in ok])
    assert [got[i]["label"] for i in ok] == preds.labels
    assert [got[i]["label_id"] for i in ok] == preds.label_ids.tolist()
    # batches are composed differently here (ONNX Runtime results move by an ulp with the batch)
    np.testing.assert_allclose(np.array([got[i]["probs"] for i in ok]), preds.probs, rtol=1e-5, atol=1e-7)
    for name in ("uncertainty", "softmax_response", "entropy"):
        np.testing.assert_allclose(np.array([got[i][name] for i in ok]), getattr(preds, name), rtol=1e-5, atol=1e-7)
    assert got[-1]["error"] and got[-1]["label"] is None and got[-2]["error"] is None


def test_cli_predict(tmp_path, tiny_bundle_dir, tiny_model, capsys):
    from uehead.cli import main

    bundle, model = tiny_bundle_dir, tiny_model
    records = make_records(120)
    src = write_input(tmp_path / "in.csv", records)
    rc = main(["predict", str(bundle), "--input", str(src), "--output", str(tmp_path / "out.jsonl"),
               "--id-column", "id", "--batch-size", "8", "--threads", "1"])
    assert rc == 0
    model.predict_file(src, tmp_path / "reference.jsonl", id_column="id", batch_size=8, progress=False)
    _same_output(tmp_path / "out.jsonl", tmp_path / "reference.jsonl")
    got = read_output(tmp_path / "out.jsonl")
    assert [r["id"] for r in got] == [r["id"] for r in records]
    assert [r["error"] is None for r in got] == [r["text"] is not None for r in records]
    rc = main(["predict", str(bundle), "--input", str(src), "--output", str(tmp_path / "o.jsonl"),
               "--text-column", "body"])
    assert rc == 2 and "no text column 'body'" in capsys.readouterr().err
    # the input's id column is kept without --id-column; --keep-columns passes others through
    assert main(["predict", str(bundle), "--input", str(src), "--output", str(tmp_path / "kept.jsonl"),
                 "--keep-columns", "other", "--threads", "1"]) == 0
    kept = read_output(tmp_path / "kept.jsonl")
    assert list(kept[0])[:2] == ["id", "other"] and [r["other"] for r in kept] == [str(r["other"]) for r in records]
    assert [r["label"] for r in kept] == [r["label"] for r in got]


def test_batch_module_is_torch_free():
    code = ("import sys, uehead.runtime.batch, uehead.runtime.batch_formats, uehead.runtime.batch_job, "
            "uehead.runtime.batch_readers, uehead.runtime.batch_schema, uehead.runtime.batch_sinks, "
            "uehead.runtime.batch_progress, uehead.runtime.inputs, uehead.manifest_schema, uehead.manifest_checksum; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'peft', 'optimum'}); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
