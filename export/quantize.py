"""int8 backbone: quantisation with per-channel int8 weights, and what it costs in accuracy.

:func:`quantize_backbone` writes the int8 graph, by default with
``onnxruntime.quantization.quantize_dynamic`` (weights int8 per output channel, activations
quantised at run time; per-channel measured clearly more accurate than per-tensor); ``static``
(QDQ, activation scales calibrated on the dataset's train texts) is the alternative. On an AVX-512
VNNI CPU with ONNX Runtime 1.32, dynamic on the unfused graph measured fastest, ahead of static (also
further from fp32) and of dynamic on a fused graph (README "Speed"; :mod:`uehead.export.optimize`).
:func:`golden_deltas` and :func:`dataset_deltas` measure int8 against fp32 ONNX Runtime on the golden
texts and on a dataset's test split (accuracy and uncertainty ROC-AUC).
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
#: In a fused graph (:mod:`uehead.export.optimize`) the attention projections live inside ``Attention``
#: nodes, which dynamic quantisation turns into ``QAttention``.
FUSED_QUANTIZED_OPS = (*QUANTIZED_OPS, "Attention")
#: ``dynamic``: activation scales computed per batch at run time (no calibration data; the default:
#: fastest measured). ``static``: QDQ with activation scales fixed from calibration texts (MinMax).
INT8_METHODS = ("dynamic", "static")
#: Calibration sentences for ``static``: this many from the dataset's train split (seed 0).
CALIBRATION_TEXTS = 200
CALIBRATION_BATCH = 16


def quantize_backbone(fp32_path: str | Path, int8_path: str | Path, *, per_channel: bool = True,
                      method: str = "dynamic", calibration: Sequence[Mapping[str, np.ndarray]] = (),
                      calibration_source: str | None = None, fused: bool = False) -> dict[str, Any]:
    """Write an int8 copy of the fp32 backbone ``fp32_path`` to ``int8_path``; return what was done.

    Args:
        per_channel: one weight scale per output channel (measured clearly more accurate).
        method: one of :data:`INT8_METHODS`.
        calibration: token batches (input name -> int64 [batch, sequence]) whose activation ranges
            fix the ``static`` scales; ``calibration_source`` says where their texts came from.
        fused: ``fp32_path`` holds ONNX Runtime's fused operators (``Attention`` is quantised too).
    Returns:
        The report recorded in ``manifest.reports["int8"]``: method, formats, ops, calibration, sizes.
    """
    if method not in INT8_METHODS:
        raise ValueError(f"int8 method {method!r}; use one of {INT8_METHODS}.")
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    ops = list(FUSED_QUANTIZED_OPS if fused and method == "dynamic" else QUANTIZED_OPS)
    with tempfile.TemporaryDirectory(dir=int8_path.parent) as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        _preprocess(fp32_path, pre, fused=fused)
        if method == "dynamic":
            report = _dynamic(pre, int8_path, per_channel, ops, fused)
        else:
            if not calibration:
                raise ValueError("static int8 needs calibration token batches.")
            report = _static(pre, int8_path, per_channel, ops, calibration, calibration_source)
    _drop_value_info(int8_path)
    return {**report, "weight_type": "int8", "per_channel": per_channel, "ops": ops, "fused_graph": fused,
            "fp32_bytes": fp32_path.stat().st_size, "int8_bytes": int8_path.stat().st_size}


def _preprocess(src: Path, dst: Path, *, fused: bool) -> None:
    """Shape information for the quantiser. Plain graphs: ONNX shape inference + ORT's basic graph
    optimisation (the quantiser's recommended input; symbolic shape inference gives up on the dynamic
    LLaMA mask, and is not needed). Fused graphs: symbolic shape inference, the one that knows the
    com.microsoft operators (without types on their outputs, calibration skips those tensors)."""
    import onnx

    if fused:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(str(src)), auto_merge=True), str(dst))
        return
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def _dynamic(src: Path, dst: Path, per_channel: bool, ops: list[str], fused: bool) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # A fused graph's com.microsoft outputs carry no ONNX type; they are all float32.
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT} if fused else None
    quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=QuantType.QInt8,
                     op_types_to_quantize=ops, extra_options=extra)
    return {"method": "dynamic", "quantizer": "onnxruntime.quantization.quantize_dynamic",
            "activations": "uint8, scale per batch at run time", "calibration": None}


def _static(src: Path, dst: Path, per_channel: bool, ops: list[str], calibration, source) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    names = [i.name for i in onnx.load(str(src), load_external_data=False).graph.input]
    batches = [{n: np.ascontiguousarray(b[n], dtype=np.int64) for n in names} for b in calibration]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            return next(self._it, None)

    # uint8 activations: the u8 x s8 VNNI kernels (int8 activations measured 2x slower).
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=ops,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return {"method": "static", "quantizer": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "activations": "uint8, scales fixed by calibration",
            "calibration": {"method": "MinMax", "texts": int(sum(len(b[names[0]]) for b in batches)),
                            "batches": len(batches), "source": source}}


def calibration_batches(tok, texts: Sequence[str], *, count: int = CALIBRATION_TEXTS,
                        batch_size: int = CALIBRATION_BATCH) -> list[dict[str, np.ndarray]]:
    """Token batches of ``count`` texts drawn (seed 0) from ``texts``, tokenised by the runtime's
    TextTokenizer ``tok`` (the bundle's own tokenizer, so the ranges are the runtime's)."""
    texts = list(texts)
    pick = np.random.default_rng(0).permutation(len(texts))[:count]
    chosen = [texts[i] for i in sorted(pick)]
    return [tok(chosen[i:i + batch_size]) for i in range(0, len(chosen), batch_size)]


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
