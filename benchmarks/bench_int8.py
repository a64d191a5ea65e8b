"""Backbone latency, fp32 vs int8 bundles, side by side in one run (torch-free).

    python benchmarks/bench_int8.py --fp32 BUNDLE_FP32 --int8 BUNDLE_INT8 [--batch-size 32]

Both backbones get the same batches of real Rotten Tomatoes test sentences (tokenised with the
fp32 bundle's tokenizer.json and TokenizerSpec, padded to the longest in each batch), and are
timed alternately (fp32, int8, fp32, ...) so load from other processes hits both alike. Reports
the median per-batch latency of each, the speed-up (target: int8 >= 1.6x faster), and the max
abs diffs int8 vs fp32 of features, probabilities and every uncertainty (higher = more
uncertain) through the fp32 bundle's head. Prints a table and writes benchmarks/results/int8.json.
``--threads default,1`` repeats the comparison per thread count (on a shared machine the one-thread
run is the least disturbed by other processes; the load average is recorded with each run).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from uehead import scores as reference
from uehead.bench.machine import cpu_name
from uehead.bundle import load_manifest
from uehead.datasets import load_dataset
from uehead.runtime.session import default_threads, make_session
from uehead.runtime.tokenize import TextTokenizer

TARGET_SPEEDUP = 1.6


def _batches(bundle: Path, manifest, texts: list[str], batch_size: int) -> list[dict[str, np.ndarray]]:
    tok = TextTokenizer(bundle / manifest.tokenizer.file, manifest.tokenizer)
    return [tok(texts[i:i + batch_size]) for i in range(0, len(texts) - batch_size + 1, batch_size)]


def _scores(head, manifest, z: np.ndarray) -> dict[str, np.ndarray]:
    names = [manifest.head.task_logits_name] + [h.output_name for h in manifest.head.heads]
    outs = dict(zip(names, head.run(names, {manifest.head.input_name: z})))
    probs, sr, ent, _ = reference.task_outputs(outs[manifest.head.task_logits_name])
    res = {"probs": probs, "softmax_response": sr, "entropy": ent, "label_ids": probs.argmax(1)}
    for h in manifest.head.heads:
        kind = reference.head_kind(h.kind)
        res[h.kind] = kind.score_reference(outs[h.output_name], **reference.head_params(kind, h))
    return res


def run(fp32: Path, int8: Path, *, batch_size: int, batches: int, repeats: int, threads: int | None) -> dict:
    load_before = os.getloadavg()
    m32, m8 = load_manifest(fp32), load_manifest(int8)
    if m8.backbone.precision != "int8":
        raise SystemExit(f"{int8}: backbone precision is {m8.backbone.precision!r}, expected an int8 bundle.")
    texts = list(load_dataset("rotten_tomatoes", splits=("test",))["test"].texts)[: batch_size * batches]
    feeds = _batches(fp32, m32, texts, batch_size)
    threads = threads or default_threads()
    sessions = {"fp32": make_session(fp32 / m32.backbone.file, threads=threads),
                "int8": make_session(int8 / m8.backbone.file, threads=threads)}
    out_name = {"fp32": m32.backbone.output_name, "int8": m8.backbone.output_name}
    head = make_session(fp32 / m32.head.file, threads=1)

    features = {k: [] for k in sessions}
    for k, s in sessions.items():  # warm-up + outputs for the diffs
        for f in feeds:
            features[k].append(s.run([out_name[k]], f)[0])
    times = {k: [] for k in sessions}
    for _ in range(repeats):
        for f in feeds:
            for k, s in sessions.items():  # alternate, so background load hits both alike
                t0 = time.perf_counter()
                s.run([out_name[k]], f)
                times[k].append(time.perf_counter() - t0)

    z32, z8 = np.concatenate(features["fp32"]), np.concatenate(features["int8"])
    s32, s8 = _scores(head, m32, z32), _scores(head, m32, z8)
    diffs = {"features": float(np.abs(z32 - z8).max())}
    diffs.update({k: float(np.abs(np.asarray(s32[k], np.float64) - s8[k]).max()) for k in s32 if k != "label_ids"})
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "machine": {"cpu": cpu_name() or "unknown", "cpu_count": os.cpu_count(), "threads": threads,
                                         "python": platform.python_version(),
                                         "loadavg_1min_before_after": [load_before[0], os.getloadavg()[0]],
                                         "onnxruntime": __import__("onnxruntime").__version__},
        "bundles": {"fp32": str(fp32), "int8": str(int8)},
        "model": m32.reports.get("training", {}).get("model"),
        "settings": {"batch_size": batch_size, "batches": len(feeds), "repeats": repeats, "texts": len(texts),
                     "mean_padded_length": float(np.mean([f["input_ids"].shape[1] for f in feeds]))},
        "median_batch_ms": {k: 1000 * v for k, v in med.items()},
        "p90_batch_ms": {k: 1000 * float(np.percentile(v, 90)) for k, v in times.items()},
        "ms_per_text": {k: 1000 * v / batch_size for k, v in med.items()},
        "speedup": med["fp32"] / med["int8"], "target_speedup": TARGET_SPEEDUP,
        "meets_target": med["fp32"] / med["int8"] >= TARGET_SPEEDUP,
        "max_abs_diff_int8_vs_fp32": diffs,
        "label_flips": int((s32["label_ids"] != s8["label_ids"]).sum()), "rows_compared": int(len(z32)),
        "file_mb": {"fp32": (fp32 / m32.backbone.file).stat().st_size / 2**20,
                    "int8": (int8 / m8.backbone.file).stat().st_size / 2**20},
    }


def print_table(r: dict) -> None:
    print(f"backbone latency, batch {r['settings']['batch_size']} Rotten Tomatoes sentences "
          f"(mean padded length {r['settings']['mean_padded_length']:.1f}), {r['machine']['threads']} threads, "
          f"{r['settings']['batches']} batches x {r['settings']['repeats']} repeats, {r['machine']['cpu']}, "
          f"load average {r['machine']['loadavg_1min_before_after'][0]:.1f} -> "
          f"{r['machine']['loadavg_1min_before_after'][1]:.1f}")
    print(f"{'precision':<10}{'median ms/batch':>17}{'p90 ms/batch':>14}{'ms/text':>10}{'file MB':>10}")
    for k in ("fp32", "int8"):
        print(f"{k:<10}{r['median_batch_ms'][k]:>17.2f}{r['p90_batch_ms'][k]:>14.2f}{r['ms_per_text'][k]:>10.3f}"
              f"{r['file_mb'][k]:>10.1f}")
    ok = "meets" if r["meets_target"] else "MISSES"
    print(f"speed-up int8 vs fp32: {r['speedup']:.2f}x ({ok} the {r['target_speedup']}x target)")
    print(f"max abs diff int8 vs fp32 over {r['rows_compared']} texts "
          f"({r['label_flips']} label flips):")
    for k, v in r["max_abs_diff_int8_vs_fp32"].items():
        print(f"  {k:<18}{v:.3g}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fp32", required=True, type=Path, help="fp32 bundle folder")
    p.add_argument("--int8", required=True, type=Path, help="int8 bundle folder (same checkpoint)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=8, help="distinct batches of consecutive test sentences")
    p.add_argument("--repeats", type=int, default=5, help="timed passes over all batches")
    p.add_argument("--threads", default="default",
                   help="comma list of intra-op thread counts, one side-by-side run each "
                        "('default' = physical cores), e.g. 'default,1'")
    p.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "int8.json")
    a = p.parse_args(argv)
    runs = []
    for t in a.threads.split(","):
        threads = None if t.strip() == "default" else int(t)
        runs.append(run(a.fp32, a.int8, batch_size=a.batch_size, batches=a.batches, repeats=a.repeats,
                        threads=threads))
        print_table(runs[-1])
        print()
    a.json.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "int8", "runs": runs}
    a.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
