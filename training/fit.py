"""Grid search for the uncertainty heads on cached features (never the test split).

Two protocols (:mod:`uehead.training.config`, ``TrainConfig.protocol``):

* ``uehead``: the VALIDATION split is cut (stratified by the model's error label e) into a *fit*
  part, on which every grid point is trained, and a *select* part, on which the grid point with
  the highest ROC-AUC of U against e is chosen;
* ``authors`` (the AdUE authors' code): every grid point is trained on the TRAIN rows' features,
  early-stopped on the ROC-AUC over all VALIDATION rows (best epoch kept), one-cycle cosine lr.

Speed: all (lr, alpha, beta) points of one head family are trained at once as one stacked tensor
with a hand-written, element-wise Adam (identical to separate ``torch.optim.Adam`` runs, see the
tests); with a constant learning rate the epoch grid is read off as snapshots of one run.
Linear heads train in float64 (exact agreement with the numpy reference); wider (dense) heads in
float32.
"""
from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from uehead.datasets import DataError, stratified_split
from uehead.evaluation.metrics import roc_auc_rows
from uehead.scores import normalized_entropy, softmax_response
from uehead.training import losses
from uehead.training.config import HeadGridConfig
from uehead.training.heads import HeadVariant, forward_stacked, random_params, score_torch

#: Head modules trained in float64 (exact agreement with the numpy reference); wider ones in float32.
FLOAT64_MODULES = ("linear", "sigmoid_linear")
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


def one_cycle_factor(step: int, total: int, pct_start: float = 0.3, div_factor: float = 25.0,
                     final_div_factor: float = 1e4) -> float:
    """lr / max_lr at optimiser step ``step`` (0-based) of torch's two-phase cosine ``OneCycleLR``:
    from 1/div_factor up to 1 over the first ``pct_start`` of ``total`` steps, then down to
    1/(div_factor * final_div_factor)."""
    initial, final = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)
    up_end = float(pct_start * total) - 1.0
    down_end = float(total) - 1.0
    if step <= up_end:
        start, stop, pct = initial, 1.0, step / up_end if up_end > 0 else 1.0
    else:
        start, stop, pct = 1.0, final, (step - up_end) / (down_end - up_end)
    return stop + (start - stop) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def _normalizer(variant: HeadVariant, grid: HeadGridConfig, num_classes: int) -> float:
    """1 / (1 - 1/C) for AdUE-family heads under ``grid.normalize_adue``, else 1 (U unchanged)."""
    return 1.0 / (1.0 - 1.0 / num_classes) if grid.normalize_adue and variant.target == "sr" else 1.0


