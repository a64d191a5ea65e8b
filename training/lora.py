"""LoRA fine-tuning of the classifier (peft) and the checked merge.

Paper appendix E: LoRA on the attention query/key/value weights (r=8, alpha=16, dropout 0.05),
the classifier trainable in full, AdamW (lr 5e-4, weight decay 0.1), batch 64, linear decay to 0
after 10% warm-up, bf16 autocast on CUDA (fp32 master weights), plain fp32 on CPU.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from uehead.training.backbones import Family
from uehead.training.config import LoraSettings
from uehead.training.data import Encoded, collate, training_batches


class MergeParityError(RuntimeError):
    """Logits of the merged model differ from the adapter model's: the merge is broken."""


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is visible to torch; use --device cpu or auto")
    return torch.device(device)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, a no-op context on CPU (training stays fp32 there)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def add_lora(model, family: Family, settings: LoraSettings, task_type: str = "SEQ_CLS"):
    """Wrap ``model`` with peft LoRA adapters; the classifier is fully trainable (modules_to_save).
    ``task_type``: peft's name of the model's task (``SEQ_CLS``, ``TOKEN_CLS``)."""
    from peft import LoraConfig, TaskType, get_peft_model

    cfg = LoraConfig(task_type=TaskType[task_type], r=settings.r, lora_alpha=settings.alpha,
                     lora_dropout=settings.dropout, target_modules=list(family.lora_targets),
                     modules_to_save=[family.classifier_attr])
    return get_peft_model(model, cfg)


def finetune(model, family: Family, train: Encoded, *, pad_id: int, settings: LoraSettings, epochs: int,
             batch_size: int, seed: int, device: torch.device, progress: bool = True):
    """LoRA-fine-tune ``model`` on ``train`` (cross-entropy on the pooled logits); return the peft model.

    Seeded: LoRA init uses the torch RNG (seeded here), batch order ``RandomState(seed)``.
    """
    labels = torch.as_tensor(train.labels)

    def loss_of(idx: np.ndarray, logits: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits.float(), labels[idx].to(device))

    return train_lora(model, family, train.ids, loss_of, pad_id=pad_id, settings=settings, epochs=epochs,
                      batch_size=batch_size, seed=seed, device=device, progress=progress)


def train_lora(model, family: Family, ids: list[list[int]], loss_of, *, pad_id: int, settings: LoraSettings,
               epochs: int, batch_size: int, seed: int, device: torch.device, progress: bool = True,
               task_type: str = "SEQ_CLS"):
    """The LoRA training loop: AdamW, linear warm-up and decay, gradient clipping, over batches of
    the token-id rows ``ids``; ``loss_of(row_indices, logits)`` is the batch's loss. Returns the
    peft model in eval mode. Seeded as :func:`finetune`."""
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    peft_model = add_lora(model, family, settings, task_type).to(device)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr)
    steps_per_epoch = math.ceil(len(ids) / batch_size)
    total = steps_per_epoch * epochs
    sched = get_linear_schedule_with_warmup(opt, round(settings.warmup_ratio * total), total)
    rng = np.random.RandomState(seed)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    peft_model.train()
    bar = tqdm(total=total, desc="LoRA fine-tune", disable=not progress, unit="step")
    running = None
    for epoch in range(epochs):
        for idx in training_batches(lengths, batch_size, rng, settings.group_by_length):
            batch = {k: v.to(device) for k, v in collate([ids[i] for i in idx], pad_id).items()}
            with autocast(device):
                logits = peft_model(**batch).logits  # the model's own forward (incl. its dropout)
            loss = loss_of(idx, logits)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"LoRA training loss became {loss.item()} at epoch {epoch + 1}; "
                                         "lower the learning rate or check the data")
            loss.backward()
            if settings.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            running = loss.item() if running is None else 0.9 * running + 0.1 * loss.item()
            bar.set_postfix(epoch=epoch + 1, loss=f"{running:.4f}")
            bar.update()
    bar.close()
    peft_model.eval()
    return peft_model


@torch.no_grad()
def merge_checked(peft_model, probe: dict[str, torch.Tensor], atol: float = 1e-3):
    """``merge_and_unload()`` and compare full-model logits on ``probe`` before/after (fp32, eval).

    Returns ``(merged_model, max_abs_diff)``; raises :class:`MergeParityError` when the difference
    exceeds ``atol * max(1, max|logit|)``.
    """
    peft_model.eval()
    before = peft_model(**probe).logits.float()
    merged = peft_model.merge_and_unload()
    merged.eval()
    after = merged(**probe).logits.float()
    diff = float((before - after).abs().max())
    tol = atol * max(1.0, float(before.abs().max()))
    if not np.isfinite(diff) or diff > tol:
        raise MergeParityError(f"merge_and_unload changed the logits: max |before - after| = {diff:.3g} "
                               f"> tolerance {tol:.3g}. The merged checkpoint would not match the trained model.")
    return merged, diff
