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
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

#: Candidates, fastest first on the AVX-512 VNNI CPUs measured (benchmarks/bench_decoder_quant.py):
#: int8 dynamic MatMuls, then the same after smoothing (no run-time cost), then 4-bit ``MatMulNBits``
#: (barely faster than fp32, but 8x smaller), then fp32.
CANDIDATES = ("int8", "int8_smooth", "int4", "fp32")
#: Default max mean per-token relative output error of one layer. SmolLM2-135M on Rotten Tomatoes
#: (benchmarks/bench_decoder_quant.py): most layers sit near 0.02-0.05 under int8, the down-projections
#: at 0.1-0.95 (0.03-0.1 smoothed), the v-projections near 0.08-0.12; at 0.06 accuracy and AdUE
#: ROC-AUC stayed within 0.2 points of fp32 on the test split, at 0.1 accuracy fell 1-2 points.
DEFAULT_TOLERANCE = 0.06
DEFAULT_BLOCK_SIZE = 32
DEFAULT_ACCURACY_LEVEL = 4
DEFAULT_SMOOTH_ALPHA = 0.8
#: Training sentences the sensitivity is measured on (4 batches of 32).
CALIBRATION_ROWS = 128
_EPS = 1e-12


def weight_matmuls(model) -> list[dict[str, Any]]:
    """The MatMul nodes of an ``onnx.ModelProto`` whose second input is a 2-D initializer (the
    layers that can be quantised): name, activation input, weight name, weight shape [K, N]."""
    inits = {t.name: t for t in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits and len(inits[node.input[1]].dims) == 2:
            out.append({"name": node.name, "input": node.input[0], "weight": node.input[1],
                        "shape": [int(d) for d in inits[node.input[1]].dims]})
    names = [n["name"] for n in out]
    if len(set(names)) != len(names) or not all(names):
        raise ValueError("weight MatMul nodes need unique, non-empty names to be quantised per layer")
    return out


def calibration_feeds(tok, texts: Sequence[str], *, batch_size: int = 32, count: int | None = None,
                      seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Token batches of ``texts`` (training sentences, never the test split) as the runtime batches
    them: grouped by token length, padded to the longest of each batch. ``count``: that many texts
    drawn without replacement (``seed``), default all. ``tok``: the bundle's
    :class:`~uehead.runtime.tokenize.TextTokenizer`."""
    texts = list(texts)
    if count is not None and count < len(texts):
        texts = [texts[i] for i in np.random.default_rng(seed).choice(len(texts), size=count, replace=False)]
    ids = tok.encode(texts)
    order = np.argsort(np.asarray([len(x) for x in ids], dtype=np.int64), kind="stable")
    return [tok.pad([ids[i] for i in order[s:s + batch_size]]) for s in range(0, len(ids), batch_size)]


# -- simulated quantisers (numpy twins of what ONNX Runtime computes) ------------------------------

def _int8_weight(w: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.abs(w).max(axis=0, keepdims=True), _EPS) / 127.0
    return (np.clip(np.rint(w / scale), -127, 127) * scale).astype(np.float32)


def _uint8_dynamic(a: np.ndarray) -> np.ndarray:
    lo, hi = min(float(a.min()), 0.0), max(float(a.max()), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zp = np.clip(np.rint(-lo / scale), 0, 255)
    return ((np.clip(np.rint(a / scale) + zp, 0, 255) - zp) * scale).astype(np.float32)


def _int4_weight(w: np.ndarray, block: int) -> np.ndarray:
    k, n = w.shape
    pad = (-k) % block
    wb = np.pad(w, ((0, pad), (0, 0))).reshape(-1, block, n)
    lo, hi = np.minimum(wb.min(axis=1, keepdims=True), 0), np.maximum(wb.max(axis=1, keepdims=True), 0)
    scale = np.where(hi - lo > 0, (hi - lo) / 15.0, 1.0)
    zp = np.clip(np.rint(-lo / scale), 0, 15)
    q = (np.clip(np.rint(wb / scale) + zp, 0, 15) - zp) * scale
    return q.reshape(-1, n)[:k].astype(np.float32)


def _int8_blocks(a: np.ndarray, block: int) -> np.ndarray:
    rows, k = a.shape
    pad = (-k) % block
    ab = np.pad(a, ((0, 0), (0, pad))).reshape(rows, -1, block)
    scale = np.maximum(np.abs(ab).max(axis=2, keepdims=True), _EPS) / 127.0
    return (np.clip(np.rint(ab / scale), -127, 127) * scale).reshape(rows, -1)[:, :k].astype(np.float32)


def _row_errors(y: np.ndarray, yq: np.ndarray) -> np.ndarray:
    return np.linalg.norm(yq - y, axis=1) / np.maximum(np.linalg.norm(y, axis=1), _EPS)


# -- sensitivity -----------------------------------------------------------------------------------

def _capture_session(model, names: Iterable[str], threads: int):
    import onnx
    import onnxruntime as ort

    captured = onnx.ModelProto()
    captured.CopyFrom(model)
    have = {o.name for o in captured.graph.output}
    for name in dict.fromkeys(names):
        if name not in have:
            captured.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(captured.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _feed(session, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {i.name: np.ascontiguousarray(batch[i.name], dtype=np.int64) for i in session.get_inputs()}


def _valid_rows(act: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Boolean row mask of the flattened activation: True for real tokens (all rows when the
    activation is not laid out as [batch, tokens, K])."""
    rows = int(np.prod(act.shape[:-1]))
    if mask is not None and act.ndim == 3 and act.shape[:2] == mask.shape:
        return mask.reshape(-1).astype(bool)
    return np.ones(rows, dtype=bool)


def smoothing_sites(model) -> dict[str, str]:
    """Layer name -> the weight of the MatMul whose output columns can absorb the layer's smoothing
    scales: the layer's input is ``Mul(a, MatMul(x, W_prev))``, the input, the Mul's MatMul input,
    ``W_prev`` and the layer's weight each used once. Other layers are absent."""
    producers = {o: n for n in model.graph.node for o in n.output}
    uses: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    inits = {t.name for t in model.graph.initializer}
    sites = {}
    for layer in weight_matmuls(model):
        mul = producers.get(layer["input"])
        if mul is None or mul.op_type != "Mul" or uses.get(layer["input"]) != 1 or uses.get(layer["weight"]) != 1:
            continue
        for i in mul.input:
            prev = producers.get(i)
            if (prev is not None and prev.op_type == "MatMul" and prev.input[1] in inits and uses.get(i) == 1
                    and uses.get(prev.input[1]) == 1 and list(mul.input).count(i) == 1):
                sites[layer["name"]] = prev.input[1]
                break
    return sites


def smoothing_scales(input_absmax: np.ndarray, weight: np.ndarray, alpha: float) -> np.ndarray:
    """Per input channel ``max|x_c|^alpha / max|w_c|^(1 - alpha)`` (``weight``: [K, N])."""
    amax = np.maximum(np.asarray(input_absmax, np.float64), 1e-5)
    wmax = np.maximum(np.abs(weight).max(axis=1).astype(np.float64), 1e-5)
    return np.clip(amax ** alpha / wmax ** (1.0 - alpha), 1e-4, 1e4).astype(np.float32)


def measure_sensitivity(fp32_path: str | Path, calibration_feeds: Sequence[Mapping[str, np.ndarray]], *,
                        candidates: Sequence[str] = CANDIDATES, block_size: int = DEFAULT_BLOCK_SIZE,
                        smooth_alpha: float = DEFAULT_SMOOTH_ALPHA, threads: int = 1) -> list[dict[str, Any]]:
    """Each weight MatMul's simulated output error under each candidate (see the module docstring).

    Returns one dict per layer in graph order: name, input, weight, shape, ``error`` (candidate ->
    mean per-token relative output error; 0 for fp32, inf for ``int8_smooth`` where the layer cannot
    be smoothed), ``input_outlier_ratio`` (max |x| over the RMS of x: the activation spikes that
    int8 per-tensor scales suffer from) and, for smoothable layers, ``smooth_scales`` (a list, one
    per input channel) and ``smooth_into`` (the weight that absorbs their inverse)."""
    import onnx
    from onnx import numpy_helper

    _check_candidates(candidates)
    model = onnx.load(str(fp32_path))
    layers = weight_matmuls(model)
    sites = smoothing_sites(model) if "int8_smooth" in candidates else {}
    inits = {t.name: t for t in model.graph.initializer}
    weights = {l["weight"]: numpy_helper.to_array(inits[l["weight"]]).astype(np.float32) for l in layers}
    q8 = {k: _int8_weight(w) for k, w in weights.items()} if "int8" in candidates else {}
    q4 = {k: _int4_weight(w, block_size) for k, w in weights.items()} if "int4" in candidates else {}
    session = _capture_session(model, [l["input"] for l in layers], threads)
    del model, inits
    inputs = list(dict.fromkeys(l["input"] for l in layers))
    # pass 1: input statistics (per-channel max |x| over all rows, as the runtime quantises padding too)
    chan = {name: None for name in inputs}
    stats = {name: [0.0, 0.0, 0] for name in inputs}  # absmax, sum of squares, count (real tokens)
    tokens = 0
    for batch in calibration_feeds:
        outs = dict(zip(inputs, session.run(inputs, _feed(session, batch))))
        for name, act in outs.items():
            flat = act.reshape(-1, act.shape[-1]).astype(np.float32)
            keep = _valid_rows(act, batch.get("attention_mask"))
            cmax = np.abs(flat).max(axis=0) if len(flat) else np.zeros(flat.shape[1], np.float32)
            chan[name] = cmax if chan[name] is None else np.maximum(chan[name], cmax)
            st = stats[name]
            st[0] = max(st[0], float(np.abs(flat[keep]).max(initial=0)))
            st[1] += float(np.square(flat[keep], dtype=np.float64).sum())
            st[2] += int(keep.sum()) * flat.shape[1]
        tokens += int(_valid_rows(outs[inputs[0]], batch.get("attention_mask")).sum()) if inputs else 0
    if tokens == 0:
        raise ValueError("calibration_feeds hold no real tokens; pass tokenised training sentences")
    scales = {l["name"]: smoothing_scales(chan[l["input"]], weights[l["weight"]], smooth_alpha)
              for l in layers if l["name"] in sites}
    smoothed_w = {name: _int8_weight(weights[l["weight"]] * scales[name][:, None])
                  for l in layers if (name := l["name"]) in scales}
    # pass 2: each candidate's output error, layer by layer
    sums = {l["name"]: {c: 0.0 for c in candidates} for l in layers}
    for batch in calibration_feeds:
        outs = dict(zip(inputs, session.run(inputs, _feed(session, batch))))
        mask = batch.get("attention_mask")
        shared: dict[tuple[str, str], np.ndarray] = {}  # q/k/v (and gate/up) share one input
        for layer in layers:
            act = outs[layer["input"]]
            flat, keep = act.reshape(-1, act.shape[-1]).astype(np.float32), _valid_rows(act, mask)
            y = flat[keep] @ weights[layer["weight"]]
            for cand in candidates:
                if cand == "fp32" or (cand == "int8_smooth" and layer["name"] not in scales):
                    continue
                if cand == "int8_smooth":
                    xq = _uint8_dynamic(flat / scales[layer["name"]])[keep]
                    yq = xq @ smoothed_w[layer["name"]]
                else:
                    key = (layer["input"], cand)
                    if key not in shared:
                        shared[key] = (_uint8_dynamic(flat) if cand == "int8" else _int8_blocks(flat, block_size))[keep]
                    yq = shared[key] @ (q8 if cand == "int8" else q4)[layer["weight"]]
                sums[layer["name"]][cand] += float(_row_errors(y, yq).sum())
    result = []
    for layer in layers:
        absmax, sq, count = stats[layer["input"]]
        rms = math.sqrt(sq / count) if count else 0.0
        smoothable = layer["name"] in scales
        error = {c: float("inf") if c == "int8_smooth" and not smoothable else sums[layer["name"]][c] / tokens
                 for c in candidates}
        entry = {**layer, "error": error, "input_absmax": absmax, "input_outlier_ratio": absmax / rms if rms else 0.0}
        if layer["name"] in scales:
            entry.update(smooth_scales=scales[layer["name"]].tolist(), smooth_into=sites[layer["name"]])
        result.append(entry)
    return result


def available_candidates(candidates: Sequence[str] = CANDIDATES) -> tuple[str, ...]:
    """``candidates`` less ``int4`` when onnxruntime's 4-bit quantiser cannot be imported (it needs
    the ``onnx-ir`` package, which onnxruntime does not install)."""
    import importlib.util

    if "int4" in candidates and importlib.util.find_spec("onnx_ir") is None:
        return tuple(c for c in candidates if c != "int4")
    return tuple(candidates)


def _check_candidates(candidates: Sequence[str]) -> None:
    bad = [c for c in candidates if c not in CANDIDATES]
    if bad or not candidates:
        raise ValueError(f"candidates must be drawn from {CANDIDATES}, got {tuple(candidates)}")


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
