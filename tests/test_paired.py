"""The paired bootstrap of ROC-AUC differences and the do-no-harm choice of the default score."""
from __future__ import annotations

import numpy as np
import pytest

from uehead.evaluation.metrics import roc_auc
from uehead.evaluation.paired import bootstrap_auc_diff, choose_default_score, describe_default


def _rows(n=600, seed=0):
    rng = np.random.RandomState(seed)
    errors = (rng.rand(n) < 0.25).astype(np.int8)
    sr = errors * 0.6 + rng.normal(size=n)              # an informative baseline
    return rng, errors, sr


def test_bootstrap_is_paired_and_centred_on_the_observed_difference():
    rng, errors, sr = _rows()
    better = sr + errors * 0.8
    diffs = bootstrap_auc_diff(better, sr, errors, n_boot=400, seed=1)
    assert diffs.shape == (400,)
    observed = roc_auc(better, errors) - roc_auc(sr, errors)
    assert abs(diffs.mean() - observed) < 0.01 and diffs.min() > 0   # paired: same rows for both scores
    assert np.array_equal(diffs, bootstrap_auc_diff(better, sr, errors, n_boot=400, seed=1))  # seeded
    assert np.all(bootstrap_auc_diff(sr, sr, errors, n_boot=50) == 0.0)
    # a monotone transform of the same score has the same ranking: zero difference in every resample
    assert np.allclose(bootstrap_auc_diff(np.exp(sr), sr, errors, n_boot=50), 0.0)


def test_bootstrap_matches_a_plain_loop():
    rng, errors, sr = _rows(n=80, seed=3)
    other = sr + rng.normal(size=80)
    diffs = bootstrap_auc_diff(other, sr, errors, n_boot=30, seed=5)
    # the same resamples drawn by hand (the generator draws chunks of 250 rows of indices)
    idx = np.random.RandomState(5).randint(0, 80, size=(250, 80))
    keep = [i for i in idx if 0 < errors[i].sum() < 80][:30]
    expected = [roc_auc(other[i], errors[i]) - roc_auc(sr[i], errors[i]) for i in keep]
    np.testing.assert_allclose(diffs, expected, rtol=0, atol=1e-12)


def test_default_falls_back_to_sr_unless_the_gain_is_significant():
    rng, errors, sr = _rows(n=2000)
    noisy = sr + rng.normal(scale=0.05, size=sr.size)       # no real gain
    clear = sr + errors * 1.0                               # a large gain
    rec = choose_default_score({"sr": sr, "adue": noisy}, errors, ("adue", "alien"), n_boot=300)
    assert rec["chosen"] == "sr" and not rec["candidates"]["adue"]["significant"]
    assert set(rec["candidates"]) == {"adue"}                # alien was not trained
    rec = choose_default_score({"sr": sr, "adue": noisy, "alien": clear}, errors, ("adue", "alien"), n_boot=300)
    assert rec["chosen"] == "alien" and rec["candidates"]["alien"]["ci_low"] > 0
    assert rec["candidates"]["alien"]["p_value"] == 0.0 and rec["n_rows"] == 2000
    line = describe_default(rec)
    assert line.startswith("default uncertainty: alien") and "significant" in line
    worse = sr - errors * 1.0
    assert choose_default_score({"sr": sr, "adue": worse}, errors, ("adue",), n_boot=200)["chosen"] == "sr"


def test_default_without_heads_or_without_errors():
    _, errors, sr = _rows()
    assert choose_default_score({"sr": sr}, errors, ("adue",))["reason"] == "no trained head"
    none_wrong = np.zeros_like(errors)
    rec = choose_default_score({"sr": sr, "adue": sr}, none_wrong, ("adue",))
    assert rec["chosen"] == "sr" and "no errors" in rec["reason"]
    assert "sr" in describe_default(rec)
    with pytest.raises(ValueError, match="errors and correct"):
        bootstrap_auc_diff(sr, sr, none_wrong)
