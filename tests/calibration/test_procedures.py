"""The three procedures on hand-computed cases, and against scipy / scikit-learn where they exist."""
from __future__ import annotations

import math

import numpy as np
import pytest

from uehead.calibration.conformal import ConformalLevel, conformal_quantile, fit_conformal, label_scores
from uehead.calibration.isotonic import IsotonicMap, fit_isotonic
from uehead.calibration.risk import binom_cdf, binomial_interval, learn_then_test, n_min, threshold_grid


# ---------------------------------------------------------------------------------- isotonic
def test_pav_pools_a_violation_and_interpolates_between_breakpoints():
    g = fit_isotonic([0, 1, 2, 3], [0, 1, 0, 1])
    np.testing.assert_allclose(g.x, [0, 1, 2, 3])
    np.testing.assert_allclose(g.y, [0, 0.5, 0.5, 1])
    np.testing.assert_allclose(g([-5, 0.5, 1.5, 2.5, 9]), [0, 0.25, 0.5, 0.75, 1])  # clipped outside


def test_pav_pools_tied_scores_first():
    g = fit_isotonic([1, 1, 2], [1, 0, 0])   # tie at 1 has rate 1/2 > 0 at 2: one block of rate 1/3
    np.testing.assert_allclose(g.x, [1, 2])
    np.testing.assert_allclose(g.y, [1 / 3, 1 / 3])
    one = fit_isotonic([4, 4, 4], [1, 0, 1])
    np.testing.assert_allclose(one([0, 4, 10]), [2 / 3] * 3)


def test_isotonic_matches_scikit_learn():
    sklearn_isotonic = pytest.importorskip("sklearn.isotonic")
    rng = np.random.default_rng(3)
    u = np.round(rng.normal(size=600), 2)                   # many ties
    e = rng.random(600) < 1 / (1 + np.exp(-2 * u))
    ours = fit_isotonic(u, e)
    ref = sklearn_isotonic.IsotonicRegression(out_of_bounds="clip").fit(u, e.astype(float))
    grid = np.linspace(-4, 4, 2001)
    np.testing.assert_allclose(ours(grid), ref.predict(grid), atol=1e-12)
    assert (np.diff(ours.y) >= 0).all() and (np.diff(ours.x) > 0).all()


def test_isotonic_map_round_trips_and_rejects_bad_breakpoints():
    g = fit_isotonic([0.1, 0.5, 0.9], [0, 0, 1])
    assert np.array_equal(IsotonicMap.from_dict(g.to_dict())([0.3, 0.7]), g([0.3, 0.7]))
    with pytest.raises(ValueError, match="non-decreasing"):
        IsotonicMap(np.array([0.0, 1.0]), np.array([0.5, 0.2]))
    with pytest.raises(ValueError, match="strictly increasing"):
        IsotonicMap(np.array([1.0, 1.0]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="finite"):
        fit_isotonic([0.0, np.nan], [0, 1])


# ----------------------------------------------------------------------- Learn then Test
def test_n_min_is_the_zero_error_bound():
    assert n_min(0.05, 0.1) == 45       # DECISIONS.md: r = 0.05, delta = 0.1 -> 45 rows
    assert n_min(0.1, 0.1) == 22
    assert n_min(0.2, 0.1) == 11
    assert n_min(0.5, 0.25) == 2        # exact integer bound: 0.5^2 = 0.25
    for r, d in ((0.05, 0.1), (0.01, 0.05), (0.3, 0.2)):
        k = n_min(r, d)
        assert (1 - r) ** k <= d < (1 - r) ** (k - 1)


def test_binomial_cdf_by_hand_and_against_scipy():
    assert binom_cdf(1, 12, 0.2) == pytest.approx(0.8 ** 12 + 12 * 0.2 * 0.8 ** 11, rel=1e-12)
    assert binom_cdf(0, 45, 0.05) == pytest.approx(0.95 ** 45, rel=1e-12)
    assert binom_cdf(-1, 5, 0.3) == 0.0 and binom_cdf(5, 5, 0.3) == 1.0
    stats = pytest.importorskip("scipy.stats")
    for k, n, p in ((3, 50, 0.1), (100, 3000, 0.05), (5, 1000, 0.001), (700, 5000, 0.15)):
        assert binom_cdf(k, n, p) == pytest.approx(stats.binom.cdf(k, n, p), rel=1e-9, abs=1e-300)
    lo, hi = binomial_interval(20, 200)
    ref = stats.binomtest(20, 200).proportion_ci(method="exact")
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-9)
    assert binomial_interval(0, 200)[0] == 0.0 and binomial_interval(200, 200)[1] == 1.0


