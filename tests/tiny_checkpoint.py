"""A tiny training checkpoint in the exact layout ``uehead.training`` writes, without training.

:func:`make_tiny_checkpoint` builds it from :func:`tiny_models.make_tiny_model_dir` in about a
second: uncertainty head weights are the classifier's weights plus small noise (as a trained head
starting from ``init = "classifier"`` would be), and ``md.npz`` holds statistics of random
features. Export tests use it so they never depend on the training code.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tiny_models import make_tiny_model_dir

MAX_LENGTH = 24


def _md_stats(z: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    means = np.stack([z[labels == c].mean(axis=0) for c in range(num_classes)])
    centred = z - means[labels]
    cov = centred.T @ centred / len(z) + 1e-3 * np.eye(z.shape[1])
    gcov = np.cov(z, rowvar=False) + 1e-3 * np.eye(z.shape[1])
    return {"class_means": means, "precision": np.linalg.inv(cov), "global_mean": z.mean(axis=0),
            "global_precision": np.linalg.inv(gcov)}


def make_tiny_checkpoint(out: str | Path, arch: str = "bert", heads=("adue", "alien"), seed: int = 0,
                         num_labels: int = 2, max_length: int = MAX_LENGTH) -> Path:
    """Write CKPT/{model,heads,baselines,scores,training.json} for a tiny random model; return CKPT.

    ``arch``: "bert" or "llama" (from :func:`tiny_models.make_tiny_model_dir`), or "roberta"
    (a tiny RobertaForSequenceClassification whose head is the dense + tanh + out_proj block)."""
    out = Path(out)
    if arch == "roberta":
        _make_tiny_roberta_dir(out / "model", num_labels=num_labels, seed=seed)
    else:
        make_tiny_model_dir(out / "model", arch=arch, num_labels=num_labels, seed=seed)
    return write_checkpoint_parts(out, arch=arch, heads=heads, seed=seed, max_length=max_length)


def write_checkpoint_parts(out: str | Path, arch: str, heads=("adue", "alien"), seed: int = 0,
                           max_length: int = MAX_LENGTH, data: str = "tiny") -> Path:
    """Given CKPT/model (a saved ``*ForSequenceClassification`` + tokenizer), write the rest of the
    checkpoint: heads = classifier weights + N(0, 0.05) noise, baselines from random features,
    random scores, training.json. Also used to build stand-in checkpoints of real models."""
    import torch
    from safetensors.numpy import save_file
    from transformers import AutoModelForSequenceClassification

    out = Path(out)
    model_dir = out / "model"
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    num_labels = model.config.num_labels
    classifier = model.score if arch == "llama" else model.classifier
    module = "dense_tanh_linear" if arch == "roberta" else "linear"
    hidden = model.config.hidden_size
    rng = np.random.default_rng(seed)

    (out / "heads").mkdir(parents=True, exist_ok=True)
    for kind in heads:
        state = {k: (v.detach().numpy() + rng.normal(0, 0.05, v.shape)).astype(np.float32)
                 for k, v in classifier.state_dict().items()}
        save_file(state, str(out / "heads" / f"{kind}.safetensors"))
        meta = {"kind": kind, "lam": 100.0, "module": module, "in_features": hidden, "num_classes": num_labels,
                "bias": "bias" in state, "init": "classifier",
                "hyperparameters": {"lr": 1e-3, "epochs": 5, "alpha": 0.1, "beta": 0.1, "batch_size": 32},
                "validation": {"roc_auc": 0.5, "n_fit": 60, "n_select": 60}}
        (out / "heads" / f"{kind}.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    (out / "baselines").mkdir(exist_ok=True)
    z = rng.normal(size=(64, hidden))
    labels = np.arange(64) % num_labels
    np.savez(out / "baselines" / "md.npz", **_md_stats(z, labels, num_labels))
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    np.savez(out / "baselines" / "md_l2.npz", **_md_stats(zn, labels, num_labels))

    (out / "scores").mkdir(exist_ok=True)
    for split in ("valid", "test"):
        n = 20
        preds = rng.integers(0, num_labels, n)
        labs = rng.integers(0, num_labels, n)
        arrays = {"labels": labs, "predictions": preds, "errors": (preds != labs).astype(np.int8),
                  "sr": rng.random(n), "entropy": rng.random(n)}
        arrays.update({kind: rng.random(n) for kind in heads})
        np.savez(out / "scores" / f"{split}.npz", **arrays)

    training = {
        "uehead_version": "0.1.0", "versions": {"torch": torch.__version__}, "model": str(model_dir),
        "architecture": arch, "pooling": {"bert": "pooler", "roberta": "first_token"}.get(arch, "last_token"), "data": data,
        "num_classes": num_labels, "label_names": [model.config.id2label[i] for i in range(num_labels)],
        "seed": seed,
        "max_train": None, "epochs": 0, "max_length": max_length, "batch_size": 8, "device": "cpu",
        "lora": {}, "heads": list(heads), "n_rows": {}, "accuracy": {"test": 0.5},
        "roc_auc_test": {"sr": 0.5}, "timings_s": {}, "merge_max_abs_diff": 0.0,
    }
    (out / "training.json").write_text(json.dumps(training, indent=2), encoding="utf-8")
    return out


def _make_tiny_roberta_dir(out: Path, num_labels: int = 2, seed: int = 0, hidden_size: int = 32) -> Path:
    """A random 2-layer RobertaForSequenceClassification + the tiny BERT-style tokenizer."""
    import torch
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForSequenceClassification

    from tiny_models import make_tokenizer

    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer("bert")
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                     sep_token="[SEP]", mask_token="[MASK]", model_max_length=62,
                                     model_input_names=["input_ids", "attention_mask"])
    config = RobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden_size, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=66,
                           num_labels=num_labels, pad_token_id=hf_tok.pad_token_id, type_vocab_size=1)
    model = RobertaForSequenceClassification(config)
    model.config.id2label = {i: f"class_{i}" for i in range(num_labels)}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.eval().save_pretrained(out)
    hf_tok.save_pretrained(out)
    return out
