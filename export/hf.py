"""Read a training checkpoint (the layout written by ``uehead.training``) for export.

    CKPT/model/                      merged Hugging Face classifier + fast tokenizer
    CKPT/heads/<kind>.safetensors    uncertainty head weights (the classifier module's own keys)
    CKPT/heads/<kind>.json           {"kind", "lam", "module", "in_features", "num_classes", "bias", ...}
    CKPT/baselines/md.npz            Mahalanobis statistics on raw z
    CKPT/training.json               architecture, pooling, max_length, label_names, ...

Only reading and checking happens here; nothing is exported. Every problem raises
:class:`~uehead.export.errors.CheckpointError` naming the file and the fix.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uehead.export.errors import CheckpointError

#: Uncertainty heads in the order the default head is chosen (first present wins; else "sr").
HEAD_ORDER = ("adue", "alien")
#: Module kinds a head json may name, and the state-dict keys each one holds.
HEAD_MODULE_KEYS = {
    "linear": ("weight",),
    "dense_tanh_linear": ("dense.weight", "dense.bias", "out_proj.weight", "out_proj.bias"),
}
#: Architecture -> the pooling that defines z (METHOD.md).
POOLING_OF = {"bert": "pooler", "roberta": "first_token", "llama": "last_token"}
_MODEL_TYPES = {
    "bert": "bert",
    "roberta": "roberta", "xlm-roberta": "roberta", "camembert": "roberta",
    "llama": "llama", "mistral": "llama", "qwen2": "llama", "qwen3": "llama", "gemma": "llama",
}


@dataclass(frozen=True)
class HeadWeights:
    """One trained uncertainty head: its json metadata and its weights (numpy, float32)."""

    kind: str
    meta: dict[str, Any]
    state_dict: dict[str, np.ndarray]

    @property
    def module(self) -> str:
        return self.meta.get("module", "linear")

    @property
    def lam(self) -> float:
        return float(self.meta.get("lam", 100.0))


@dataclass(frozen=True)
class Checkpoint:
    """A checked checkpoint folder. Heavy objects (model, tokenizer) load on request."""

    root: Path
    training: dict[str, Any]
    architecture: str
    pooling: str
    max_length: int
    label_names: tuple[str, ...]
    heads: dict[str, HeadWeights] = field(default_factory=dict)

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def baselines_file(self) -> Path:
        return self.root / "baselines" / "md.npz"

    def load_model(self):
        """The merged classifier in float32, eval mode (dropout off)."""
        from transformers import AutoModelForSequenceClassification

        try:
            model = AutoModelForSequenceClassification.from_pretrained(self.model_dir, dtype="float32")
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load the merged model ({exc}).", path=self.model_dir,
                                  fix="re-run `uehead train`; CKPT/model must be a save_pretrained folder.") from exc
        return model.float().eval()

    def load_tokenizer(self):
        """The checkpoint's fast tokenizer (a ``PreTrainedTokenizerFast``)."""
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(self.model_dir)
        if not getattr(tok, "is_fast", False):
            raise CheckpointError("the tokenizer is not a fast tokenizer; the runtime needs tokenizer.json.",
                                  path=self.model_dir, fix="save the model's fast tokenizer (use_fast=True).")
        if tok.pad_token_id is None:
            raise CheckpointError("the tokenizer has no pad token.", path=self.model_dir,
                                  fix="set a pad token before saving (decoders: eos as pad).")
        return tok


def _read_json(path: Path, fix: str) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError("is missing.", path=path, fix=fix)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"is not valid UTF-8 JSON ({exc}).", path=path, fix=fix) from exc
    if not isinstance(data, dict):
        raise CheckpointError("must hold a JSON object.", path=path, fix=fix)
    return data


def _architecture(training: dict[str, Any], config: dict[str, Any], path: Path) -> str:
    arch = training.get("architecture")
    if arch is None:
        arch = _MODEL_TYPES.get(config.get("model_type", ""))
    if arch not in POOLING_OF:
        raise CheckpointError(
            f"architecture {arch!r} (model_type {config.get('model_type')!r}) is not supported by the exporter; "
            f"it knows {sorted(POOLING_OF)}.", path=path,
            fix="train a BERT-family, RoBERTa-style or LLaMA-family classifier.")
    return arch


