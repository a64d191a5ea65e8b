"""Cold start of the score kernels: a fresh process's time and peak RSS, AOT vs JIT-from-cache.

Each scenario runs in a fresh ``python -c`` process, ``--repeats`` times; medians are reported:
  wall_ms   process start to exit, measured by the parent (includes interpreter startup)
  body_ms   the scenario's own code (imports + load + first calls), measured inside
  kernels_ms  the kernels' part of it: import uehead.runtime.kernels + warmup() + first calls
  peak_rss  ru_maxrss of the child (MB)
Scenarios: ``import numpy``; the kernels (``from uehead.runtime import kernels; kernels.warmup();
kernels.task_outputs(x)``) on the AOT path and on the numba JIT path with a warm cache; the same
on top of ``import onnxruntime`` (what a serving process pays). The caches live in a temporary
folder (built/primed first, not timed) unless ``--cache-dir`` is given.

    python benchmarks/bench_coldstart_kernels.py [--repeats 7] [--json benchmarks/results/coldstart_kernels.json]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from uehead.bench.report import write_json

KERNELS = ("_part_t0 = _t.perf_counter(); from uehead.runtime import kernels; kernels.warmup(); "
           "x = numpy.random.default_rng(0).normal(size=(32, 2)).astype(numpy.float32); "
           "kernels.task_outputs(x); kernels.adue_uncertainty(x); "
           "assert kernels.backend_info()['backend'] == {backend!r}, kernels.backend_info()")
SCENARIOS = {
    "import numpy": ("import numpy", None),
    "kernels aot": ("import numpy; " + KERNELS.format(backend="aot"), "aot"),
    "kernels jit (cached)": ("import numpy; " + KERNELS.format(backend="jit"), "jit"),
    "import onnxruntime": ("import numpy, onnxruntime", None),
    "onnxruntime + kernels aot": ("import numpy, onnxruntime; " + KERNELS.format(backend="aot"), "aot"),
    "onnxruntime + kernels jit (cached)": ("import numpy, onnxruntime; " + KERNELS.format(backend="jit"), "jit"),
}
WRAP = """
import time as _t; _t0 = _t.perf_counter()
{body}
import resource as _r, sys as _s
_t1 = _t.perf_counter()
_s.stdout.write("RESULT %.3f %d %d %.3f\\n" % ((_t1 - _t0) * 1e3, _r.getrusage(_r.RUSAGE_SELF).ru_maxrss,
                                             int('numba' in _s.modules), (_t1 - globals().get('_part_t0', _t1)) * 1e3))
"""


def run_once(body: str, env: dict) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", WRAP.format(body=body)], capture_output=True, text=True, env=env,
                         cwd=tempfile.gettempdir(), timeout=600)
    wall = (time.perf_counter() - t0) * 1e3
    if out.returncode != 0:
        raise RuntimeError(f"scenario failed: {body}\n{out.stderr[-2000:]}")
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    _, body_ms, rss_kb, numba_loaded, kernels_ms = line.split()
    return {"wall_ms": wall, "body_ms": float(body_ms), "kernels_ms": float(kernels_ms),
            "peak_rss_mb": int(rss_kb) / 1024, "numba_imported": bool(int(numba_loaded))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--cache-dir", default=None, help="uehead cache to use (default: a fresh temporary folder)")
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "coldstart_kernels.json"))
    args = ap.parse_args(argv)

    tmp = None
    cache = args.cache_dir
    if cache is None:
        tmp = tempfile.TemporaryDirectory(prefix="uehead-coldstart-")
        cache = tmp.name
    env = {k: v for k, v in os.environ.items() if k not in ("UEHEAD_KERNELS", "NUMBA_CACHE_DIR")}
    env.update(UEHEAD_CACHE_DIR=cache, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    try:
        t0 = time.perf_counter()
        build = subprocess.run([sys.executable, "-m", "uehead.runtime.kernels", "--build", "--cache-dir", cache],
                               capture_output=True, text=True, env=env)
        if build.returncode != 0:
            raise SystemExit(f"AOT build failed:\n{build.stderr[-2000:]}")
        build_s = time.perf_counter() - t0
        for backend in ("aot", "jit"):  # prime both caches (the JIT one is numba's cache=True files)
            run_once("import numpy; " + KERNELS.format(backend=backend), {**env, "UEHEAD_KERNELS": backend})

        rows = {}
        for name, (body, backend) in SCENARIOS.items():
            e = dict(env, UEHEAD_KERNELS=backend) if backend else env
            runs = [run_once(body, e) for _ in range(args.repeats)]
            keys = ("wall_ms", "body_ms", "kernels_ms", "peak_rss_mb")
            rows[name] = {k: statistics.median(r[k] for r in runs) for k in keys}
            rows[name]["numba_imported"] = runs[0]["numba_imported"]
    finally:
        if tmp is not None:
            tmp.cleanup()

    base = rows["import numpy"]
    print(f"cold start, fresh process, median of {args.repeats} (AOT build once: {build_s:.1f} s)")
    print(f"{'scenario':38s} {'wall ms':>8s} {'body ms':>8s} {'kernels ms':>10s} {'peak RSS MB':>12s} "
          f"{'+RSS vs numpy':>14s} numba?")
    for name, r in rows.items():
        print(f"{name:38s} {r['wall_ms']:8.0f} {r['body_ms']:8.0f} {r['kernels_ms']:10.1f} {r['peak_rss_mb']:12.0f} "
              f"{r['peak_rss_mb'] - base['peak_rss_mb']:14.0f} {'yes' if r['numba_imported'] else 'no'}")
    out = {"benchmark": "coldstart_kernels", "repeats": args.repeats, "aot_build_seconds": round(build_s, 2),
           "python": sys.version.split()[0], "machine": platform.machine(), "cpu_count": os.cpu_count(),
           "scenarios": {k: {kk: (round(vv, 2) if isinstance(vv, float) else vv) for kk, vv in v.items()}
                         for k, v in rows.items()}}
    print(f"wrote {write_json(args.json, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
