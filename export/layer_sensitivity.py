"""Per-layer sensitivity of a backbone's weight MatMuls to quantisation, simulated in numpy.

One fp32 pass over calibration feeds captures every weight MatMul's input; each candidate's
quantisation (see :mod:`uehead.export.quantize_layers` for what each one is) is simulated on that
layer alone, as ONNX Runtime computes it, and its error is the mean over the real (unpadded)
tokens of the relative error of the layer's output. :func:`measure_sensitivity` is the entry
point; :func:`calibration_feeds` tokenises the texts it runs on.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

#: Candidates, fastest first on the AVX-512 VNNI CPUs measured (benchmarks/bench_decoder_quant.py):
#: int8 dynamic MatMuls, then the same after smoothing (no run-time cost), then 4-bit ``MatMulNBits``
#: (barely faster than fp32, but 8x smaller), then fp32.
CANDIDATES = ("int8", "int8_smooth", "int4", "fp32")
DEFAULT_BLOCK_SIZE = 32
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


def _check_candidates(candidates: Sequence[str]) -> None:
    bad = [c for c in candidates if c not in CANDIDATES]
    if bad or not candidates:
        raise ValueError(f"candidates must be drawn from {CANDIDATES}, got {tuple(candidates)}")


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
