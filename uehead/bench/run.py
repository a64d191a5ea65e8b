"""``uehead bench``: one run of every benchmark section, tables printed, one JSON document written.

The sections (``parts``), measured on the same texts, medians over ``repeats``:

* ``peak``: the CPU's fp32 matmul peak on the same threads (numpy and ONNX Runtime) and ONNX
  Runtime's int8 GEMM peak (its quantised MatMul ops), measured at the start and again at the end
  (the best of each is kept);
* ``stages``: per batch, tokenisation / backbone graph / head graph / kernels, the head +
  kernels as a percentage of the backbone, the backbone's GFLOP/s (% of the fp32 peak; an int8
  backbone's also as % of the int8 peak, ``pct_of_int8_peak``), and the head's overhead in a
  batch job (:mod:`uehead.bench.overhead`);
* ``e2e``: end to end (texts in, probabilities out) for each bundle and, with a checkpoint and the
  export extra, for the peers (:mod:`uehead.bench.peers`);
* ``coldstart``: import + load + first prediction in fresh processes, and peak RSS.

Torch-free: the peers are imported only when a checkpoint is given.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uehead.bench.engines import bundle_engine_name, peer_names, runtime_engine
from uehead.bench.flops import backbone_dims, bert_flops
from uehead.bench.machine import loadavg, machine_info, timestamp
from uehead.bench.overhead import OVERHEAD_TEXTS, head_overhead
from uehead.bench.proc import coldstart, peak_gflops
from uehead.bench.report import check_targets, print_report, write_json
from uehead.bench.texts import LENGTHS, model_texts
from uehead.bench.timing import STAGES, e2e_times, mean_width, median, stage_times

__all__ = ["BATCH_SIZES", "PARTS", "merge_peak", "run_bench"]

BATCH_SIZES = (1, 8, 32, 128)
PARTS = ("peak", "stages", "e2e", "coldstart")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_bench(bundle: str | os.PathLike | Sequence[str | os.PathLike], json_out: str | os.PathLike | None = None, *,
              checkpoint: str | os.PathLike | None = None, repeats: int = 7, batch_sizes: Sequence[int] = BATCH_SIZES,
              lengths: Sequence[str] = tuple(LENGTHS), min_texts: int = 32, threads: int | None = None,
              parts: Sequence[str] = PARTS, peers: Sequence[str] | None = None,
              coldstart_runs: int = 5, quiet: bool = False, intra_op_engines: bool = False) -> dict[str, Any]:
    """Run the benchmarks, print tables, write ``json_out``; return the JSON document.

    ``bundle`` is one bundle folder or several (e.g. the fp32 and the int8 bundle of one model:
    they are measured side by side). ``checkpoint`` (CKPT or CKPT/model) enables the peers when
    the export extra is installed (else each is reported as skipped, with the install command):
    ``peers`` picks among :data:`uehead.bench.engines.PEERS` (default all that can run). ``parts`` picks the sections. A cell at batch size b runs the first
    ``max(b, min_texts)`` texts of a length, the same texts for every engine. Every figure is
    measured here; nothing is filled in. ``intra_op_engines`` adds, in the e2e section, each bundle
    loaded with ``shard_batches=False`` (named ``<engine>-intraop``: every batch on ONNX Runtime's
    intra-op threads), so the effect of splitting batches across the cores is measured side by side.
    """
    from uehead.runtime import load
    from uehead.runtime.session import default_threads

    bundles = [Path(bundle)] if isinstance(bundle, (str, os.PathLike)) else [Path(b) for b in bundle]
    _validate_run_args(bundles, lengths, parts, batch_sizes, repeats)
    threads = threads or default_threads()
    doc: dict[str, Any] = {"meta": machine_info(threads), "settings": {
        "repeats": repeats, "batch_sizes": list(batch_sizes), "lengths": list(lengths), "min_texts": min_texts,
        "bundles": [str(b) for b in bundles], "checkpoint": None if checkpoint is None else str(checkpoint)}}
    models = {}
    for b in bundles:
        name = bundle_engine_name(b)
        models[name if name not in models else f"{name}:{b.name}"] = load(b, threads=threads)
    first = models[next(iter(models))]
    texts = model_texts(first, max(max(batch_sizes), min_texts, OVERHEAD_TEXTS))
    doc["texts"] = {k: {"n": len(v["texts"]), "mean_tokens": v["mean_tokens"], "source": v["source"]}
                    for k, v in texts.items()}
    doc["backbone_dims"] = backbone_dims(bundles[0], checkpoint)
    cells = _Cells(texts, lengths, batch_sizes, min_texts, repeats)

    if "peak" in parts:
        _say("peak: fp32 and int8 matmul on the same threads ...")
        doc["peak"] = peak_gflops(threads)
    if "stages" in parts:
        _run_stages(doc, models, cells)
    if "e2e" in parts:
        extra = {f"{k}-intraop": load(m.path, threads=threads, shard_batches=False)
                 for k, m in models.items()} if intra_op_engines else {}
        _run_e2e(doc, models, cells, checkpoint=checkpoint, threads=threads, peers=peers, extra=extra)
    if "coldstart" in parts:
        _say("coldstart: fresh processes ...")
        doc["coldstart"] = coldstart({k: m.path for k, m in models.items()}, checkpoint=checkpoint,
                                     runs=coldstart_runs, threads=threads,
                                     texts=texts["t128"]["texts"][:32], say=_say)
    if "peak" in parts and ("stages" in parts or "e2e" in parts):
        _say("peak: again at the end (a busy neighbour may have slowed the first measurement) ...")
        merge_peak(doc, peak_gflops(threads))
    doc["meta"]["loadavg_end"] = loadavg()
    doc["meta"]["finished"] = timestamp()
    doc["summary"] = check_targets(doc)
    if not quiet:
        print_report(doc)
    if json_out is not None:
        write_json(json_out, doc)
    return doc


@dataclass(frozen=True)
class _Cells:
    """The (length, batch size) cells of a run and the texts of each."""

    texts: dict[str, dict[str, Any]]
    lengths: Sequence[str]
    batch_sizes: Sequence[int]
    min_texts: int
    repeats: int

    def __len__(self) -> int:
        return len(self.lengths) * len(self.batch_sizes)

    def __iter__(self):
        for length in self.lengths:
            for b in self.batch_sizes:
                yield length, b, self.texts[length]["texts"][:max(b, self.min_texts)]


def _run_stages(doc: dict[str, Any], models: dict[str, Any], cells: _Cells) -> None:
    """Per-stage rows of every bundle and cell, and each bundle's head overhead in a batch job."""
    rows = []
    total, done = len(models) * len(cells), 0
    for name, model in models.items():
        for length, b, cell in cells:
            done += 1
            _say(f"stages [{done}/{total}]: {name} {length} batch {b} ...")
            st = stage_times(model, cell, b, cells.repeats)
            rows.append(_stage_row(name, length, b, st, doc["backbone_dims"], doc.get("peak")))
        _say(f"overhead: {name} head vs backbone in a batch job of {OVERHEAD_TEXTS} texts ...")
        doc.setdefault("overhead", {})[name] = head_overhead(
            model, cells.texts["short"]["texts"][:OVERHEAD_TEXTS], 32, repeats=max(3, min(cells.repeats, 5)))
    doc["stages"] = rows


