"""How cost grows: time per text against sequence length and batch size, bundles side by side.

    doc = scaling_sweep({"fp32": "bundle-fp32", "int8": "bundle-int8"})   # JSON-able dict

Each cell (length L, batch size B) feeds every bundle the same B rows of exactly L tokens: Rotten
Tomatoes test sentences (:mod:`uehead.bench.texts`; synthetic ones without the data) tokenised
with the bundle's ``tokenizer.json`` without truncation, their ids concatenated and cut to fill
the row between the tokenizer's own special tokens ([CLS] ... [SEP] for BERT), attention mask all
ones, token types zeros. The manifest's ``max_length`` is deliberately ignored: the backbone graph's
sequence axis is dynamic, and the limit that counts is its position embeddings
(``backbone.max_positions``); longer lengths are skipped with the reason.

What is timed per call: backbone.onnx, then head.onnx on its features, then the score kernels
(``Model.score_outputs``), i.e. ``predict`` on one batch minus tokenisation. The bundles are
timed alternately (order reversed every other repeat, idle ``settle_s`` before each call), so load
from other processes hits them alike; figures are medians over the repeats. Big cells get fewer
repeats (``max_tokens_per_cell``); each cell records its own.

Memory: an ONNX Runtime session keeps about twice a shape's first-run memory after its second run
(batch 128 x 512 tokens of MiniLM: ~8 GB per session), so each bundle returns its memory after each
cell, every cell records its peak RSS, and a cell whose estimated need (from the cells before it)
is over ``memory_share`` of the available memory runs the bundles one after the other instead of
alternated (its ``memory.order`` says so), or is skipped with the reason if one bundle alone would
not fit. Torch-free.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uehead.bench.flops import backbone_dims, bert_flops
from uehead.bench.machine import loadavg, machine_info, timestamp
from uehead.bench.texts import source_sentences
from uehead.bench.timing import median
from uehead.errors import IncompatibleBundleError

__all__ = ["BATCH_SIZES", "LENGTHS", "MAX_TOKENS_PER_CELL", "MEMORY_SHARE", "MIN_REPEATS", "ExactLengthInputs",
           "scaling_sweep"]

#: Sequence lengths (tokens, special tokens included) and batch sizes of the default grid.
LENGTHS = (16, 32, 64, 128, 256, 512)
BATCH_SIZES = (1, 8, 32, 128)
#: Tokens one bundle runs over a cell's repeats, at most: a cell of B x L tokens gets
#: ``MAX_TOKENS_PER_CELL // (B * L)`` repeats, clamped to [min(repeats, MIN_REPEATS), repeats].
MAX_TOKENS_PER_CELL = 1 << 17
MIN_REPEATS = 3
#: Share of the available memory a cell may take (see ``scaling_sweep``'s ``memory_share``).
MEMORY_SHARE = 0.8
_FIX = "re-export the bundle with `uehead export`."


def _framing(tok, sample: str) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer's post-processor puts before and after a single text."""
    bare = tok.encode(sample, add_special_tokens=False).ids
    full = tok.encode(sample, add_special_tokens=True).ids
    for k in range(len(full) - len(bare) + 1):
        if full[k:k + len(bare)] == bare:
            prefix, suffix = full[:k], full[k + len(bare):]
            if len(prefix) + len(suffix) == tok.num_special_tokens_to_add(False):
                return prefix, suffix
    raise IncompatibleBundleError("the tokenizer's post-processor does not wrap a text's tokens in special tokens "
                                  "(its ids with special tokens do not contain those without).", fix=_FIX)


class ExactLengthInputs:
    """Rows of exactly ``length`` tokens from one tokenizer: sentences' ids (no truncation, no
    special tokens) concatenated in order and cut, framed by the post-processor's special tokens.

    Row i of a cell starts at the sentence after the one row i-1 was cut in (wrapping around the
    sentences), so batch 1 is row 0 of every larger batch and every cell is deterministic.
    """

    def __init__(self, tokenizer_file: str | os.PathLike, sentences: Sequence[str]):
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_file))
        tok.no_truncation()
        tok.no_padding()
        encoded = [e.ids for e in tok.encode_batch(list(sentences), add_special_tokens=False)]
        keep = [i for i, ids in enumerate(encoded) if ids]
        if not keep:
            raise IncompatibleBundleError("the tokenizer makes no tokens of any benchmark sentence.",
                                          path=tokenizer_file, fix=_FIX)
        self.sentences = [encoded[i] for i in keep]
        self.prefix, self.suffix = _framing(tok, sentences[keep[0]])
        self.n_special = len(self.prefix) + len(self.suffix)

    def ids(self, length: int, batch_size: int) -> np.ndarray:
        """int64 [batch_size, length] token ids (``length`` > the special tokens)."""
        room = length - self.n_special
        if room < 1:
            raise ValueError(f"length={length}: the tokenizer adds {self.n_special} special tokens; pass a longer one.")
        out = np.empty((batch_size, length), np.int64)
        pos = 0
        for r in range(batch_size):
            row: list[int] = []
            while len(row) < room:
                row += self.sentences[pos % len(self.sentences)]
                pos += 1
            out[r] = self.prefix + row[:room] + self.suffix
        return out


