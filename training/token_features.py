"""Word features for token classification: z of a word = the last hidden state at its first
sub-token (in the window it is predicted in), and its tag logits = the token classifier on z.

Batched, no grad, fp32, windows in length order; the results come back in word order (scored words
only: those that made at least one token).
"""
from __future__ import annotations

import numpy as np
import torch

from uehead.training.backbones import Family, classifier_module
from uehead.training.data import collate, sorted_batches
from uehead.training.features import Features, PoolingMismatchError
from uehead.training.token_data import TokenEncoded


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _hidden(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Last hidden states [B, T, H] of the backbone under the token classifier."""
    return _base(model).base_model(**batch).last_hidden_state


def _gather(hidden: torch.Tensor, rows: list[int], positions: np.ndarray) -> torch.Tensor:
    return hidden[torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(positions, dtype=torch.long)]


@torch.no_grad()
def extract_words(model, family: Family, enc: TokenEncoded, *, pad_id: int, device: torch.device,
                  batch_size: int = 128, desc: str = "features", progress: bool = True) -> Features:
    """``Features`` of the scored words of ``enc`` (z [n, H], logits [n, C], gold tags), word order."""
    from tqdm.auto import tqdm

    model.eval()
    classifier = classifier_module(_base(model), family)
    words = enc.window_words()
    scored = np.flatnonzero(enc.scored)
    slot = np.full(len(enc.tags), -1, np.int64)
    slot[scored] = np.arange(len(scored))
    z_out = l_out = None
    lengths = np.fromiter((len(x) for x in enc.ids), np.int64, len(enc))
    for idx in tqdm(list(sorted_batches(lengths, batch_size)), desc=desc, disable=not progress, unit="batch"):
        batch = {k: v.to(device) for k, v in collate([enc.ids[i] for i in idx], pad_id).items()}
        rows = [r for r, w in enumerate(idx) for _ in range(len(words[w]))]
        if not rows:
            continue
        which = np.concatenate([words[w] for w in idx])
        z = _gather(_hidden(model, batch).float(), rows, enc.windows.word_position[which])
        logits = classifier(z).float()
        if z_out is None:
            z_out = np.empty((len(scored), z.shape[1]), np.float32)
            l_out = np.empty((len(scored), logits.shape[1]), np.float32)
        z_out[slot[which]] = z.cpu().numpy()
        l_out[slot[which]] = logits.cpu().numpy()
    if z_out is None:
        raise ValueError(f"{desc}: no word made a token; nothing to extract features from")
    return Features(z_out, l_out, enc.tags[scored])


@torch.no_grad()
def check_token_classifier(model, family: Family, enc: TokenEncoded, pad_id: int, device: torch.device,
                           rows: int = 64, atol: float = 1e-4) -> float:
    """Max |model(**batch).logits - classifier(z)| at the words' first sub-tokens of the first
    ``rows`` windows; raises :class:`PoolingMismatchError` beyond tolerance."""
    model.eval()
    idx = list(range(min(rows, len(enc))))
    words = enc.window_words()
    batch = {k: v.to(device) for k, v in collate([enc.ids[i] for i in idx], pad_id).items()}
    pick = [r for r in idx for _ in range(len(words[r]))]
    positions = np.concatenate([enc.windows.word_position[words[r]] for r in idx])
    full = _gather(model(**batch).logits.float(), pick, positions)
    ours = classifier_module(_base(model), family)(_gather(_hidden(model, batch).float(), pick, positions)).float()
    if not pick:
        return 0.0
    diff = float((full - ours).abs().max())
    if not np.isfinite(diff) or diff > atol * max(1.0, float(full.abs().max())):
        raise PoolingMismatchError(f"the token classifier on the last hidden states differs from the model's "
                                   f"logits by {diff:.3g} ({family.name})")
    return diff
