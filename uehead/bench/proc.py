"""Benchmarks that need fresh processes: cold start + peak RSS, and the CPU's fp32 and int8 GEMM peaks.

Torch-free: the PyTorch cold start runs in a child process that imports torch, never here.
Peak RSS is the child's own ``VmHWM`` (``/proc/self/status``), not ``ru_maxrss``, which on Linux
can inherit the parent's high-water mark across ``vfork`` + ``exec``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from uehead.bench.engines import bundle_engine_name
from uehead.checkpoint import resolve_model_dir

__all__ = ["PEAK_CHILD", "TORCH_CHILD", "UEHEAD_CHILD", "child_env", "coldstart", "coldstart_runs", "peak_gflops"]

_HWM = """
def _hwm_mb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
"""

#: Child: import the runtime, load the bundle, predict one text; then a batch of 32 longer texts.
UEHEAD_CHILD = """
import time
t0 = time.perf_counter()
import json, sys
from uehead.runtime import load
t1 = time.perf_counter()
model = load(sys.argv[1], threads=int(sys.argv[2]))
t2 = time.perf_counter()
model.predict(["a first prediction"])
t3 = time.perf_counter()
since_spawn = time.time() - float(sys.argv[4])
rss1 = _hwm_mb()
texts = json.load(open(sys.argv[3], encoding="utf-8"))
model.predict(texts, batch_size=32)
from uehead.runtime import kernels
info = kernels.backend_info() if hasattr(kernels, "backend_info") else {}
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_predict_s": t3 - t2, "total_s": t3 - t0,
                  "since_spawn_s": since_spawn, "kernels_backend": str(info.get("backend", "?")),
                  "peak_rss_mb": rss1, "peak_rss_after_batch32_mb": _hwm_mb(),
                  "torch_imported": "torch" in sys.modules, "numba_imported": "numba" in sys.modules}))
"""

#: Child: the same with torch + transformers (the user's default stack); only run when both are installed.
TORCH_CHILD = """
import time
t0 = time.perf_counter()
import json, sys
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
t1 = time.perf_counter()
torch.set_num_threads(int(sys.argv[2]))
tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1]).eval()
t2 = time.perf_counter()
kw = dict(padding=True, truncation=True, max_length=int(sys.argv[4]), return_tensors="pt")
with torch.inference_mode():
    model(**tok(["a first prediction"], **kw)).logits.softmax(-1).numpy()
t3 = time.perf_counter()
since_spawn = time.time() - float(sys.argv[5])
rss1 = _hwm_mb()
texts = json.load(open(sys.argv[3], encoding="utf-8"))
with torch.inference_mode():
    model(**tok(texts, **kw)).logits.softmax(-1).numpy()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_predict_s": t3 - t2, "total_s": t3 - t0,
                  "since_spawn_s": since_spawn,
                  "peak_rss_mb": rss1, "peak_rss_after_batch32_mb": _hwm_mb(), "torch_imported": True}))
"""

#: Child: the CPU's fp32 matmul peak (numpy's BLAS, and ONNX Runtime when onnx is installed), and ONNX
#: Runtime's int8 GEMM peak: MatMulInteger (u8 x s8, int32 out: the raw limit) and the fused ops ONNX
#: Runtime turns a dynamically quantised graph into (DynamicQuantizeMatMul, MatMulIntegerToFloat), with
#: per-column weight scales and zero points as quantize_dynamic(per_channel=True) writes them; one
#: MatMulIntegerToFloat without weight zero points too (a faster kernel path).
PEAK_CHILD = """
import json, sys, time
import numpy as np
n, reps, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
a = rng.random((n, n), dtype=np.float32)
b = rng.random((n, n), dtype=np.float32)
flop = 2.0 * n ** 3

