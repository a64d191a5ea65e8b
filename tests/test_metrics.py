"""uehead.evaluation.metrics: cross-checks with scikit-learn, hand-computed cases, ties, degenerate splits."""
from __future__ import annotations

import itertools
import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uehead.evaluation import metrics as m
from uehead.evaluation.metrics import UndefinedMetricWarning

U4 = np.array([0.1, 0.2, 0.3, 0.4])
E4 = np.array([0, 1, 0, 1])


def random_case(seed: int, n: int = 300, ties: bool = False):
    rng = np.random.default_rng(seed)
    e = rng.random(n) < rng.uniform(0.05, 0.6)
    u = rng.random(n) + 0.4 * e  # informative but imperfect
    if ties:
        u = np.round(u, 1)
    return u, e


# ------------------------------------------------------------------------ scikit-learn
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_and_brier_match_sklearn(seed, ties):
    sk = pytest.importorskip("sklearn.metrics")
    u, e = random_case(seed, ties=ties)
    assert m.roc_auc(u, e) == pytest.approx(sk.roc_auc_score(e, u), abs=1e-12)
    p = np.clip(u, 0, 1)
    assert m.brier(u, e) == pytest.approx(sk.brier_score_loss(e, p), abs=1e-12)
    assert m.accuracy(e.astype(int), np.zeros(e.size, int)) == pytest.approx(
        sk.accuracy_score(e.astype(int), np.zeros(e.size, int)))


# ------------------------------------------------------------------------ hand cases
def test_roc_auc_hand_cases():
    assert m.roc_auc(U4, E4) == pytest.approx(0.75)  # pairs (err, ok): (.2,.1) (.2,.3) (.4,.1) (.4,.3) -> 3/4
    assert m.roc_auc([0.5, 0.5, 0.9], [0, 1, 1]) == pytest.approx(0.75)  # tie counts 1/2: (0.5 + 1) / 2
    assert m.roc_auc([3, 2, 1], [1, 0, 0]) == 1.0
    assert m.roc_auc([1, 2, 3], [1, 0, 0]) == 0.0
    assert m.roc_auc(np.full(7, 0.3), [1, 0, 1, 0, 0, 0, 1]) == 0.5


def test_aurc_hand_case():
    # least uncertain first: errors 0,1,0,1 -> risks 0, 1/2, 1/3, 2/4
    assert m.aurc(U4, E4) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    cov, risk = m.risk_coverage_curve(U4, E4)
    np.testing.assert_allclose(cov, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0, 1 / 2, 1 / 3, 1 / 2])
    # oracle keeps the 2 correct rows first: 0, 0, 1/3, 2/4
    assert m.oracle_aurc(E4) == pytest.approx((1 / 3 + 1 / 2) / 4)
    assert m.aurc([0.9, 0.1, 0.2], [1, 0, 0]) == m.oracle_aurc([1, 0, 0]) == pytest.approx(1 / 9)
    assert m.aurc([1.0, 2.0], [0, 0]) == 0.0 and m.aurc([1.0, 2.0], [1, 1]) == 1.0


def test_prr_hand_case():
    random, oracle, score = 0.5, (1 / 3 + 1 / 2) / 4, (1 / 2 + 1 / 3 + 1 / 2) / 4
    assert m.prr(U4, E4) == pytest.approx((random - score) / (random - oracle))  # = 4/7
    assert m.prr(U4, E4) == pytest.approx(4 / 7)
    assert m.prr(E4 * 2.0, E4) == pytest.approx(1.0)  # oracle
    assert m.prr(-E4 * 2.0, E4) < 0  # anti-oracle is worse than random


def test_prr_equals_normalised_rejection_area_lm_polygraph_style():
    """PRR via the accuracy-of-retained-rows curve (lm-polygraph's formulation), no ties."""
    u, e = random_case(3, n=97)
    acc = 1.0 - e

    def area(order):  # order: least uncertain first; reject from the end
        kept = acc[order]
        return np.mean(np.cumsum(kept) / np.arange(1, kept.size + 1))

    score = area(np.argsort(u))
    oracle = area(np.argsort(e, kind="stable"))
    random_ = acc.mean()
    assert m.prr(u, e) == pytest.approx((score - random_) / (oracle - random_), abs=1e-12)


