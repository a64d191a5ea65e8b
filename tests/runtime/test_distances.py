"""MD / RMD served from ``baselines.npz``: bundles of the previous release score as they did."""
from __future__ import annotations

import numpy as np
import pytest

from uehead.bundle import BASELINE_KEYS, IncompatibleBundleError
from uehead.runtime.distances import fit_mahalanobis, load_baselines, pseudo_inverse


def _quadratic_forms(z, means, precision):
    """(z_n - m_k)^T P (z_n - m_k) with the full matrix P, as the previous release served them."""
    return np.stack([np.einsum("nh,hg,ng->n", z - m, precision, z - m) for m in means], axis=1)


def _previous_release_arrays(kind, rng, c=3, h=24):
    if kind == "full_rank_float32":  # like hand-written or float32-exported statistics
        def precision():
            a = rng.normal(0, 1, (h, h))
            return (a @ a.T / h + np.eye(h)).astype(np.float32)
        return {"class_means": rng.normal(0, 0.5, (c, h)).astype(np.float32), "precision": precision(),
                "global_mean": rng.normal(0, 0.1, h).astype(np.float32), "global_precision": precision()}
    # fitted by training on fewer rows than dimensions: rank-deficient pseudo-inverses, float64
    z = rng.normal(0, 1, (18, h)) + 2.0
    labels = np.arange(18) % c
    means = np.stack([z[labels == k].mean(0) for k in range(c)])
    centred, background = z - means[labels], z - z.mean(0)
    return {"class_means": means, "precision": pseudo_inverse(centred.T @ centred / len(z)),
            "global_mean": z.mean(0), "global_precision": pseudo_inverse(background.T @ background / len(z))}


@pytest.mark.parametrize("kind", ["full_rank_float32", "rank_deficient_float64"])
@pytest.mark.parametrize("l2", [False, True])
def test_previous_release_baselines_score_the_same(tmp_path, kind, l2):
    rng = np.random.default_rng(7)
    arrays = _previous_release_arrays(kind, rng)
    np.savez(tmp_path / "baselines.npz", **arrays)
    served = load_baselines(tmp_path / "baselines.npz", num_classes=3, feature_size=24, l2_normalize=l2)
    z = rng.normal(0, 1, (40, 24)) + 1.5
    zz = z / np.linalg.norm(z, axis=1, keepdims=True) if l2 else z
    a = {k: v.astype(np.float64) for k, v in arrays.items()}
    md_c = _quadratic_forms(zz, a["class_means"], a["precision"])
    md_0 = _quadratic_forms(zz, a["global_mean"][None], a["global_precision"])[:, 0]
    np.testing.assert_allclose(served.md(z), md_c.min(1), rtol=1e-9)
    scale = np.abs(md_c).max()
    np.testing.assert_allclose(served.rmd(z), md_c.min(1) - md_0, rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(served.class_distances(z), md_c, rtol=1e-9)


def test_fitted_statistics_round_trip_through_the_file(tmp_path):
    rng = np.random.default_rng(0)
    z, labels = rng.normal(0, 1, (60, 8)), np.arange(60) % 2
    fitted = fit_mahalanobis(z, labels, 2)
    assert tuple(fitted.arrays()) == BASELINE_KEYS
    np.savez(tmp_path / "b.npz", **fitted.arrays())
    served = load_baselines(tmp_path / "b.npz", num_classes=2, feature_size=8)
    np.testing.assert_array_equal(served.md(z), fitted.md(z))
    np.testing.assert_array_equal(served.rmd(z), fitted.rmd(z))
    with pytest.raises(IncompatibleBundleError, match="feature_size=9"):
        load_baselines(tmp_path / "b.npz", num_classes=2, feature_size=9)
    with pytest.raises(ValueError, match=r"shape \[N, 8\]"):
        served.md(z[:, :7])
