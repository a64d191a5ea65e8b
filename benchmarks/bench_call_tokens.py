"""How the tokens per single-thread backbone call (``load(call_tokens=...)``) change end-to-end time.

    python benchmarks/bench_call_tokens.py --fp32 B32 [--int8 B8] [--threads 2] [--repeats 9] [--out JSON]

ONNX Runtime runs a graph operator by operator over the whole call: once a call's activations
(the feed-forward's tokens x intermediate floats, the attention scores) outgrow the caches they go
to memory and back between operators. This times ``predict`` at batch 32 on the bench texts (short,
~64 and ~128 tokens) for each ``call_tokens`` value, engines interleaved per repeat (medians), and
prints time per batch and the ratio to whole-batch calls (``call_tokens=None``), beside the CPU
model and its measured fp32 / int8 GEMM peaks. Torch-free.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from uehead.bench.machine import loadavg, machine_info, timestamp
from uehead.bench.proc import peak_gflops
from uehead.bench.report import fixed_width_table, write_json
from uehead.bench.texts import model_texts
from uehead.bench.timing import e2e_times
from uehead.runtime import load
from uehead.runtime.session import default_threads
from uehead.runtime.sharding import CALL_TOKENS

#: The values swept (None: one call per part of a batch).
SWEEP = (None, 128, 256, 512, 1024, 2048)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fp32", type=Path, required=True)
    p.add_argument("--int8", type=Path, default=None)
    p.add_argument("--threads", type=int, default=None, help="default: physical cores")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--texts", type=int, default=128, help="texts per length")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--lengths", default="short,t64,t128")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "call_tokens.json")
    a = p.parse_args()
    threads = a.threads or default_threads()
    doc = {"meta": machine_info(threads), "settings": {"batch_size": a.batch_size, "repeats": a.repeats,
                                                       "sweep": list(SWEEP), "default": CALL_TOKENS},
           "peak": peak_gflops(threads), "rows": []}
    bundles = {"fp32": a.fp32, **({"int8": a.int8} if a.int8 else {})}
    for name, path in bundles.items():
        models = {t: load(path, threads=threads, call_tokens=t) for t in SWEEP}
        texts = model_texts(models[None], a.texts)
        for length in a.lengths.split(","):
            engines = {t: (lambda m: lambda xs, b: m.predict(xs, batch_size=b))(m) for t, m in models.items()}
            times = e2e_times(engines, texts[length]["texts"], a.batch_size, repeats=a.repeats)
            whole = times[None]["ms_per_batch"]
            for t, r in times.items():
                doc["rows"].append({"bundle": name, "length": length, "tokens_mean": texts[length]["mean_tokens"],
                                    "call_tokens": "whole" if t is None else t, "ms_per_batch": r["ms_per_batch"],
                                    "x_vs_whole": whole / r["ms_per_batch"], "spread_pct": r["spread_pct"]})
    doc["meta"].update(loadavg_end=loadavg(), finished=timestamp())
    m, pk = doc["meta"], doc["peak"]
    print(f"{m['cpu']}, {threads} threads, load average {m['loadavg_start']} -> {m['loadavg_end']}; "
          f"fp32 peak {pk['peak_gflops']:.0f} GFLOP/s, int8 peak {pk.get('int8_peak_gops') or 0:.0f} GOP/s")
    print(fixed_width_table(doc["rows"], ("bundle", "length", "tokens_mean", "call_tokens", "ms_per_batch",
                                          "x_vs_whole", "spread_pct"),
                            f"predict at batch {a.batch_size}, median of {a.repeats} (x = whole-batch calls / this)"))
    write_json(a.out, doc)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
