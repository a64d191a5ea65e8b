"""Bundle assembly: the manifest, golden.json, baselines.npz and the writer's versions.

File names inside a bundle are fixed here; checksums are filled by
:func:`uehead.bundle.write_manifest` from the files on disk.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from uehead.export.checkpoint import HEAD_ORDER, Checkpoint
from uehead.export.errors import CheckpointError
from uehead.export.graphs import FEATURES, TASK_LOGITS, head_output_name

from uehead._extras import installed_versions
from uehead.bundle import (
    BackboneSpec,
    FileSpec,
    HeadSpec,
    Manifest,
    TokenizerSpec,
    UncertaintyHeadSpec,
    write_manifest,
)

TOKENIZER_FILE = "tokenizer.json"
BACKBONE_FILE = "backbone.onnx"
HEAD_FILE = "head.onnx"
BASELINES_FILE = "baselines.npz"
GOLDEN_FILE = "golden.json"
BASELINE_KEYS = ("class_means", "precision", "global_mean", "global_precision")
_VERSIONED = ("uehead", "torch", "transformers", "onnx", "onnxruntime", "optimum", "optimum-onnx", "tokenizers",
              "numpy")


def writer_versions() -> dict[str, str]:
    """Installed versions of uehead and the stack that wrote the bundle (missing ones omitted)."""
    return installed_versions(_VERSIONED)


def choose_default_head(available: Sequence[str], requested: str | None) -> str:
    """The score that fills ``Predictions.uncertainty``: ``requested``, else the first of adue,
    alien present, else "sr"."""
    if requested is not None:
        if requested != "sr" and requested not in available:
            raise CheckpointError(f"default head {requested!r} was not trained (heads: {list(available) or 'none'}).",
                                  fix=f"pass --default-head as one of {[*available, 'sr']}.")
        return requested
    return next((k for k in HEAD_ORDER if k in available), "sr")


def copy_baselines(ckpt: Checkpoint, out_dir: Path) -> FileSpec | None:
    """Copy CKPT/baselines/md.npz (raw z statistics) after checking its arrays; None when absent."""
    src = ckpt.baselines_file
    if not src.is_file():
        return None
    fix = "re-run `uehead train` (it writes baselines/md.npz with np.savez)."
    try:
        with np.load(src, allow_pickle=False) as npz:
            missing = [k for k in BASELINE_KEYS if k not in npz.files]
            arrays = {k: npz[k] for k in BASELINE_KEYS if k in npz.files}
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot be read as a numpy .npz without pickles ({exc}).", path=src, fix=fix) from exc
    if missing:
        raise CheckpointError(f"lacks arrays {missing}.", path=src, fix=fix)
    if not all(np.isfinite(a).all() for a in arrays.values()):
        raise CheckpointError("holds NaN or inf.", path=src, fix=fix)
    shutil.copyfile(src, out_dir / BASELINES_FILE)
    return FileSpec(BASELINES_FILE, "", {"l2_normalize": False})


def golden_payload(texts: Sequence[str], scores: Mapping[str, np.ndarray], kinds: Sequence[str], *,
                   source: str, tolerance: float) -> dict[str, Any]:
    """golden.json as the runtime's ``verify`` reads it (scores from ``validate.scores``)."""
    return {
        "texts": list(texts),
        "tolerance": float(tolerance),
        "source": source,
        "label_ids": [int(x) for x in scores["label_ids"]],
        "probs": np.asarray(scores["probs"], np.float64).tolist(),
        "softmax_response": np.asarray(scores["softmax_response"], np.float64).tolist(),
        "entropy": np.asarray(scores["entropy"], np.float64).tolist(),
        "heads": {k: np.asarray(scores[f"uncertainty_{k}"], np.float64).tolist() for k in kinds},
    }


def write_golden(out_dir: Path, payload: Mapping[str, Any]) -> FileSpec:
    (out_dir / GOLDEN_FILE).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return FileSpec(GOLDEN_FILE, "", {"texts": len(payload["texts"]), "source": payload["source"],
                                      "tolerance": payload["tolerance"]})


def build_manifest(ckpt: Checkpoint, *, input_names: Sequence[str], pad_token_id: int, feature_size: int,
                   precision: str, backbone_parameters: int, head_parameters: int, default_head: str,
                   baselines: FileSpec | None, golden: FileSpec | None, reports: Mapping[str, Any]) -> Manifest:
    """The manifest (checksums empty: :func:`finish` fills them)."""
    heads = tuple(
        UncertaintyHeadSpec(kind=kind, output_name=head_output_name(kind), lam=h.lam,
                            hyperparameters=dict(h.meta.get("hyperparameters") or {}),
                            validation=dict(h.meta.get("validation") or {}))
        for kind, h in ckpt.heads.items())
    return Manifest(
        labels=ckpt.label_names,
        tokenizer=TokenizerSpec(file=TOKENIZER_FILE, sha256="", max_length=ckpt.max_length,
                                pad_token_id=int(pad_token_id), truncation_side="right",
                                model_input_names=tuple(input_names)),
        backbone=BackboneSpec(file=BACKBONE_FILE, sha256="", input_names=tuple(input_names), output_name=FEATURES,
                              feature_size=int(feature_size), architecture=ckpt.architecture, pooling=ckpt.pooling,
                              precision=precision, num_parameters=int(backbone_parameters)),
        head=HeadSpec(file=HEAD_FILE, sha256="", input_name=FEATURES, task_logits_name=TASK_LOGITS,
                      num_classes=len(ckpt.label_names), heads=heads, default_kind=default_head,
                      num_parameters=int(head_parameters)),
        writer=writer_versions(),
        baselines=baselines,
        golden=golden,
        reports=dict(reports),
    )


def training_summary(ckpt: Checkpoint) -> dict[str, Any]:
    """The parts of training.json a bundle user wants to see (model, data, accuracy, ROC-AUC)."""
    keys = ("model", "data", "architecture", "pooling", "max_length", "seed", "epochs", "accuracy",
            "roc_auc_test", "merge_max_abs_diff", "uehead_version")
    return {k: ckpt.training[k] for k in keys if k in ckpt.training}


def finish(out_dir: Path, manifest: Manifest) -> Manifest:
    """Fill checksums and write manifest.json; return the manifest as written."""
    from uehead.bundle import read_manifest

    write_manifest(out_dir, manifest)
    return read_manifest(out_dir)
