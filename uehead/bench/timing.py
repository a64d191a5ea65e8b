"""Timing primitives: per-stage times of the runtime's pipeline and end-to-end times of engines.

Every figure is a median over repeats, so one slow repeat (another process waking up) does not
move it. Torch-free.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["STAGES", "e2e_times", "mean_width", "median", "per_batch_medians", "stage_times"]

#: The stages ``Model.predict_stages`` clocks, in pipeline order.
STAGES = ("tokenize", "backbone", "head", "kernels", "assemble")


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def mean_width(shapes: Sequence[tuple[int, int]]) -> float:
    """Padded tokens per row the backbone ran: the rows-weighted mean width of its ``(rows, width)`` calls."""
    return float(sum(b * s for b, s in shapes) / max(1, sum(b for b, _ in shapes)))


def per_batch_medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per stage, the median over ``runs`` (``predict_stages`` results) of its seconds per batch."""
    return {k: median([r[k] / r["n_batches"] for r in runs]) for k in STAGES}


def stage_times(model, texts: list[str], batch_size: int, repeats: int = 7) -> dict[str, Any]:
    """Per-batch stage times (seconds; median over repeats of the mean over the batches).

    Runs ``texts`` through ``model.predict_stages(texts, batch_size=batch_size)``: the pipeline of
    ``predict`` (texts sorted by token length, then cut; the head graph once per block of rows).
    Also returns the padded shapes fed to the backbone (for FLOP counts).
    """
    runs = [model.predict_stages(texts, batch_size=batch_size) for _ in range(max(1, repeats))]
    out: dict[str, Any] = per_batch_medians(runs)
    out["shapes"] = runs[0]["shapes"]
    out["n_batches"] = runs[0]["n_batches"]
    out["head_calls"] = runs[0]["head_calls"]
    return out


def e2e_times(engines: dict[str, Callable[[list[str], int], Any]], texts: list[str], batch_size: int,
              repeats: int = 7, settle_s: float = 0.05) -> dict[str, dict[str, float]]:
    """End-to-end time to score ``texts`` at ``batch_size`` for each engine, interleaved per repeat
    (so load from other processes hits every engine alike), with ``settle_s`` of idle time before
    each call (ONNX Runtime and OpenMP worker threads spin for a while after a run; on 2 cores that
    would tax whichever engine runs next). Returns per engine the median total seconds, ms per
    batch (median and best) and texts/s."""
    for fn in engines.values():  # warm every engine at this shape
        fn(texts[:batch_size], batch_size)
    times: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(repeats):
        for name, fn in engines.items():
            time.sleep(settle_s)  # let the previous engine's spinning worker threads park
            t0 = time.perf_counter()
            fn(texts, batch_size)
            times[name].append(time.perf_counter() - t0)
    n_batches = -(-len(texts) // batch_size)
    out = {}
    for name, ts in times.items():
        total = median(ts)
        out[name] = {"total_s": total, "ms_per_batch": 1e3 * total / n_batches, "texts_per_s": len(texts) / total,
                     "best_ms_per_batch": 1e3 * min(ts) / n_batches,
                     "spread_pct": 100.0 * (max(ts) - min(ts)) / total if total > 0 else 0.0}
    return out
