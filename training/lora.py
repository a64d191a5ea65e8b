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
                     modules_to_save=list(family.classifier_attrs))
    return get_peft_model(model, cfg)


def finetune(model, family: Family, train: Encoded, *, pad_id: int, settings: LoraSettings, epochs: int,
             batch_size: int, seed: int, device: torch.device, progress: bool = True,
             select: Encoded | None = None, history: list | None = None):
    """LoRA-fine-tune ``model`` on ``train`` (cross-entropy on the pooled logits); return the peft model.

    With ``select`` (VALID rows) and ``settings.select_best_epoch``, the epoch with the best accuracy
    on ``select`` is kept. ``history`` (a list) receives one dict per epoch: mean training loss and
    the select accuracy. Seeded: LoRA init uses the torch RNG (seeded here), batch order
    ``RandomState(seed)``.
    """
    labels = torch.as_tensor(train.labels)

    def loss_of(idx: np.ndarray, logits: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits.float(), labels[idx].to(device))

    score = None
    if select is not None and settings.select_best_epoch:
        def score(peft_model) -> float:
            return accuracy_on(peft_model, select, pad_id=pad_id, device=device, batch_size=2 * batch_size)

    return train_lora(model, family, train.ids, loss_of, pad_id=pad_id, settings=settings, epochs=epochs,
                      batch_size=batch_size, seed=seed, device=device, progress=progress, score=score,
                      history=history)


@torch.no_grad()
def accuracy_on(model, enc: Encoded, *, pad_id: int, device: torch.device, batch_size: int = 128) -> float:
    """Accuracy of ``model``'s argmax logits on ``enc`` (eval mode, length-sorted batches); the
    model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    order = np.argsort(enc.lengths, kind="stable")
    correct = 0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in collate([enc.ids[i] for i in idx], pad_id).items()}
        with autocast(device):
            pred = model(**batch).logits.float().argmax(dim=-1).cpu().numpy()
        correct += int((pred == enc.labels[idx]).sum())
    model.train(was_training)
    return correct / max(1, len(order))


def train_lora(model, family: Family, ids: list[list[int]], loss_of, *, pad_id: int, settings: LoraSettings,
               epochs: int, batch_size: int, seed: int, device: torch.device, progress: bool = True,
               task_type: str = "SEQ_CLS", score=None, history: list | None = None):
    """The LoRA training loop: AdamW, linear warm-up and decay, gradient clipping, over batches of
    the token-id rows ``ids``; ``loss_of(row_indices, logits)`` is the batch's loss. Returns the
    peft model in eval mode. Seeded as :func:`finetune`.

    ``score(peft_model) -> float`` (higher = better), when given, runs after every epoch and the
    trainable weights of the best epoch (the earliest on ties) are restored at the end; ``history``
    receives ``{"epoch", "train_loss", "score"}`` per epoch and a final ``{"best_epoch"}``."""
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
    best_score, best_epoch, best_state = -np.inf, epochs, None
    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    for epoch in range(epochs):
        loss_sum, n_steps = 0.0, 0
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
            loss_sum, n_steps = loss_sum + loss.item(), n_steps + 1
            bar.set_postfix(epoch=epoch + 1, loss=f"{running:.4f}")
            bar.update()
        value = float(score(peft_model)) if score is not None else None
        if history is not None:
            history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(1, n_steps), "score": value})
        if value is not None and value > best_score:
            best_score, best_epoch = value, epoch + 1
            if epoch + 1 < epochs:  # the last epoch's weights are already in place
                best_state = {n: p.detach().clone() for n, p in trainable.items()}
            else:
                best_state = None
    bar.close()
    if best_state is not None:
        with torch.no_grad():
            for n, p in trainable.items():
                p.copy_(best_state[n])
    if history is not None:
        history.append({"best_epoch": best_epoch if score is not None else epochs})
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
