"""``uehead predict`` on a token-classification bundle: rows of words or raw texts, per-word fields
and entities, error rows in place, JSONL / CSV / Parquet, and resume after a failure."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from uehead.runtime.batch import predict_file  # noqa: E402
from uehead.runtime.token_batch import TOKEN_COLUMNS  # noqa: E402


def _rows(n: int = 50) -> list[dict]:
    rng = np.random.default_rng(0)
    pool = ["we", "met", "alice", "in", "paris", "rome", "bob", "stone", "today", "new york", ""]
    rows = [{"id": f"r{i}", "tokens": [str(w) for w in rng.choice(pool, rng.integers(0, 9))]} for i in range(n)]
    rows[3]["tokens"] = "We met Alice in Rome."          # a raw text in the tokens column
    rows[5]["tokens"] = ["alice", 7]                      # not words
    rows[8].pop("tokens")                                 # missing
    return rows


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_rows_of_words_keep_order_and_error_rows(token_runtime, tmp_path):
    rows = _rows()
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    report = predict_file(token_runtime, src, tmp_path / "out.jsonl", progress=False)
    out = _read_jsonl(tmp_path / "out.jsonl")
    assert report.rows == 50 and report.error_rows == 2 and [r["id"] for r in out] == [r["id"] for r in rows]
    assert list(out[0]) == ["id", *TOKEN_COLUMNS, "sr", "entropy", "adue", "alien", "error"]
    assert "value[1] is int" in out[5]["error"] and "absent or null" in out[8]["error"] and out[5]["tags"] is None
    good = [i for i, r in enumerate(rows) if i not in (3, 5, 8)]
    preds = token_runtime.predict_tokens([rows[i]["tokens"] for i in good])
    for i, p in zip(good, preds):
        assert out[i]["words"] == rows[i]["tokens"] and out[i]["tags"] == p.tags and out[i]["offsets"] is None
        np.testing.assert_allclose(out[i]["adue"], p.scores["adue"], atol=1e-6)
        assert out[i]["sentence_uncertainty"] == pytest.approx(p.sentence_uncertainty)
    [e] = token_runtime.predict_entities([rows[3]["tokens"]])
    assert out[3]["words"] == e.tokens.words and out[3]["offsets"] == e.offsets.tolist()
    assert out[3]["entities"] == [x.to_dict() for x in e.entities]


def test_text_rows_and_csv_and_parquet_outputs(token_runtime, tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", [{"text": "Alice Stone went to Paris."}, {"text": ""}, {"text": None}])
    predict_file(token_runtime, src, tmp_path / "out.jsonl", progress=False, distances=True)
    out = _read_jsonl(tmp_path / "out.jsonl")
    assert [r["row"] for r in out] == [0, 1, 2] and out[0]["words"][0] == "Alice" and out[1]["words"] == []
    assert {"md", "rmd"} <= set(out[0]) and out[2]["error"].startswith("no words: column 'text'")
    predict_file(token_runtime, src, tmp_path / "out.csv", progress=False)
    header = (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("row,words,offsets,tags")
    pq = pytest.importorskip("pyarrow.parquet")
    predict_file(token_runtime, src, tmp_path / "out.parquet", progress=False)
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert table[0]["words"] == out[0]["words"] and table[0]["offsets"] == out[0]["offsets"]
    assert table[0]["entities"] == out[0]["entities"] and table[2]["tags"] is None


class _FailingModel:
    """The token model, failing on its ``fail_on``-th predict_tokens call (an interrupted job)."""

    def __init__(self, model, fail_on: int):
        self._model, self._calls, self._fail_on = model, 0, fail_on

    def __getattr__(self, name):
        return getattr(self._model, name)

    def predict_tokens(self, *args, **kwargs):
        self._calls += 1
        if self._calls == self._fail_on:
            raise RuntimeError("injected failure")
        return self._model.predict_tokens(*args, **kwargs)


def test_resume_after_failure_matches_an_uninterrupted_run(token_runtime, tmp_path):
    rows = [r for i, r in enumerate(_rows(120)) if i != 3]
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    reference, dst = tmp_path / "ref.jsonl", tmp_path / "out.jsonl"
    predict_file(token_runtime, src, reference, chunk_rows=25, progress=False)
    with pytest.raises(RuntimeError, match="injected failure"):
        predict_file(_FailingModel(token_runtime, 3), src, dst, chunk_rows=25, progress=False)
    assert not dst.exists()
    report = predict_file(token_runtime, src, dst, chunk_rows=25, resume=True, progress=False)
    assert report.resumed_from == 50 and dst.read_bytes() == reference.read_bytes()


def test_cli_predict_and_refusals(token_bundle, tmp_path, capsys):
    from uehead import cli

    src = _write_jsonl(tmp_path / "in.jsonl", _rows(10))
    assert cli.main(["predict", str(token_bundle[1]), "--input", str(src), "--output", str(tmp_path / "o.jsonl")]) == 0
    assert len(_read_jsonl(tmp_path / "o.jsonl")) == 10
    assert cli.main(["predict", str(token_bundle[1]), "--input", str(src), "--output", str(tmp_path / "r.jsonl"),
                     "--engine", "ray"]) == 2
    assert "--engine local" in capsys.readouterr().err
