"""Why the head's cost per call is almost all fixed: a tiny step right after a backbone call (torch-free).

    python benchmarks/bench_cold_caches.py --bundle artifacts/bundle-fp32 [--repeats 25] [--out FILE.json]

Times one tiny NumPy call (``numpy.zeros((32, 2))``) and the bundle's head graph on one batch of 32
features in four situations: in a hot loop, after a 10 ms and a 100 ms sleep, and right after a
backbone call on 32 Rotten Tomatoes test sentences. If the tiny call is many times slower after the
backbone than in a loop, the head pays for code and data the backbone evicted, not for its own
work; which is why the runtime runs the head once per block of rows (``BLOCK_ROWS``), not
once per batch. Prints a table of medians (microseconds) and writes JSON.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from uehead.bench.report import fixed_width_table, write_json
from uehead.bench.texts import model_texts
from uehead.runtime import load


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, type=Path)
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "cold_caches.json")
    a = ap.parse_args(argv)
    model = load(a.bundle)
    spec, head = model.manifest.backbone, model.manifest.head
    texts = model_texts(model, 32)["short"]["texts"][:32]
    feeds = model.tokenizer(texts)
    names = [head.task_logits_name] + [h.output_name for h in head.heads]
    z = model.backbone_session.run([spec.output_name], feeds)[0]
    before = {"hot loop": lambda: None, "after 10 ms sleep": lambda: time.sleep(0.01),
              "after 100 ms sleep": lambda: time.sleep(0.1),
              "after a backbone call": lambda: model.backbone_session.run([spec.output_name], feeds)}
    steps = {"numpy.zeros((32, 2))": lambda: np.zeros((32, 2), np.float32),
             "head graph, 32 rows": lambda: model.head_session.run(names, {head.input_name: z})}
    rows = []
    for step, fn in steps.items():
        for situation, setup in before.items():
            times = []
            for _ in range(a.repeats):
                setup()
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            rows.append({"step": step, "situation": situation, "median_us": 1e6 * statistics.median(times),
                         "min_us": 1e6 * min(times)})
    print(fixed_width_table(rows, ["step", "situation", "median_us", "min_us"],
                            f"{a.bundle.name}: one small step, timed alone (microseconds, {a.repeats} repeats)"))
    doc = {"bundle": str(a.bundle), "repeats": a.repeats, "rows": rows}
    write_json(a.out, doc)
    return doc


if __name__ == "__main__":
    main()
