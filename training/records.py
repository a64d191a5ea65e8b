"""The run record of ``training.json``: the part every task writes, head selection, ROC-AUC per
split, the versions of the stack (torch-free helpers of :mod:`uehead.training.api`)."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

from uehead import __version__
from uehead._extras import installed_versions
from uehead.evaluation.metrics import roc_auc_rows

if TYPE_CHECKING:
    import torch

    from uehead.training import backbones
    from uehead.training.config import TrainConfig
    from uehead.training.fit import GridResult
    from uehead.training.heads import HeadVariant

_VERSIONED = ("torch", "transformers", "peft", "safetensors", "tokenizers", "scikit-learn", "numpy", "scipy", "gguf")


def base_record(cfg: TrainConfig, family: backbones.Family, device: torch.device, label_names,
                head_variants: list[HeadVariant]) -> dict:
    """The part of ``training.json`` every task writes: versions, model, data, settings, LoRA, heads."""
    return {
        "uehead_version": __version__,
        "versions": run_versions(),
        "model": cfg.model, "architecture": family.name, "pooling": family.pooling,
        "data": cfg.data, "num_classes": len(label_names), "label_names": list(label_names),
        "seed": cfg.seed, "max_train": cfg.max_train, "epochs": cfg.epochs, "max_length": cfg.max_length,
        "batch_size": cfg.batch_size, "device": str(device),
        "lora": None if cfg.finetune == "none" else {
                 "r": cfg.lora.r, "alpha": cfg.lora.alpha, "dropout": cfg.lora.dropout, "target_modules": list(family.lora_targets), "modules_to_save": list(family.classifier_attrs),
                 "optimizer": "AdamW", "lr": cfg.lora.lr, "weight_decay": cfg.lora.weight_decay,
                 "schedule": "linear", "warmup_ratio": cfg.lora.warmup_ratio,
                 "max_grad_norm": cfg.lora.max_grad_norm,
                 "select_best_epoch": cfg.lora.select_best_epoch, "select_max_rows": cfg.lora.select_max_rows,
                 "precision": "bf16-autocast" if device.type == "cuda" else "fp32"},
        "heads": list(cfg.heads),
        "finetune": cfg.finetune, "protocol": cfg.protocol,
        "ablations": [v.name for v in head_variants if v.name not in cfg.heads],
    }


def head_selection(heads: dict[str, GridResult]) -> dict:
    """What the grid chose for each head, and its ROC-AUC on the select part of VALID."""
    return {n: {"hyperparameters": r.hyperparameters_, "roc_auc_select": r.roc_auc_,
                "init_roc_auc_select": r.init_roc_auc_, "n_fit": r.n_fit_, "n_select": r.n_select_,
                "grid_points": len(r.grid_)}
            for n, r in heads.items()}


def split_roc_auc(scores: dict[str, np.ndarray], errors: np.ndarray) -> dict[str, float | None]:
    """ROC-AUC of every method on one split; None for all when the model makes no errors or no correct rows."""
    if not 0 < errors.sum() < len(errors):
        return {m: None for m in scores}
    aucs = roc_auc_rows(np.stack(list(scores.values())), errors)
    return {m: float(a) for m, a in zip(scores, aucs)}


def run_versions() -> dict[str, str]:
    return {"python": sys.version.split()[0], **installed_versions(_VERSIONED)}
