"""A FLOP model of BERT-style backbones, to report GFLOP/s against the CPU's measured peak.

Torch-free; reading dimensions from backbone.onnx needs ``onnx`` (else they come from the
checkpoint's config.json, or are unknown).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from uehead.checkpoint import resolve_model_dir

__all__ = ["backbone_dims", "bert_flops"]


def _dims_from_config(checkpoint: str | os.PathLike) -> dict[str, int] | None:
    cfg = json.loads((resolve_model_dir(checkpoint) / "config.json").read_text(encoding="utf-8"))
    if all(k in cfg for k in ("num_hidden_layers", "hidden_size", "intermediate_size")):
        return {"layers": int(cfg["num_hidden_layers"]), "hidden": int(cfg["hidden_size"]),
                "intermediate": int(cfg["intermediate_size"]), "source": "config.json"}
    return None


def _dims_from_onnx(bundle: str | os.PathLike) -> dict[str, int] | None:
    """Layers = the number of feed-forward blocks: hidden -> intermediate -> hidden weight pairs."""
    try:
        import onnx
    except ImportError:
        return None
    from uehead.bundle import read_manifest

    manifest = read_manifest(bundle)
    h = manifest.backbone.feature_size
    proto = onnx.load(str(Path(bundle) / manifest.backbone.file), load_external_data=False)
    shapes = [tuple(t.dims) for t in proto.graph.initializer if len(t.dims) == 2]
    up = [s[1] for s in shapes if s[0] == h and s[1] != h]
    down = {s[0] for s in shapes if s[1] == h and s[0] != h}
    inter = [d for d in up if d in down]
    if not inter:
        return None
    i = max(set(inter), key=inter.count)
    return {"layers": inter.count(i), "hidden": h, "intermediate": i, "source": "backbone.onnx weights"}


def backbone_dims(bundle: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> dict[str, int] | None:
    """``{"layers", "hidden", "intermediate", "pooled_row"}`` of a BERT-style backbone, from the
    checkpoint's config.json when given, else from backbone.onnx's weight shapes (needs ``onnx``);
    None if unknown. ``pooled_row``: the bundle's last layer computes only the pooled row
    (``manifest.reports["export"]["pooled_row"]``)."""
    dims = _dims_from_config(checkpoint) if checkpoint else None
    dims = dims if dims is not None else _dims_from_onnx(bundle)
    if dims is not None:
        from uehead.bundle import read_manifest

        report = (read_manifest(bundle).reports.get("export") or {}).get("pooled_row") or {}
        dims = {**dims, "pooled_row": bool(report.get("applied"))}
    return dims


def bert_flops(dims: dict[str, int], shapes: Sequence[tuple[int, int]]) -> float:
    """FLOPs (2 per multiply-add) of a BERT encoder + pooler forward for padded (batch, seq) shapes:
    per layer and token 4h^2 (Q, K, V, O) + 2hi (FFN), per layer and sequence 2 s^2 h (QK^T, AV),
    per sequence h^2 (pooler). With ``dims["pooled_row"]`` the last layer runs K and V on every
    token and the rest on one row: 2 s h^2 + 2h^2 + 2hi + 2 s h. Embedding lookups, norms and
    activations are left out (<1%)."""
    L, h, i = dims["layers"], dims["hidden"], dims["intermediate"]
    cut = bool(dims.get("pooled_row"))
    macs = 0
    for b, s in shapes:
        full = s * (4 * h * h + 2 * h * i) + 2 * s * s * h
        last = 2 * s * h * h + 2 * h * h + 2 * h * i + 2 * s * h if cut else full
        macs += b * ((L - 1) * full + last + h * h)
    return 2.0 * macs
