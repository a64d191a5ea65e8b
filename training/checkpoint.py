"""Write and read the training checkpoint (the layout export and the paper reproduction rely on).

::

    CKPT/model/                      merged Hugging Face model + fast tokenizer (save_pretrained)
    CKPT/heads/<kind>.safetensors    head weights, keys = the classifier module's state_dict keys
    CKPT/heads/<kind>.json           kind, lam, module, in_features, num_classes, bias, init,
                                     hyperparameters, validation
    CKPT/baselines/md.npz, md_l2.npz class_means, precision, global_mean, global_precision (float64)
    CKPT/scores/{valid,test}.npz     labels, predictions, errors (int8) + one float64 array per method
    CKPT/training.json               run record (data, seeds, versions, timings, accuracies, ROC-AUCs)

Everything is safetensors / npz (``allow_pickle=False``) / JSON; nothing is pickled. Every score
array is **higher = more uncertain**.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

MODEL_DIR, HEADS_DIR, BASELINES_DIR, SCORES_DIR = "model", "heads", "baselines", "scores"
TRAINING_JSON = "training.json"
SCORE_META = ("labels", "predictions", "errors")


class CheckpointError(FileNotFoundError):
    """A checkpoint file is missing or malformed; the message names it."""


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def write_model(ckpt: Path, model, tokenizer) -> Path:
    """``save_pretrained`` of the merged model (safetensors) and its fast tokenizer."""
    out = Path(ckpt) / MODEL_DIR
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def write_head(ckpt: Path, kind: str, params: dict[str, np.ndarray], config: dict) -> Path:
    """``heads/<kind>.safetensors`` (float32) + ``heads/<kind>.json`` (``config`` plus ``kind``)."""
    from safetensors.numpy import save_file

    folder = Path(ckpt) / HEADS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items()},
              str(folder / f"{kind}.safetensors"), metadata={"kind": kind, "format": "uehead-head"})
    write_json(folder / f"{kind}.json", {"kind": kind, **config})
    return folder / f"{kind}.safetensors"


def write_md(ckpt: Path, arrays: dict[str, np.ndarray], l2: bool) -> Path:
    folder = Path(ckpt) / BASELINES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("md_l2.npz" if l2 else "md.npz")
    np.savez(path, **{k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})
    return path


def write_scores(ckpt: Path, split: str, labels: np.ndarray, predictions: np.ndarray, errors: np.ndarray,
                 scores: dict[str, np.ndarray]) -> Path:
    folder = Path(ckpt) / SCORES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"labels": np.asarray(labels, dtype=np.int64), "predictions": np.asarray(predictions, dtype=np.int64),
              "errors": np.asarray(errors, dtype=np.int8)}
    for name, values in scores.items():
        if name in arrays:
            raise ValueError(f"score name {name!r} clashes with a metadata array")
        arrays[name] = np.asarray(values, dtype=np.float64)
    path = folder / f"{split}.npz"
    np.savez(path, **arrays)
    return path


# ---------------------------------------------------------------- reading


def _need(path: Path) -> Path:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; is {path.parent.parent} a checkpoint written by `uehead train`?")
    return path


def read_training(ckpt: str | Path) -> dict:
    return json.loads(_need(Path(ckpt) / TRAINING_JSON).read_text(encoding="utf-8"))


def read_head(ckpt: str | Path, kind: str) -> tuple[dict[str, np.ndarray], dict]:
    """(weights as float32 arrays keyed like the classifier's state_dict, head config dict)."""
    from safetensors.numpy import load_file

    folder = Path(ckpt) / HEADS_DIR
    weights = load_file(str(_need(folder / f"{kind}.safetensors")))
    config = json.loads(_need(folder / f"{kind}.json").read_text(encoding="utf-8"))
    return weights, config


def read_md(ckpt: str | Path, l2: bool = False) -> dict[str, np.ndarray]:
    path = _need(Path(ckpt) / BASELINES_DIR / ("md_l2.npz" if l2 else "md.npz"))
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def read_scores(ckpt: str | Path, split: str) -> dict[str, np.ndarray]:
    path = _need(Path(ckpt) / SCORES_DIR / f"{split}.npz")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def load_model(ckpt: str | Path):
    """(model, tokenizer) of ``CKPT/model`` with plain transformers (offline, eval mode)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(ckpt) / MODEL_DIR
    _need(folder / "config.json")
    model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model.eval(), tokenizer
