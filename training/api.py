"""``train``: the function behind ``uehead train`` (data -> LoRA -> merge -> features -> heads -> checkpoint).

Order of work, and which split each step reads:

1. load and validate the dataset; pick the LoRA training rows (``max_train``: stratified, fixed);
2. LoRA fine-tune on those TRAIN rows, merge, check merged-vs-adapter logits and the pooling;
3. features z and logits of the TRAIN rows (baselines) and the VALID split (heads);
4. fit MD/RMD/RDE on train features; fit and select the heads on VALID only (fit/select cut);
5. only then tokenise and featurise TEST, score every method on valid and test, write the checkpoint.

The checkpoint is assembled in a sibling temporary folder and moved into place at the end, so a
reader never sees half a checkpoint.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from uehead import scores as reference
from uehead.training import backbones, checkpoint
from uehead.training.baselines import fit_baselines
from uehead.training.config import (
    BaselineConfig,
    HeadGridConfig,
    LoraSettings,
    TrainConfig,
)
from uehead.training.data import collate, encode, stratified_subsample
from uehead.training.features import check_pooling, extract
from uehead.training.fit import fit_heads, roc_auc_rows
from uehead.training.heads import (
    classifier_params,
    forward_numpy,
    score_numpy,
    variants,
)
from uehead.training.lora import finetune, merge_checked, resolve_device

from uehead import __version__
from uehead._extras import installed_versions
from uehead.datasets import load_dataset

_VERSIONED = ("torch", "transformers", "peft", "safetensors", "tokenizers", "scikit-learn", "numpy", "scipy", "gguf")


def train(model: str, data: str, out: str | os.PathLike, heads=("adue", "alien"), max_train: int | None = None,
          epochs: int = 3, max_length: int = 128, seed: int = 0, device: str = "auto", batch_size: int = 64, *,
          ablations: bool = False, baselines=("md", "rmd", "rde"), progress: bool = True,
          lora: LoraSettings | None = None, grid: HeadGridConfig | None = None,
          baseline: BaselineConfig | None = None) -> Path:
    """LoRA-fine-tune ``model`` on ``data``, merge it, train the uncertainty heads; write a checkpoint.

    Args mirror :class:`TrainConfig` (see its field docs). Every score written is **higher = more
    uncertain**. Returns the checkpoint folder ``out``.
    """
    cfg = TrainConfig(model=str(model), data=str(data), out=Path(out), heads=heads, max_train=max_train,
                      epochs=epochs, max_length=max_length, seed=seed, device=device, batch_size=batch_size,
                      ablations=ablations, baselines=baselines, progress=progress,
                      lora=lora or LoraSettings(), grid=grid or HeadGridConfig(),
                      baseline=baseline or BaselineConfig())
    return run(cfg)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / checkpoint.TRAINING_JSON).is_file())):
        raise FileExistsError(f"--out {out}: exists and is not a uehead checkpoint; choose a new or empty folder")


def run(cfg: TrainConfig) -> Path:
    """Execute one training run described by ``cfg`` (see module docs for the order of work)."""
    _check_out(cfg.out)
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - clock[0], 3)
        clock[0] = now

    dataset = load_dataset(cfg.data)
    device = resolve_device(cfg.device)
    source = backbones.resolve_model(cfg.model)
    torch.manual_seed(cfg.seed)
    model, tokenizer, family = backbones.load_backbone(source, dataset.label_names, cfg.max_length)
    pad_id = int(tokenizer.pad_token_id)
    train_idx = stratified_subsample(dataset["train"].labels, cfg.max_train, seed=0)
    train_split = dataset["train"]
    train_enc = encode(tokenizer, [train_split.texts[i] for i in train_idx], train_split.labels[train_idx],
                       cfg.max_length)
    valid_enc = encode(tokenizer, dataset["valid"].texts, dataset["valid"].labels, cfg.max_length)
    lap("load")

    peft_model = finetune(model, family, train_enc, pad_id=pad_id, settings=cfg.lora, epochs=cfg.epochs,
                          batch_size=cfg.batch_size, seed=cfg.seed, device=device, progress=cfg.progress)
    lap("lora_finetune")
    probe = {k: v.to(device) for k, v in collate(valid_enc.ids[:64], pad_id).items()}
    merged, merge_diff = merge_checked(peft_model, probe, cfg.merge_atol)
    check_pooling(merged, family, probe)
    lap("merge")

    fb = cfg.feature_batch_size
    valid = extract(merged, family, valid_enc, pad_id=pad_id, device=device, batch_size=fb,
                    desc="features valid", progress=cfg.progress)
    fitted = None
    if cfg.baselines:
        base_idx = stratified_subsample(train_enc.labels, cfg.baseline.md_max_rows, seed=cfg.seed)
        base_enc = type(train_enc)([train_enc.ids[i] for i in base_idx], train_enc.labels[base_idx])
        train_feats = extract(merged, family, base_enc, pad_id=pad_id, device=device, batch_size=fb,
                              desc="features train", progress=cfg.progress)
        lap("features_train_valid")
        fitted = fit_baselines(train_feats.z, train_feats.labels, dataset.num_classes, cfg.baselines,
                               rde_max_rows=cfg.baseline.rde_max_rows, rde_components=cfg.baseline.rde_components,
                               seed=cfg.seed)
        lap("baselines_fit")
    else:
        lap("features_train_valid")

    in_features, num_classes, has_bias = backbones.head_shape(merged, family)
    cls_params = classifier_params(backbones.classifier_module(merged, family))
    head_variants = variants(cfg.heads, cfg.ablations, family.module, cfg.grid.alphas, cfg.grid.betas)
    results = fit_heads(head_variants, cls_params, valid.z, valid.logits, valid.errors, cfg.grid, seed=cfg.seed)
    # Heads are stored (and therefore served) in float32: score with exactly those weights.
    head_weights = {n: {k: v.astype(np.float32) for k, v in r.params_.items()} for n, r in results.items()}
    lap("heads_fit")

    test_enc = encode(tokenizer, dataset["test"].texts, dataset["test"].labels, cfg.max_length)
    test = extract(merged, family, test_enc, pad_id=pad_id, device=device, batch_size=fb,
                   desc="features test", progress=cfg.progress)
    lap("features_test")

    kinds = {v.name: v for v in head_variants}
    split_scores = {}
    for split, feats in (("valid", valid), ("test", test)):
        s = {"sr": reference.softmax_response(feats.logits), "entropy": reference.entropy(feats.logits)}
        if fitted is not None:
            s.update(fitted.scores(feats.z))
        for name, w in head_weights.items():
            s[name] = score_numpy(kinds[name].score, forward_numpy(w, feats.z), cfg.grid.lam)
        split_scores[split] = s
    lap("scores")

    partial = cfg.out.parent / f".{cfg.out.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    merged.to("cpu")
    checkpoint.write_model(partial, merged, tokenizer)
    for kind in cfg.heads:
        r = results[kind]
        checkpoint.write_head(partial, kind, head_weights[kind], {
            "lam": float(cfg.grid.lam), "module": family.module, "in_features": in_features,
            "num_classes": num_classes, "bias": bool(has_bias), "init": "classifier",
            "hyperparameters": r.hyperparameters_,
            "validation": {"roc_auc": r.roc_auc_, "n_fit": r.n_fit_, "n_select": r.n_select_}})
    if fitted is not None and fitted.md:
        for l2 in (False, True):
            checkpoint.write_md(partial, fitted.md[l2].arrays(), l2)
    for split, feats in (("valid", valid), ("test", test)):
        checkpoint.write_scores(partial, split, feats.labels, feats.predictions, feats.errors, split_scores[split])
    lap("write")

    record = {
        "uehead_version": __version__,
        "versions": _versions(),
        "model": cfg.model, "architecture": family.name, "pooling": family.pooling,
        "data": cfg.data, "num_classes": dataset.num_classes, "label_names": list(dataset.label_names),
        "seed": cfg.seed, "max_train": cfg.max_train, "epochs": cfg.epochs, "max_length": cfg.max_length,
        "batch_size": cfg.batch_size, "device": str(device),
        "lora": {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "dropout": cfg.lora.dropout,
                 "target_modules": list(family.lora_targets), "modules_to_save": [family.classifier_attr],
                 "optimizer": "AdamW", "lr": cfg.lora.lr, "weight_decay": cfg.lora.weight_decay,
                 "schedule": "linear", "warmup_ratio": cfg.lora.warmup_ratio,
                 "max_grad_norm": cfg.lora.max_grad_norm,
                 "precision": "bf16-autocast" if device.type == "cuda" else "fp32"},
        "heads": list(cfg.heads),
        "ablations": [v.name for v in head_variants if v.name not in cfg.heads],
        "baselines": list(cfg.baselines),
        "n_rows": {"train": len(train_enc), "valid": len(valid_enc), "test": len(test_enc)},
        "accuracy": {s: float((f.predictions == f.labels).mean()) for s, f in (("valid", valid), ("test", test))},
        "roc_auc_test": {m: float(roc_auc_rows(v[None, :], test.errors)[0]) if 0 < test.errors.sum() < len(test.errors)
                         else None for m, v in split_scores["test"].items()},
        "head_selection": {n: {"hyperparameters": r.hyperparameters_, "roc_auc_select": r.roc_auc_,
                               "init_roc_auc_select": r.init_roc_auc_, "n_fit": r.n_fit_, "n_select": r.n_select_, "grid_points": len(r.grid_)}
                           for n, r in results.items()},
        "rde": ({"n_fit": fitted.rde[False].n_fit_, "n_components": int(fitted.rde[False].kpca_.n_components)}
                if fitted is not None and fitted.rde else None),
        "merge_max_abs_diff": merge_diff,
        "config": cfg.to_dict(),
    }
    timings["total"] = round(sum(timings.values()), 3)
    record["timings_s"] = timings
    checkpoint.write_json(partial / checkpoint.TRAINING_JSON, record)
    _check_out(cfg.out)
    if cfg.out.exists():
        shutil.rmtree(cfg.out)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(cfg.out)
    for path in cfg.out.rglob("*"):  # safetensors writes 0600 files; make the checkpoint readable to all
        path.chmod(0o755 if path.is_dir() else 0o644)
    if cfg.progress:
        _summary(cfg.out, record)
    return cfg.out


def _versions() -> dict[str, str]:
    return {"python": sys.version.split()[0], **installed_versions(_VERSIONED)}


def _summary(out: Path, record: dict) -> None:
    auc = ", ".join(f"{k} {v:.3f}" for k, v in record["roc_auc_test"].items() if v is not None)
    print(f"uehead train: wrote {out} in {record['timings_s']['total']:.0f}s; accuracy test "
          f"{record['accuracy']['test']:.3f}; test ROC-AUC: {auc}", file=sys.stderr)
