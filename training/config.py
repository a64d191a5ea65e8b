"""Configuration dataclasses of the training stage (constructors only store and check values).

:class:`TrainConfig` is what :func:`uehead.training.train` builds from its arguments; the nested
:class:`LoraSettings`, :class:`HeadGridConfig` and :class:`BaselineConfig` hold the paper's
defaults (AdUE, arXiv:2505.15443, appendices C and E).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from uehead.scores import head_kinds
from uehead.token_task import SEQUENCE_CLASSIFICATION, TASKS

#: The heads trained by default (any registered head kind can be requested).
DEFAULT_HEADS = ("adue", "alien")
BASELINE_KINDS = ("md", "rmd", "rde")
DEVICES = ("auto", "cpu", "cuda")
#: ``lora``: LoRA fine-tune then merge; ``none``: take the model as already fine-tuned (post-hoc heads).
FINETUNE_MODES = ("lora", "none")
#: How the uncertainty heads (and LoRA) are trained, see :mod:`uehead.training.protocols`.
PROTOCOLS = ("uehead", "authors")
HEAD_SCHEDULES = ("constant", "one_cycle_cosine")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA fine-tuning of the backbone (paper appendix E).

    Attributes:
        r: LoRA rank.
        alpha: LoRA scaling numerator (scale = alpha / r).
        dropout: dropout on the LoRA branch during training.
        lr: AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        warmup_ratio: fraction of optimiser steps with linear warm-up; the rest decays linearly to 0.
        max_grad_norm: gradient-norm clip per step (the Hugging Face Trainer default); None disables it.
        group_by_length: batch rows of similar token length (shuffled mega-batches of 50 batches,
            sorted inside), which cuts padding on long-text datasets without changing what is trained on.
        select_best_epoch: after every epoch measure accuracy on VALID rows and keep the epoch with the
            best one (ties: the earlier epoch); False keeps the last epoch.
        select_max_rows: cap on the VALID rows that epoch selection reads (a stratified, fixed
            subsample, for speed on large validation splits); None = all of them.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_ratio: float = 0.1
    max_grad_norm: float | None = 1.0
    group_by_length: bool = True
    select_best_epoch: bool = True
    select_max_rows: int | None = 2000


@dataclass(frozen=True)
class HeadGridConfig:
    """Uncertainty-head training and the hyperparameter grid (paper appendix C).

    Every (lr, alpha, beta) combination is trained at once on the cached features as one stacked
    tensor (Adam is element-wise, so this equals separate runs); the learning rate is constant,
    so the snapshot after ``e`` epochs of a ``max(epochs)``-epoch run *is* the ``e``-epoch run.

    Attributes:
        lrs: Adam learning rates of the grid.
        epochs: epoch counts of the grid (snapshots of one run).
        alphas: weights of the regulariser mean (U - U_base)^2 (U_base = U_SR for AdUE,
            normalised entropy for ALIEN).
        betas: weights of the L2-SP term ||theta - theta_init||^2.
        lam: SmoothMax temperature lambda of AdUE.
        batch_size: mini-batch size of head training.
        select_fraction: share of the validation split held out to select the grid point by ROC-AUC
            (stratified by the model's error label); the rest fits the heads.
        eps: U is clamped to [eps, 1 - eps] inside the BCE term.
        patience: None: evaluate the ``epochs`` snapshots (constant lr). An int: early stopping, the
            authors' protocol: ``epochs`` holds one value, the most epochs; every grid point is scored
            on the select rows after each epoch, keeps its best epoch, and stops after ``patience``
            epochs without a better ROC-AUC.
        schedule: ``constant`` (lr as given) or ``one_cycle_cosine`` (torch's ``OneCycleLR`` with its
            defaults: pct_start 0.3, div_factor 25, final_div_factor 1e4, cosine annealing; beta1 is
            not cycled), planned over ``max(epochs)`` epochs.
        normalize_adue: train AdUE-family heads on U / (1 - 1/C), clamped to [0, 1], against the target
            U_SR / (1 - 1/C) (the authors' normalisation). The served score stays U_AdUE: the map is
            affine and increasing, so rankings (ROC-AUC) and the calibrated P(error) are unchanged.
    """

    lrs: tuple[float, ...] = (1e-3, 1e-4, 1e-5)
    epochs: tuple[int, ...] = (5, 10, 20)
    alphas: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0)
    betas: tuple[float, ...] = (0.01, 0.1, 0.5, 1.0)
    lam: float = 100.0
    batch_size: int = 64
    select_fraction: float = 0.5
    eps: float = 1e-6
    patience: int | None = None
    schedule: str = "constant"
    normalize_adue: bool = False

    def __post_init__(self):
        if self.schedule not in HEAD_SCHEDULES:
            raise ValueError(f"HeadGridConfig.schedule={self.schedule!r}: choose from {', '.join(HEAD_SCHEDULES)}")
        if self.patience is not None and (self.patience < 1 or len(self.epochs) != 1):
            raise ValueError(f"HeadGridConfig: early stopping needs patience >= 1 and one maximum epoch count, "
                             f"got patience={self.patience}, epochs={self.epochs}")
        if not (self.lrs and self.epochs and self.alphas and self.betas):
            raise ValueError("HeadGridConfig: lrs, epochs, alphas and betas must all be non-empty")
        if any(e < 1 for e in self.epochs):
            raise ValueError(f"HeadGridConfig.epochs must be >= 1, got {self.epochs}")
        if not 0.0 < self.select_fraction < 1.0:
            raise ValueError(f"HeadGridConfig.select_fraction must be in (0, 1), got {self.select_fraction}")
        if not self.lam > 0:
            raise ValueError(f"HeadGridConfig.lam must be > 0, got {self.lam}")
        if not 0.0 < self.eps < 0.5:
            raise ValueError(f"HeadGridConfig.eps must be in (0, 0.5), got {self.eps}")


#: The AdUE authors' head recipe (zaaabik/AdUE): Adam with a one-cycle cosine schedule, batch 128,
#: up to 50 epochs with early stopping (patience 5) on validation ROC-AUC, a 3 x 3 x 3 grid.
AUTHORS_GRID = HeadGridConfig(lrs=(4e-4, 1e-4, 1e-5), epochs=(50,), alphas=(0.01, 0.1, 1.0),
                              betas=(0.01, 0.1, 1.0), batch_size=128, patience=5, schedule="one_cycle_cosine",
                              normalize_adue=True)
#: The authors' LoRA recipe: 30 epochs of which 5 warm up (lr 5e-4, weight decay 0.1, batch 64 as ours).
AUTHORS_LORA = LoraSettings(warmup_ratio=5 / 30)
#: LoRA epochs when ``epochs`` is not given.
PROTOCOL_EPOCHS = {"uehead": 3, "authors": 30}


@dataclass(frozen=True)
class BaselineConfig:
    """Distance baselines (MD, RMD, RDE), fitted on the LoRA training rows' features.

    Attributes:
        md_max_rows: cap on training rows used for MD/RMD statistics (stratified, seeded); None = all.
        rde_max_rows: cap on training rows used to fit RDE. Kernel PCA costs O(n^2) memory and
            O(n^2 k) time, and one MinCovDet runs per class, so the cap bounds RDE's cost.
        rde_components: kernel-PCA components (further capped at half the smallest class count
            of the fitted rows so every per-class MinCovDet has more rows than dimensions).
            20, not the 100 some implementations use: MinCovDet's cost grows steeply with the
            dimension, and it runs once per class and per +-L2.
    """

    md_max_rows: int | None = None
    rde_max_rows: int = 2000
    rde_components: int = 20


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Built by :func:`uehead.training.train`.

    Attributes:
        model: ``minilm`` | ``smollm2`` | path to a local Hugging Face model folder (or a .gguf file).
        data: ``rotten_tomatoes`` | path to a dataset folder (see :mod:`uehead.datasets`).
        out: checkpoint folder to write (replaced if it already holds a checkpoint).
        heads: uncertainty heads to train, registered head kinds (default ``("adue", "alien")``).
        max_train: cap on LoRA training rows (a stratified, fixed subsample); None = all.
        epochs: LoRA fine-tuning epochs (the most; see ``LoraSettings.select_best_epoch``); None = the
            protocol's (uehead 3, authors 30).
        max_length: token truncation length.
        seed: seeds LoRA init, the classifier init, data order, the fit/select cut and baselines.
        device: ``auto`` (CUDA when available) | ``cpu`` | ``cuda``.
        batch_size: LoRA training batch size.
        ablations: also train the AdUE ablations (scores only: ``adue_bce``, ``adue_bce_l2sp``,
            ``adue_bce_reg``, ``adue_rand_cls``, ``adue_rand_linear``).
        baselines: distance baselines to fit, a subset of ``("md", "rmd", "rde")``; each also runs
            on L2-normalised features (``*_l2``).
        progress: show tqdm progress bars and a summary on stderr.
        feature_batch_size: batch size of (no-grad, length-sorted) feature extraction.
        merge_atol: merged-vs-adapter logits may differ by at most ``merge_atol * max(1, max|logit|)``.
        lora, grid, baseline: nested settings (see their classes); ``lora`` / ``grid`` None = the
            protocol's (uehead: ``LoraSettings()`` / ``HeadGridConfig()``; authors: ``AUTHORS_LORA`` /
            ``AUTHORS_GRID``).
        task: ``sequence-classification`` (one label per text, ``{"text", "label"}`` data) or
            ``token-classification`` (one BIO tag per word, ``{"tokens", "tags"}`` data; ``max_train``
            then counts sentences, ``max_length`` is the window size, and the distance baselines are
            MD and RMD only: RDE is skipped, see :mod:`uehead.training.token_train`).
        finetune: ``lora`` (LoRA fine-tune ``model``, then merge) or ``none`` (``model`` is an already
            fine-tuned ``*ForSequenceClassification`` folder whose ``config.id2label`` names the
            labels: no training of the backbone, only features, heads and baselines).
        protocol: ``uehead`` (heads fitted on half of VALID, selected on the other half) or
            ``authors`` (the AdUE authors' recipe: heads fitted on TRAIN features, early stopping on
            VALID; see :mod:`uehead.training.protocols`).
        data_options: :class:`uehead.datasets.DataFileOptions` when ``data`` is a single
            ``.csv`` / ``.jsonl`` / ``.parquet`` file (columns, split fractions); None otherwise.
    """

    model: str
    data: str
    out: Path
    heads: tuple[str, ...] = DEFAULT_HEADS
    max_train: int | None = None
    epochs: int | None = None
    max_length: int = 128
    seed: int = 0
    device: str = "auto"
    batch_size: int = 64
    ablations: bool = False
    baselines: tuple[str, ...] = BASELINE_KINDS
    progress: bool = True
    feature_batch_size: int = 128
    merge_atol: float = 1e-3
    lora: LoraSettings | None = None
    grid: HeadGridConfig | None = None
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    task: str = SEQUENCE_CLASSIFICATION
    finetune: str = "lora"
    protocol: str = "uehead"
    data_options: Any = None

    def __post_init__(self):
        object.__setattr__(self, "out", Path(self.out))
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune={self.finetune!r}: choose from {', '.join(FINETUNE_MODES)}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol={self.protocol!r}: choose from {', '.join(PROTOCOLS)}")
        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r}: choose from {', '.join(TASKS)}")
        if self.protocol == "authors" and self.task != SEQUENCE_CLASSIFICATION:
            raise ValueError("protocol='authors' is the AdUE authors' sequence-classification recipe; "
                             "token classification trains with protocol='uehead'")
        authors = self.protocol == "authors"
        if self.epochs is None:
            object.__setattr__(self, "epochs", PROTOCOL_EPOCHS[self.protocol])
        if self.lora is None:
            object.__setattr__(self, "lora", AUTHORS_LORA if authors else LoraSettings())
        if self.grid is None:
            object.__setattr__(self, "grid", AUTHORS_GRID if authors else HeadGridConfig())
        heads = _as_tuple(self.heads)
        bad = [h for h in heads if h not in head_kinds()]
        if bad:
            raise ValueError(f"heads={bad}: unknown head kind; choose from {', '.join(head_kinds())} "
                             "(e.g. --heads adue,alien)")
        object.__setattr__(self, "heads", tuple(dict.fromkeys(heads)))
        baselines = _as_tuple(self.baselines)
        bad = [b for b in baselines if b not in BASELINE_KINDS]
        if bad:
            raise ValueError(f"baselines={bad}: unknown baseline; choose from {', '.join(BASELINE_KINDS)}")
        object.__setattr__(self, "baselines", tuple(dict.fromkeys(baselines)))
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r}: choose from {', '.join(DEVICES)}")
        for name in ("epochs", "max_length", "batch_size", "feature_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be >= 1")
        if self.max_train is not None and self.max_train < 2:
            raise ValueError(f"max_train={self.max_train!r}: must be >= 2 (or None for the whole train split)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


def _as_tuple(value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    return tuple(str(v) for v in value)
