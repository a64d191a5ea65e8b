"""Per-layer mixed quantisation of a backbone: each weight MatMul gets int8, 4-bit or fp32 from its
measured sensitivity.

Why: dynamic int8 (:mod:`uehead.export.quantize`) gives each MatMul input ONE scale per tensor, so
a decoder's activation spikes (huge values in some MLP down-projections, e.g. SmolLM2) flatten all
other values of the batch to a few levels. Such a layer is smoothed (SmoothQuant: input channels
divided by scales multiplied into its weight rows and folded into the producing MatMul's weight
columns, exact in fp32) and kept in fast int8, or gets 4-bit weight-only ``MatMulNBits`` (whose
``accuracy_level`` 4 quantises the input per row and block, so a spike coarsens only its block), or
stays fp32.

Sensitivity (:func:`measure_sensitivity`): one fp32 pass over the calibration feeds captures every
weight MatMul's input; each candidate's quantisation is simulated in numpy on that layer alone and
its sensitivity is the mean over the real (unpadded) tokens of the relative error of the layer's
output, ``||y_q - y|| / ||y||`` per token. Per token, not per tensor: a spike token's large output
would otherwise hide the error of all the others. Simulated as ONNX Runtime computes them:

* ``int8``: input asymmetric uint8, one scale per tensor (``DynamicQuantizeLinear``); weights
  symmetric int8 per output channel;
* ``int8_smooth``: ``int8`` on the smoothed input and weights; scales ``s_c = max|x_c|^alpha /
  max|w_c|^(1 - alpha)`` from the calibration inputs (``alpha`` = ``smooth_alpha``). Only for a
  layer whose input is ``Mul(a, MatMul(x, W_prev))`` with ``W_prev`` and each tensor on that path
  used only there (LLaMA's down-projection: ``silu(gate) * up``), else its error is inf;
* ``int4``: weights asymmetric 4-bit per block of ``block_size`` input rows; input symmetric int8 per
  token and block (``MatMulNBits`` with ``accuracy_level`` 4);
* ``fp32``: error 0.

:func:`choose_layers` gives each layer the first candidate (in the order given, fastest first)
whose error is at most ``tolerance``, else fp32. :func:`quantize_mixed` measures, chooses, writes
the graph and checks the result end to end on the same feeds (relative error of the output
feature z per row); its report is meant for ``manifest.reports``.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from uehead.export.layer_sensitivity import (CALIBRATION_ROWS, CANDIDATES, DEFAULT_BLOCK_SIZE, DEFAULT_SMOOTH_ALPHA,
                                             _check_candidates, _feed, _row_errors, calibration_feeds,
                                             measure_sensitivity, smoothing_sites, weight_matmuls)

__all__ = ["CALIBRATION_ROWS", "CANDIDATES", "DEFAULT_ACCURACY_LEVEL", "DEFAULT_BLOCK_SIZE", "DEFAULT_SMOOTH_ALPHA",
           "DEFAULT_TOLERANCE", "available_candidates", "calibration_feeds", "choose_layers", "measure_sensitivity",
           "quantize_mixed", "weight_matmuls", "write_mixed"]

#: Default max mean per-token relative output error of one layer. SmolLM2-135M on Rotten Tomatoes
#: (benchmarks/bench_decoder_quant.py): most layers sit near 0.02-0.05 under int8, the down-projections
#: at 0.1-0.95 (0.03-0.1 smoothed), the v-projections near 0.08-0.12; at 0.06 accuracy and AdUE
#: ROC-AUC stayed within 0.2 points of fp32 on the test split, at 0.1 accuracy fell 1-2 points.
DEFAULT_TOLERANCE = 0.06
DEFAULT_ACCURACY_LEVEL = 4


def available_candidates(candidates: Sequence[str] = CANDIDATES) -> tuple[str, ...]:
    """``candidates`` less ``int4`` when onnxruntime's 4-bit quantiser cannot be imported (it needs
    the ``onnx-ir`` package, which onnxruntime does not install)."""
    import importlib.util

    if "int4" in candidates and importlib.util.find_spec("onnx_ir") is None:
        return tuple(c for c in candidates if c != "int4")
    return tuple(candidates)


def choose_layers(sensitivity: Sequence[Mapping[str, Any]], *, tolerance: float,
                  candidates: Sequence[str] = CANDIDATES) -> dict[str, str]:
    """Layer name -> the first candidate whose measured error is at most ``tolerance`` (fp32 when
    none is: tolerance 0 keeps every layer fp32)."""
    _check_candidates(candidates)
    choice = {}
    for layer in sensitivity:
        errors = layer["error"]
        fits = [c for c in candidates if c == "fp32" or
                (math.isfinite(errors.get(c, math.inf)) and errors[c] <= tolerance)]  # unmeasured: never
        choice[layer["name"]] = fits[0] if fits else "fp32"
    return choice


# -- writing ---------------------------------------------------------------------------------------

def write_mixed(fp32_path: str | Path, out_path: str | Path, choices: Mapping[str, str], *,
                block_size: int = DEFAULT_BLOCK_SIZE, accuracy_level: int = DEFAULT_ACCURACY_LEVEL,
                sensitivity: Sequence[Mapping[str, Any]] = ()) -> None:
    """Write ``fp32_path`` with each weight MatMul quantised as ``choices`` says (name -> a
    candidate; missing names stay fp32). Node names are those of ``fp32_path`` itself, as
    :func:`measure_sensitivity` reports them; ``int8_smooth`` layers take their scales from its
    result ``sensitivity``."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from uehead.export.quantize import _drop_value_info

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    bad = {k: v for k, v in choices.items() if v not in CANDIDATES}
    if bad:
        raise ValueError(f"unknown choices {bad}; each must be one of {CANDIDATES}")
    model = onnx.load(str(fp32_path))
    layers = {l["name"]: l for l in weight_matmuls(model)}
    smooth = {l["name"]: l for l in sensitivity if choices.get(l["name"]) == "int8_smooth"}
    missing = sorted(n for n, c in choices.items() if c == "int8_smooth" and "smooth_scales" not in smooth.get(n, {}))
    if missing:
        raise ValueError(f"int8_smooth layers {missing} have no smoothing scales in `sensitivity`")
    if smooth:
        _fold_smoothing(model, layers, smooth)
    int4 = sorted(n for n in layers if choices.get(n) == "int4")
    int8 = sorted(n for n in layers if choices.get(n) in ("int8", "int8_smooth"))
    if int4:
        root = logging.getLogger()
        level = root.level  # the quantiser's module calls logging.basicConfig(level=INFO) on import
        try:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        except ImportError as exc:  # onnx-ir is a dependency of the quantiser, not of onnxruntime
            raise ImportError(f"4-bit layers need onnxruntime's MatMulNBitsQuantizer ({exc}); "
                              "pip install onnx-ir") from exc
        finally:
            root.setLevel(level)
        others = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in int4]
        quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=False,
                                         accuracy_level=accuracy_level, nodes_to_exclude=others)
        quantizer.process()
        model = quantizer.model.model
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        stage = Path(tmp) / "stage.onnx"
        onnx.save(model, str(stage))
        del model
        if int8:
            # MatMulNBits outputs carry no ONNX type for the quantiser's shape inference; all are float32.
            quantize_dynamic(str(stage), str(out_path), per_channel=True, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul"], nodes_to_quantize=int8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        else:
            stage.replace(out_path)
    _drop_value_info(out_path)


def _fold_smoothing(model, layers: Mapping[str, Mapping[str, Any]], smooth: Mapping[str, Mapping[str, Any]]) -> None:
    """Multiply each smoothed layer's weight rows by its scales and divide the producing MatMul's
    weight columns by them (in place): the product, and so the fp32 output, is unchanged."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    sites = smoothing_sites(model)
    for name, entry in smooth.items():
        if sites.get(name) != entry["smooth_into"]:
            raise ValueError(f"{name}: the graph no longer has the smoothing site the sensitivity measured")
        s = np.asarray(entry["smooth_scales"], np.float32)
        w, prev = inits[layers[name]["weight"]], inits[entry["smooth_into"]]
        w_arr, prev_arr = numpy_helper.to_array(w), numpy_helper.to_array(prev)
        if w_arr.shape[0] != len(s) or prev_arr.shape[1] != len(s):
            raise ValueError(f"{name}: smoothing scales do not match the weights' shapes")
        w.CopyFrom(numpy_helper.from_array((w_arr * s[:, None]).astype(w_arr.dtype), w.name))
        prev.CopyFrom(numpy_helper.from_array((prev_arr / s[None, :]).astype(prev_arr.dtype), prev.name))


def _features(path: str | Path, feeds: Sequence[Mapping[str, np.ndarray]], threads: int) -> list[np.ndarray]:
    from uehead.runtime.session import make_session

    session = make_session(path, threads=threads)
    out = session.get_outputs()[0].name
    return [session.run([out], _feed(session, b))[0] for b in feeds]


def quantize_mixed(fp32_path: str | Path, out_path: str | Path,
                   calibration_feeds: Sequence[Mapping[str, np.ndarray]], *,
                   tolerance: float = DEFAULT_TOLERANCE, candidates: Sequence[str] = CANDIDATES,
                   block_size: int = DEFAULT_BLOCK_SIZE, accuracy_level: int = DEFAULT_ACCURACY_LEVEL,
                   smooth_alpha: float = DEFAULT_SMOOTH_ALPHA,
                   sensitivity: Sequence[Mapping[str, Any]] | None = None, threads: int = 1,
                   check: bool = True) -> dict[str, Any]:
    """Quantise each weight MatMul of ``fp32_path`` as its measured sensitivity allows; write
    ``out_path``; return the report (for ``manifest.reports``).

    Args:
        calibration_feeds: token batches of training sentences (:func:`calibration_feeds`).
        tolerance: max mean per-token relative output error a layer may take (0: all fp32).
        candidates: allowed precisions, preferred first; fp32 is always the fallback; ``int4`` is
            dropped (and listed under ``unavailable``) without the ``onnx-ir`` package.
        block_size, accuracy_level: of the 4-bit ``MatMulNBits`` layers.
        smooth_alpha: migration strength of the ``int8_smooth`` scales (0: none, 1: all onto weights).
        sensitivity: a previous :func:`measure_sensitivity` result of the same graph (skips the pass).
        threads: ONNX Runtime intra-op threads for the calibration passes.
        check: run fp32 and the written graph on the feeds and report the relative error of the
            graph's output (z) per row: ``check.features_rel_error_{mean,max}``.
    """
    asked, candidates = tuple(candidates), available_candidates(candidates)
    if sensitivity is None:
        sensitivity = measure_sensitivity(fp32_path, calibration_feeds, candidates=candidates,
                                          block_size=block_size, smooth_alpha=smooth_alpha, threads=threads)
    choices = choose_layers(sensitivity, tolerance=tolerance, candidates=candidates)
    write_mixed(fp32_path, out_path, choices, block_size=block_size, accuracy_level=accuracy_level,
                sensitivity=sensitivity)
    counts = {c: sum(v == c for v in choices.values()) for c in CANDIDATES}
    report: dict[str, Any] = {
        "method": "per-layer mix: int8 dynamic per-channel | int8 after smoothing | 4-bit MatMulNBits | fp32",
        "sensitivity": "mean per-token relative output error of the layer alone, simulated on the "
                       "calibration feeds' captured fp32 inputs",
        "tolerance": tolerance, "candidates": list(candidates),
        "unavailable": [c for c in asked if c not in candidates], "block_size": block_size,
        "accuracy_level": accuracy_level, "smooth_alpha": smooth_alpha, "calibration_batches": len(calibration_feeds),
        "calibration_rows": int(sum(len(b["input_ids"]) for b in calibration_feeds)),
        "counts": counts,
        "fp32_bytes": Path(fp32_path).stat().st_size, "bytes": Path(out_path).stat().st_size,
        "layers": [{"name": l["name"], "shape": list(l["shape"]), "choice": choices[l["name"]],
                    "error": {k: float(v) if math.isfinite(v) else None for k, v in l["error"].items()},
                    "input_outlier_ratio": float(l["input_outlier_ratio"])} for l in sensitivity],
    }
    if check:
        z32, zq = _features(fp32_path, calibration_feeds, threads), _features(out_path, calibration_feeds, threads)
        errs = np.concatenate([_row_errors(a.reshape(len(a), -1), b.reshape(len(b), -1)) for a, b in zip(z32, zq)])
        report["check"] = {"features_rel_error_mean": float(errs.mean()), "features_rel_error_max": float(errs.max())}
    return report