def _run_e2e(doc: dict[str, Any], models: dict[str, Any], cells: _Cells, *, checkpoint, threads: int,
             peers: Sequence[str] | None, extra: dict[str, Any] | None = None) -> None:
    """End-to-end rows of every engine (bundles, ``extra`` runtime models, then the peers) and cell,
    and their agreement."""
    engines: dict[str, Callable] = {name: runtime_engine(m) for name, m in {**models, **(extra or {})}.items()}
    peer_objs, doc["peers"] = {}, {}
    if checkpoint is not None:
        wanted = peer_names(peers)
        try:
            from uehead.bench.peers import make_peers
        except ImportError as exc:  # no export extra: the run goes on without the peers
            doc["peers"] = {w: {"skipped": str(exc)} for w in wanted}
        else:
            max_length = next(iter(models.values())).tokenizer.max_length
            peer_objs, doc["peers"] = make_peers(checkpoint, threads=threads, max_length=max_length, only=wanted,
                                                 say=_say)
            engines.update({k: p.predict for k, p in peer_objs.items()})
    rows = []
    for i, (length, b, cell) in enumerate(cells, 1):
        _say(f"e2e [{i}/{len(cells)}]: {length} batch {b}: {', '.join(engines)} ...")
        for engine, r in e2e_times(engines, cell, b, cells.repeats).items():
            row = {"length": length, "batch_size": b, "engine": engine, "n_texts": len(cell), **r}
            if engine in peer_objs:
                row.update(_peer_split(peer_objs[engine].take_log(), len(cell), doc["backbone_dims"]))
                _add_pcts(row, engine, doc.get("peak"))
            rows.append(row)
    doc["e2e"] = rows
    doc["agreement"] = _agreement(engines, cells.texts["short"]["texts"])


def _validate_run_args(bundles, lengths, parts, batch_sizes, repeats) -> None:
    if not bundles:
        raise ValueError("run_bench needs at least one bundle.")
    for what, given, known in (("lengths", lengths, tuple(LENGTHS)), ("parts", parts, PARTS)):
        bad = [x for x in given if x not in known]
        if bad or not given:
            raise ValueError(f"{what}={list(given)!r}: choose among {list(known)}.")
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes={list(batch_sizes)!r}: pass positive ints.")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r}: pass a positive int.")


