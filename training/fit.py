"""Grid search for the uncertainty heads on cached VALIDATION features (never the test split).

The validation split is cut (stratified by the model's error label e) into a *fit* part, on which
every grid point is trained, and a *select* part, on which the grid point with the highest ROC-AUC
of U against e is chosen. :func:`fit_heads` only ever receives validation arrays.

Speed: all (lr, alpha, beta) points of one head family are trained at once as one stacked tensor
with a hand-written, element-wise Adam (identical to separate ``torch.optim.Adam`` runs, see the
tests); the learning rate is constant, so the epoch grid is read off as snapshots of one run.
Linear heads train in float64 (exact agreement with the numpy reference); the RoBERTa-style
dense head in float32.
"""
from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

from uehead.datasets import DataError, stratified_split
from uehead.evaluation.metrics import roc_auc_rows
from uehead.scores import normalized_entropy, softmax_response
from uehead.training import losses
from uehead.training.config import HeadGridConfig
from uehead.training.heads import HeadVariant, forward_stacked, random_params, score_torch

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class HeadFitError(DataError):
    """The validation split cannot train/select a head (e.g. the model makes no errors on it).

    A :class:`~uehead.datasets.DataError`, so ``uehead train`` reports it as a one-line error."""


@dataclass
class GridResult:
    """The selected grid point of one head family (learned attributes end in ``_``)."""

    name: str
    params_: dict[str, np.ndarray]           # float64, classifier state_dict keys
    hyperparameters_: dict
    roc_auc_: float                          # on the select part
    n_fit_: int
    n_select_: int
    init_roc_auc_: float                     # the untrained head (the initialisation) on the select part
    grid_: list[dict] = field(default_factory=list)   # every grid point and its select ROC-AUC


