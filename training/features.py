"""Feature extraction: z (METHOD.md, per architecture) and task logits, batched, no grad, fp32.

Rows are processed in length order (less padding) and scattered back to the split's order. Always
fp32, even on CUDA, so training-time scores match the fp32 ONNX graph served later.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from uehead.training.backbones import Family, classify, pool
from uehead.training.data import Encoded, collate, sorted_batches


class PoolingMismatchError(RuntimeError):
    """classifier(z) does not reproduce the model's own logits: z is not what the classifier consumes."""


@dataclass(frozen=True)
class Features:
    """z [N, H] and logits [N, C] (float32) of one split, in the split's row order, plus labels."""

    z: np.ndarray
    logits: np.ndarray
    labels: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    @property
    def errors(self) -> np.ndarray:
        """e_i = [y_hat_i != y_i] as int8 (1 = the model is wrong)."""
        return (self.predictions != self.labels).astype(np.int8)


@torch.no_grad()
def extract(model, family: Family, data: Encoded, *, pad_id: int, device: torch.device, batch_size: int = 128,
            desc: str = "features", progress: bool = True) -> Features:
    """z and logits = classifier(z) for every row of ``data`` (model in eval mode)."""
    from tqdm.auto import tqdm

    model.eval()
    n = len(data)
    z_out: np.ndarray | None = None
    l_out: np.ndarray | None = None
    batches = list(sorted_batches(data.lengths, batch_size))
    for idx in tqdm(batches, desc=desc, disable=not progress, unit="batch"):
        batch = {k: v.to(device) for k, v in collate([data.ids[i] for i in idx], pad_id).items()}
        z = pool(model, family, **batch).float()
        logits = classify(model, family, z).float()
        if z_out is None:
            z_out = np.empty((n, z.shape[1]), dtype=np.float32)
            l_out = np.empty((n, logits.shape[1]), dtype=np.float32)
        z_out[idx] = z.cpu().numpy()
        l_out[idx] = logits.cpu().numpy()
    if z_out is None:
        raise ValueError(f"{desc}: no rows to extract features from")
    return Features(z_out, l_out, np.asarray(data.labels))


@torch.no_grad()
def check_pooling(model, family: Family, batch: dict[str, torch.Tensor], atol: float = 1e-4) -> float:
    """Max |model(**batch).logits - classifier(z)|; raises :class:`PoolingMismatchError` beyond tolerance."""
    model.eval()
    full = model(**batch).logits.float()
    ours = classify(model, family, pool(model, family, **batch)).float()
    diff = float((full - ours).abs().max())
    if not np.isfinite(diff) or diff > atol * max(1.0, float(full.abs().max())):
        raise PoolingMismatchError(
            f"classifier(z) differs from the model's logits by {diff:.3g} ({family.name}, pooling "
            f"{family.pooling!r}); for decoders, make sure the text does not contain the pad token")
    return diff
