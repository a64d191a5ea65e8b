"""Per-batch CPU cost of the uncertainty head (head graph + kernels) against the backbone.

Measured three ways: in a batch job (the head runs once per block of
:data:`uehead.runtime.model.BLOCK_ROWS` rows), on one lone batch (what a request pays: nothing
amortises the head's fixed cost), and in a hot loop (caches warm). Torch-free.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uehead.bench.machine import loadavg
from uehead.bench.texts import model_texts
from uehead.bench.timing import mean_width, median, per_batch_medians
from uehead.runtime.model import BLOCK_ROWS
from uehead.scores import head_kind, head_params, resolve

__all__ = ["OVERHEAD_TEXTS", "head_overhead", "head_overhead_report", "head_path", "hot_head_times"]

#: Texts of the batch job in which the head's per-batch overhead is measured: one block of the
#: runtime (and one chunk of a file job), i.e. 32 batches of 32.
OVERHEAD_TEXTS = BLOCK_ROWS


def _overhead(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over ``runs`` (predict_stages results) per batch, in microseconds. ``head_plus_kernels``
    is the head graph (or the fused head call) + the score kernels; ``after_backbone`` adds the
    assembly of the Predictions object, which any classifier's output needs."""
    med = per_batch_medians(runs)
    hk = median([(r["head"] + r["kernels"]) / r["n_batches"] for r in runs])
    after = median([(r["head"] + r["kernels"] + r["assemble"]) / r["n_batches"] for r in runs])
    bb = med["backbone"]
    return {"tokenize_us": med["tokenize"] * 1e6, "backbone_us": bb * 1e6, "head_us": med["head"] * 1e6,
            "kernels_us": med["kernels"] * 1e6, "assemble_us": med["assemble"] * 1e6, "head_plus_kernels_us": hk * 1e6,
            "after_backbone_us": after * 1e6,
            "overhead_pct_of_backbone": 100.0 * hk / bb if bb > 0 else float("nan"),
            "after_backbone_pct_of_backbone": 100.0 * after / bb if bb > 0 else float("nan")}


def head_path(model) -> str:
    """Which head path ``model.predict`` takes: ``fused`` (one kernel call, see
    :mod:`uehead.runtime.linear_head`) or ``session`` (head graph + per-kind kernels)."""
    return "fused" if getattr(model, "linear_head", None) is not None else "session"


