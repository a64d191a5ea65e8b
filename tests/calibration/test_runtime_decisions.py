"""A calibrated bundle through the torch-free runtime: Predictions gain p_error, accept and
prediction_sets at stored levels; an uncalibrated bundle predicts exactly as before."""
from __future__ import annotations

import numpy as np
import pytest

from uehead import runtime
from uehead.calibration.apply import load_calibration
from uehead.errors import DataError

TEXTS = ["good", "bad movie", "", "a b c d e f g h i j", "the plot was slow but the cast good"]


@pytest.fixture(scope="module")
def calibrated_model(calibrated_bundle):
    return runtime.load(calibrated_bundle, threads=1)


def test_uncalibrated_bundle_predicts_as_before(tiny_model):
    preds = tiny_model.predict(TEXTS)
    assert tiny_model.calibration is None and not preds.calibrated
    assert preds.p_error is None and preds.accept is None and preds.prediction_sets is None
    with pytest.raises(DataError, match="has no calibration"):
        tiny_model.predict(TEXTS, risk=0.05)


def test_calibrated_predictions_carry_decisions(calibrated_model, calibrated_bundle, tiny_model):
    cal = calibrated_model.calibration
    preds = calibrated_model.predict(TEXTS)
    plain = tiny_model.predict(TEXTS)
    np.testing.assert_array_equal(preds.probs, plain.probs)
    assert preds.risk == cal.default_risk and preds.coverage == cal.default_coverage
    u = preds.scores[cal.score]
    np.testing.assert_array_equal(preds.p_error, cal.p_error(u))
    np.testing.assert_array_equal(preds.accept, cal.accept(u))
    assert preds.p_error.dtype == np.float32 and preds.accept.dtype == bool
    assert preds.prediction_sets == cal.prediction_sets(preds.probs)
    assert all(set(s) <= set(calibrated_model.labels) for s in preds.prediction_sets)
    assert load_calibration(calibrated_bundle, calibrated_model.manifest).score == cal.score


def test_every_stored_level_is_selectable(calibrated_model):
    cal = calibrated_model.calibration
    for r in cal.risks:
        for c in cal.coverages:
            preds = calibrated_model.predict(TEXTS, risk=r, coverage=c)
            assert preds.risk == r and preds.coverage == c
            np.testing.assert_array_equal(preds.accept, cal.accept(preds.scores[cal.score], r))
            assert preds.prediction_sets == cal.prediction_sets(preds.probs, c)


def test_unknown_level_names_the_stored_ones(calibrated_model):
    with pytest.raises(DataError, match="stored"):
        calibrated_model.predict(TEXTS, risk=0.33)
    with pytest.raises(DataError, match="stored"):
        calibrated_model.predict(TEXTS, coverage=0.5)


def test_streaming_and_concat_keep_decisions(calibrated_model):
    whole = calibrated_model.predict(TEXTS * 3)
    parts = list(calibrated_model.iter_predict(TEXTS * 3, chunk_size=4))
    joined = runtime.Predictions.concat(parts)
    np.testing.assert_array_equal(joined.accept, whole.accept)
    np.testing.assert_allclose(joined.p_error, whole.p_error)
    assert joined.prediction_sets == whole.prediction_sets and joined.risk == whole.risk


def test_evaluate_reports_selective_risk_and_marks_thresholds(calibrated_bundle, calibration_jsonl, tmp_path):
    from uehead.evaluation import evaluate as ev

    out = tmp_path / "eval.json"
    rec = ev.evaluate_bundle(calibrated_bundle, calibration_jsonl, json_out=out, verbose=False)
    dec = rec["decisions"]
    model = runtime.load(calibrated_bundle)  # as evaluate loads it: the same calls, the same float rounding
    cal = model.calibration
    assert dec["score"] == cal.score and [r["risk"] for r in dec["risk_levels"]] == list(cal.risks)
    import json

    rows = [json.loads(line) for line in open(calibration_jsonl)]
    preds = model.predict([r["text"] for r in rows])
    y = np.array([r["label"] for r in rows])
    for level, got in zip(cal.risk_levels, dec["risk_levels"]):
        accepted = level.accept(preds.scores[cal.score])
        assert got["accepted"] == int(accepted.sum())
        if accepted.any():
            assert got["selective_risk"] == pytest.approx(float((preds.label_ids != y)[accepted].mean()))
    for level, got in zip(cal.coverage_levels, dec["coverage_levels"]):
        mask = level.set_mask(preds.probs)
        assert got["empirical_coverage"] == pytest.approx(float(mask[np.arange(len(y)), y].mean()))
        assert got["mean_set_size"] == pytest.approx(float(mask.sum(1).mean()))
    assert out.with_name("eval_risk_coverage.png").stat().st_size > 5000


def test_evaluate_uncalibrated_bundle_has_no_decisions(tiny_model, calibration_jsonl):
    from uehead.evaluation import evaluate as ev

    assert ev.evaluate_bundle(tiny_model, calibration_jsonl, verbose=False)["decisions"] is None