def test_ece_hand_case():
    # p = 0.05 (bin 0) x2 with one error; p = 0.95 (bin 14) x2 with two errors
    u, e = [0.05, 0.05, 0.95, 0.95], [0, 1, 1, 1]
    assert m.ece(u, e) == pytest.approx(0.5 * abs(0.5 - 0.05) + 0.5 * abs(1.0 - 0.95))
    # clipping: AdUE's slightly negative U is read as probability 0; 1.2 as 1
    assert m.ece([-0.01, 1.2], [0, 1]) == pytest.approx(0.0)
    assert m.brier([-0.01, 1.2], [0, 1]) == pytest.approx(0.0)
    mean_p, rate, count = m.calibration_bins([0.0, 1 / 15, 1.0], [0, 0, 1])
    assert count[0] == 1 and count[1] == 1 and count[14] == 1 and count.sum() == 3  # left-closed, last bin closed
    assert np.isnan(mean_p[5]) and np.isnan(rate[5])


def test_ece_matches_confidence_ece_for_softmax_response():
    """For u = 1 - max p, ECE of the error probability equals the classic |acc - conf| ECE."""
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, 500)
    correct = rng.random(500) < conf
    edges = np.linspace(0, 1, 16)
    classic = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            classic += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    assert m.ece(1.0 - conf, ~correct) == pytest.approx(classic, abs=1e-12)


# ------------------------------------------------------------------------ ties
def test_ties_are_averaged_over_every_order():
    """Tied scores get the mean of the metric over all orders of the tied rows (brute force)."""
    u = np.array([0.2, 0.5, 0.5, 0.5, 0.9, 0.2])
    e = np.array([0, 1, 0, 0, 1, 1])
    tied = [np.flatnonzero(u == v) for v in np.unique(u)]
    aurcs = []
    for perms in itertools.product(*(itertools.permutations(g) for g in tied)):
        rank = np.empty(u.size)
        pos = 0
        for g in perms:
            rank[list(g)] = np.arange(pos, pos + len(g))
            pos += len(g)
        aurcs.append(m.aurc(rank, e))  # distinct scores, one tie-break
    assert m.aurc(u, e) == pytest.approx(np.mean(aurcs), abs=1e-12)
    assert m.prr(u, e) == pytest.approx(np.mean([(e.mean() - a) / (e.mean() - m.oracle_aurc(e)) for a in aurcs]))


def test_constant_score_is_exactly_random():
    u, e = np.zeros(50), (np.arange(50) % 3 == 0)
    assert m.roc_auc(u, e) == 0.5
    assert m.prr(u, e) == pytest.approx(0.0, abs=1e-12)
    assert m.aurc(u, e) == pytest.approx(e.mean())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=40))
def test_invariant_to_row_order_and_monotone_transforms(rows):
    u = np.array([r[0] for r in rows], float)
    e = np.array([r[1] for r in rows])
    perm = np.random.default_rng(len(rows)).permutation(len(rows))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for f in (m.roc_auc, m.prr, m.aurc):
            a, b, c = f(u, e), f(u[perm], e[perm]), f(np.exp(u) * 3 - 1, e)
            assert (math.isnan(a) and math.isnan(b) and math.isnan(c)) or (
                a == pytest.approx(b, abs=1e-12) and a == pytest.approx(c, abs=1e-12))
        assert m.oracle_aurc(e) <= m.aurc(u, e) + 1e-12


# ------------------------------------------------------------------------ degenerate
@pytest.mark.parametrize("e", [np.zeros(5, bool), np.ones(5, bool)])
def test_undefined_when_no_errors_or_no_correct(e):
    u = np.linspace(0, 1, 5)
    for f in (m.roc_auc, m.prr):
        with pytest.warns(UndefinedMetricWarning, match="no errors" if not e.any() else "no correct"):
            assert math.isnan(f(u, e))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # defined metrics must not warn
        assert m.aurc(u, e) == float(e[0])
        assert 0.0 <= m.ece(u, e) <= 1.0 and 0.0 <= m.brier(u, e) <= 1.0