def head_overhead(model, texts: Sequence[str], batch_size: int = 32, repeats: int = 5,
                  one_batch_repeats: int = 15) -> dict[str, Any]:
    """Per-batch CPU cost of the uncertainty head (head graph + kernels) against the backbone.

    Measured in the pipeline of ``predict``, caches as the backbone leaves them:
    - batch job (the top-level keys): all ``texts`` through ``model.predict_stages(texts,
      batch_size=batch_size)``, ``repeats`` times; the head and the kernels run once per
      block of :data:`uehead.runtime.model.BLOCK_ROWS` rows, and their time is divided by the
      batches like the backbone's;
    - ``one_batch``: the first ``batch_size`` texts as one lone call, ``one_batch_repeats`` times
      (what a request of ``batch_size`` texts pays: the head's cost is fixed, nothing amortises it);
      on a model with a fused linear head, ``one_batch_session`` is the same lone call through the
      head graph + per-kind kernels, alternated with it call by call (the path the fused head replaces);
    - ``hot_head_us`` / ``hot_kernels_us``: the same head work in a hot loop (caches warm).
    Medians in microseconds; ``overhead_pct_of_backbone`` = 100 x (head + kernels) / backbone. Torch-free.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("head_overhead needs at least one text.")
    batch = texts[:batch_size]
    model.predict_stages(texts, batch_size=batch_size)  # warm at these shapes
    runs = [model.predict_stages(texts, batch_size=batch_size) for _ in range(max(1, repeats))]
    out: dict[str, Any] = {"batch_size": len(batch), "n_texts": len(texts), "n_batches": runs[0]["n_batches"],
                           "head_calls": runs[0]["head_calls"], "repeats": len(runs), "head_path": head_path(model),
                           "sequence_length": mean_width(runs[0]["shapes"])}
    out.update(_overhead(runs))
    singles, session_singles = [], []
    fused = getattr(model, "linear_head", None)
    for _ in range(max(1, one_batch_repeats)):
        singles.append(model.predict_stages(batch))
        if fused is not None:
            model.linear_head = None
            try:
                session_singles.append(model.predict_stages(batch))
            finally:
                model.linear_head = fused
    out["one_batch"] = {"repeats": len(singles), "sequence_length": singles[0]["sequence_length"],
                        **_overhead(singles)}
    if session_singles:
        out["one_batch_session"] = {"repeats": len(session_singles), **_overhead(session_singles)}
    out.update(hot_head_times(model, batch))
    return out


def hot_head_times(model, batch: list[str], loops: int = 200) -> dict[str, float]:
    """Head and kernels timed in a hot loop on one batch's features (caches warm), through the
    Model's public parts: the fused linear head's one call (``hot_kernels_us`` is then 0), or the
    head graph and the head-kind registry's kernels. In the pipeline each batch pays more: the
    backbone evicts them."""
    from uehead.runtime import kernels

    spec, head = model.manifest.backbone, model.manifest.head
    z = model.backbone_session.run([spec.output_name], model.tokenizer(batch))[0]
    fused = getattr(model, "linear_head", None)
    if fused is not None:
        n, c = len(z), model.num_classes
        rows = np.arange(n, dtype=np.int64)
        outs = (np.empty((n, c), np.float32), np.empty(n, np.int64), np.empty((2 + len(fused.kinds), n), np.float32))
        fused.score_into(z, rows, *outs)
        th = []
        for _ in range(loops):
            t0 = time.perf_counter()
            fused.score_into(z, rows, *outs)
            th.append(time.perf_counter() - t0)
        return {"hot_head_us": median(th) * 1e6, "hot_kernels_us": 0.0}
    names = [head.task_logits_name] + [h.output_name for h in head.heads]
    feed = {head.input_name: z}
    scorers = [(resolve(head_kind(h.kind).kernel), head_params(h.kind, h)) for h in head.heads]

    def score(outs):
        kernels.task_outputs(outs[0])
        for (kernel, params), logits in zip(scorers, outs[1:]):
            kernel(logits, **params)

    outs = model.head_session.run(names, feed)
    th, tk = [], []
    for _ in range(loops):
        t0 = time.perf_counter()
        outs = model.head_session.run(names, feed)
        t1 = time.perf_counter()
        score(outs)
        tk.append(time.perf_counter() - t1)
        th.append(t1 - t0)
    return {"hot_head_us": median(th) * 1e6, "hot_kernels_us": median(tk) * 1e6}


def _overhead_line(bundle: str | os.PathLike, length: str, threads: int, o: dict[str, Any]) -> str:
    """Each percentage names the backbone time it is taken against: the batch job's median per
    batch, and the lone batch's own (a lone call runs at other shapes and cache states)."""
    one = o["one_batch"]
    line = (f"per-batch CPU overhead of the head ({Path(bundle).name}, {o['head_path']} head, batch {o['batch_size']}, "
            f"{length} ~{o['mean_tokens']:.0f} tokens, {threads} threads): batch job of {o['n_texts']} texts: head "
            f"{o['head_us']:.1f} us + kernels {o['kernels_us']:.1f} us = {o['head_plus_kernels_us']:.1f} us per "
            f"batch = {o['overhead_pct_of_backbone']:.3f}% of its backbone time per batch "
            f"({o['backbone_us'] / 1e3:.1f} ms); one lone batch: {one['head_plus_kernels_us']:.0f} us = "
            f"{one['overhead_pct_of_backbone']:.3f}% of that batch's backbone time ({one['backbone_us'] / 1e3:.1f} ms), "
            f"{one['after_backbone_us']:.0f} us = {one['after_backbone_pct_of_backbone']:.3f}% with the Predictions "
            f"assembly")
    if "one_batch_session" in o:
        ses = o["one_batch_session"]
        line += (f"; the same lone batch through the head graph + kernels: {ses['head_plus_kernels_us']:.0f} us = "
                 f"{ses['overhead_pct_of_backbone']:.3f}% ({ses['after_backbone_us']:.0f} us with assembly)")
    return line


def head_overhead_report(bundle: str | os.PathLike, *, batch_size: int = 32, n_texts: int = OVERHEAD_TEXTS,
                         repeats: int = 3, threads: int | None = None, lengths: Sequence[str] = ("short", "t128"),
                         quiet: bool = False) -> dict[str, Any]:
    """Load ``bundle`` and measure :func:`head_overhead` on ``n_texts`` Rotten Tomatoes test
    sentences per length (short, and joined to ~128 tokens); print one line per length (batch
    job, one lone batch) on stdout and, unless ``quiet``, what is being measured on stderr; return
    a JSON-able dict. Torch-free."""
    from uehead.runtime import load
    from uehead.runtime.session import default_threads

    threads = threads or default_threads()
    model = load(bundle, threads=threads)
    texts = model_texts(model, max(n_texts, batch_size))
    out: dict[str, Any] = {"bundle": str(bundle), "threads": threads, "batch_size": batch_size,
                           "loadavg": loadavg(), "lengths": {}}
    for i, length in enumerate(lengths, 1):
        if not quiet:
            print(f"overhead [{i}/{len(lengths)}] {length}: a batch job of {len(texts[length]['texts'])} texts x "
                  f"{repeats} repeats, lone batches, a hot loop ...", file=sys.stderr, flush=True)
        o = head_overhead(model, texts[length]["texts"], batch_size=batch_size, repeats=repeats)
        o["mean_tokens"] = texts[length]["mean_tokens"]
        out["lengths"][length] = o
        if not quiet:
            print(_overhead_line(bundle, length, threads, o), flush=True)
    return out
