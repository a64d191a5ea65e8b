"""Backbone latency of bundles of one checkpoint, side by side in one run (torch-free): fp32 vs int8,
and any other builds of it (``uehead export --fusions``, ``--int8-method static``).

    python benchmarks/bench_int8.py --fp32 BUNDLE_FP32 --int8 BUNDLE_INT8 \\
        [--also fp32-fused=BUNDLE --also int8-static=BUNDLE ...] [--lengths short,t128] [--threads 1]

Every backbone gets the same batches of Rotten Tomatoes test sentences (``uehead.bench.texts``:
``short`` = one sentence, ``t64`` / ``t128`` = consecutive sentences joined to ~64 / ~128 tokens),
tokenised with the fp32 bundle's tokenizer.json at ``--max-length`` tokens (default 128: the backbone
graphs take any length up to their position embeddings, so a bundle exported at max_length 64 is
still timed on 128-token inputs), sorted by length and cut into batches as the runtime does, and
padded to the longest in each batch. The backbones are timed alternately (fp32, int8, the others,
fp32, ...) so load from other processes hits all alike. Reports each one's median per-batch latency,
its speed-up over fp32 and over the int8 bundle (target: int8 >= 1.6x fp32), how each was built
(precision, int8 method, fusions, from its manifest), and the max abs diffs against fp32 of
features, probabilities and every uncertainty (higher = more uncertain) through the fp32 bundle's
head. Prints a table per length and writes benchmarks/results/int8.json. ``--threads default,1``
repeats the comparison per thread count (on a shared machine the one-thread run is the least
disturbed by other processes; the load average is recorded with each run).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from uehead import scores as reference
from uehead.bench.machine import cpu_name
from uehead.bench.texts import LENGTHS, bench_texts
from uehead.bundle import load_manifest
from uehead.runtime.session import default_threads, make_session
from uehead.runtime.tokenize import TextTokenizer

TARGET_SPEEDUP = 1.6
TEXTS_PER_LENGTH = 128


def _scores(head, manifest, z: np.ndarray) -> dict[str, np.ndarray]:
    names = [manifest.head.task_logits_name] + [h.output_name for h in manifest.head.heads]
    outs = dict(zip(names, head.run(names, {manifest.head.input_name: z})))
    probs, sr, ent, _ = reference.task_outputs(outs[manifest.head.task_logits_name])
    res = {"probs": probs, "softmax_response": sr, "entropy": ent, "label_ids": probs.argmax(1)}
    for h in manifest.head.heads:
        kind = reference.head_kind(h.kind)
        res[h.kind] = kind.score_reference(outs[h.output_name], **reference.head_params(kind, h))
    return res


def built_with(manifest) -> dict:
    """How a bundle's backbone was built, from its manifest reports."""
    export = manifest.reports.get("export", {})
    int8 = manifest.reports.get("int8") or {}
    fusions = export.get("graph_fusions") or {}
    return {"precision": manifest.backbone.precision, "int8_method": int8.get("method", "dynamic" if int8 else None),
            "fusions": fusions.get("fused_ops") if fusions.get("applied") else None,
            "max_length": manifest.tokenizer.max_length}


def _feeds(tok: TextTokenizer, texts: list[str], batch_size: int) -> list[dict[str, np.ndarray]]:
    ids = tok.encode(texts)
    order = np.argsort([len(x) for x in ids], kind="stable")  # the runtime batches by length
    return [tok.pad([ids[i] for i in order[s:s + batch_size]]) for s in range(0, len(order), batch_size)]


def run(bundles: dict[str, Path], *, batch_size: int, lengths: list[str], repeats: int, threads: int | None,
        max_length: int) -> dict:
    """One side-by-side comparison; ``bundles`` maps a name to a folder, "fp32" and "int8" first."""
    load_before = os.getloadavg()
    manifests = {k: load_manifest(p) for k, p in bundles.items()}
    if manifests["int8"].backbone.precision != "int8":
        raise SystemExit(f"{bundles['int8']}: backbone precision is {manifests['int8'].backbone.precision!r}, "
                         "expected an int8 bundle.")
    m32 = manifests["fp32"]
    tok = TextTokenizer(bundles["fp32"] / m32.tokenizer.file, dataclasses.replace(m32.tokenizer, max_length=max_length))
    texts = bench_texts(lambda t: [len(x) for x in tok.encode(t)], n=TEXTS_PER_LENGTH, max_length=max_length)
    threads = threads or default_threads()
    sessions = {k: make_session(p / manifests[k].backbone.file, threads=threads) for k, p in bundles.items()}
    head = make_session(bundles["fp32"] / m32.head.file, threads=1)
    result = {
        "machine": {"cpu": cpu_name() or "unknown", "cpu_count": os.cpu_count(), "threads": threads,
                    "python": platform.python_version(), "onnxruntime": __import__("onnxruntime").__version__},
        "bundles": {k: {"path": str(p), **built_with(manifests[k])} for k, p in bundles.items()},
        "model": m32.reports.get("training", {}).get("model"),
        "settings": {"batch_size": batch_size, "repeats": repeats, "texts_per_length": TEXTS_PER_LENGTH,
                     "tokenizer_max_length": max_length, "source": texts[lengths[0]]["source"]},
        "lengths": {},
    }
    for length in lengths:
        feeds = _feeds(tok, texts[length]["texts"], batch_size)
        result["lengths"][length] = _compare(sessions, manifests, head, feeds, repeats, batch_size)
        result["lengths"][length]["mean_tokens"] = texts[length]["mean_tokens"]
    result["machine"]["loadavg_1min_before_after"] = [load_before[0], os.getloadavg()[0]]
    return result


