"""Torch scores equal the numpy reference; each loss term pushes in the documented direction."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from uehead.scores import adue_uncertainty, alien_uncertainty
from uehead.training import losses
from uehead.training.heads import forward_numpy, forward_stacked, score_numpy


@pytest.mark.parametrize("c", [2, 5, 20])
def test_torch_scores_equal_numpy_reference(c):
    rng = np.random.RandomState(c)
    logits = np.concatenate([rng.randn(50, c) * 4, np.zeros((1, c)), np.eye(c)[:1] * 60])
    t = torch.as_tensor(logits, dtype=torch.float64)
    np.testing.assert_allclose(losses.adue_uncertainty(t, 100.0).numpy(), adue_uncertainty(logits, 100.0),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(losses.alien_uncertainty(t).numpy(), alien_uncertainty(logits),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(score_numpy("adue", logits, 100.0), adue_uncertainty(logits, 100.0))


def test_stacked_forward_equals_numpy_forward_and_roberta_head():
    from transformers import RobertaConfig
    from transformers.models.roberta.modeling_roberta import RobertaClassificationHead

    torch.manual_seed(0)
    head = RobertaClassificationHead(RobertaConfig(hidden_size=8, num_labels=3)).eval()
    params = {k: v.detach().double().numpy() for k, v in head.state_dict().items()}
    assert set(params) == {"dense.weight", "dense.bias", "out_proj.weight", "out_proj.bias"}
    z = np.random.RandomState(0).randn(6, 8)
    expected = head(torch.as_tensor(z, dtype=torch.float32)[:, None, :]).detach().double().numpy()
    np.testing.assert_allclose(forward_numpy(params, z), expected, atol=1e-5)
    stacked = {k: torch.as_tensor(np.stack([v, v])) for k, v in params.items()}
    out = forward_stacked(stacked, torch.as_tensor(z))
    np.testing.assert_allclose(out[1].numpy(), forward_numpy(params, z), atol=1e-12)


@pytest.mark.parametrize("lam", [100.0, 5.0])
def test_clamped_bce_is_finite_when_smoothmax_exceeds_max_p(lam):
    # p = (1, 0): SmoothMax = 1 + log(1 + e^-lam)/lam > max p, so U_AdUE <= 0 (exactly 0.0 in float64
    # at lam = 100, -1.3e-3 at lam = 5), where an unclamped BCE is infinite.
    logits = torch.tensor([[0.0, -800.0], [800.0, 0.0], [0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    u = losses.adue_uncertainty(logits, lam)
    assert (u[:2] <= 0).all() and u[2] > 0.3
    if lam == 5.0:
        assert (u[:2] < -1e-3).all()
    errors = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    unclamped = -(errors * torch.log(u) + (1 - errors) * torch.log1p(-u)).mean()
    assert not torch.isfinite(unclamped)
    for e in ([1.0, 0.0, 1.0], [0.0, 1.0, 0.0]):
        loss = losses.clamped_bce(u, torch.tensor(e, dtype=torch.float64), 1e-6)
        (grad,) = torch.autograd.grad(loss, logits, retain_graph=True)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
    # the clamp bounds the loss: -log(eps) at most per row
    assert float(losses.clamped_bce(u.detach(), torch.ones(3, dtype=torch.float64), 1e-6)) <= -math.log(1e-6) + 1e-9


def _one_step(loss_fn, w):
    w = w.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss_fn(w), w)
    return (w - 0.1 * g).detach()


@pytest.mark.parametrize("score", ["adue", "alien"])
def test_bce_gradient_raises_u_for_errors_and_lowers_it_for_correct_rows(score):
    z = torch.tensor([[1.0, 0.5, -0.3]], dtype=torch.float64)
    w0 = torch.tensor([[[0.8, 0.1, 0.0], [-0.2, 0.3, 0.4]]], dtype=torch.float64)  # K=1, C=2, H=3
    fn = losses.adue_uncertainty if score == "adue" else losses.alien_uncertainty

    def u_of(w):
        return (fn(forward_stacked({"weight": w}, z), 100.0) if score == "adue"
                else fn(forward_stacked({"weight": w}, z)))

    u0 = float(u_of(w0))
    for e, sign in ((1.0, +1), (0.0, -1)):
        target = torch.tensor([e], dtype=torch.float64)
        w1 = _one_step(lambda w, target=target: losses.clamped_bce(u_of(w), target, 1e-6).sum(), w0)
        assert sign * (float(u_of(w1)) - u0) > 0


def test_alignment_gradient_pulls_u_toward_its_target():
    z = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    w0 = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    u_of = lambda w: losses.adue_uncertainty(forward_stacked({"weight": w}, z), 100.0)
    u0 = float(u_of(w0))
    for target in (u0 + 0.2, u0 - 0.05):
        t = torch.tensor([target], dtype=torch.float64)
        w1 = _one_step(lambda w, t=t: losses.alignment(u_of(w), t).sum(), w0)
        assert abs(float(u_of(w1)) - target) < abs(u0 - target)


def test_l2sp_is_zero_with_zero_gradient_at_init_and_pulls_back_elsewhere():
    init = {"weight": torch.randn(3, 2, 4, dtype=torch.float64), "bias": torch.randn(3, 2, dtype=torch.float64)}
    params = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    value = losses.l2sp(params, init)
    assert value.shape == (3,) and torch.equal(value, torch.zeros(3, dtype=torch.float64))
    grads = torch.autograd.grad(value.sum(), list(params.values()))
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)
    moved = {k: (v + 0.5).requires_grad_(True) for k, v in init.items()}
    value = losses.l2sp(moved, init)
    np.testing.assert_allclose(value.detach().numpy(), [0.25 * (8 + 2)] * 3)
    grads = torch.autograd.grad(value.sum(), list(moved.values()))
    for (k, p), g in zip(moved.items(), grads):
        stepped = p.detach() - 0.1 * g
        assert ((stepped - init[k]).abs() < (p.detach() - init[k]).abs()).all()


def test_a_registered_head_kind_trains_without_editing_training():
    # A toy kind: the ALIEN formula aligned to U_SR. Registry entry only; training dispatches to it.
    from uehead.scores import HeadKind, register_head_kind, unregister_head_kind
    from uehead.training import TrainConfig
    from uehead.training.heads import score_torch, variants

    register_head_kind(HeadKind(
        name="toy_entropy", summary="H(softmax(h(z))) / log C, aligned to U_SR", reference=alien_uncertainty,
        kernel="uehead.runtime.kernels:alien_uncertainty", torch_twin="uehead.training.losses:alien_uncertainty",
        target="sr"))
    try:
        assert TrainConfig(model="m", data="d", out="o", heads=("toy_entropy",)).heads == ("toy_entropy",)
        (variant,) = variants(("toy_entropy",), False, "linear", (0.0,), (0.0,))
        assert (variant.name, variant.score, variant.target) == ("toy_entropy", "toy_entropy", "sr")
        logits = np.random.RandomState(0).randn(7, 3)
        np.testing.assert_allclose(score_numpy("toy_entropy", logits), alien_uncertainty(logits))
        stacked = torch.as_tensor(np.stack([logits, logits]))
        np.testing.assert_allclose(score_torch("toy_entropy", stacked, 100.0)[1].numpy(), alien_uncertainty(logits),
                                   atol=1e-12)
    finally:
        unregister_head_kind("toy_entropy")
    assert variants(("adue", "alien"), False, "linear", (0.0,), (0.0,))[1].target == "nent"
