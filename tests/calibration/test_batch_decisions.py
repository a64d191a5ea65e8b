"""Batch jobs on a calibrated bundle write p_error, accept and prediction_set columns (local and Ray
engines, the Spark example's predict function), at stored levels picked with risk / coverage."""
from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from uehead import runtime
from uehead.errors import DataError
from uehead.runtime.batch import predict_file
from uehead.runtime.batch_schema import BASE_COLUMNS, DECISION_COLUMNS, columns_for_bundle

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

TEXTS = ["good", "bad movie", None, "a b c d e f g h i j", "the plot was slow but the cast good", ""]


@pytest.fixture(scope="module")
def calibrated_model(calibrated_bundle):
    return runtime.load(calibrated_bundle, threads=1)


def _input(tmp_path) -> Path:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(TEXTS)), encoding="utf-8")
    return src


def _read(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _assert_decisions(rows, model, risk=None, coverage=None) -> None:
    ok = [i for i, t in enumerate(TEXTS) if t is not None]
    preds = model.predict([TEXTS[i] for i in ok], risk=risk, coverage=coverage)
    np.testing.assert_allclose([rows[i]["p_error"] for i in ok], preds.p_error, rtol=1e-6)
    assert [rows[i]["accept"] for i in ok] == preds.accept.tolist()
    assert [rows[i]["prediction_set"] for i in ok] == [list(s) for s in preds.prediction_sets]
    assert all(rows[i][c] is None for i in range(len(TEXTS)) if i not in ok for c in DECISION_COLUMNS)


def test_calibrated_bundle_writes_decision_columns(tmp_path, calibrated_model, calibrated_bundle):
    src = _input(tmp_path)
    cal = calibrated_model.calibration
    report = predict_file(calibrated_model, src, tmp_path / "out.parquet", progress=False)
    assert report.columns == ("id", *BASE_COLUMNS, "sr", "adue", "alien", *DECISION_COLUMNS, "error")
    assert columns_for_bundle(calibrated_bundle).names == report.columns[1:]
    schema = pq.read_schema(tmp_path / "out.parquet")
    assert schema.field("accept").type == pa.bool_()
    assert schema.field("prediction_set").type == pa.list_(pa.string())
    _assert_decisions(_read(tmp_path / "out.parquet"), calibrated_model)
    # another stored level; CSV holds the sets as JSON text
    risk, coverage = cal.risks[-1], cal.coverages[-1]
    predict_file(calibrated_model, src, tmp_path / "out.jsonl", risk=risk, coverage=coverage, progress=False)
    _assert_decisions(_read(tmp_path / "out.jsonl"), calibrated_model, risk, coverage)
    predict_file(calibrated_model, src, tmp_path / "out.csv", progress=False)
    got = _read(tmp_path / "out.csv")
    assert json.loads(got[0]["prediction_set"]) == list(calibrated_model.predict(["good"]).prediction_sets[0])
    with pytest.raises(DataError, match="stored risk levels"):
        predict_file(calibrated_model, src, tmp_path / "bad.jsonl", risk=0.0123, progress=False)


def test_cli_predict_picks_stored_levels(tmp_path, calibrated_bundle, calibrated_model, tiny_bundle_dir, capsys):
    from uehead.cli import main

    src = _input(tmp_path)
    risk = calibrated_model.calibration.risks[-1]
    assert main(["predict", str(calibrated_bundle), "--input", str(src), "--output", str(tmp_path / "o.jsonl"),
                 "--risk", str(risk), "--threads", "1"]) == 0
    _assert_decisions(_read(tmp_path / "o.jsonl"), calibrated_model, risk=risk)
    assert main(["predict", str(tiny_bundle_dir), "--input", str(src), "--output", str(tmp_path / "p.jsonl"),
                 "--coverage", "0.9"]) == 2
    assert "no calibration" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:.*deprecated.*:DeprecationWarning:ray")
def test_ray_engine_writes_the_same_decision_columns(tmp_path, calibrated_bundle, calibrated_model, monkeypatch):
    pytest.importorskip("ray.data")
    from uehead.runtime.ray_data import predict_file_ray

    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    src = _input(tmp_path)
    predict_file(calibrated_model, src, tmp_path / "local.parquet", progress=False)
    report = predict_file_ray(calibrated_bundle, src, tmp_path / "ray.parquet", num_workers=1, threads=1,
                              progress=False)
    assert report.columns == tuple(pq.read_schema(tmp_path / "local.parquet").names)
    assert pq.read_schema(tmp_path / "ray.parquet") == pq.read_schema(tmp_path / "local.parquet")
    _assert_decisions(_read(tmp_path / "ray.parquet"), calibrated_model)


def test_spark_predict_fn_carries_the_decisions(calibrated_bundle, calibrated_model):
    path = Path(__file__).resolve().parents[2] / "examples" / "spark_predict_udf.py"
    spec = importlib.util.spec_from_file_location("spark_predict_udf", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = example.make_predict_fn(str(calibrated_bundle), threads=1)()(np.array(["good", None], dtype=object))
    assert set(out) == set(columns_for_bundle(calibrated_bundle).names)
    c = len(calibrated_model.labels)
    assert out["prediction_set"].shape == (2, c) and out["accept"].shape == (2,)
    want = calibrated_model.predict(["good"])
    assert [s for s in out["prediction_set"][0] if s is not None] == list(want.prediction_sets[0])
    assert out["accept"].tolist() == [bool(want.accept[0]), None] and np.isnan(out["p_error"][1])