def _compare(sessions, manifests, head, feeds, repeats: int, batch_size: int) -> dict:
    out_name = {k: manifests[k].backbone.output_name for k in sessions}
    features = {k: [] for k in sessions}
    for k, s in sessions.items():  # warm-up + outputs for the diffs
        for f in feeds:
            features[k].append(s.run([out_name[k]], f)[0])
    times = {k: [] for k in sessions}
    for _ in range(repeats):
        for f in feeds:
            for k, s in sessions.items():  # alternate, so background load hits all alike
                t0 = time.perf_counter()
                s.run([out_name[k]], f)
                times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    z32 = np.concatenate(features["fp32"])
    s32 = _scores(head, manifests["fp32"], z32)
    diffs, flips = {}, {}
    for k in sessions:
        z = np.concatenate(features[k])
        s = _scores(head, manifests["fp32"], z)
        diffs[k] = {"features": float(np.abs(z32 - z).max()),
                    **{n: float(np.abs(np.asarray(s32[n], np.float64) - s[n]).max()) for n in s32 if n != "label_ids"}}
        flips[k] = int((s32["label_ids"] != s["label_ids"]).sum())
    return {
        "batches": len(feeds), "mean_padded_length": float(np.mean([f["input_ids"].shape[1] for f in feeds])),
        "median_batch_ms": {k: 1000 * v for k, v in med.items()},
        "p90_batch_ms": {k: 1000 * float(np.percentile(v, 90)) for k, v in times.items()},
        "ms_per_text": {k: 1000 * v / batch_size for k, v in med.items()},
        "speedup_vs_fp32": {k: med["fp32"] / v for k, v in med.items()},
        "speedup_vs_int8": {k: med["int8"] / v for k, v in med.items()},
        "speedup": med["fp32"] / med["int8"], "target_speedup": TARGET_SPEEDUP,
        "meets_target": med["fp32"] / med["int8"] >= TARGET_SPEEDUP,
        "max_abs_diff_vs_fp32": diffs, "label_flips_vs_fp32": flips, "rows_compared": int(len(z32)),
    }


def print_table(r: dict) -> None:
    load = r["machine"]["loadavg_1min_before_after"]
    print(f"backbone latency, batch {r['settings']['batch_size']}, {r['machine']['threads']} threads, "
          f"{r['settings']['repeats']} repeats, {r['machine']['cpu']}, load average {load[0]:.1f} -> {load[1]:.1f}")
    for k, b in r["bundles"].items():
        print(f"  {k}: {b['precision']}, int8 method {b['int8_method']}, fusions {b['fusions']}, {b['path']}")
    for length, x in r["lengths"].items():
        print(f"{length}: {x['batches']} batches, mean padded length {x['mean_padded_length']:.1f}")
        print(f"  {'backbone':<14}{'median ms':>11}{'p90 ms':>9}{'x fp32':>8}{'x int8':>8}{'features diff':>15}"
              f"{'flips':>7}")
        for k in x["median_batch_ms"]:
            print(f"  {k:<14}{x['median_batch_ms'][k]:>11.2f}{x['p90_batch_ms'][k]:>9.2f}"
                  f"{x['speedup_vs_fp32'][k]:>8.2f}{x['speedup_vs_int8'][k]:>8.2f}"
                  f"{x['max_abs_diff_vs_fp32'][k]['features']:>15.3g}{x['label_flips_vs_fp32'][k]:>7}")
        ok = "meets" if x["meets_target"] else "MISSES"
        print(f"  int8 vs fp32: {x['speedup']:.2f}x ({ok} the {x['target_speedup']}x target)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fp32", required=True, type=Path, help="fp32 bundle folder")
    p.add_argument("--int8", required=True, type=Path, help="int8 bundle folder (same checkpoint)")
    p.add_argument("--also", action="append", default=[], metavar="NAME=BUNDLE",
                   help="another bundle of the same checkpoint to time alongside (repeatable)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lengths", default="short,t128", help=f"comma list of {list(LENGTHS)}")
    p.add_argument("--max-length", type=int, default=128, help="tokenizer max_length of the timed inputs")
    p.add_argument("--repeats", type=int, default=5, help="timed passes over all batches")
    p.add_argument("--threads", default="default",
                   help="comma list of intra-op thread counts, one side-by-side run each "
                        "('default' = physical cores), e.g. 'default,1'")
    p.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "int8.json")
    a = p.parse_args(argv)
    bundles = {"fp32": a.fp32, "int8": a.int8}
    for item in a.also:
        name, sep, path = item.partition("=")
        if not sep or name in bundles:
            p.error(f"--also {item!r}: use a new NAME=BUNDLE")
        bundles[name] = Path(path)
    lengths = [x.strip() for x in a.lengths.split(",")]
    if not set(lengths) <= set(LENGTHS):
        p.error(f"--lengths {a.lengths!r}: choose from {list(LENGTHS)}")
    runs = []
    for t in a.threads.split(","):
        threads = None if t.strip() == "default" else int(t)
        runs.append(run(bundles, batch_size=a.batch_size, lengths=lengths, repeats=a.repeats, threads=threads,
                        max_length=a.max_length))
        print_table(runs[-1])
        print()
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({"benchmark": "int8", "runs": runs}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
