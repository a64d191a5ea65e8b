"""Which input columns a batch job's output carries: the input's ``id`` column by default, row
numbers without one (or with ``id_column=""``), and the columns passed through with
``keep_columns`` / ``keep_all_columns`` (a name that is an output column's gets the ``input_``
prefix), in every format pair."""
from __future__ import annotations

import pytest

from batch_files import FORMATS, FakeModel, assert_rows_match, expected_for, make_records, read_output, write_input
from uehead.errors import DataError
from uehead.runtime.batch import predict_file
from uehead.runtime.batch_schema import PREDICTION_COLUMNS

pytest.importorskip("pyarrow")


@pytest.mark.parametrize("in_fmt", FORMATS)
def test_an_id_column_is_kept_by_default_and_empty_id_column_numbers_rows(tmp_path, in_fmt):
    records = make_records(30)
    src = write_input(tmp_path / f"in.{in_fmt}", records)
    predict_file(FakeModel(), src, tmp_path / "out.jsonl", chunk_rows=7, progress=False)
    assert_rows_match(read_output(tmp_path / "out.jsonl"), expected_for(FakeModel(), records, "id"), "id")
    predict_file(FakeModel(), src, tmp_path / "rows.jsonl", id_column="", progress=False)
    assert [r["row"] for r in read_output(tmp_path / "rows.jsonl")] == list(range(30))


@pytest.mark.parametrize("in_fmt,out_fmt", [("jsonl", "parquet"), ("csv", "csv"), ("parquet", "jsonl"),
                                            ("jsonl", "jsonl")])
def test_keep_columns_pass_input_columns_through(tmp_path, in_fmt, out_fmt):
    records = [dict(r, label=f"gold-{i % 2}") for i, r in enumerate(make_records(50))]
    src = write_input(tmp_path / f"in.{in_fmt}", records, row_group_size=20)
    as_read = (lambda v: str(v)) if in_fmt == "csv" else (lambda v: v)
    for kwargs in ({"keep_columns": ["other", "label"]}, {"keep_all_columns": True}):
        dst = tmp_path / f"out-{len(kwargs)}-{sorted(kwargs)[0]}.{out_fmt}"
        predict_file(FakeModel(), src, dst, chunk_rows=16, progress=False, **kwargs)
        got = read_output(dst)
        assert list(got[0]) == ["id", "other", "input_label", *PREDICTION_COLUMNS]
        assert [r["id"] for r in got] == [r["id"] for r in records]
        assert [r["other"] for r in got] == [as_read(r["other"]) for r in records]
        assert [r["input_label"] for r in got] == [r["label"] for r in records]
        want = expected_for(FakeModel(), records, "id")
        assert [r["label"] for r in got] == [w["label"] for w in want]


def test_keep_columns_that_the_input_lacks_are_named(tmp_path):
    for fmt in FORMATS:
        src = write_input(tmp_path / f"in.{fmt}", make_records(5))
        with pytest.raises(DataError, match=r"no kept column 'nope'.*'other'.*--keep-columns"):
            predict_file(FakeModel(), src, tmp_path / "out.jsonl", keep_columns=["nope"], progress=False)
    assert not (tmp_path / "out.jsonl").exists()
