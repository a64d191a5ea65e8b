"""Token classification (NER) training: ``uehead train --task token-classification``.

The same stages as sequence classification (:mod:`uehead.training.api`), on words:

1. load the ``{"tokens", "tags"}`` dataset (an ``I-X`` after ``O`` or another type is read as
   ``B-X``; the rewrites are counted in the record's ``bio_fixes``); pick ``max_train`` training
   sentences (a fixed random subset); cut every sentence into windows (:mod:`uehead.runtime.word_tokenize`);
2. LoRA on the same attention modules, the token classifier trainable in full; the first
   sub-token of each word carries its tag, every other position is left out of the loss; merge,
   with the same logits check;
3. word features z (the hidden state at each word's first sub-token) and tag logits of TRAIN
   words (MD / RMD) and VALID words (heads); the heads are copies of the token classifier trained
   with the same losses, grid and selection on word-level errors (predicted tag != gold tag);
4. TEST last; every score of every word of VALID and TEST goes to ``scores/<split>.npz`` (words
   sentence after sentence, as in the dataset; a word that made no token is tagged ``O`` with every
   score 0), the record gets word accuracy, entity F1 (seqeval) and word-level ROC-AUC.

RDE is not fitted on words (its kernel PCA and per-tag MinCovDet are the one part whose cost does
not stay small); MD and RMD are. Every score is **higher = more uncertain**.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uehead.evaluation.token_metrics import entity_f1, split_sentences
from uehead.runtime.word_tokenize import WordTokenizer
from uehead.token_datasets import TokenDataset, load_token_dataset
from uehead.token_task import FIRST_SUBTOKEN, TOKEN_CLASSIFICATION
from uehead.training import backbones, checkpoint
from uehead.training.api import (StageClock, check_out, default_score_test, fit_uncertainty_heads, new_partial,
                                 publish, score_split, write_baselines, write_heads)
from uehead.training.records import base_record, head_selection, split_roc_auc
from uehead.training.baselines import FittedBaselines, fit_baselines
from uehead.training.config import TrainConfig
from uehead.training.data import collate, stratified_subsample
from uehead.training.features import Features
from uehead.training.lora import merge_checked, resolve_device, train_lora
from uehead.training.token_data import TokenEncoded, encode_split, sentence_subsample, word_tokenizer
from uehead.training.token_features import check_token_classifier, extract_words

#: The distance baselines fitted on word features.
TOKEN_BASELINES = ("md", "rmd")


@dataclass
class _TokenInputs:
    dataset: TokenDataset
    device: torch.device
    model: Any
    tokenizer: Any
    family: backbones.Family
    words: WordTokenizer
    train_enc: TokenEncoded
    valid_enc: TokenEncoded

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)


@dataclass
class _SplitResult:
    """Every word of one split: gold tags, predictions and scores (unscored words: O, 0)."""

    enc: TokenEncoded
    feats: Features
    predictions: np.ndarray
    scores: dict[str, np.ndarray]

    @property
    def errors(self) -> np.ndarray:
        return (self.predictions != self.enc.tags).astype(np.int8)


def run_token(cfg: TrainConfig) -> Path:
    """Execute one token-classification training run (see the module docstring)."""
    check_out(cfg.out)
    clock = StageClock()
    inputs = _load_inputs(cfg)
    clock.lap("load")
    merged, merge_diff, check_diff = _finetune_and_merge(cfg, inputs, clock)
    valid_feats = _extract(cfg, inputs, merged, inputs.valid_enc, "valid")
    fitted = _fit_word_baselines(cfg, inputs, merged, clock)
    head_variants, results, head_weights = fit_uncertainty_heads(cfg, inputs.family, merged, valid_feats)
    clock.lap("heads_fit")
    test_enc = encode_split(inputs.words, inputs.dataset["test"])
    test_feats = _extract(cfg, inputs, merged, test_enc, "test")
    clock.lap("features_test")
    outside = inputs.dataset.scheme.outside_id
    splits = {name: _SplitResult(enc, feats, *_all_words(enc, feats, outside,
                                                          score_split(cfg, fitted, head_variants, head_weights, feats)))
              for name, enc, feats in (("valid", inputs.valid_enc, valid_feats), ("test", test_enc, test_feats))}
    # the do-no-harm test reads the scored words' rows, where the heads' fit/select cut was made
    default = default_score_test(cfg, valid_feats.errors,
                                 score_split(cfg, fitted, head_variants, head_weights, valid_feats))
    clock.lap("scores")
    partial = new_partial(cfg.out)
    merged.to("cpu")
    checkpoint.write_model(partial, merged, inputs.tokenizer)
    write_heads(partial, cfg, inputs.family, merged, results, head_weights)
    write_baselines(partial, fitted)
    for name, r in splits.items():
        checkpoint.write_scores(partial, name, r.enc.tags, r.predictions, r.errors, r.scores)
    clock.lap("write")
    record = base_record(cfg, inputs.family, inputs.device, inputs.dataset.tag_names, head_variants)
    record.update(_token_record(cfg, inputs, splits, fitted, results, merge_diff, check_diff))
    record["default_score"] = default
    publish(cfg, partial, record, clock.timings)
    return cfg.out


def _load_inputs(cfg: TrainConfig) -> _TokenInputs:
    dataset = load_token_dataset(cfg.data)
    device = resolve_device(cfg.device)
    source = backbones.resolve_model(cfg.model)
    torch.manual_seed(cfg.seed)
    model, tokenizer, family = backbones.load_backbone(source, dataset.tag_names, cfg.max_length,
                                                       task=TOKEN_CLASSIFICATION)
    words = word_tokenizer(tokenizer, cfg.max_length)
    train = dataset["train"]
    train_enc = encode_split(words, train.take(sentence_subsample(len(train), cfg.max_train, seed=0)))
    valid_enc = encode_split(words, dataset["valid"])
    return _TokenInputs(dataset, device, model, tokenizer, family, words, train_enc, valid_enc)


def _finetune_and_merge(cfg: TrainConfig, inputs: _TokenInputs, clock: StageClock):
    """LoRA on the TRAIN windows (loss at first sub-tokens only), merge, check the merge and z."""
    enc, device = inputs.train_enc, inputs.device
    words = enc.window_words()

    def loss_of(idx: np.ndarray, logits: torch.Tensor) -> torch.Tensor:
        labels = enc.labels(idx, logits.shape[1], words).to(device)
        return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten())

    peft_model = train_lora(inputs.model, inputs.family, enc.ids, loss_of, pad_id=inputs.pad_id, settings=cfg.lora,
                            epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, device=device,
                            progress=cfg.progress, task_type="TOKEN_CLS")
    clock.lap("lora_finetune")
    probe = {k: v.to(device) for k, v in collate(inputs.valid_enc.ids[:64], inputs.pad_id).items()}
    merged, merge_diff = merge_checked(peft_model, probe, cfg.merge_atol)
    check_diff = check_token_classifier(merged, inputs.family, inputs.valid_enc, inputs.pad_id, device)
    clock.lap("merge")
    return merged, merge_diff, check_diff


def _extract(cfg: TrainConfig, inputs: _TokenInputs, merged, enc: TokenEncoded, split: str) -> Features:
    return extract_words(merged, inputs.family, enc, pad_id=inputs.pad_id, device=inputs.device,
                         batch_size=cfg.feature_batch_size, desc=f"features {split}", progress=cfg.progress)


def _fit_word_baselines(cfg: TrainConfig, inputs: _TokenInputs, merged, clock: StageClock) -> FittedBaselines | None:
    """MD / RMD on the features of (at most ``md_max_rows``) TRAIN words, with their gold tags."""
    kinds = tuple(b for b in cfg.baselines if b in TOKEN_BASELINES)
    if not kinds:
        clock.lap("features_train_valid")
        return None
    feats = _extract(cfg, inputs, merged, inputs.train_enc, "train")
    clock.lap("features_train_valid")
    keep = stratified_subsample(feats.labels, cfg.baseline.md_max_rows, seed=cfg.seed)
    fitted = fit_baselines(feats.z[keep], feats.labels[keep], inputs.dataset.num_tags, kinds, seed=cfg.seed)
    clock.lap("baselines_fit")
    return fitted


def _all_words(enc: TokenEncoded, feats: Features, outside: int, scored_scores: dict[str, np.ndarray]):
    """(predictions, scores) of every word: the scored words' own, ``outside`` and 0 for the others."""
    mask = enc.scored
    predictions = np.full(len(enc.tags), outside, np.int64)
    predictions[mask] = feats.predictions
    scores = {}
    for name, values in scored_scores.items():
        full = np.zeros(len(enc.tags), np.float64)
        full[mask] = values
        scores[name] = full
    return predictions, scores


