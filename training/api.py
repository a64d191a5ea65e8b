"""``train``: the function behind ``uehead train`` (data -> LoRA -> merge -> features -> heads -> checkpoint).

Order of work, and which split each step reads:

1. load and validate the dataset; pick the LoRA training rows (``max_train``: stratified, fixed);
2. LoRA fine-tune on those TRAIN rows, merge, check merged-vs-adapter logits and the pooling;
3. features z and logits of the TRAIN rows (baselines) and the VALID split (heads);
4. fit MD/RMD/RDE on train features; fit and select the heads on VALID only (fit/select cut);
5. only then tokenise and featurise TEST, score every method on valid and test, write the checkpoint.

The checkpoint is assembled in a sibling temporary folder and moved into place at the end, so a
reader never sees half a checkpoint. Token classification (``task="token-classification"``) runs
the same steps on words, in :mod:`uehead.training.token_train`, with the helpers made public here.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uehead.datasets import Dataset, load_dataset
from uehead.evaluation.paired import choose_default_score, describe_default
from uehead.scores import entropy, softmax_response
from uehead.training import backbones, checkpoint
from uehead.training.baselines import FittedBaselines, fit_baselines
from uehead.training.config import (
    BaselineConfig,
    HeadGridConfig,
    LoraSettings,
    TrainConfig,
)
from uehead.training.data import Encoded, collate, encode, stratified_subsample
from uehead.training.features import Features, check_pooling, extract
from uehead.training.fit import GridResult, fit_heads, split_fit_select
from uehead.training.records import base_record, head_selection, split_roc_auc
from uehead.training.heads import (
    HeadVariant,
    classifier_params,
    forward_numpy,
    score_numpy,
    variants,
)
from uehead.training.lora import finetune, merge_checked, resolve_device
from uehead.token_task import SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION



def train(model: str, data: str, out: str | os.PathLike, heads=("adue", "alien"), max_train: int | None = None,
          epochs: int | None = None, max_length: int = 128, seed: int = 0, device: str = "auto", batch_size: int = 64, *,
          ablations: bool = False, baselines=("md", "rmd", "rde"), progress: bool = True,
          lora: LoraSettings | None = None, grid: HeadGridConfig | None = None,
          baseline: BaselineConfig | None = None, task: str = SEQUENCE_CLASSIFICATION, finetune: str = "lora",
          protocol: str = "uehead", data_options=None) -> Path:
    """LoRA-fine-tune ``model`` on ``data``, merge it, train the uncertainty heads; write a checkpoint.

    Args mirror :class:`TrainConfig` (see its field docs). Every score written is **higher = more
    uncertain**. Returns the checkpoint folder ``out``.
    """
    cfg = TrainConfig(model=str(model), data=str(data), out=Path(out), heads=heads, max_train=max_train,
                      epochs=epochs, max_length=max_length, seed=seed, device=device, batch_size=batch_size,
                      ablations=ablations, baselines=baselines, progress=progress,
                      lora=lora, grid=grid, baseline=baseline or BaselineConfig(), task=task, finetune=finetune, protocol=protocol,
                      data_options=data_options)
    return run(cfg)


def check_out(out: Path) -> None:
    """Refuse an ``out`` that exists and is neither empty nor a uehead checkpoint."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not checkpoint.is_checkpoint(out))):
        raise FileExistsError(f"--out {out}: exists and is not a uehead checkpoint; choose a new or empty folder")


class StageClock:
    """Wall time of each named step, in the order the steps ran (the record's ``timings_s``)."""

    def __init__(self):
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._last, 3)
        self._last = now


@dataclass
class _Inputs:
    """What one run reads: the dataset, the backbone to fine-tune, the tokenised TRAIN / VALID rows."""

    dataset: Dataset
    device: torch.device
    model: Any
    tokenizer: Any
    family: backbones.Family
    train_enc: Encoded
    valid_enc: Encoded
    #: One entry per LoRA epoch (train loss, select accuracy), then the kept epoch; empty without LoRA.
    lora_history: list = field(default_factory=list)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)


@dataclass
class _Outputs:
    """What one run produces: the merged model, the features, the fitted heads and baselines, the scores."""

    merged: Any
    merge_diff: float
    valid: Features
    test: Features
    baselines: FittedBaselines | None
    variants: list[HeadVariant]
    heads: dict[str, GridResult]
    head_weights: dict[str, dict[str, np.ndarray]]   # float32: the weights the checkpoint stores
    scores: dict[str, dict[str, np.ndarray]]          # split -> method -> U


