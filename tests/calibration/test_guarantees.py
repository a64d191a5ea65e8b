"""The empirical check of the guarantees (design notes, section 4) on a small synthetic problem,
and LAC sets against MAPIE's on the same probabilities."""
from __future__ import annotations

import numpy as np
import pytest

from uehead.calibration.check import empirical_check
from uehead.calibration.conformal import fit_conformal

TRIALS = 200
DELTA = 0.1


def synthetic(n: int = 2000, num_classes: int = 3, seed: int = 1):
    """A calibrated model of varying confidence: y ~ p, so P(error | x) = 1 - max p."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (n, num_classes)) * rng.gamma(2.0, 1.2, (n, 1))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, num_classes - 1)
    scores = {"sr": 1 - p.max(axis=1), "entropy": -(p * np.log(p)).sum(axis=1), "noise": rng.random(n)}
    return p, y, scores


def check_violations(report):
    # Over TRIALS independent trials the violation count is Binomial(TRIALS, <= DELTA): the exact
    # 95 % interval must reach down to DELTA.
    for score, levels in report["risk"].items():
        for level in levels:
            assert level["consistent"], (score, level)
            assert level["violation_frequency"] <= DELTA + 2.5 * np.sqrt(DELTA * (1 - DELTA) / TRIALS), (score, level)


def test_risk_is_controlled_over_resampled_calibration_sets():
    """Calibration rows drawn with replacement from the held-out rows, judged on all of them: the
    error rate among accepted rows is then the exact risk Learn then Test bounds."""
    p, y, scores = synthetic()
    report = empirical_check(p, y, scores, score="sr", risk=(0.05, 0.1), delta=DELTA, coverage=(0.9, 0.95),
                             trials=TRIALS, resample="bootstrap")
    check_violations(report)
    assert report["risk"]["sr"][1]["mean_accepted_fraction"] > 0.3     # the check is not vacuous
    assert report["risk"]["noise"][0]["mean_accepted_fraction"] < 0.05  # an uninformative score automates ~nothing
    for level in report["sets"]:
        assert level["mean_coverage"] >= level["coverage"] - 0.005, level


def test_random_halves_cover_and_test_noise_shows_in_violations():
    """Random calibration / test halves (design notes, section 4). Coverage holds on average. The
    test half's own error rate among accepted rows is a noisy estimate of the risk, so its
    violation frequency may exceed delta by that noise; the bound itself is checked above."""
    p, y, scores = synthetic()
    report = empirical_check(p, y, scores, score="sr", risk=(0.05, 0.1), delta=DELTA, coverage=(0.9, 0.95),
                             trials=TRIALS, resample="halves")
    for level in report["sets"]:
        assert level["mean_coverage"] >= level["coverage"] - 0.005, level
    for levels in report["risk"].values():
        for level in levels:
            assert level["violation_frequency"] <= 0.5, level        # noise, not a broken procedure
            if level["mean_risk_among_accepted"] is not None:
                assert level["mean_risk_among_accepted"] <= level["risk"], level


@pytest.mark.parametrize("method,class_conditional", [("aps", False), ("lac", True)])
def test_aps_and_class_conditional_sets_cover(method, class_conditional):
    p, y, scores = synthetic(seed=2)
    report = empirical_check(p, y, {"sr": scores["sr"]}, score="sr", risk=(0.1,), coverage=(0.9,), method=method,
                             class_conditional=class_conditional, trials=TRIALS)
    (level,) = report["sets"]
    assert level["mean_coverage"] >= 0.9 - 0.005
    if class_conditional:
        assert level["mean_min_class_coverage"] >= 0.9 - 0.03



def test_lac_sets_equal_mapie():
    pytest.importorskip("mapie")
    from mapie.classification import SplitConformalClassifier
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Lookup(ClassifierMixin, BaseEstimator):
        def __init__(self, probs=None):
            self.probs = probs

        def fit(self, X, y):
            self.classes_ = np.arange(self.probs.shape[1])
            return self

        def predict_proba(self, X):
            return self.probs[np.asarray(X)[:, 0].astype(int)]

        def predict(self, X):
            return self.predict_proba(X).argmax(axis=1)

    rng = np.random.default_rng(0)
    n, c = 1500, 4
    probs = rng.dirichlet(np.full(c, 0.7), n)
    y = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, c - 1)
    x = np.arange(n)[:, None]
    levels = (0.8, 0.9, 0.95)
    mapie = SplitConformalClassifier(estimator=Lookup(probs).fit(x, y), confidence_level=list(levels),
                                     conformity_score="lac", prefit=True)
    mapie.conformalize(x[:501], y[:501])
    _, theirs = mapie.predict_set(x[501:])
    for k, coverage in enumerate(levels):
        ours = fit_conformal(probs[:501], y[:501], coverage, "lac").set_mask(probs[501:])
        assert np.array_equal(ours, theirs[:, :, k]), coverage
