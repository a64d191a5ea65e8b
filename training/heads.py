"""Uncertainty heads: parameters, forward passes (stacked torch and numpy), scores, variants.

A head is a copy of the task classifier (so the task prediction never changes) whose softmax is
turned into an uncertainty score, **higher = more uncertain**:

* AdUE (paper): U = 1 - SmoothMax_lam(softmax(h(z))), initialised from the classifier, so before
  training U equals 1 - SmoothMax of the model's probabilities (~ U_SR).
* ALIEN (this project's reading of the ALIEN abstract, arXiv:2505.15443 v2, whose method text is
  not public): the same copied head, U = H(softmax(h(z))) / log C, which at initialisation *is*
  the model's normalised entropy; trained with BCE + alpha * mean(U - U_H/log C)^2 + beta * L2-SP.

Parameter dicts use the checkpoint's state-dict keys (:data:`uehead.architectures.HEAD_MODULE_KEYS`):
``linear`` -> ``weight`` [C, H] (+ ``bias`` [C]); the dense modules out(act(dense(z)))
(:data:`uehead.architectures.DENSE_HEAD_ACTIVATIONS`) -> ``dense_tanh_linear`` (RoBERTa):
``dense.weight`` [H, H], ``dense.bias``, ``out_proj.weight`` [C, H], ``out_proj.bias``; the others
(DistilBERT relu, ELECTRA / DeBERTa-v2 gelu, ...): ``dense_<act>.weight`` [H, H], ``dense_<act>.bias``,
``weight`` [C, H], ``bias``. The keys alone say which module (and activation) a dict is, so the
forward passes take nothing else. ``sigmoid_linear`` (ablation only) -> ``weight`` [1, H], ``bias`` [1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from uehead.architectures import DENSE_HEAD_ACTIVATIONS, dense_head_prefixes, head_module_of_keys
from uehead.scores import DEFAULT_LAMBDA, head_kind, head_kinds, head_params, resolve
from uehead.training.losses import sigmoid_uncertainty

MODULES = ("linear", *DENSE_HEAD_ACTIVATIONS, "sigmoid_linear")
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
#: The activation of every dense module, in torch (the stacked forward) and numpy (float64 reference).
TORCH_ACTIVATIONS = {
    "tanh": torch.tanh, "relu": torch.relu, "gelu": torch.nn.functional.gelu,
    "gelu_new": lambda x: torch.nn.functional.gelu(x, approximate="tanh"), "silu": torch.nn.functional.silu}


def _gelu_numpy(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


NUMPY_ACTIVATIONS = {
    "tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0), "gelu": _gelu_numpy,
    "gelu_new": lambda x: 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))),
    "silu": lambda x: x / (1.0 + np.exp(-x))}
#: Score of the ``adue_rand_linear`` ablation only (a one-output head whose sigmoid is U); not a
#: registered head kind, so it is never saved as a head nor served from a bundle.
SIGMOID_SCORE = "sigmoid"


@dataclass(frozen=True)
class HeadVariant:
    """One trainable head family and its part of the grid.

    Attributes:
        name: score name in the checkpoint (``adue``, ``alien``, ``adue_bce``, ...).
        score: a registered head kind (:func:`uehead.scores.head_kind`) or ``sigmoid`` (the
            ablation-only score of ``adue_rand_linear``): how the head's output becomes U.
        init: ``classifier`` (copy of the task head) | ``random`` (PyTorch default Linear init).
        module: one of :data:`MODULES` (``linear``, a dense module, or ``sigmoid_linear``).
        alphas / betas: grid values of the alignment and L2-SP weights (``(0.0,)`` disables a term).
        target: ``sr`` (U_SR) or ``nent`` (U_H / log C), the alignment target; by default the
            registered kind's ``target`` (``sr`` for the sigmoid ablation, an AdUE variant).
    """

    name: str
    score: str
    init: str
    module: str
    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    target: str | None = None

    def __post_init__(self):
        if self.target is None:
            target = "sr" if self.score == SIGMOID_SCORE else head_kind(self.score).target
            object.__setattr__(self, "target", target)


def classifier_params(classifier: torch.nn.Module) -> dict[str, np.ndarray]:
    """The classifier's own state_dict as float64 numpy arrays (keys unchanged)."""
    return {k: v.detach().cpu().double().numpy().copy() for k, v in classifier.state_dict().items()}