def run(cfg: TrainConfig) -> Path:
    """Execute one training run described by ``cfg`` (see module docs for the order of work);
    token classification runs :func:`uehead.training.token_train.run_token` instead."""
    if cfg.task == TOKEN_CLASSIFICATION:
        from uehead.training.token_train import run_token

        return run_token(cfg)
    check_out(cfg.out)
    clock = StageClock()
    inputs = _load_inputs(cfg)
    clock.lap("load")
    merged, merge_diff = _finetune_and_merge(cfg, inputs, clock)
    valid = _extract(cfg, inputs, merged, inputs.valid_enc, "valid")
    train_feats = _extract_train(cfg, inputs, merged)
    clock.lap("features_train_valid")
    fitted = _fit_distance_baselines(cfg, inputs, train_feats, clock)
    head_variants, results, head_weights = fit_uncertainty_heads(
        cfg, inputs.family, merged, valid, train=train_feats if cfg.protocol == "authors" else None)
    clock.lap("heads_fit")
    test_enc = encode(inputs.tokenizer, inputs.dataset["test"].texts, inputs.dataset["test"].labels, cfg.max_length)
    test = _extract(cfg, inputs, merged, test_enc, "test")
    clock.lap("features_test")
    scores = {split: score_split(cfg, fitted, head_variants, head_weights, feats)
              for split, feats in (("valid", valid), ("test", test))}
    outputs = _Outputs(merged, merge_diff, valid, test, fitted, head_variants, results, head_weights, scores)
    default = default_score_test(cfg, valid.errors, scores["valid"])
    clock.lap("scores")
    partial = _write_checkpoint(cfg, inputs, outputs)
    clock.lap("write")
    record = _run_record(cfg, inputs, outputs)
    record["default_score"] = default
    publish(cfg, partial, record, clock.timings)
    return cfg.out


def _load_inputs(cfg: TrainConfig) -> _Inputs:
    """The dataset, the backbone (classifier seeded with ``cfg.seed``) and the TRAIN / VALID encodings."""
    dataset = load_dataset(cfg.data, options=cfg.data_options)
    device = resolve_device(cfg.device)
    source = backbones.resolve_model(cfg.model)
    torch.manual_seed(cfg.seed)
    if cfg.finetune == "none":
        from uehead.training.posthoc import load_finetuned

        model, tokenizer, family = load_finetuned(source, dataset, cfg.max_length)
    else:
        model, tokenizer, family = backbones.load_backbone(source, dataset.label_names, cfg.max_length)
    train_idx = stratified_subsample(dataset["train"].labels, cfg.max_train, seed=0)
    train_split = dataset["train"]
    train_enc = encode(tokenizer, [train_split.texts[i] for i in train_idx], train_split.labels[train_idx],
                       cfg.max_length)
    valid_enc = encode(tokenizer, dataset["valid"].texts, dataset["valid"].labels, cfg.max_length)
    return _Inputs(dataset, device, model, tokenizer, family, train_enc, valid_enc)


def _finetune_and_merge(cfg: TrainConfig, inputs: _Inputs, clock: StageClock):
    """LoRA on the TRAIN rows, then the merged model, checked against the adapter and the pooling
    (``finetune="none"``: the model as loaded, pooling checked, merge difference 0)."""
    probe = {k: v.to(inputs.device) for k, v in collate(inputs.valid_enc.ids[:64], inputs.pad_id).items()}
    if cfg.finetune == "none":
        model = inputs.model.to(inputs.device).eval()
        check_pooling(model, inputs.family, probe)
        clock.lap("posthoc_load")
        return model, 0.0
    valid = inputs.valid_enc
    pick = stratified_subsample(valid.labels, cfg.lora.select_max_rows, seed=0)
    select = Encoded([valid.ids[i] for i in pick], valid.labels[pick])
    peft_model = finetune(inputs.model, inputs.family, inputs.train_enc, pad_id=inputs.pad_id, settings=cfg.lora,
                          epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, device=inputs.device,
                          progress=cfg.progress, select=select, history=inputs.lora_history)
    inputs.lora_history[-1]["select_rows"] = len(select) if cfg.lora.select_best_epoch else 0
    clock.lap("lora_finetune")
    merged, merge_diff = merge_checked(peft_model, probe, cfg.merge_atol)
    check_pooling(merged, inputs.family, probe)
    clock.lap("merge")
    return merged, merge_diff


