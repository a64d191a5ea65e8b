"""Head grid: initialisation reproduces the model's scores, stacked Adam equals separate runs,
selection uses only the select part of the validation split."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from uehead.evaluation.metrics import roc_auc_rows
from uehead.scores import adue_uncertainty, normalized_entropy, softmax_response
from uehead.training import (
    HeadGridConfig,
    losses,
)
from uehead.training.fit import HeadFitError, fit_heads, fit_variant, split_fit_select
from uehead.training.heads import HeadVariant, forward_numpy, score_numpy, variants


def _problem(n=200, h=6, c=3, seed=0):
    rng = np.random.RandomState(seed)
    z = rng.randn(n, h).astype(np.float32)
    cls = {"weight": rng.randn(c, h) * 0.8, "bias": rng.randn(c) * 0.1}
    logits = forward_numpy(cls, z).astype(np.float32)
    labels = np.where(rng.rand(n) < 0.7, logits.argmax(1), rng.randint(0, c, n))
    errors = (logits.argmax(1) != labels).astype(np.int8)
    return z, cls, logits, errors


def test_roc_auc_rows_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.RandomState(1)
    e = rng.rand(300) < 0.3
    scores = np.round(rng.rand(4, 300) + 0.3 * e, 1)  # many ties
    got = roc_auc_rows(scores, e)
    np.testing.assert_allclose(got, [roc_auc_score(e, s) for s in scores], atol=1e-12)
    assert np.isnan(roc_auc_rows(np.array([[np.nan] * 300]), e)[0])


def test_split_is_stratified_disjoint_and_needs_errors():
    e = np.array([1] * 20 + [0] * 80)
    fit, select = split_fit_select(e, 0.5, seed=3)
    assert len(np.intersect1d(fit, select)) == 0 and len(fit) + len(select) == 100
    assert e[fit].sum() == 10 and e[select].sum() == 10
    with pytest.raises(HeadFitError, match="errors"):
        split_fit_select(np.zeros(50, dtype=np.int8), 0.5, seed=0)


@pytest.mark.parametrize("score,ref", [("adue", lambda l: adue_uncertainty(l, 100.0)),
                                       ("alien", normalized_entropy)])
def test_head_at_init_reproduces_the_models_scores(score, ref):
    z, cls, logits, _ = _problem()
    u = score_numpy(score, forward_numpy(cls, z), 100.0)
    np.testing.assert_allclose(u, ref(logits), atol=1e-6)  # logits are float32 copies of the same product
    if score == "adue":  # 1 - SmoothMax is below U_SR by at most log(C)/lam
        gap = softmax_response(logits) - u
        assert (gap >= -1e-6).all() and (gap <= np.log(3) / 100 + 1e-6).all()


def test_zero_learning_rate_keeps_the_initialisation_exactly():
    z, cls, logits, errors = _problem()
    grid = HeadGridConfig(lrs=(0.0,), epochs=(1, 2), alphas=(0.0, 1.0), betas=(0.1,))
    var = HeadVariant("alien", "alien", "classifier", "linear", grid.alphas, grid.betas, "nent")
    fit, sel = split_fit_select(errors, 0.5, 0)
    res = fit_variant(var, cls, z, logits, errors, fit, sel, grid, seed=0)
    for k in cls:
        np.testing.assert_array_equal(res.params_[k], cls[k])
    u = score_numpy("alien", forward_numpy(res.params_, z))
    np.testing.assert_allclose(u, normalized_entropy(logits), atol=1e-6)
    assert res.roc_auc_ == pytest.approx(res.init_roc_auc_)


def test_stacked_grid_equals_separate_torch_adam_runs():
    z, cls, logits, errors = _problem(n=150)
    grid = HeadGridConfig(lrs=(1e-2, 1e-3), epochs=(3,), alphas=(0.0, 0.5), betas=(0.1, 1.0), batch_size=32)
    var = HeadVariant("adue", "adue", "classifier", "linear", grid.alphas, grid.betas, "sr")
    fit, sel = split_fit_select(errors, 0.5, 0)
    res = fit_variant(var, cls, z, logits, errors, fit, sel, grid, seed=7)
    hp = res.hyperparameters_
    # Re-train the selected point alone with torch.optim.Adam and the same batch order.
    w = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in cls.items()}
    init = {k: torch.tensor(v, dtype=torch.float64) for k, v in cls.items()}
    opt = torch.optim.Adam(list(w.values()), lr=hp["lr"])
    zf = torch.as_tensor(z[fit], dtype=torch.float64)
    ef = torch.as_tensor(errors[fit], dtype=torch.float64)
    tf = torch.as_tensor(softmax_response(logits)[fit])
    gen = torch.Generator().manual_seed(7)
    for _ in range(hp["epochs"]):
        for b in torch.randperm(len(fit), generator=gen).split(grid.batch_size):
            u = losses.adue_uncertainty(zf[b] @ w["weight"].T + w["bias"], 100.0)
            l2 = sum(((w[k] - init[k]) ** 2).sum() for k in w)
            loss = losses.clamped_bce(u, ef[b], grid.eps) + hp["alpha"] * losses.alignment(u, tf[b]) + hp["beta"] * l2
            opt.zero_grad()
            loss.backward()
            opt.step()
    for k in cls:
        np.testing.assert_allclose(res.params_[k], w[k].detach().numpy(), rtol=1e-9, atol=1e-12)
    # and the selected point is the best of the recorded grid on the select part
    assert res.roc_auc_ == max(r["roc_auc"] for r in res.grid_)
    assert len(res.grid_) == 2 * 2 * 2


def test_fit_heads_trains_every_variant_and_ablation():
    z, cls, logits, errors = _problem()
    grid = HeadGridConfig(lrs=(1e-3,), epochs=(1, 2), alphas=(0.0, 1.0), betas=(0.1,))
    vs = variants(("adue", "alien"), True, "linear", grid.alphas, grid.betas)
    res = fit_heads(vs, cls, z, logits, errors, grid, seed=0)
    assert list(res) == ["adue", "alien", "adue_bce", "adue_bce_l2sp", "adue_bce_reg", "adue_rand_cls",
                         "adue_rand_linear"]
    assert res["adue_rand_linear"].params_["weight"].shape == (1, z.shape[1])
    assert res["adue_bce"].hyperparameters_["alpha"] == 0.0 and res["adue_bce"].hyperparameters_["beta"] == 0.0
    assert not np.allclose(res["adue_rand_cls"].params_["weight"], cls["weight"], atol=0.05)
    for r in res.values():
        assert 0.0 <= r.roc_auc_ <= 1.0 and r.n_fit_ + r.n_select_ == len(z)