def _is_int8(engine: str) -> bool:
    """Whether an engine's backbone runs int8 GEMMs (its efficiency is then also read against the int8 peak)."""
    return engine.split(":", 1)[0].endswith("-int8")


def _add_pcts(row: dict[str, Any], engine: str, peak: dict[str, Any] | None) -> None:
    """``pct_of_peak`` (fp32 peak) and, for an int8 engine, ``pct_of_int8_peak`` from ``backbone_gflops``
    (an int8 backbone's multiply-adds count 2 ops each, like the int8 peak's)."""
    if not row.get("backbone_gflops") or not peak:
        return
    if peak.get("peak_gflops"):
        row["pct_of_peak"] = 100.0 * row["backbone_gflops"] / peak["peak_gflops"]
    if _is_int8(engine) and peak.get("int8_peak_gops"):
        row["pct_of_int8_peak"] = 100.0 * row["backbone_gflops"] / peak["int8_peak_gops"]


def _stage_row(name, length, b, st, dims, peak) -> dict[str, Any]:
    row = {"bundle": name, "length": length, "batch_size": b,
           "seq_len_mean": mean_width(st["shapes"]),
           **{f"{k}_us": st[k] * 1e6 for k in STAGES}}
    row["head_plus_kernels_us"] = row["head_us"] + row["kernels_us"]
    row["overhead_pct"] = 100.0 * row["head_plus_kernels_us"] / row["backbone_us"] if row["backbone_us"] else None
    if dims:
        gflop = bert_flops(dims, st["shapes"]) / st["n_batches"] / 1e9
        row["backbone_gflop_per_batch"] = gflop
        row["backbone_gflops"] = gflop / st["backbone"] if st["backbone"] else None
        _add_pcts(row, name, peak)
    return row


def merge_peak(doc: dict[str, Any], again: dict[str, Any]) -> None:
    """Keep the best of the peak measurements (all kept under ``runs``), the fp32 and the int8 peak
    each from its own best run, and rescale ``pct_of_peak`` / ``pct_of_int8_peak``."""
    peak = dict(doc["peak"])
    runs = peak.pop("runs", None) or [peak]
    runs.append(again)
    best = max(runs, key=lambda r: r["peak_gflops"])
    merged = {k: v for k, v in best.items() if k not in ("int8_peak_gops", "int8_peak_op", "int8_skipped")}
    int8_runs = [r for r in runs if r.get("int8_peak_gops")]
    if int8_runs:
        best8 = max(int8_runs, key=lambda r: r["int8_peak_gops"])
        merged.update(int8_peak_gops=best8["int8_peak_gops"], int8_peak_op=best8.get("int8_peak_op"),
                      onnxruntime_int8=best8.get("onnxruntime_int8"))
    else:
        merged.update(int8_peak_gops=None, int8_skipped=best.get("int8_skipped", "no int8 measurement"))
    doc["peak"] = {**merged, "runs": runs}
    for row in doc.get("stages", []):
        _add_pcts(row, row.get("bundle", ""), doc["peak"])
    for row in doc.get("e2e", []):
        _add_pcts(row, row.get("engine", ""), doc["peak"])


def _peer_split(log, n_texts: int, dims) -> dict[str, float]:
    """Tokenise / forward split of a peer's timed calls (medians) and its forward GFLOP/s."""
    calls = [c for c in log[1:] if c[0] == n_texts]  # log[0] is e2e_times' warm-up call
    if not calls:
        return {}
    n_batches = len(calls[0][3])
    tok, fwd = median([c[1] for c in calls]), median([c[2] for c in calls])
    out = {"tokenize_ms_per_batch": 1e3 * tok / n_batches, "forward_ms_per_batch": 1e3 * fwd / n_batches,
           "seq_len_mean": float(np.mean([s for _, s in calls[0][3]]))}
    if dims and fwd > 0:
        out["backbone_gflops"] = bert_flops(dims, calls[0][3]) / fwd / 1e9
    return out


def _agreement(engines: dict[str, Callable], texts: list[str]) -> dict[str, dict[str, float]]:
    """Argmax agreement and max |prob diff| of every engine against the first (sanity: same model)."""
    probs = {k: np.asarray(fn(texts, 32)) for k, fn in engines.items()}
    ref_name = next(iter(probs))
    ref = probs[ref_name]
    return {k: {"vs": ref_name, "label_agreement": float((p.argmax(1) == ref.argmax(1)).mean()),
                "max_abs_prob_diff": float(np.abs(p - ref).max())} for k, p in probs.items()}