def fit_variant(variant: HeadVariant, init: dict[str, np.ndarray], z: np.ndarray, logits: np.ndarray,
                errors: np.ndarray, fit_idx: np.ndarray, select_idx: np.ndarray, grid: HeadGridConfig,
                seed: int) -> GridResult:
    """Train every grid point of ``variant`` on the fit rows and keep the best on the select rows.

    ``z``, ``logits`` and ``errors`` hold the rows of both parts (VALID halves in the uehead
    protocol; TRAIN then VALID rows in the authors'). Every point keeps its best evaluated epoch
    (snapshots ``grid.epochs``, or every epoch with early stopping after ``grid.patience``); the
    point with the best select ROC-AUC wins (the first on ties).
    """
    dtype = torch.float64 if variant.module in FLOAT64_MODULES else torch.float32
    scale = _normalizer(variant, grid, np.asarray(logits).shape[1])
    target_np = softmax_response(logits) if variant.target == "sr" else normalized_entropy(logits)
    zt = torch.as_tensor(np.asarray(z), dtype=dtype)
    et = torch.as_tensor(np.asarray(errors), dtype=dtype)
    tt = torch.as_tensor(target_np * scale, dtype=dtype)
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

    def scores(z_rows: torch.Tensor, weights) -> torch.Tensor:
        u = score_torch(variant.score, forward_stacked(weights, z_rows), grid.lam)
        return (u * scale).clamp(0.0, 1.0) if scale != 1.0 else u

    with torch.no_grad():
        u0 = score_torch(variant.score, forward_stacked({n: v[:1] for n, v in init_t.items()}, z_sel), grid.lam)
    init_auc = float(roc_auc_rows(u0.double().numpy(), e_sel)[0])
    gen = torch.Generator().manual_seed(seed)
    max_epochs = max(grid.epochs)
    steps_per_epoch = math.ceil(len(fit_idx) / grid.batch_size)
    best_auc = np.full(k, -np.inf)
    best_epoch = np.zeros(k, dtype=np.int64)
    best_params = {n: v.detach().clone() for n, v in init_t.items()}
    stale = np.zeros(k, dtype=np.int64)
    active = np.ones(k, dtype=bool)
    table: list[dict] = []
    step = 0
    b1, b2 = ADAM_BETAS
    for epoch in range(1, max_epochs + 1):
        for batch in torch.randperm(len(fit_idx), generator=gen).split(grid.batch_size):
            u = scores(z_fit[batch], params)
            loss = (losses.clamped_bce(u, e_fit[batch], grid.eps) + alpha * losses.alignment(u, t_fit[batch])
                    + beta * losses.l2sp(params, init_t))
            grads = torch.autograd.grad(loss.sum(), list(params.values()))
            factor = (one_cycle_factor(step, max_epochs * steps_per_epoch)
                      if grid.schedule == "one_cycle_cosine" else 1.0)
            step += 1
            with torch.no_grad():
                for (n, p), g in zip(params.items(), grads):
                    m[n].mul_(b1).add_(g, alpha=1 - b1)
                    v2[n].mul_(b2).addcmul_(g, g, value=1 - b2)
                    denom = (v2[n] / (1 - b2 ** step)).sqrt_().add_(ADAM_EPS)
                    p.sub_((factor * lr).view(shape[n]) * (m[n] / (1 - b1 ** step)) / denom)
        if grid.patience is None and epoch not in grid.epochs:
            continue
        with torch.no_grad():
            u_sel = scores(z_sel, params).double().numpy()
        aucs = roc_auc_rows(u_sel, e_sel)
        aucs = np.where(np.isnan(aucs), -np.inf, aucs)
        if grid.patience is None:
            table += [{"lr": p_lr, "epochs": epoch, "alpha": p_a, "beta": p_b, "roc_auc": float(aucs[i])}
                      for i, (p_lr, p_a, p_b) in enumerate(points)]
        better = active & (aucs > best_auc)
        stale = np.where(better, 0, stale + 1)
        best_auc, best_epoch = np.where(better, aucs, best_auc), np.where(better, epoch, best_epoch)
        mask = torch.as_tensor(better)
        with torch.no_grad():
            for n, p in params.items():
                best_params[n][mask] = p.detach()[mask]
        if grid.patience is not None:
            active &= stale < grid.patience
            if not active.any():
                break
    if grid.patience is not None:
        table = [{"lr": p_lr, "epochs": int(best_epoch[i]), "alpha": p_a, "beta": p_b,
                  "roc_auc": float(best_auc[i])} for i, (p_lr, p_a, p_b) in enumerate(points)]
    if not np.isfinite(best_auc).any():
        raise HeadFitError(f"head {variant.name!r}: every grid point produced non-finite scores")
    # Best ROC-AUC, then the earliest epoch, then the first grid point.
    i = min(np.flatnonzero(best_auc == best_auc.max()), key=lambda j: (best_epoch[j], j))
    hyper = {"lr": points[i][0], "epochs": int(best_epoch[i]), "alpha": points[i][1], "beta": points[i][2],
             "batch_size": grid.batch_size}
    if grid.patience is not None or grid.schedule != "constant" or scale != 1.0:
        hyper.update({"schedule": grid.schedule, "patience": grid.patience, "max_epochs": max_epochs,
                      "normalized": scale != 1.0})
    chosen = {n: v[i].detach().double().numpy().copy() for n, v in best_params.items()}
    return GridResult(variant.name, chosen, hyper, float(best_auc[i]), len(fit_idx), len(select_idx), init_auc, table)


def fit_heads(variants: list[HeadVariant], classifier: dict[str, np.ndarray], z: np.ndarray, logits: np.ndarray,
              errors: np.ndarray, grid: HeadGridConfig, seed: int = 0, max_threads: int = 1,
              train: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict[str, GridResult]:
    """Fit and select every head family on the VALIDATION split's (z, logits, e).

    Without ``train`` (the uehead protocol) VALID is cut into fit and select parts (seeded with
    ``seed``). With ``train`` = the TRAIN rows' (z, logits, e) (the authors' protocol) the heads are
    fitted on those and selected / early-stopped on every VALID row.
    ``classifier`` holds the task classifier's parameters (``init="classifier"`` copies them);
    random initialisations are seeded with ``seed + 1``.
    The tensors are tiny, so torch runs on at most ``max_threads`` threads here (more threads only
    add synchronisation cost, badly so on a loaded machine).
    """
    if not variants:
        return {}
    if train is None:
        fit_idx, select_idx = split_fit_select(errors, grid.select_fraction, seed)
    else:
        z, logits, errors, fit_idx, select_idx = _train_then_valid(train, (z, logits, errors))
    h, c = classifier["dense.weight" if "dense.weight" in classifier else "weight"].shape[1], len(logits[0])
    bias = "bias" in classifier or "out_proj.bias" in classifier
    out = {}
    with _threads(max_threads):
        for var in variants:
            init = ({n: v.copy() for n, v in classifier.items()} if var.init == "classifier"
                    else random_params(var.module, h, c, bias, seed + 1))
            out[var.name] = fit_variant(var, init, z, logits, errors, fit_idx, select_idx, grid, seed)
    return out


def _train_then_valid(train, valid):
    """TRAIN rows then VALID rows stacked, with the fit (TRAIN) and select (VALID) row indices."""
    n_train, n_valid = len(train[2]), len(valid[2])
    for name, e, n in (("training", train[2], n_train), ("validation", valid[2], n_valid)):
        n_err = int(np.asarray(e).sum())
        if n_err < 1 or n_err > n - 1:
            raise HeadFitError(f"the model makes {n_err} errors on its {n} {name} rows; the authors' protocol fits "
                               "heads on training-row errors and selects on validation-row errors, so both need "
                               "errors and correct rows (use protocol='uehead', or fewer LoRA epochs)")
    stacked = [np.concatenate([np.asarray(a), np.asarray(b)]) for a, b in zip(train, valid)]
    return (*stacked, np.arange(n_train), np.arange(n_train, n_train + n_valid))
