"""Rows/s of the Ray Data engine (1 and 2 workers) against the single-process batch job, on one file.

    python benchmarks/bench_ray.py --bundle BUNDLE [--rows 4000] [--repeats 3] [--out benchmarks/results/ray.json]

The file: the first --rows Rotten Tomatoes sentences (all splits, file order) as JSONL with an id
column; every job writes Parquet. Runs, interleaved in each repeat, medians reported:

* ``single xT``: ``load(bundle, threads=T)`` then ``predict_file``, for T = 1 and the physical cores;
* ``ray wW xT``: ``predict_file_ray`` with W workers of T ONNX Runtime threads each, on a local Ray
  instance started once (``ray.init`` is timed apart: on an existing cluster nobody pays it per job).

Each Ray job reports every block it writes (the ``progress`` callback): ``first_rows_s`` is the
time to the first written block (actor start, bundle load and kernel warm-up in each actor, pipeline
set-up, the first block's compute); ``steady_rows_per_s`` is the rate from the first block to the
last, the throughput once workers run, where Ray's per-row costs (Arrow blocks through the object
store, the driver's ordered write) show against the single-process job's. Each Ray run is compared with the
single-process run on the same number of CPUs (workers x threads). Every output is checked
to hold the same ids in the same order as the single-process output.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_input(path: Path, rows: int) -> int:
    from uehead.datasets import load_rotten_tomatoes

    ds = load_rotten_tomatoes()
    texts = [t for s in ("train", "valid", "test") for t in ds[s].texts][:rows]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"id": f"rt-{i:06d}", "text": t}) + "\n" for i, t in enumerate(texts))
    return len(texts)


def ids_of(path: Path) -> list:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["id"]).column("id").to_pylist()


def worker_rss(ray, bundle: Path, src: Path) -> int:
    """Resident memory of one 1-thread worker after it predicted one block of the runtime's
    ``BLOCK_ROWS`` rows (for sizing)."""

    @ray.remote(num_cpus=1)
    class Probe:
        def __init__(self, path):
            from uehead.runtime.ray_data import BundlePredictor

            self.predictor = BundlePredictor(path)

        def rss_after_block(self, lines):
            import psutil
            import pyarrow as pa

            self.predictor(pa.table({"text": [json.loads(x)["text"] for x in lines]}))
            return psutil.Process().memory_info().rss

    from uehead.runtime.model import BLOCK_ROWS

    lines = src.read_text(encoding="utf-8").splitlines()[:BLOCK_ROWS]
    probe = Probe.remote(str(bundle))
    try:
        return ray.get(probe.rss_after_block.remote(lines))
    finally:
        ray.kill(probe)


def _single_run(bundle: Path, src: Path, out: Path, threads: int) -> tuple[float, float]:
    """(load seconds, job seconds) of the single-process batch job on ``threads`` threads."""
    from uehead.runtime import load
    from uehead.runtime.batch import predict_file

    t0 = time.perf_counter()
    model = load(bundle, threads=threads)
    t1 = time.perf_counter()
    predict_file(model, src, out, id_column="id", progress=False)
    return t1 - t0, time.perf_counter() - t1


def _ray_run(bundle: Path, src: Path, out: Path, workers: int, threads: int) -> dict[str, float]:
    """Job seconds, time to the first written block and the steady rate of one Ray job."""
    from uehead.runtime.ray_data import predict_file_ray

    marks: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    predict_file_ray(bundle, src, out, id_column="id", num_workers=workers, threads=threads,
                     progress=lambda n, m=marks: m.append((time.perf_counter(), n)))
    t1 = time.perf_counter()
    (ta, na), (tb, nb) = marks[0], marks[-1]
    return {"job_s": t1 - t0, "first_rows_s": ta - t0,
            "steady_rows_per_s": (nb - na) / (tb - ta) if tb > ta else float("nan")}


def _run_repeats(a, singles: list[int], configs: list[tuple[int, int]], src: Path, tmp: Path) -> dict:
    """Every run of every repeat, interleaved: {run name: {measure: [values]}}."""
    runs: dict[str, dict[str, list]] = {}
    for rep in range(a.repeats):
        for t in singles:
            load_s, job_s = _single_run(a.bundle, src, tmp / "single.parquet", t)
            r = runs.setdefault(f"single x{t}", {"load_s": [], "job_s": []})
            r["load_s"].append(load_s)
            r["job_s"].append(job_s)
        want = ids_of(tmp / "single.parquet")
        for w, t in configs:
            name = f"ray w{w} x{t}"
            one = _ray_run(a.bundle, src, tmp / "ray.parquet", w, t)
            if ids_of(tmp / "ray.parquet") != want:
                raise SystemExit(f"{name}: the output's ids differ from the single-process output")
            r = runs.setdefault(name, {"job_s": [], "first_rows_s": [], "steady_rows_per_s": []})
            for k, v in one.items():
                r[k].append(v)
        print(f"repeat {rep + 1}/{a.repeats}: "
              + ", ".join(f"{k} {v['job_s'][-1]:.1f}s" for k, v in runs.items()),
              file=sys.stderr)
    return runs


def _results(runs: dict, rows: int, singles: list[int], configs: list[tuple[int, int]]) -> dict:
    """Medians per run; each Ray run against the single-process run on the same number of CPUs."""
    med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in runs.items()}
    results = {}
    for t in singles:
        m = med[f"single x{t}"]
        results[f"single x{t}"] = {"threads": t, "load_s": m["load_s"], "job_s": m["job_s"],
                                   "rows_per_s": rows / m["job_s"]}
    for w, t in configs:
        m = med[f"ray w{w} x{t}"]
        same = results[f"single x{min(singles, key=lambda s: abs(s - w * t))}"]  # same CPU count, or nearest
        results[f"ray w{w} x{t}"] = {
            "workers": w, "threads": t, "job_s": m["job_s"], "first_rows_s": m["first_rows_s"],
            "rows_per_s": rows / m["job_s"], "steady_rows_per_s": m["steady_rows_per_s"],
            "compared_with": f"single x{same['threads']}", "vs_single": (rows / m["job_s"]) / same["rows_per_s"],
            "steady_vs_single": m["steady_rows_per_s"] / same["rows_per_s"]}
    return results


def _print_results(doc: dict, block_rows: int) -> None:
    rows, load_before = doc["rows"], doc["loadavg_before"]
    print(f"{rows} rows, medians of {doc['repeats']}; ray.init {doc['ray_init_s']:.1f}s (once per cluster, not "
          f"counted); load average {load_before[0]:.1f} -> {doc['loadavg_after'][0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'run':<13}{'job s':>7}{'rows/s':>8}{'first rows s':>14}{'steady rows/s':>15}{'vs single':>18}")
    for name, r in doc["results"].items():
        if name.startswith("single"):
            print(f"{name:<13}{r['job_s']:>7.1f}{r['rows_per_s']:>8.0f}{r['load_s']:>14.2f}"
                  "   (first rows s = load)")
        else:
            print(f"{name:<13}{r['job_s']:>7.1f}{r['rows_per_s']:>8.0f}{r['first_rows_s']:>14.2f}"
                  f"{r['steady_rows_per_s']:>15.0f}{r['vs_single']:>7.2f} ({r['compared_with']})")
    print(f"one 1-thread worker after a {block_rows:,}-row block: {doc['worker_rss_mb']:.0f} MB resident")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, required=True, help="a bundle folder (uehead export CKPT OUT)")
    p.add_argument("--rows", type=int, default=4000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--single-threads", default=None,
                   help="single-process runs, comma separated thread counts (default: 1 and the physical cores)")
    p.add_argument("--configs", default="1x1,1x2,2x1", help="Ray runs as WORKERSxTHREADS, comma separated")
    p.add_argument("--out", type=Path, default=RESULTS / "ray.json")
    a = p.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local node on 127.0.0.1 only
    import onnxruntime
    import ray

    from uehead.runtime.model import BLOCK_ROWS
    from uehead.runtime.session import default_threads

    singles = sorted({int(x) for x in (a.single_threads or f"1,{default_threads()}").split(",")})
    configs = [tuple(int(x) for x in c.split("x")) for c in a.configs.split(",")]
    cpus = max(w * t for w, t in configs)
    tmp = Path(tempfile.mkdtemp(prefix="uehead-bench-ray-"))
    src = tmp / "in.jsonl"
    rows = write_input(src, a.rows)
    load_before = os.getloadavg()

    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray_init_s = time.perf_counter() - t0
    try:
        runs = _run_repeats(a, singles, configs, src, tmp)
        worker_rss_mb = worker_rss(ray, a.bundle, src) / 2**20
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    doc = {"benchmark": "bench_ray", "command": "python benchmarks/bench_ray.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "bundle": str(a.bundle), "rows": rows, "repeats": a.repeats, "ray_init_s": ray_init_s,
           "ray": ray.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
           "machine": platform.machine(), "cpu_count": os.cpu_count(), "loadavg_before": load_before,
           "loadavg_after": os.getloadavg(), "worker_rss_mb": worker_rss_mb,
           "results": _results(runs, rows, singles, configs), "raw": runs}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    _print_results(doc, BLOCK_ROWS)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
