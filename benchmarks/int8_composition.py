"""How much an int8 bundle's test metrics move with the batch composition (torch-free).

    python benchmarks/int8_composition.py --fp32 B32 --int8 B8 [--data rotten_tomatoes] [--out JSON]

Dynamic int8 quantisation picks each activation scale from the rows of one backbone call, so a
text's int8 output depends on which texts share its call: the batch size, and whether the batch is
split across cores (``load(shard_batches=...)``), and the tokens per single-thread call
(``load(call_tokens=...)``). This scores the whole test split through the
runtime under several compositions and prints accuracy and ROC-AUC (x100, every uncertainty score
higher = more uncertain) of each beside fp32's, which does not depend on the composition.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from uehead.bench.machine import machine_info
from uehead.datasets import load_dataset
from uehead.evaluation.metrics import roc_auc
from uehead.runtime import load

#: (threads, shard_batches, batch_size, call_tokens) of each composition scored; the last two are
#: ``load``'s defaults on 2 cores at batch 32 and 64.
COMPOSITIONS = ((1, False, 8, None), (1, False, 16, None), (1, False, 32, None), (1, False, 64, None),
                (1, False, 32, 512), (2, True, 32, None), (2, True, 32, 512), (2, True, 64, 512))


def _metrics(preds, labels: np.ndarray, scores=("sr", "adue", "alien")) -> dict:
    errors = (preds.label_ids != labels).astype(np.int8)
    return {"accuracy": 100 * float(1 - errors.mean()),
            **{s: 100 * float(roc_auc(preds.scores[s], errors)) for s in scores if s in preds.scores}}


def _versus(preds, ref) -> dict:
    """How far a run's outputs are from the fp32 reference: mean |probability difference| (x100,
    over every class) and the labels that differ."""
    return {"mean_dprob": 100 * float(np.abs(np.asarray(preds.probs) - np.asarray(ref.probs)).mean()),
            "label_flips": int((np.asarray(preds.label_ids) != np.asarray(ref.label_ids)).sum())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fp32", type=Path, required=True)
    p.add_argument("--int8", type=Path, required=True)
    p.add_argument("--data", default="rotten_tomatoes")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "int8_composition.json")
    a = p.parse_args()
    test = load_dataset(a.data, splits=("test",))["test"]
    texts, labels = list(test.texts), np.asarray(test.labels)
    ref = load(a.fp32, threads=1, call_tokens=None).predict(texts)
    rows = [{"bundle": "fp32", "threads": 1, "shard_batches": False, "batch_size": 32, "call_tokens": None,
             **_metrics(ref, labels), **_versus(ref, ref)}]
    for threads, shard, batch, tokens in COMPOSITIONS:
        model = load(a.int8, threads=threads, shard_batches=shard, call_tokens=tokens)
        preds = model.predict(texts, batch_size=batch)
        rows.append({"bundle": "int8", "threads": threads, "shard_batches": shard, "batch_size": batch,
                     "call_tokens": tokens, **_metrics(preds, labels), **_versus(preds, ref)})
    names = [k for k in rows[0] if k not in ("bundle", "threads", "shard_batches", "batch_size", "call_tokens")]
    print(f"{a.data} test, {len(texts)} rows; x100, every uncertainty score higher = more uncertain")
    print(f"{'bundle':6s} {'threads':>7s} {'shards':>6s} {'batch':>5s} {'tokens':>6s} "
          + " ".join(f"{n:>8s}" for n in names))
    for r in rows:
        parts = r["threads"] if r["shard_batches"] else 1
        print(f"{r['bundle']:6s} {r['threads']:7d} {parts:6d} {r['batch_size']:5d} {str(r['call_tokens'] or '-'):>6s} "
              + " ".join(f"{r[n]:8.2f}" if isinstance(r[n], float) else f"{r[n]:8d}" for n in names))
    spread = {n: max(r[n] for r in rows[1:]) - min(r[n] for r in rows[1:]) for n in names}
    print("mean_dprob: mean |int8 - fp32| probability x100; label_flips: labels that differ from fp32")
    print("int8 spread across compositions (max - min): " + ", ".join(f"{n} {v:.2f}" for n, v in spread.items()))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"meta": machine_info(1), "data": a.data, "rows": rows, "int8_spread": spread,
                                 "fp32": str(a.fp32), "int8": str(a.int8)}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