def _extract(cfg: TrainConfig, inputs: _Inputs, merged, enc: Encoded, split: str) -> Features:
    return extract(merged, inputs.family, enc, pad_id=inputs.pad_id, device=inputs.device,
                   batch_size=cfg.feature_batch_size, desc=f"features {split}", progress=cfg.progress)


def _extract_train(cfg: TrainConfig, inputs: _Inputs, merged) -> Features | None:
    """Features of the TRAIN rows the baselines (at most ``md_max_rows``, stratified) or the authors'
    heads (every LoRA training row) read; None when neither needs them."""
    if not cfg.baselines and cfg.protocol != "authors":
        return None
    enc = inputs.train_enc
    if cfg.protocol != "authors":
        idx = stratified_subsample(enc.labels, cfg.baseline.md_max_rows, seed=cfg.seed)
        enc = Encoded([enc.ids[i] for i in idx], enc.labels[idx])
    return _extract(cfg, inputs, merged, enc, "train")


def _fit_distance_baselines(cfg: TrainConfig, inputs: _Inputs, train_feats: Features | None,
                            clock: StageClock) -> FittedBaselines | None:
    """MD / RMD / RDE on the features of (at most ``md_max_rows``) TRAIN rows; None without baselines."""
    if not cfg.baselines:
        return None
    # The same stratified share _extract_train featurised (a no-op then: it already has that many rows),
    # or, when every training row was featurised for the authors' heads, the baselines' share of them.
    idx = stratified_subsample(train_feats.labels, cfg.baseline.md_max_rows, seed=cfg.seed)
    fitted = fit_baselines(train_feats.z[idx], train_feats.labels[idx], inputs.dataset.num_classes, cfg.baselines,
                           rde_max_rows=cfg.baseline.rde_max_rows, rde_components=cfg.baseline.rde_components,
                           seed=cfg.seed)
    clock.lap("baselines_fit")
    return fitted


def fit_uncertainty_heads(cfg: TrainConfig, family: backbones.Family, merged, valid: Features,
                          train: Features | None = None):
    """(variants, grid results, float32 weights) of every head family, fitted and selected on VALID
    (or, given ``train``, fitted on TRAIN and selected on VALID: the authors' protocol)."""
    cls_params = classifier_params(backbones.classifier_module(merged, family))
    head_variants = variants(cfg.heads, cfg.ablations, family.module, cfg.grid.alphas, cfg.grid.betas)
    train_arrays = None if train is None else (train.z, train.logits, train.errors)
    results = fit_heads(head_variants, cls_params, valid.z, valid.logits, valid.errors, cfg.grid, seed=cfg.seed,
                        train=train_arrays)
    # Heads are stored (and therefore served) in float32: score with exactly those weights.
    head_weights = {n: {k: v.astype(np.float32) for k, v in r.params_.items()} for n, r in results.items()}
    return head_variants, results, head_weights


def default_score_test(cfg: TrainConfig, valid_errors: np.ndarray, valid_scores: dict[str, np.ndarray]) -> dict:
    """The do-no-harm test that picks the bundle's default score (:mod:`uehead.evaluation.paired`),
    on VALID rows the heads were not fitted on: the select part (uehead protocol) or all of VALID
    (authors' protocol: heads fitted on TRAIN). Those rows also chose the grid point, so the test is
    slightly in the heads' favour; it still refuses gains within the bootstrap noise."""
    if cfg.protocol == "authors":
        rows, where = np.arange(len(valid_errors)), "validation (all; heads fitted on train)"
    else:
        rows = split_fit_select(valid_errors, cfg.grid.select_fraction, cfg.seed)[1]
        where = "validation select-part"
    return choose_default_score({k: v[rows] for k, v in valid_scores.items()}, valid_errors[rows], cfg.heads,
                                seed=cfg.seed, rows=where)


def score_split(cfg: TrainConfig, baselines: FittedBaselines | None, head_variants: list[HeadVariant],
                 head_weights: dict[str, dict[str, np.ndarray]], feats: Features) -> dict[str, np.ndarray]:
    """Every method's U on one split: sr, entropy, the distance baselines, the heads and ablations."""
    out = {"sr": softmax_response(feats.logits), "entropy": entropy(feats.logits)}
    if baselines is not None:
        out.update(baselines.scores(feats.z))
    score_of = {v.name: v.score for v in head_variants}
    for name, weights in head_weights.items():
        out[name] = score_numpy(score_of[name], forward_numpy(weights, feats.z), cfg.grid.lam)
    return out


