"""The training stage's side of the checkpoint: what needs torch / transformers to write.

The layout, the training.json schema and every numpy / safetensors / JSON reader and writer live
in :mod:`uehead.checkpoint` (torch-free); they are re-exported here for the training code.
"""
from __future__ import annotations

from pathlib import Path

from uehead.checkpoint import (  # noqa: F401  (re-exported for the training stage)
    TRAINING_JSON,
    CheckpointError,
    is_checkpoint,
    model_dir,
    read_head,
    read_md,
    read_scores,
    read_training,
    write_head,
    write_json,
    write_md,
    write_scores,
    write_training,
)


def write_model(ckpt: str | Path, model, tokenizer) -> Path:
    """``save_pretrained`` of the merged model (safetensors) and its fast tokenizer into CKPT/model."""
    out = model_dir(ckpt)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