def test_grid_is_the_score_percentiles():
    u = np.arange(1.0, 201.0)
    grid = threshold_grid(u)
    np.testing.assert_array_equal(grid, np.arange(2.0, 201.0, 2.0))   # j % quantile = ceil(2 j)-th value
    np.testing.assert_array_equal(threshold_grid(np.arange(1.0, 51.0)), np.arange(1.0, 51.0))
    assert threshold_grid(np.r_[np.zeros(50), np.ones(50)]).tolist() == [0.0, 1.0]


def test_fixed_sequence_stops_at_the_first_failure():
    # r = 0.2, delta = 0.1: n_min = 11. Scores 1..20, one error at u = 12.
    u = np.arange(1.0, 21.0)
    e = u == 12
    t = learn_then_test(u, e, 0.2, 0.1)
    # t=11: 11 rows, 0 errors, p = 0.8^11 = 0.086 <= 0.1 certified; t=12: p = P(Bin(12,.2) <= 1) = 0.275 stop.
    # (t=20 alone would pass, p = 0.069, but the walk has stopped.)
    assert t.threshold == 11.0 and t.n_min == 11 and t.accepted_fraction == pytest.approx(0.55)
    assert t.accept([10.0, 11.0, 11.5]).tolist() == [True, True, False]


def test_no_threshold_reaches_r_accepts_nothing():
    u = np.arange(1.0, 21.0)
    t = learn_then_test(u, u == 1, 0.2, 0.1)          # the first testable threshold already fails
    assert t.threshold is None and t.accepted_fraction == 0.0
    assert not t.accept(u).any()


def test_leading_thresholds_below_n_min_are_skipped():
    # Without the skip the walk would start at t = 1 (1 row, p = 0.8 > delta) and stop at once.
    u = np.arange(1.0, 101.0)
    t = learn_then_test(u, np.zeros(100, bool), 0.2, 0.1)
    assert t.threshold == 100.0 and t.accepted_fraction == 1.0
    e = np.zeros(100, bool)
    e[:3] = True                                       # 3 errors in the 11 strictest rows: p = 0.84
    assert learn_then_test(u, e, 0.2, 0.1).threshold is None


# ---------------------------------------------------------------------------------- conformal
def test_conformal_quantile_is_the_finite_sample_rank():
    s = [0.4, 0.1, 0.3, 0.2]
    assert conformal_quantile(s, 0.25) == 0.4      # ceil(5 * 0.75) = 4th smallest
    assert conformal_quantile(s, 0.5) == 0.3       # ceil(2.5) = 3rd
    assert conformal_quantile(s, 0.1) == math.inf  # ceil(4.5) = 5 > n
    assert conformal_quantile(np.arange(1, 10) / 10, 0.1) == pytest.approx(0.9)   # ceil(10 * 0.9) = 9th
    assert conformal_quantile([], 0.1) == math.inf


def test_lac_and_aps_scores_by_hand():
    p = np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2]])
    np.testing.assert_allclose(label_scores(p, "lac"), 1 - p)
    np.testing.assert_allclose(label_scores(p, "aps"), [[0.5, 0.8, 1.0], [0.4, 0.8, 1.0]])   # tie: class 0 first
    lac = ConformalLevel(0.9, "lac", False, 0.65)
    assert lac.set_mask(p).tolist() == [[True, False, False], [True, True, False]]
    assert not ConformalLevel(0.9, "lac", False, 0.45).set_mask(p).any()                   # empty sets allowed
    assert ConformalLevel(0.9, "aps", False, 0.8).set_mask(p).tolist() == [[True, True, False]] * 2
    assert ConformalLevel(0.9, "lac", False, math.inf).set_mask(p).all()


def test_class_conditional_quantiles_use_each_class_rows():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.2, 0.8]])
    y = np.array([0, 0, 0, 1, 1])
    level = fit_conformal(p, y, 0.5, "lac", class_conditional=True)
    # class 0 scores 0.1, 0.2, 0.3: ceil(4 * 0.5) = 2nd -> 0.2; class 1 scores 0.4, 0.2: ceil(1.5) = 2nd -> 0.4
    assert level.q == pytest.approx((0.2, 0.4))
    assert level.set_mask([[0.85, 0.15], [0.5, 0.5]]).tolist() == [[True, False], [False, False]]
    unseen = fit_conformal(p, np.zeros(5, int), 0.5, "lac", class_conditional=True)
    assert unseen.q[1] == math.inf                                # no rows of class 1: always in the set
    assert ConformalLevel.from_dict(unseen.to_dict()).q == unseen.q


def test_conformal_rejects_unknown_method():
    with pytest.raises(ValueError, match="lac, aps"):
        label_scores(np.full((1, 2), 0.5), "raps")
