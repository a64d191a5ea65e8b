"""int8 backbone: dynamic quantisation with per-channel int8 weights, and what it costs in accuracy.

:func:`quantize_backbone` writes the int8 graph with ``onnxruntime.quantization.quantize_dynamic``
(weights int8 per output channel, activations quantised at run time; per-channel measured clearly
more accurate than per-tensor). :func:`int8_report` measures int8 against fp32 ONNX Runtime on the
golden texts and, when a dataset is given, accuracy and uncertainty ROC-AUC on its test split.
Every uncertainty score here is **higher = more uncertain**.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from uehead.export.validate import max_abs_diffs, run_texts, scores
from uehead.scores import score_names

#: Ops whose weights are quantised (all weight matmuls). Embedding Gathers stay fp32: they are
#: lookups, with no arithmetic to speed up.
QUANTIZED_OPS = ("MatMul", "Gemm")


def quantize_backbone(fp32_path: str | Path, int8_path: str | Path, *, per_channel: bool = True) -> dict[str, Any]:
    """Write a dynamically quantised copy of ``fp32_path`` to ``int8_path``; return size info."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    with tempfile.TemporaryDirectory(dir=int8_path.parent) as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        # ONNX shape inference + ORT's basic graph optimisation first (the quantiser's recommended
        # input; symbolic shape inference gives up on the dynamic LLaMA mask, and is not needed).
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(int8_path), per_channel=per_channel, weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(QUANTIZED_OPS))
    _drop_value_info(int8_path)
    return {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "int8",
            "per_channel": per_channel, "ops": list(QUANTIZED_OPS),
            "fp32_bytes": fp32_path.stat().st_size, "int8_bytes": int8_path.stat().st_size}


def _drop_value_info(path: Path) -> None:
    """Remove intermediate shape annotations left by the quantiser's shape inference.

    With them, ONNX Runtime fuses each residual Add + LayerNormalization of a BERT graph into
    SkipLayerNormalization, which runs slower than the unfused pair in int8 graphs (see
    benchmarks/results). ORT infers shapes itself.
    """
    import onnx

    model = onnx.load(str(path))
    del model.graph.value_info[:]
    onnx.save(model, str(path))


def _auc(u: np.ndarray, errors: np.ndarray) -> float | None:
    from uehead.evaluation.metrics import roc_auc

    if errors.min(initial=0) == errors.max(initial=0):
        return None
    return float(roc_auc(u, errors))


def dataset_deltas(fp32, int8, tok, texts: Sequence[str], labels: np.ndarray,
                   heads: Mapping[str, Mapping[str, float]], *, batch_size: int = 32,
                   bootstrap: int = 200) -> dict[str, Any]:
    """Accuracy and ROC-AUC (x100, of each score against the model's errors) for fp32 and int8
    pipelines on one labelled split, tokenised by the runtime's TextTokenizer ``tok``; deltas are
    int8 - fp32. ``heads``: kind -> score kwargs.

    ``delta_se`` is the paired bootstrap standard error of each delta (``bootstrap`` resamples of
    the rows, seed 0): near-chance models flip many near-tie predictions under int8 noise, and the
    SE tells such noise from a real loss."""
    s32 = scores(run_texts(fp32, tok, texts, batch_size=batch_size), heads)
    s8 = scores(run_texts(int8, tok, texts, batch_size=batch_size), heads)
    labels = np.asarray(labels)
    ok32, ok8 = s32["label_ids"] == labels, s8["label_ids"] == labels
    rng = np.random.default_rng(0)
    samples = [rng.integers(0, len(labels), len(labels)) for _ in range(bootstrap if len(labels) else 0)]

    def entry(metric) -> dict[str, float] | None:
        a32, a8 = metric(np.arange(len(labels)), s32, ok32), metric(np.arange(len(labels)), s8, ok8)
        if a32 is None or a8 is None:
            return None
        deltas = [d for d in (_delta(metric, i, s32, ok32, s8, ok8) for i in samples) if d is not None]
        return {"fp32": 100 * a32, "int8": 100 * a8, "delta": 100 * (a8 - a32),
                "delta_se": float(100 * np.std(deltas)) if len(deltas) > 1 else None}

    out: dict[str, Any] = {"rows": len(texts), "label_flips": int((s32["label_ids"] != s8["label_ids"]).sum())}
    out["accuracy"] = entry(lambda i, s, ok: float(ok[i].mean()) if len(i) else None)
    out["roc_auc"] = {}
    for name in score_names(tuple(heads)):
        e = entry(lambda i, s, ok, name=name: _auc(s[name][i], (~ok[i]).astype(np.int8)))
        if e is not None:
            out["roc_auc"][name] = e
    out["max_abs_diff"] = max_abs_diffs(s32, s8)
    out["within_1_point"] = bool(abs(out["accuracy"]["delta"]) <= 1.0 and
                                 all(abs(v["delta"]) <= 1.0 for v in out["roc_auc"].values()))
    return out


def _delta(metric, idx, s32, ok32, s8, ok8) -> float | None:
    a, b = metric(idx, s32, ok32), metric(idx, s8, ok8)
    return None if a is None or b is None else b - a


def golden_deltas(fp32, int8, batch: Mapping[str, np.ndarray],
                  heads: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Max abs diff int8 vs fp32 of every output and score on one token batch (the golden set)."""
    o32, o8 = fp32(batch), int8(batch)
    s32, s8 = scores(o32, heads), scores(o8, heads)
    return {"max_abs_diff": {**max_abs_diffs(o32, o8), **max_abs_diffs(s32, s8)},
            "label_flips": int((s32["label_ids"] != s8["label_ids"]).sum())}
