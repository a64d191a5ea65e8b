"""Differentiable torch versions of the head scores and the loss terms.

They must equal :mod:`uehead.scores` (the numpy oracle shared with the runtime); the
tests check that. Every uncertainty U here is **higher = more uncertain**. Shapes: logits
``[..., N, C]`` -> U ``[..., N]`` (a leading config axis K is allowed everywhere).
"""
from __future__ import annotations

import math

import torch


def adue_uncertainty(logits: torch.Tensor, lam: float) -> torch.Tensor:
    """U_AdUE = 1 - SmoothMax_lam(softmax(logits)), SmoothMax_lam(q) = logsumexp(lam q) / lam.

    Slightly negative (down to -log(C)/lam) when max p is ~1, because SmoothMax exceeds max q.
    """
    q = torch.softmax(logits, dim=-1)
    return 1.0 - torch.logsumexp(lam * q, dim=-1) / lam


def alien_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """U_ALIEN = H(softmax(logits)) / log C, in [0, 1] (the normalised entropy of the head's softmax)."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1) / math.log(logits.shape[-1])


def sigmoid_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """U = sigmoid(out) of a one-output head ``[..., N, 1]`` (the "random linear" ablation)."""
    return torch.sigmoid(logits[..., 0])


def clamped_bce(u: torch.Tensor, errors: torch.Tensor, eps: float) -> torch.Tensor:
    """mean_i BCE(clamp(U_i, eps, 1 - eps), e_i) over the last axis.

    The clamp keeps the log finite when U_AdUE <= 0 (SmoothMax > max p) or U hits 0/1; rows whose
    U lies outside [eps, 1 - eps] get no BCE gradient (the regulariser and L2-SP still act on them).
    """
    uc = u.clamp(eps, 1.0 - eps)
    e = errors.to(u.dtype)
    return -(e * torch.log(uc) + (1.0 - e) * torch.log1p(-uc)).mean(dim=-1)


def alignment(u: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean_i (U_i - target_i)^2 over the last axis (target: U_SR for AdUE, U_H / log C for ALIEN)."""
    return ((u - target) ** 2).mean(dim=-1)


def l2sp(params: dict[str, torch.Tensor], init: dict[str, torch.Tensor]) -> torch.Tensor:
    """||theta - theta_init||^2 per config: sum over every axis but the leading config axis K."""
    total = None
    for name, p in params.items():
        sq = ((p - init[name]) ** 2).reshape(p.shape[0], -1).sum(dim=1)
        total = sq if total is None else total + sq
    return total