def _token_record(cfg: TrainConfig, inputs: _TokenInputs, splits: dict[str, _SplitResult],
                  fitted: FittedBaselines | None, results, merge_diff: float, check_diff: float) -> dict:
    """The token-classification part of ``training.json``."""
    dataset, names = inputs.dataset, inputs.dataset.tag_names
    test = splits["test"]
    encs = {"train": inputs.train_enc, **{k: r.enc for k, r in splits.items()}}
    return {
        "task": TOKEN_CLASSIFICATION, "alignment": FIRST_SUBTOKEN, "tag_scheme": "BIO",
        "window_overlap": inputs.words.window_overlap,
        "bio_fixes": {s: dataset[s].bio_fixes for s in ("train", "valid", "test")},
        "baselines": list(fitted.kinds) if fitted is not None else [],
        "n_rows": {"train": len(inputs.train_enc.windows.words_per_sentence), "valid": len(dataset["valid"]),
                   "test": len(dataset["test"])},
        "n_words": {s: int(e.windows.n_words) for s, e in encs.items()},
        "n_windows": {s: len(e) for s, e in encs.items()},
        "unscored_words": {s: int((~e.scored).sum()) for s, e in encs.items()},
        "accuracy": {s: float((r.predictions == r.enc.tags).mean()) for s, r in splits.items()},
        "f1": {s: entity_f1(split_sentences(r.enc.tags, r.enc.windows.words_per_sentence),
                            split_sentences(r.predictions, r.enc.windows.words_per_sentence), names)
               for s, r in splits.items()},
        "roc_auc_test": split_roc_auc(test.scores, test.errors),
        "head_selection": head_selection(results),
        "merge_max_abs_diff": merge_diff,
        "token_classifier_max_abs_diff": check_diff,
        "config": cfg.to_dict(),
    }