def measure(fn, unit="gflops"):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    ts.sort()
    return {unit + "_best": flop / ts[0] / 1e9, unit + "_median": flop / ts[len(ts) // 2] / 1e9}

out = {"n": n, "reps": reps, "threads": threads, "numpy": measure(lambda: a @ b)}
try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    import onnxruntime as ort
except ImportError as exc:
    out["onnxruntime"] = {"skipped": f"onnx not installed ({exc})"}
    out["onnxruntime_int8"] = {"skipped": f"onnx not installed ({exc})"}
else:
    def session(node, in_type, out_type, inits):
        g = helper.make_graph([node], "mm", [helper.make_tensor_value_info("A", in_type, [n, n])],
                              [helper.make_tensor_value_info("C", out_type, [n, n])], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
        m.ir_version = 8
        so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
        so.log_severity_level = 3
        return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])

    sess = session(helper.make_node("MatMul", ["A", "B"], ["C"]), TensorProto.FLOAT, TensorProto.FLOAT,
                   [numpy_helper.from_array(b, "B")])
    out["onnxruntime"] = measure(lambda: sess.run(None, {"A": a}))
    a_u8 = rng.integers(0, 256, (n, n), dtype=np.uint8)
    w = {"B": rng.integers(-127, 128, (n, n), dtype=np.int8), "b_zp": np.zeros(n, np.int8),
         "b_scale": np.full(n, 0.01, np.float32), "a_scale": np.array(0.02, np.float32),
         "a_zp": np.array(128, np.uint8)}
    ms = "com.microsoft"
    ops = {"MatMulInteger": ("MatMulInteger", ["A", "B", "a_zp", "b_zp"], "", TensorProto.UINT8, TensorProto.INT32),
           "DynamicQuantizeMatMul": ("DynamicQuantizeMatMul", ["A", "B", "b_scale", "b_zp"], ms, TensorProto.FLOAT,
                                     TensorProto.FLOAT),
           "MatMulIntegerToFloat": ("MatMulIntegerToFloat", ["A", "B", "a_scale", "b_scale", "a_zp", "b_zp"], ms,
                                    TensorProto.UINT8, TensorProto.FLOAT),
           "MatMulIntegerToFloat_no_b_zero_point": ("MatMulIntegerToFloat", ["A", "B", "a_scale", "b_scale", "a_zp"],
                                                    ms, TensorProto.UINT8, TensorProto.FLOAT)}
    int8 = {}
    for key, (op, inputs, domain, in_type, out_type) in ops.items():
        try:
            s = session(helper.make_node(op, inputs, ["C"], domain=domain), in_type, out_type,
                        [numpy_helper.from_array(w[i], i) for i in inputs[1:]])
            x = a if in_type == TensorProto.FLOAT else a_u8
            int8[key] = measure(lambda: s.run(None, {"A": x}), unit="gops")
        except Exception as exc:  # an op this build lacks is reported, not fatal
            int8[key] = {"skipped": f"{type(exc).__name__}: {exc}"}
    out["onnxruntime_int8"] = int8
print(json.dumps(out))
"""


def child_env(threads: int) -> dict[str, str]:
    """Environment of the child processes: offline, BLAS/OpenMP threads pinned to ``threads``."""
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
                "MKL_NUM_THREADS": str(threads)})
    return env


def _run_child(code: str, args: Sequence[str], env: dict[str, str], timeout: float = 300,
               stamp: bool = False) -> dict:
    """Run ``code`` in a fresh interpreter; its last stdout line is JSON. With ``stamp`` the wall
    clock at spawn is passed as the last argument (for the child's ``since_spawn_s``)."""
    argv = [sys.executable, "-c", _HWM + code, *map(str, args)]
    if stamp:
        argv.append(repr(time.time()))
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_gflops(threads: int, n: int = 2048, reps: int = 10) -> dict[str, Any]:
    """The CPU's fp32 and int8 GEMM peaks on ``threads`` threads, in a fresh process (best of ``reps``
    ``n``^3 products). ``peak_gflops``: the better of numpy's BLAS and ONNX Runtime's fp32 MatMul.
    ``int8_peak_gops`` (2 n^3 integer multiply-adds / s, so int8 and fp32 figures share a scale): the
    best of ONNX Runtime's int8 GEMM ops (``onnxruntime_int8``); None, with ``int8_skipped`` saying
    why, when none could run (no onnx to build the graphs, or the ops are missing)."""
    out = _run_child(PEAK_CHILD, [n, reps, threads], child_env(threads))
    best = [v["gflops_best"] for k, v in out.items() if isinstance(v, dict) and "gflops_best" in v]
    out["peak_gflops"] = max(best)
    int8 = out.get("onnxruntime_int8", {})
    gops = {k: v["gops_best"] for k, v in int8.items() if isinstance(v, dict) and "gops_best" in v}
    out["int8_peak_gops"] = max(gops.values()) if gops else None
    if gops:
        out["int8_peak_op"] = max(gops, key=gops.get)
    else:
        reasons = [int8["skipped"]] if "skipped" in int8 else [f"{k}: {v.get('skipped')}" for k, v in int8.items()]
        out["int8_skipped"] = "; ".join(reasons) or "no int8 measurement"
    return out


def coldstart_runs(code: str, args: Sequence[str], runs: int, threads: int, warm_first: bool = True) -> dict[str, Any]:
    """Run ``code`` in ``runs`` fresh processes (after one discarded run that may fill caches, e.g.
    numba's, when ``warm_first``); medians of each field. ``since_spawn_s`` counts from the
    parent's spawn (interpreter start included) to the end of the first prediction."""
    env = child_env(threads)
    first = _run_child(code, args, env, stamp=True) if warm_first else None
    results = [_run_child(code, args, env, stamp=True) for _ in range(runs)]
    keys = [k for k, v in results[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    med = {k: statistics.median(r[k] for r in results) for k in keys}
    med["max_total_s"] = max(r["total_s"] for r in results)
    for flag in ("torch_imported", "numba_imported"):
        med[flag] = any(r.get(flag) for r in results)
    if "kernels_backend" in results[0]:
        med["kernels_backend"] = ",".join(sorted({r["kernels_backend"] for r in results}))
    return {"runs": runs, "median": med, "first_run": first, "all": results}


def coldstart(bundles: Sequence[str | os.PathLike] | dict[str, str | os.PathLike], *,
              checkpoint: str | os.PathLike | None = None, runs: int = 5, threads: int = 1,
              texts: Sequence[str] = (), say: Callable[[str], None] = lambda m: None) -> dict:
    """Cold start (import + load + first prediction) and peak RSS of each bundle (a list, or a
    dict name -> folder) in fresh processes, and of a torch + transformers process doing the same
    when ``checkpoint`` is given and torch is installed. ``texts`` (e.g. 32 texts of ~128 tokens)
    are predicted after the first prediction, for a second peak-RSS reading."""
    from uehead.bundle import read_manifest

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="uehead-bench-") as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(list(texts) or ["a text"]), encoding="utf-8")
        walls = []
        for _ in range(max(3, runs)):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True, env=child_env(threads))
            walls.append(time.perf_counter() - t0)
        out["interpreter_s"] = statistics.median(walls)
        named = bundles if isinstance(bundles, dict) else {bundle_engine_name(b): b for b in bundles}
        for name, bundle in named.items():
            say(f"coldstart: {name} x{runs} ...")
            out[name] = coldstart_runs(UEHEAD_CHILD, [bundle, threads, texts_file], runs, threads)
        if checkpoint is not None:
            if importlib.util.find_spec("torch") and importlib.util.find_spec("transformers"):
                max_length = read_manifest(next(iter(named.values()))).tokenizer.max_length
                say(f"coldstart: pytorch-fp32 x{runs} ...")
                out["pytorch-fp32"] = coldstart_runs(TORCH_CHILD, [resolve_model_dir(checkpoint), threads, texts_file,
                                                                   max_length], runs, threads)
            else:
                out["pytorch-fp32"] = {"skipped": "torch/transformers not installed"}
    return out