def _write_checkpoint(cfg: TrainConfig, inputs: _Inputs, outputs: _Outputs) -> Path:
    """Model, heads, Mahalanobis statistics and scores, into a fresh sibling folder (returned)."""
    partial = new_partial(cfg.out)
    outputs.merged.to("cpu")
    checkpoint.write_model(partial, outputs.merged, inputs.tokenizer)
    write_heads(partial, cfg, inputs.family, outputs.merged, outputs.heads, outputs.head_weights)
    write_baselines(partial, outputs.baselines)
    for split, feats in (("valid", outputs.valid), ("test", outputs.test)):
        checkpoint.write_scores(partial, split, feats.labels, feats.predictions, feats.errors, outputs.scores[split])
    return partial


def new_partial(out: Path) -> Path:
    """A fresh sibling folder of ``out`` to assemble the checkpoint in."""
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def write_heads(partial: Path, cfg: TrainConfig, family: backbones.Family, merged, heads: dict[str, GridResult],
                head_weights: dict[str, dict[str, np.ndarray]]) -> None:
    """heads/<kind>.{safetensors,json} of every requested head."""
    in_features, num_classes, has_bias = backbones.head_shape(merged, family)
    for kind in cfg.heads:
        r = heads[kind]
        checkpoint.write_head(partial, kind, head_weights[kind], {
            "lam": float(cfg.grid.lam), "module": family.module, "in_features": in_features,
            "num_classes": num_classes, "bias": bool(has_bias), "init": "classifier",
            "hyperparameters": r.hyperparameters_,
            "validation": {"roc_auc": r.roc_auc_, "n_fit": r.n_fit_, "n_select": r.n_select_}})


def write_baselines(partial: Path, fitted: FittedBaselines | None) -> None:
    """baselines/md.npz and md_l2.npz when MD/RMD were fitted."""
    if fitted is not None and fitted.md:
        for l2 in (False, True):
            checkpoint.write_md(partial, fitted.md[l2].arrays(), l2)


def _run_record(cfg: TrainConfig, inputs: _Inputs, outputs: _Outputs) -> dict:
    """The run record of ``training.json`` (without its timings)."""
    valid, test, fitted = outputs.valid, outputs.test, outputs.baselines
    record = base_record(cfg, inputs.family, inputs.device, inputs.dataset.label_names, outputs.variants)
    record.update({
        "baselines": list(cfg.baselines),
        "n_rows": {"train": len(inputs.train_enc), "valid": len(inputs.valid_enc), "test": len(test.labels)},
        "accuracy": {s: float((f.predictions == f.labels).mean()) for s, f in (("valid", valid), ("test", test))},
        "roc_auc_test": split_roc_auc(outputs.scores["test"], test.errors),
        "head_selection": head_selection(outputs.heads),
        "rde": ({"n_fit": fitted.rde[False].n_fit_, "n_components": int(fitted.rde[False].kpca_.n_components)}
                if fitted is not None and fitted.rde else None),
        "merge_max_abs_diff": outputs.merge_diff,
        "lora_epochs": inputs.lora_history or None,
        "config": cfg.to_dict(),
    })
    return record


def publish(cfg: TrainConfig, partial: Path, record: dict, timings: dict[str, float]) -> None:
    """Add the stage ``timings`` (seconds, plus their total) to the record, write it, then move the
    finished checkpoint into ``cfg.out`` (replacing an old one)."""
    timings["total"] = round(sum(timings.values()), 3)
    record["timings_s"] = timings
    checkpoint.write_training(partial, record)
    check_out(cfg.out)
    if cfg.out.exists():
        shutil.rmtree(cfg.out)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(cfg.out)
    for path in cfg.out.rglob("*"):  # safetensors writes 0600 files; make the checkpoint readable to all
        path.chmod(0o755 if path.is_dir() else 0o644)
    if cfg.progress:
        _summary(cfg.out, record)


def _summary(out: Path, record: dict) -> None:
    auc = ", ".join(f"{k} {v:.3f}" for k, v in record["roc_auc_test"].items() if v is not None)
    print(f"uehead train: wrote {out} in {record['timings_s']['total']:.0f}s; accuracy test "
          f"{record['accuracy']['test']:.3f}; test ROC-AUC: {auc}", file=sys.stderr)
    if record.get("default_score"):
        print(f"uehead train: {describe_default(record['default_score'])}", file=sys.stderr)