def random_params(module: str, in_features: int, num_classes: int, bias: bool, seed: int) -> dict[str, np.ndarray]:
    """PyTorch's default ``nn.Linear`` init (uniform +-1/sqrt(fan_in) for weight and bias), seeded."""
    rng = np.random.RandomState(seed)

    def linear(prefix: str, fan_in: int, fan_out: int, with_bias: bool) -> dict[str, np.ndarray]:
        bound = 1.0 / math.sqrt(fan_in)
        out = {prefix + "weight": rng.uniform(-bound, bound, (fan_out, fan_in))}
        if with_bias:
            out[prefix + "bias"] = rng.uniform(-bound, bound, (fan_out,))
        return out

    if module == "linear":
        return linear("", in_features, num_classes, bias)
    if module in DENSE_HEAD_ACTIVATIONS:
        hidden, out = dense_head_prefixes(module)
        return {**linear(hidden, in_features, in_features, True), **linear(out, in_features, num_classes, True)}
    if module == "sigmoid_linear":
        return linear("", in_features, 1, True)
    raise ValueError(f"unknown head module {module!r}; choose from {MODULES}")


def _dense_layers(params) -> tuple[str, str, str] | None:
    """(activation, hidden prefix, output prefix) of a dense module's dict; None for a linear one."""
    module = head_module_of_keys(params)
    if module == "linear":
        return None
    return (DENSE_HEAD_ACTIVATIONS[module], *dense_head_prefixes(module))


def forward_numpy(params: dict[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    """Head outputs [N, C] (or [N, 1]) in float64 from one parameter dict."""
    z = np.asarray(z, dtype=np.float64)
    dense = _dense_layers(params)
    if dense is not None:
        act, hid, out = dense
        z = NUMPY_ACTIVATIONS[act](z @ params[hid + "weight"].T.astype(np.float64) + params[hid + "bias"])
        return z @ params[out + "weight"].T.astype(np.float64) + params[out + "bias"]
    out = z @ params["weight"].T.astype(np.float64)
    return out + params["bias"] if "bias" in params else out


def forward_stacked(params: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """Outputs [K, N, C] of K stacked heads (every tensor has a leading K axis) on shared z [N, H]."""
    dense = _dense_layers(params)
    if dense is not None:
        act, hid, out = dense
        h = TORCH_ACTIVATIONS[act](torch.einsum("nh,kgh->kng", z, params[hid + "weight"])
                                   + params[hid + "bias"][:, None, :])
        return torch.einsum("kng,kcg->knc", h, params[out + "weight"]) + params[out + "bias"][:, None, :]
    out = torch.einsum("nh,kch->knc", z, params["weight"])
    return out + params["bias"][:, None, :] if "bias" in params else out


def score_numpy(score: str, outputs: np.ndarray, lam: float = DEFAULT_LAMBDA) -> np.ndarray:
    """U from head outputs through the registry's numpy reference (higher = more uncertain)."""
    if score == SIGMOID_SCORE:
        return 1.0 / (1.0 + np.exp(-np.asarray(outputs, dtype=np.float64)[:, 0]))
    kind = head_kind(score)
    return kind.score_reference(outputs, **head_params(kind, {"lam": lam}))


def score_torch(score: str, outputs: torch.Tensor, lam: float) -> torch.Tensor:
    """Differentiable U from stacked head outputs [K, N, C] -> [K, N] (the kind's torch twin)."""
    if score == SIGMOID_SCORE:
        return sigmoid_uncertainty(outputs)
    kind = head_kind(score)
    return resolve(kind.torch_twin)(outputs, **head_params(kind, {"lam": lam}))


def variants(heads: tuple[str, ...], ablations: bool, module: str, alphas: tuple[float, ...],
             betas: tuple[float, ...]) -> list[HeadVariant]:
    """The head families to train: the requested heads, plus the AdUE ablations (paper Tables 2-4).

    Ablations (scores only, not saved as heads): ``adue_bce`` (alpha = beta = 0), ``adue_bce_l2sp``
    (alpha = 0), ``adue_bce_reg`` (beta = 0), ``adue_rand_cls`` (full loss, randomly initialised copy
    of the classifier architecture, L2-SP anchored at that random init), ``adue_rand_linear`` (full
    loss, a random single ``Linear(H, 1)`` whose sigmoid is U; the project's reading of the paper's
    "random linear", which differs from "rand cls" even when the classifier is one linear layer).
    """
    out = [HeadVariant(kind, kind, "classifier", module, alphas, betas) for kind in head_kinds() if kind in heads]
    if ablations:
        out += [HeadVariant("adue_bce", "adue", "classifier", module, (0.0,), (0.0,)),
                HeadVariant("adue_bce_l2sp", "adue", "classifier", module, (0.0,), betas),
                HeadVariant("adue_bce_reg", "adue", "classifier", module, alphas, (0.0,)),
                HeadVariant("adue_rand_cls", "adue", "random", module, alphas, betas),
                HeadVariant("adue_rand_linear", SIGMOID_SCORE, "random", "sigmoid_linear", alphas, betas)]
    return out
