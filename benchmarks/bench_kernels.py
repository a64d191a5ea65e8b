"""Score kernels per batch: numba (AOT and JIT builds of the same kernels) vs the numpy reference vs
an ONNX head graph in ONNX Runtime (1 thread), side by side.

Every implementation computes the same outputs from one float32 logits batch [N, C]:
probabilities, softmax response (1 - max p), entropy (+ normalised), and 1 - SmoothMax_100(p)
(AdUE). numba: ``kernels.task_outputs(x)`` + ``kernels.adue_uncertainty(x)`` through the public
API (input checks included); numpy: the same two functions of ``reference.py``; ONNX: one graph
built with the ``onnx`` helper API; two formulations are timed (Softmax + Log, and LogSoftmax +
Exp) and the faster one per cell is the ONNX number. Outputs are checked against the reference
before timing. Each implementation runs ``--repeats`` calls, in 10 rounds that alternate between
the implementations (fair under a noisy, shared CPU); medians are reported in microseconds.

    python benchmarks/bench_kernels.py [--repeats 300] [--json benchmarks/results/kernels.json]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from uehead.bench.report import write_json

LAM = 100.0
SHAPES = [(32, 2), (32, 20), (4096, 2), (4096, 20)]


def onnx_head_graph(num_classes: int, lam: float = LAM, variant: str = "softmax") -> bytes:
    """Serialized ONNX model: logits [N, C] -> probs, sr, entropy, nentropy, adue (opset 18)."""
    import onnx
    from onnx import TensorProto, helper

    def const(name, value, dtype=TensorProto.FLOAT, dims=()):
        vals = list(value) if dims else [value]
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_v", dtype, list(dims), vals))

    nodes = [const("one", 1.0), const("lam", lam), const("invlam", 1.0 / lam),
             const("neg_inv_logc", -1.0 / float(np.log(num_classes))), const("minus_one", -1.0),
             const("axis", [1], TensorProto.INT64, [1])]
    if variant == "softmax":
        nodes += [helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
                  helper.make_node("Log", ["probs"], ["logp"])]
    elif variant == "logsoftmax":
        nodes += [helper.make_node("LogSoftmax", ["logits"], ["logp"], axis=-1),
                  helper.make_node("Exp", ["logp"], ["probs"])]
    else:
        raise ValueError(variant)
    nodes += [
        helper.make_node("ReduceMax", ["probs", "axis"], ["pmax"], keepdims=1),
        helper.make_node("Sub", ["one", "pmax"], ["sr_k"]),
        helper.make_node("Mul", ["probs", "logp"], ["plogp"]),
        helper.make_node("ReduceSum", ["plogp", "axis"], ["neg_h"], keepdims=0),
        helper.make_node("Mul", ["neg_h", "minus_one"], ["entropy"]),
        helper.make_node("Mul", ["neg_h", "neg_inv_logc"], ["normalized_entropy"]),
        # SmoothMax_lam(p) = max p + log(sum exp(lam (p - max p))) / lam
        helper.make_node("Sub", ["probs", "pmax"], ["d"]),
        helper.make_node("Mul", ["d", "lam"], ["z"]),
        helper.make_node("Exp", ["z"], ["ez"]),
        helper.make_node("ReduceSum", ["ez", "axis"], ["sez"], keepdims=1),
        helper.make_node("Log", ["sez"], ["lse"]),
        helper.make_node("Mul", ["lse", "invlam"], ["lse_l"]),
        helper.make_node("Add", ["pmax", "lse_l"], ["smoothmax"]),
        helper.make_node("Sub", ["one", "smoothmax"], ["adue_k"]),
        helper.make_node("Squeeze", ["sr_k", "axis"], ["softmax_response"]),
        helper.make_node("Squeeze", ["adue_k", "axis"], ["adue"]),
    ]
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "uncertainty_head_scores", [helper.make_tensor_value_info("logits", f, ["N", num_classes])],
        [helper.make_tensor_value_info("probs", f, ["N", num_classes])]
        + [helper.make_tensor_value_info(n, f, ["N"])
           for n in ("softmax_response", "entropy", "normalized_entropy", "adue")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def ort_session(model: bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _ort_runner(sess):
    def run(x):
        return sess.run(None, {"logits": x})
    return run


def _numba_backends(kernels) -> dict:
    """The numba builds that load here: {"aot": backend, "jit": backend} (either may be missing)."""
    backends = {}
    for mode in ("aot", "jit"):
        try:
            b = kernels._reset_backend(mode)
            backends[mode] = b
        except Exception as exc:  # e.g. no C compiler: report numba-jit only
            print(f"numba-{mode} unavailable: {exc}", file=sys.stderr)
    if not backends:
        raise SystemExit("no numba backend could be loaded")
    return backends


def _implementations(kernels, reference, backends: dict) -> dict:
    """name -> f(x) computing task_outputs + adue_uncertainty, for numba and numpy."""
    def numba_fn(backend):
        def run(x):
            kernels._backend = backend  # swap the loaded implementation (same process, same API)
            kernels.task_outputs(x)
            kernels.adue_uncertainty(x, LAM)
        return run

    def numpy_fn(x):
        reference.task_outputs(x)
        reference.adue_uncertainty(x, LAM)

    impls = {f"numba-{m}": numba_fn(b) for m, b in backends.items()}
    impls["numpy"] = numpy_fn
    return impls


def _check_outputs(kernels, reference, backends: dict, impls: dict, x: np.ndarray) -> dict[str, float]:
    """Add the ONNX graphs to ``impls``; max abs error of each implementation against the reference."""
    c = x.shape[1]
    ref_p, ref_sr, ref_h, ref_hn = reference.task_outputs(x)
    ref_u = reference.adue_uncertainty(x, LAM)
    errors = {}
    for variant in ("softmax", "logsoftmax"):
        sess = ort_session(onnx_head_graph(c, LAM, variant))
        impls[f"onnx-{variant}"] = _ort_runner(sess)
        p, sr, h, hn, u = sess.run(None, {"logits": x})
        errors[f"onnx-{variant}"] = float(max(np.abs(p - ref_p).max(), np.abs(sr - ref_sr).max(),
                                              np.abs(h - ref_h).max(), np.abs(u - ref_u).max()))
    for m, b in backends.items():
        kernels._backend = b
        p, sr, h, hn = kernels.task_outputs(x)
        u = kernels.adue_uncertainty(x, LAM)
        err = float(max(np.abs(p - ref_p).max(), np.abs(sr - ref_sr).max(), np.abs(h - ref_h).max(),
                        np.abs(hn - ref_hn).max(), np.abs(u - ref_u).max()))
        assert err <= 1e-6, (m, x.shape, err)
        errors[f"numba-{m}"] = err
    return errors


def _median_us(impls: dict, x: np.ndarray, repeats: int) -> dict[str, float]:
    times = {k: [] for k in impls}
    rounds = 10
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):  # alternate implementations in rounds: fair under a noisy, shared CPU
        for k, f in impls.items():
            for _ in range(3):  # warm (caches, allocator)
                f(x)
            for _ in range(per_round):
                t0 = time.perf_counter()
                f(x)
                times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    med["onnx"] = min(med["onnx-softmax"], med["onnx-logsoftmax"])
    return med


def _print_table(results: list[dict], repeats: int) -> None:
    cols = [k for k in results[0]["median_us"] if k.startswith("numba-")] + ["numpy", "onnx"]
    print(f"score kernels per batch (task_outputs + adue_uncertainty), median of {repeats}, microseconds")
    print(f"{'N':>5s} {'C':>3s} " + " ".join(f"{c:>10s}" for c in cols) + "  numba fastest?  speedup vs best other")
    for r in results:
        sp = ", ".join(f"{k}: {v:.1f}x" for k, v in r["speedup_vs_best_other"].items())
        print(f"{r['N']:5d} {r['C']:3d} " + " ".join(f"{r['median_us'][c]:10.1f}" for c in cols)
              + f"  {'yes' if r['numba_not_slower'] else 'NO':>14s}  {sp}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "kernels.json"))
    args = ap.parse_args(argv)

    import onnxruntime
    from uehead import scores as reference
    from uehead.runtime import kernels

    backends = _numba_backends(kernels)
    rng = np.random.default_rng(0)
    results = []
    for n, c in SHAPES:
        x = (rng.standard_normal((n, c)) * 4).astype(np.float32)
        impls = _implementations(kernels, reference, backends)
        errors = _check_outputs(kernels, reference, backends, impls, x)
        med = _median_us(impls, x, args.repeats)
        numba_cols = [k for k in med if k.startswith("numba-")]
        others = min(med["numpy"], med["onnx"])
        results.append({"N": n, "C": c, "median_us": {k: round(v, 2) for k, v in med.items()},
                        "max_abs_err_vs_reference": errors,
                        "numba_not_slower": all(med[k] <= others for k in numba_cols),
                        "speedup_vs_best_other": {k: round(others / med[k], 2) for k in numba_cols}})
    if "numba-aot" in backends:
        kernels._backend = backends["aot"]

    _print_table(results, args.repeats)
    out = {"benchmark": "kernels", "what": "task_outputs + adue_uncertainty (lam=100) per float32 batch",
           "repeats": args.repeats, "onnxruntime": onnxruntime.__version__, "onnx_threads": 1,
           "numba_backends": {m: {"reason": b.reason, "path": b.path} for m, b in backends.items()},
           "python": sys.version.split()[0], "machine": platform.machine(), "cpu_count": os.cpu_count(),
           "all_cells_numba_not_slower": all(r["numba_not_slower"] for r in results), "cells": results}
    print(f"wrote {write_json(args.json, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
