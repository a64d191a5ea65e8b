"""The score columns of batch outputs (one per score the bundle has, ``--scores`` / ``--distances``),
duplicate ids (counted, reported), and resume refusing another column set; on the tiny bundle."""
from __future__ import annotations

import json

import numpy as np
import pytest

from batch_files import make_records, read_output, write_input
from uehead.errors import DataError, UnknownScoreError
from uehead.runtime.batch import predict_file
from uehead.runtime.batch_progress import progress_path
from uehead.runtime.batch_schema import BASE_COLUMNS, columns_for_model, select_columns

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


class FailingModel:
    """The tiny model whose ``fail_on_call``-th predict call raises (an interrupted job)."""

    def __init__(self, model, fail_on_call: int):
        self.model, self.fail_on_call, self.calls = model, fail_on_call, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def predict(self, texts, **kwargs):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("injected failure")
        return self.model.predict(texts, **kwargs)


def test_the_column_set_follows_the_bundle_and_the_options(tiny_model):
    assert columns_for_model(tiny_model).names == (*BASE_COLUMNS, "sr", "adue", "alien", "error")
    assert columns_for_model(tiny_model, distances=True).scores == ("sr", "adue", "alien", "md", "rmd")
    # entropy is the base column of that name; the choice keeps the output order
    assert columns_for_model(tiny_model, scores=("rmd", "entropy", "adue")).scores == ("adue", "rmd")
    assert columns_for_model(tiny_model, scores=("rmd",)).distances
    with pytest.raises(UnknownScoreError, match=r"\['nope'\].*it has: sr, entropy, adue, alien, md, rmd"):
        columns_for_model(tiny_model, scores=("adue", "nope"))
    with pytest.raises(DataError, match="no baselines"):
        select_columns(("adue",), False, distances=True)
    with pytest.raises(DataError, match="no calibration"):
        columns_for_model(tiny_model, risk=0.05)


@pytest.mark.parametrize("out_fmt", ["jsonl", "csv", "parquet"])
def test_every_score_is_a_column_equal_to_model_predict(tmp_path, tiny_model, out_fmt):
    records = make_records(60)
    src = write_input(tmp_path / "in.jsonl", records)
    dst = tmp_path / f"out.{out_fmt}"
    report = predict_file(tiny_model, src, dst, distances=True, progress=False, chunk_rows=16)
    got = read_output(dst)
    assert list(got[0]) == ["id", *BASE_COLUMNS, "sr", "adue", "alien", "md", "rmd", "error"]
    assert report.columns == tuple(got[0])
    ok = [i for i, r in enumerate(records) if isinstance(r["text"], str)]
    preds = tiny_model.predict([records[i]["text"] for i in ok], distances=True)
    for name in ("sr", "adue", "alien", "md", "rmd"):
        values = [float(got[i][name]) for i in ok]
        np.testing.assert_allclose(values, preds.scores[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([float(got[i]["sr"]) for i in ok], [float(got[i]["softmax_response"]) for i in ok])
    assert all(got[i]["adue"] in (None, "") for i in range(len(records)) if i not in ok)
    if out_fmt == "parquet":
        schema = pq.read_schema(dst)
        assert schema.field("probs").type == pa.list_(pa.float64()) and schema.field("md").type == pa.float64()


def test_scores_option_chooses_the_columns_and_the_cli_lists_unknown_ones(tmp_path, tiny_bundle_dir, capsys):
    from uehead.cli import main

    src = write_input(tmp_path / "in.csv", make_records(20))
    assert main(["predict", str(tiny_bundle_dir), "--input", str(src), "--output", str(tmp_path / "o.jsonl"),
                 "--scores", "alien,sr", "--threads", "1"]) == 0
    assert list(read_output(tmp_path / "o.jsonl")[0]) == ["id", *BASE_COLUMNS, "sr", "alien", "error"]
    assert main(["predict", str(tiny_bundle_dir), "--input", str(src), "--output", str(tmp_path / "p.jsonl"),
                 "--scores", "adue,mahalanobis"]) == 2
    err = capsys.readouterr().err
    assert "['mahalanobis']" in err and "sr, entropy, adue, alien, md, rmd" in err
    assert not (tmp_path / "p.jsonl").exists()


def test_duplicate_ids_are_allowed_counted_and_reported(tmp_path, tiny_bundle_dir, tiny_model, capsys):
    from uehead.cli import main

    records = [{"id": f"k{i % 7}", "text": f"text {i}"} for i in range(20)]
    src = write_input(tmp_path / "in.jsonl", records)
    report = predict_file(tiny_model, src, tmp_path / "out.parquet", progress=False, chunk_rows=6)
    assert report.rows == 20 and report.duplicate_ids == 13
    assert "13 rows repeat an earlier row's id" in report.summary()
    assert predict_file(tiny_model, src, tmp_path / "rows.csv", id_column="", progress=False).duplicate_ids == 0
    assert main(["predict", str(tiny_bundle_dir), "--input", str(src), "--output", str(tmp_path / "o.csv"),
                 "--threads", "1"]) == 0
    assert "13 rows repeat an earlier row's id" in capsys.readouterr().err


def _interrupted(tmp_path, tiny_model, dst, **kwargs):
    records = [dict(r, id=f"k{i % 50}") for i, r in enumerate(make_records(200))]
    src = write_input(tmp_path / "in.jsonl", records)
    with pytest.raises(RuntimeError, match="injected"):
        predict_file(FailingModel(tiny_model, 4), src, dst, chunk_rows=32, progress=False, **kwargs)
    assert progress_path(dst).is_file() and not dst.exists()
    return src


def test_a_resumed_job_says_so_and_counts_duplicates_over_the_whole_output(tmp_path, tiny_model, capsys):
    dst = tmp_path / "out.jsonl"
    src = _interrupted(tmp_path, tiny_model, dst)
    report = predict_file(tiny_model, src, dst, chunk_rows=32, resume=True, progress=True)
    assert report.resumed_from == 96 and report.rows == 200 and report.duplicate_ids == 150
    assert "resumed an interrupted run at row 96" in report.summary()
    assert "predicting from row 96" in capsys.readouterr().err
    predict_file(tiny_model, src, tmp_path / "whole.jsonl", chunk_rows=32, progress=False)
    assert read_output(dst) == read_output(tmp_path / "whole.jsonl")


def test_resume_refuses_another_column_set(tmp_path, tiny_model):
    dst = tmp_path / "out.csv"
    src = _interrupted(tmp_path, tiny_model, dst, scores=["adue"])
    for kwargs in ({}, {"scores": ["alien"]}, {"scores": ["adue"], "distances": True}):
        with pytest.raises(DataError, match="different job.*columns"):
            predict_file(tiny_model, src, dst, chunk_rows=32, resume=True, progress=False, **kwargs)
    # a partial output whose header is not this job's (edited by hand) is refused too
    partial = dst.with_name(dst.name + ".partial")
    lines = partial.read_text(encoding="utf-8").split("\n", 1)
    partial.write_text(lines[0].replace(",adue,", ",alien,") + "\n" + lines[1], encoding="utf-8")
    with pytest.raises(DataError, match="the partial output has the columns"):
        predict_file(tiny_model, src, dst, chunk_rows=32, resume=True, progress=False, scores=["adue"])
    partial.write_text("\n".join(lines), encoding="utf-8")
    report = predict_file(tiny_model, src, dst, chunk_rows=32, resume=True, progress=False, scores=["adue"])
    assert report.resumed_from == 96 and json.loads(json.dumps(report.columns))[-2:] == ["adue", "error"]