def _feeds(session, ids: np.ndarray, path) -> dict[str, np.ndarray]:
    """The backbone's inputs by the names its graph declares."""
    arrays = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    names = [i.name for i in session.get_inputs()]
    unknown = [n for n in names if n not in arrays]
    if unknown or "input_ids" not in names:
        raise IncompatibleBundleError(f"backbone inputs {names}: expected 'input_ids' and only {sorted(arrays)}.",
                                      path=path, fix=_FIX)
    return {n: arrays[n] for n in names}


def _forward(model, feeds: dict[str, np.ndarray]) -> tuple[float, float]:
    """Seconds of one batch: backbone (``Model.run_backbone``: split across the cores and in calls
    of ``call_tokens`` as ``predict`` runs it); head graph + score kernels."""
    spec, head = model.manifest.backbone, model.manifest.head
    names = [head.task_logits_name] + [h.output_name for h in head.heads]
    t0 = time.perf_counter()
    z = model.run_backbone(feeds)
    t1 = time.perf_counter()
    outs = model.head_session.run(names, {head.input_name: z})
    model.score_outputs(outs[0], {h.kind: o for h, o in zip(head.heads, outs[1:])})
    t2 = time.perf_counter()
    if z.shape != (feeds["input_ids"].shape[0], spec.feature_size):
        raise IncompatibleBundleError(f"output {spec.output_name!r} has shape {z.shape}, expected "
                                      f"{(feeds['input_ids'].shape[0], spec.feature_size)}.",
                                      path=model.path / spec.file, fix=_FIX)
    return t1 - t0, t2 - t1


def _models(bundles, threads: int | None) -> dict[str, Any]:
    """name -> loaded Model; paths are loaded here, Models used as they are; unnamed bundles are
    named by their backbone precision (then folder name, if two share one)."""
    from uehead.runtime import load

    items = bundles.items() if isinstance(bundles, Mapping) else [(None, b) for b in bundles]
    out: dict[str, Any] = {}
    for name, b in items:
        model = b if hasattr(b, "backbone_session") else load(b, threads=threads)
        name = name or model.manifest.backbone.precision
        if name in out:
            name = f"{name}:{model.path.name}"
        out[name] = model
    if not out:
        raise ValueError("scaling_sweep needs at least one bundle.")
    return out