def test_summarize_warns_once_and_reports_nan():
    e = np.zeros(6)
    scores = {"sr": np.linspace(0, 0.5, 6), "adue": np.linspace(0, 0.4, 6), "md": np.arange(6.0)}
    with pytest.warns(UndefinedMetricWarning) as rec:
        s = m.summarize(scores, e)
    assert len([w for w in rec if issubclass(w.category, UndefinedMetricWarning)]) == 1
    assert all(math.isnan(s[k]["roc_auc"]) and math.isnan(s[k]["prr"]) for k in scores)
    assert s["md"]["aurc"] == 0.0
    assert "nan" in m.format_table(s)


@pytest.mark.parametrize("u, e, match", [
    ([0.1, 0.2], [0, 1, 1], "rows"),
    ([], [], "empty"),
    ([0.1, float("nan")], [0, 1], "NaN"),
    ([0.1, 0.2], [0, 2], "0/1"),
    ([[0.1, 0.2]], [[0, 1]], "1-D"),
    (["a", "b"], [0, 1], "real"),
])
def test_bad_input_raises_clear_error(u, e, match):
    with pytest.raises(ValueError, match=match):
        m.roc_auc(u, e)


def test_bool_and_int_errors_agree():
    u, e = random_case(5, n=60)
    assert m.summarize({"sr": u}, e) == m.summarize({"sr": u}, e.astype(np.int8))


# ------------------------------------------------------------------------ summaries
def test_summarize_and_format_table():
    u, e = random_case(0)
    s = m.summarize({"sr": np.clip(u / 1.4, 0, 1), "md": u * 10}, e)
    assert set(s["sr"]) == {"roc_auc", "prr", "aurc", "ece", "brier"}
    assert set(s["md"]) == {"roc_auc", "prr", "aurc"}  # MD is not a probability
    assert s["sr"]["roc_auc"] == pytest.approx(s["md"]["roc_auc"])  # same ranking
    assert s["sr"]["roc_auc"] == pytest.approx(m.roc_auc(u, e))
    table = m.format_table(s, accuracy=1 - e.mean(), n=e.size)
    lines = table.splitlines()
    assert lines[0].startswith("| score | ROC-AUC (+) | PRR (+) | AURC (-) | ECE (-) | Brier (-) |")
    assert lines[3].startswith("| md |") and lines[3].endswith("| - | - |")
    assert f"{s['sr']['roc_auc']:.4f}" in lines[2] and f"n = {e.size}" in table
    plain = m.format_table(s, markdown=False)
    assert "|" not in plain.splitlines()[0] and len({len(x) for x in plain.splitlines()[:3]}) == 1


def test_mean_std_ignores_nan_and_counts():
    ms = m.mean_std([0.7, float("nan"), 0.8, 0.9])
    assert ms.mean == pytest.approx(0.8) and ms.std == pytest.approx(0.1) and (ms.count, ms.total) == (3, 4)
    assert m.format_mean_std(ms) == "80.0 ± 10.0 (n=3/4)"
    one = m.mean_std([0.5])
    assert (one.mean, one.std, one.count) == (0.5, 0.0, 1)
    none = m.mean_std([float("nan")])
    assert math.isnan(none.mean) and none.count == 0 and m.format_mean_std(none) == "nan"
    assert json.dumps(none.to_dict()) == '{"mean": null, "std": null, "count": 0, "total": 1}'


def test_aggregate_over_seeds():
    runs = [m.summarize({"sr": u, "md": u * 3}, e) for u, e in (random_case(s) for s in range(3))]
    agg = m.aggregate(runs)
    vals = [r["sr"]["roc_auc"] for r in runs]
    assert agg["sr"]["roc_auc"].mean == pytest.approx(np.mean(vals))
    assert agg["sr"]["roc_auc"].std == pytest.approx(np.std(vals, ddof=1))
    assert "ece" not in agg["md"] and agg["md"]["prr"].count == 3
    assert "±" in m.format_table(agg, digits=3)
