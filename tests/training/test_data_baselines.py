"""Row selection and batching; MD / RMD / RDE against brute-force formulas."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from uehead.runtime.distances import Baselines, fit_mahalanobis, l2_normalize, load_baselines
from uehead.training.baselines import RobustDensityBaseline, fit_baselines
from uehead.training.data import collate, sorted_batches, stratified_subsample, training_batches


def test_stratified_subsample_is_proportional_deterministic_and_sorted():
    labels = np.array([1] * 700 + [0] * 300)  # sorted by label, like Rotten Tomatoes' train file
    idx = stratified_subsample(labels, 101, seed=0)
    assert len(idx) == 101 and np.all(np.diff(idx) > 0)
    assert np.bincount(labels[idx]).tolist() == [30, 71]
    np.testing.assert_array_equal(idx, stratified_subsample(labels, 101, seed=0))
    assert not np.array_equal(idx, stratified_subsample(labels, 101, seed=1))
    np.testing.assert_array_equal(stratified_subsample(labels, None), np.arange(1000))
    np.testing.assert_array_equal(stratified_subsample(labels, 5000), np.arange(1000))


def test_training_batches_cover_every_row_once_and_group_lengths():
    rng = np.random.RandomState(0)
    lengths = rng.randint(1, 200, 1000)
    for group in (True, False):
        batches = training_batches(lengths, 16, np.random.RandomState(1), group)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(1000)) and max(len(b) for b in batches) == 16
    grouped = training_batches(lengths, 16, np.random.RandomState(1), True)
    plain = training_batches(lengths, 16, np.random.RandomState(1), False)
    padded = lambda bs: sum(len(b) * lengths[b].max() for b in bs)
    assert padded(grouped) < 0.8 * padded(plain)
    order = np.concatenate(list(sorted_batches(lengths, 64)))
    assert np.all(np.diff(lengths[order]) >= 0) and len(order) == 1000


def test_collate_pads_on_the_right():
    batch = collate([[5, 6, 7], [8]], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def _blobs(n=300, h=5, c=3, seed=0):
    rng = np.random.RandomState(seed)
    labels = np.arange(n) % c
    centres = rng.randn(c, h) * 3
    return centres[labels] + rng.randn(n, h) @ rng.randn(h, h) * 0.5, labels


@pytest.mark.parametrize("l2", [False, True])
def test_md_and_rmd_match_brute_force(l2):
    z, labels = _blobs()
    md = fit_mahalanobis(z, labels, 3, l2_normalize=l2)
    zz = l2_normalize(z) if l2 else z
    mus = np.stack([zz[labels == c].mean(0) for c in range(3)])
    cov = sum((zz[labels == c] - mus[c]).T @ (zz[labels == c] - mus[c]) for c in range(3)) / len(zz)
    prec = np.linalg.inv(cov)
    gprec = np.linalg.inv(np.cov(zz, rowvar=False, bias=True))
    test = _blobs(50, seed=1)[0]
    tt = l2_normalize(test) if l2 else test
    d = np.stack([np.einsum("nh,hk,nk->n", tt - mus[c], prec, tt - mus[c]) for c in range(3)], 1)
    d0 = np.einsum("nh,hk,nk->n", tt - zz.mean(0), gprec, tt - zz.mean(0))
    np.testing.assert_allclose(md.md(test), d.min(1), rtol=1e-8)
    np.testing.assert_allclose(md.rmd(test), d.min(1) - d0, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(md.precision, prec, rtol=1e-6)
    again = Baselines.from_arrays(md.arrays(), l2)
    np.testing.assert_allclose(again.md(test), md.md(test), rtol=1e-8)
    # far from every class = more uncertain
    assert md.md(np.full((1, 5), 50.0))[0] > np.percentile(md.md(z), 99) or l2


def test_md_survives_fewer_rows_than_dimensions():
    rng = np.random.RandomState(0)
    z, labels = rng.randn(10, 40), np.arange(10) % 2
    s = fit_mahalanobis(z, labels, 2).md(rng.randn(4, 40))
    assert np.isfinite(s).all()
    with pytest.raises(ValueError, match="classes \\[2\\]"):
        fit_mahalanobis(z, labels, 3)


def test_rde_caps_rows_is_deterministic_and_finite():
    # (No "far outliers score higher" check: an RBF kernel maps far points to the kernel-PCA origin.)
    z, labels = _blobs(n=900)
    rde = RobustDensityBaseline(n_components=4, max_rows=300, seed=0).fit(z, labels, 3)
    assert rde.n_fit_ == 300 and rde.kpca_.n_components == 4 and len(rde.mcds_) == 3
    scores = rde.score(z[:100])
    assert np.isfinite(scores).all() and (scores >= 0).all()
    again = RobustDensityBaseline(n_components=4, max_rows=300, seed=0).fit(z, labels, 3)
    np.testing.assert_allclose(again.score(z[:100]), scores, rtol=1e-6)
    few = RobustDensityBaseline(n_components=50, max_rows=30, seed=0).fit(z, labels, 3)
    assert few.kpca_.n_components == 5, "capped at half the smallest class count (10 rows per class)"
    fitted = fit_baselines(z, labels, 3, ("md", "rde"), rde_max_rows=300, rde_components=4)
    assert set(fitted.scores(z[:7])) == {"md", "md_l2", "rde", "rde_l2"}


@pytest.mark.parametrize("l2", [False, True])
def test_training_time_and_served_md_rmd_agree(l2, tmp_path):
    # Features with a near-singular direction and fewer rows than dimensions in one class, so the
    # pseudo-inverse drops eigenvalues; the scores must still be the ones a bundle serves.
    from uehead.bundle import BASELINES_FILE
    from uehead.training import checkpoint

    rng = np.random.RandomState(3)
    h = 48
    mix = rng.randn(h, h)
    mix[:, -1] = mix[:, 0] * (1 + 1e-9)
    z = (rng.randn(150, h) @ mix) * 0.2 + 4.0
    labels = np.r_[np.zeros(120, int), np.ones(20, int), np.full(10, 2)]
    fitted = fit_baselines(z, labels, 3, ("md", "rmd"))
    test = (rng.randn(60, h) @ mix) * 0.3 + 4.0
    trained = fitted.scores(test)

    written = checkpoint.write_md(tmp_path, fitted.md[l2].arrays(), l2)
    (tmp_path / BASELINES_FILE).write_bytes(written.read_bytes())  # export copies md.npz unchanged
    served = load_baselines(tmp_path / BASELINES_FILE, num_classes=3, feature_size=h, l2_normalize=l2)
    sfx = "_l2" if l2 else ""
    np.testing.assert_allclose(served.md(test), trained["md" + sfx], rtol=1e-6)
    scale = np.abs(trained["md" + sfx]).max()
    np.testing.assert_allclose(served.rmd(test), trained["rmd" + sfx], rtol=1e-6, atol=1e-6 * scale)