def split_fit_select(errors: np.ndarray, select_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, select) row indices of the validation split, stratified by e, seeded."""
    errors = np.asarray(errors)
    n_err = int(errors.sum())
    if n_err < 2 or n_err > len(errors) - 2:
        raise HeadFitError(f"the model makes {n_err} errors on {len(errors)} validation rows; the heads need at "
                           "least 2 errors and 2 correct rows to fit and select (use a larger validation split)")
    fit, select = stratified_split(errors, (1.0 - select_fraction, select_fraction), seed=seed)
    return fit, select


@contextlib.contextmanager
def _threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, min(old, n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def fit_variant(variant: HeadVariant, init: dict[str, np.ndarray], z: np.ndarray, logits: np.ndarray,
                errors: np.ndarray, fit_idx: np.ndarray, select_idx: np.ndarray, grid: HeadGridConfig,
                seed: int) -> GridResult:
    """Train every grid point of ``variant`` on the fit rows and keep the best on the select rows.

    ``z``, ``logits`` and ``errors`` are the VALIDATION split's features, task logits and e.
    """
    dtype = torch.float32 if variant.module == "dense_tanh_linear" else torch.float64
    target_np = softmax_response(logits) if variant.target == "sr" else normalized_entropy(logits)
    zt = torch.as_tensor(np.asarray(z), dtype=dtype)
    et = torch.as_tensor(np.asarray(errors), dtype=dtype)
    tt = torch.as_tensor(target_np, dtype=dtype)
    z_fit, e_fit, t_fit = zt[fit_idx], et[fit_idx], tt[fit_idx]
    z_sel, e_sel = zt[select_idx], np.asarray(errors)[select_idx]

    points = list(itertools.product(grid.lrs, variant.alphas, variant.betas))
    k = len(points)
    lr = torch.tensor([p[0] for p in points], dtype=dtype)
    alpha = torch.tensor([p[1] for p in points], dtype=dtype)
    beta = torch.tensor([p[2] for p in points], dtype=dtype)
    init_t = {n: torch.as_tensor(v, dtype=dtype).expand((k,) + v.shape).clone() for n, v in init.items()}
    params = {n: v.clone().requires_grad_(True) for n, v in init_t.items()}
    m = {n: torch.zeros_like(v) for n, v in init_t.items()}
    v2 = {n: torch.zeros_like(v) for n, v in init_t.items()}
    shape = {n: (k,) + (1,) * (v.ndim - 1) for n, v in init_t.items()}

    with torch.no_grad():
        u0 = score_torch(variant.score, forward_stacked({n: v[:1] for n, v in init_t.items()}, z_sel), grid.lam)
    init_auc = float(roc_auc_rows(u0.double().numpy(), e_sel)[0])
    gen = torch.Generator().manual_seed(seed)
    best_auc, best = -np.inf, None
    table: list[dict] = []
    step = 0
    b1, b2 = ADAM_BETAS
    for epoch in range(1, max(grid.epochs) + 1):
        for batch in torch.randperm(len(fit_idx), generator=gen).split(grid.batch_size):
            u = score_torch(variant.score, forward_stacked(params, z_fit[batch]), grid.lam)
            loss = (losses.clamped_bce(u, e_fit[batch], grid.eps) + alpha * losses.alignment(u, t_fit[batch])
                    + beta * losses.l2sp(params, init_t))
            grads = torch.autograd.grad(loss.sum(), list(params.values()))
            step += 1
            with torch.no_grad():
                for (n, p), g in zip(params.items(), grads):
                    m[n].mul_(b1).add_(g, alpha=1 - b1)
                    v2[n].mul_(b2).addcmul_(g, g, value=1 - b2)
                    denom = (v2[n] / (1 - b2 ** step)).sqrt_().add_(ADAM_EPS)
                    p.sub_(lr.view(shape[n]) * (m[n] / (1 - b1 ** step)) / denom)
        if epoch in grid.epochs:
            with torch.no_grad():
                u_sel = score_torch(variant.score, forward_stacked(params, z_sel), grid.lam).double().numpy()
            aucs = roc_auc_rows(u_sel, e_sel)
            for i, (p_lr, p_a, p_b) in enumerate(points):
                table.append({"lr": p_lr, "epochs": epoch, "alpha": p_a, "beta": p_b, "roc_auc": float(aucs[i])})
            i = int(np.nanargmax(np.where(np.isnan(aucs), -np.inf, aucs))) if np.isfinite(aucs).any() else 0
            if aucs[i] > best_auc:
                best_auc = float(aucs[i])
                best = ({n: p[i].detach().double().numpy().copy() for n, p in params.items()},
                        {"lr": points[i][0], "epochs": epoch, "alpha": points[i][1], "beta": points[i][2],
                         "batch_size": grid.batch_size})
    if best is None:
        raise HeadFitError(f"head {variant.name!r}: every grid point produced non-finite scores")
    return GridResult(variant.name, best[0], best[1], best_auc, len(fit_idx), len(select_idx), init_auc, table)


def fit_heads(variants: list[HeadVariant], classifier: dict[str, np.ndarray], z: np.ndarray, logits: np.ndarray,
              errors: np.ndarray, grid: HeadGridConfig, seed: int = 0, max_threads: int = 1) -> dict[str, GridResult]:
    """Fit and select every head family on the VALIDATION split's (z, logits, e).

    ``classifier`` holds the task classifier's parameters (``init="classifier"`` copies them);
    random initialisations are seeded with ``seed + 1``. The fit/select cut is seeded with ``seed``.
    The tensors are tiny, so torch runs on at most ``max_threads`` threads here (more threads only
    add synchronisation cost, badly so on a loaded machine).
    """
    if not variants:
        return {}
    fit_idx, select_idx = split_fit_select(errors, grid.select_fraction, seed)
    h, c = classifier["dense.weight" if "dense.weight" in classifier else "weight"].shape[1], len(logits[0])
    bias = "bias" in classifier or "out_proj.bias" in classifier
    out = {}
    with _threads(max_threads):
        for var in variants:
            init = ({n: v.copy() for n, v in classifier.items()} if var.init == "classifier"
                    else random_params(var.module, h, c, bias, seed + 1))
            out[var.name] = fit_variant(var, init, z, logits, errors, fit_idx, select_idx, grid, seed)
    return out