def _read_head(root: Path, kind: str, hidden: int, num_classes: int) -> HeadWeights:
    from safetensors.numpy import load_file

    meta_path = root / "heads" / f"{kind}.json"
    weights_path = root / "heads" / f"{kind}.safetensors"
    fix = "re-run `uehead train` (it writes heads/<kind>.json and heads/<kind>.safetensors)."
    meta = _read_json(meta_path, fix)
    if meta.get("kind", kind) != kind:
        raise CheckpointError(f"kind is {meta.get('kind')!r} but the file is named for {kind!r}.",
                              path=meta_path, fix=fix)
    module = meta.get("module", "linear")
    if module not in HEAD_MODULE_KEYS:
        raise CheckpointError(f"module {module!r} is not one of {sorted(HEAD_MODULE_KEYS)}.", path=meta_path, fix=fix)
    if not weights_path.is_file():
        raise CheckpointError("is missing.", path=weights_path, fix=fix)
    state = {k: np.asarray(v, dtype=np.float32) for k, v in load_file(str(weights_path)).items()}
    expected = set(HEAD_MODULE_KEYS[module])
    if module == "linear" and meta.get("bias", "bias" in state):
        expected.add("bias")
    if set(state) != expected:
        raise CheckpointError(f"holds keys {sorted(state)}, expected {sorted(expected)} for module {module!r}.",
                              path=weights_path, fix=fix)
    out_w = state["weight"] if module == "linear" else state["out_proj.weight"]
    in_w = state["weight"] if module == "linear" else state["dense.weight"]
    if out_w.shape[0] != num_classes or in_w.shape[1] != hidden:
        raise CheckpointError(
            f"weights map {in_w.shape[1]} features to {out_w.shape[0]} classes; the model has hidden size "
            f"{hidden} and {num_classes} classes.", path=weights_path, fix=fix)
    lam = float(meta.get("lam", 100.0))
    if kind == "adue" and not lam > 0:
        raise CheckpointError(f"lam must be > 0, got {lam}.", path=meta_path, fix=fix)
    return HeadWeights(kind=kind, meta=meta, state_dict=state)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and check a checkpoint folder (model config, training.json, heads)."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError("is not a folder.", path=root, fix="pass the folder written by `uehead train --out`.")
    config = _read_json(root / "model" / "config.json",
                        "CKPT/model must be a Hugging Face save_pretrained folder of the merged model.")
    training = _read_json(root / "training.json", "re-run `uehead train` (it writes training.json).")
    arch = _architecture(training, config, root / "training.json")
    pooling = training.get("pooling", POOLING_OF[arch])
    if pooling != POOLING_OF[arch]:
        raise CheckpointError(f"pooling {pooling!r} does not match architecture {arch!r} "
                              f"(expected {POOLING_OF[arch]!r}).", path=root / "training.json",
                              fix="z must be defined as METHOD.md says for the architecture.")
    max_length = training.get("max_length")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise CheckpointError(f"max_length {max_length!r} is not a positive integer.", path=root / "training.json",
                              fix="write the tokenizer max_length used in training.")
    id2label = config.get("id2label") or {}
    labels = training.get("label_names") or [id2label[k] for k in sorted(id2label, key=int)]
    num_classes = len(labels)
    if num_classes < 2 or (id2label and len(id2label) != num_classes):
        raise CheckpointError(f"{num_classes} label names but config.id2label has {len(id2label)}.",
                              path=root / "training.json", fix="re-run `uehead train`.")
    hidden = int(config.get("hidden_size", 0))
    heads = {}
    for kind in HEAD_ORDER:
        if (root / "heads" / f"{kind}.json").exists() or (root / "heads" / f"{kind}.safetensors").exists():
            heads[kind] = _read_head(root, kind, hidden, num_classes)
    return Checkpoint(root=root, training=training, architecture=arch, pooling=pooling, max_length=max_length,
                      label_names=tuple(str(x) for x in labels), heads=heads)