def _cell_repeats(repeats: int, tokens: int, max_tokens_per_cell: int | None) -> int:
    if not max_tokens_per_cell:
        return repeats
    return max(min(repeats, MIN_REPEATS), min(repeats, max_tokens_per_cell // tokens))


def _skip_reason(length: int, models: dict[str, Any], inputs: dict[str, ExactLengthInputs]) -> str | None:
    for name, m in models.items():
        limit = m.manifest.backbone.max_positions
        if limit and length > limit:
            return f"{name}: longer than the backbone's {limit} positions (manifest backbone.max_positions)"
        if length <= inputs[name].n_special:
            return f"{name}: no room between the tokenizer's {inputs[name].n_special} special tokens"
    return None


def _dims_source(given, own, fallback) -> str | None:
    if given:
        return "given"
    if own:
        return own.get("source")
    return f"borrowed: {fallback.get('source')}" if fallback else None


def _summary(times: list[tuple[float, float]], batch: int, length: int, dims) -> dict[str, Any]:
    total = [a + b for a, b in times]
    med, backbone = median(total), median([a for a, _ in times])
    out = {"repeats": len(times), "times_s": total, "median_batch_ms": 1e3 * med, "best_batch_ms": 1e3 * min(total),
           "spread_pct": 100.0 * (max(total) - min(total)) / med, "us_per_text": 1e6 * med / batch,
           "backbone_us_per_text": 1e6 * backbone / batch,
           "head_kernels_us_per_text": 1e6 * median([b for _, b in times]) / batch,
           "texts_per_s": batch / med, "tokens_per_s": batch * length / med}
    if dims:
        out["backbone_gflop"] = bert_flops(dims, [(batch, length)]) / 1e9
        out["backbone_gflops_per_s"] = out["backbone_gflop"] / backbone
    return out


def _proc_kb(file: str, key: str) -> int | None:
    """A ``key: N kB`` line of a Linux /proc file, or None."""
    try:
        for line in Path(file).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> int | None:
    """Reset the process's peak RSS (Linux ``clear_refs``); the RSS now in kB, None where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _proc_kb("/proc/self/status", "VmRSS")


def _peak_rss_mb(rss_kb: int | None) -> float | None:
    """Peak RSS since :func:`_reset_peak_rss` above the RSS it returned, in MB."""
    peak = _proc_kb("/proc/self/status", "VmHWM") if rss_kb is not None else None
    return None if peak is None else max(0, peak - rss_kb) / 1024


def _memory_plan(cells: list[dict[str, Any]], batch: int, length: int, n_bundles: int,
                 share: float) -> dict[str, Any]:
    """How to run a cell in the memory there is. The need is the measured peak of the biggest cell
    so far (by batch x length^2) scaled by batch x length^2, an upper bound (attention's memory grows
    so, the rest slower). Over ``share`` of the available memory, the bundles run one at a time
    (each releasing its memory after), and when even one does not fit the cell is skipped."""
    size = batch * length * length
    done = [c for c in cells if c["memory"].get("peak_rss_mb") and c["batch_size"] * c["length"] ** 2 <= size]
    available = _proc_kb("/proc/meminfo", "MemAvailable")
    plan: dict[str, Any] = {"order": "alternated", "available_mb": available and available / 1024,
                            "needed_mb_estimate": None}
    if done and plan["available_mb"]:
        ref = max(done, key=lambda c: c["batch_size"] * c["length"] ** 2)
        per_bundle = ref["memory"]["peak_rss_mb"] / (n_bundles if ref["memory"]["order"] == "alternated" else 1)
        need = per_bundle * size / (ref["batch_size"] * ref["length"] ** 2)
        plan["needed_mb_estimate"] = need * n_bundles
        budget = share * plan["available_mb"]
        if need > budget:
            plan.update(order="skipped", reason=f"needs ~{need:.0f} MB per bundle, more than {share:.0%} of the "
                                                f"{plan['available_mb']:.0f} MB available")
        elif need * n_bundles > budget:
            plan["order"] = f"one bundle at a time (~{need * n_bundles:.0f} MB for all, {budget:.0f} MB budget)"
    plan["rss_kb"] = _reset_peak_rss()
    return plan


def _release(model, tiny: np.ndarray) -> None:
    """Return the backbone's arena memory to the OS: one tiny run asking ONNX Runtime to shrink it
    (a session keeps about twice a shape's first-run memory once it has run it twice)."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    feeds = _feeds(model.backbone_session, tiny, model.path / model.manifest.backbone.file)
    model.backbone_session.run([model.manifest.backbone.output_name], feeds, options)


def _time_cell(models: dict[str, Any], feeds: dict[str, dict[str, np.ndarray]], repeats: int, settle_s: float,
               alternate: bool, tiny: dict[str, np.ndarray]) -> dict[str, list[tuple[float, float]]]:
    """Per bundle ``repeats`` timed calls after one untimed (the first call at a shape allocates):
    alternated (order reversed every other repeat), else one bundle after the other; each bundle's
    memory is released when its calls are done."""
    times: dict[str, list[tuple[float, float]]] = {n: [] for n in models}
    groups = [list(models)] if alternate else [[n] for n in models]
    for group in groups:
        for n in group:
            _forward(models[n], feeds[n])
        for r in range(repeats):
            for n in (group if r % 2 == 0 else group[::-1]):
                time.sleep(settle_s)
                times[n].append(_forward(models[n], feeds[n]))
        for n in group:
            _release(models[n], tiny[n])
    return times


def scaling_sweep(bundles: Mapping[str, Any] | Sequence[Any], lengths: Sequence[int] = LENGTHS,
                  batch_sizes: Sequence[int] = BATCH_SIZES, repeats: int = 5, threads: int | None = None,
                  max_tokens_per_cell: int | None = MAX_TOKENS_PER_CELL, settle_s: float = 0.05,
                  dims: dict[str, int] | None = None, memory_share: float = MEMORY_SHARE,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time per text of every bundle on every (length, batch size) cell, side by side.

    Args:
        bundles: ``{name: bundle folder or loaded Model}``, or a sequence of them (named by their
            backbone precision); the first is the reference of the ratios. Folders are loaded
            with ``threads`` intra-op threads (None: physical cores).
        lengths, batch_sizes: the grid (tokens per row, special tokens included; rows per call).
        repeats: timed calls per bundle and cell (fewer for big cells, see ``max_tokens_per_cell``;
            None there: always ``repeats``). Each bundle also runs once untimed per cell (warm-up).
        settle_s: idle seconds before each timed call (ONNX Runtime's worker threads spin after a run).
        dims: the backbone's ``{"layers", "hidden", "intermediate"}`` for GFLOP/s; None: read from
            each backbone.onnx (``uehead.bench.flops.backbone_dims``, needs ``onnx``), borrowed
            from another bundle of the run when one has none; no GFLOP/s when none has any.
        memory_share: the share of the available memory (Linux ``MemAvailable``) a cell may take
            (estimated from the cells before it); over it the bundles run one at a time, and a cell
            one bundle alone would overflow is skipped with the reason.
        progress: called with one line per cell (e.g. ``print``), or None.
    Returns a JSON-able dict: ``meta`` (machine, threads, load average at start and end),
    ``settings``, ``bundles``, ``cells`` (per cell: ``shape`` fed, ``repeats``, ``inputs_identical``,
    ``memory`` (peak RSS above the cell's start, order run in), per bundle the medians and
    ``us_per_text`` etc., ``ratios`` ``"<name>_over_<first>"`` = that bundle's median time / the
    first's: below 1 is faster), ``skipped`` (length, batch size of a cell skipped alone, reason).
    """
    lengths, batch_sizes = [int(x) for x in lengths], [int(x) for x in batch_sizes]
    if not lengths or not batch_sizes or min(lengths) < 1 or min(batch_sizes) < 1 or int(repeats) < 1:
        raise ValueError(f"lengths={lengths}, batch_sizes={batch_sizes}, repeats={repeats}: pass positive ints.")
    from uehead.runtime.session import default_threads

    models = _models(bundles, threads)
    meta = machine_info(threads or default_threads())
    sentences, source = source_sentences()
    inputs = {n: ExactLengthInputs(m.path / m.manifest.tokenizer.file, sentences) for n, m in models.items()}
    found = {n: dims or backbone_dims(m.path) for n, m in models.items()}
    fallback = next((d for d in found.values() if d), None)
    info = {n: {"path": str(m.path), "precision": m.manifest.backbone.precision,
                "max_positions": m.manifest.backbone.max_positions or None,
                "backbone_mb": (m.path / m.manifest.backbone.file).stat().st_size / 2**20,
                "dims": found[n] or fallback, "dims_source": _dims_source(dims, found[n], fallback)}
            for n, m in models.items()}
    first = next(iter(models))
    cells, skipped = [], []
    for length in lengths:
        reason = _skip_reason(length, models, inputs)
        if reason:
            skipped.append({"length": length, "reason": reason})
            if progress:
                progress(f"length {length}: skipped ({reason})")
            continue
        for batch in batch_sizes:
            ids = {n: inp.ids(length, batch) for n, inp in inputs.items()}
            feeds = {n: _feeds(m.backbone_session, ids[n], m.path / m.manifest.backbone.file)
                     for n, m in models.items()}
            n_rep = _cell_repeats(int(repeats), batch * length, max_tokens_per_cell)
            memory = _memory_plan(cells, batch, length, len(models), memory_share)
            if memory["order"] == "skipped":
                skipped.append({"length": length, "batch_size": batch, "reason": memory["reason"]})
                if progress:
                    progress(f"length {length} batch {batch}: skipped ({memory['reason']})")
                continue
            times = _time_cell(models, feeds, n_rep, settle_s, memory["order"] == "alternated",
                               {n: inp.ids(inp.n_special + 1, 1) for n, inp in inputs.items()})
            memory["peak_rss_mb"] = _peak_rss_mb(memory.pop("rss_kb"))
            res = {n: _summary(t, batch, length, info[n]["dims"]) for n, t in times.items()}
            same = all(np.array_equal(ids[first], v) for v in ids.values())
            cells.append({"length": length, "batch_size": batch, "shape": list(feeds[first]["input_ids"].shape),
                          "repeats": n_rep, "inputs_identical": same, "memory": memory, "results": res,
                          "ratios": {f"{n}_over_{first}": res[n]["median_batch_ms"] / res[first]["median_batch_ms"]
                                     for n in models if n != first}})
            if progress:
                progress(f"length {length:>4} batch {batch:>4} x{n_rep}: " + ", ".join(
                    f"{n} {res[n]['us_per_text']:.0f} us/text" for n in models)
                    + f"; peak {memory['peak_rss_mb'] or 0:.0f} MB, {memory['order']}")
    meta.update(loadavg_end=loadavg(), finished=timestamp())
    return {"benchmark": "scaling", "meta": meta,
            "settings": {"lengths": lengths, "batch_sizes": batch_sizes, "repeats": int(repeats),
                         "max_tokens_per_cell": max_tokens_per_cell, "min_repeats": MIN_REPEATS, "settle_s": settle_s,
                         "memory_share": memory_share,
                         "texts": source, "reference": first,
                         "timed": "backbone.onnx + head.onnx + score kernels on pre-built token ids (no tokenisation); "
                                  "rows of exactly `length` tokens, attention mask all ones"},
            "bundles": info, "cells": cells, "skipped": skipped}
