"""A backbone batch split across the cores: one single-thread run per core, side by side.
Tokenisation is split the same way (:meth:`ShardedRunner.map_parts`).

ONNX Runtime's intra-op threads split every operator of the graph; a small transformer at batch
32 has hundreds of small operators (LayerNorm, Add, Transpose, Softmax, the quantisation steps of
an int8 graph), and each split costs a synchronisation that the work per operator does not
repay. Cutting the batch into one contiguous part per core and running each part on a
single-thread session instead keeps every core busy with whole-graph work and no barriers
(``benchmarks/bench_e2e.py`` measures the effect; the README quotes it). ONNX Runtime sessions may
be run from several threads at once, so one single-thread session serves every part.

Rows arrive sorted by token length, so with their lengths the parts are cut where their padded
token counts (rows x longest row) are most even, and each part runs at its own width: a batch of
mostly short texts with a few long ones no longer pads every row to the longest.

Outputs are the same rows as one run of the whole batch: for fp32 graphs up to float rounding
(padding is masked, so its width changes nothing else), and for int8 graphs with dynamic
(per-tensor, per-call) activation quantisation as close as any change of batch composition makes
them, since such a graph picks its activation scales from the rows of each call.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np

__all__ = ["CALL_TOKENS", "MIN_SHARD_ROWS", "ShardedRunner", "balanced_bounds", "run_in_calls"]

#: Rows each part must have at least: below that a part's graph run is dominated by fixed costs,
#: and the batch runs whole on the intra-op session.
MIN_SHARD_ROWS = 8
#: Tokens (rows x padded width) a single-thread backbone call covers at most. ONNX Runtime runs a
#: graph operator by operator over the whole call, so a call's activations (the feed-forward's
#: ``tokens x intermediate`` floats, the attention scores) go to memory and back between
#: operators once they outgrow the caches; calls of a few hundred tokens keep them there.
#: ``benchmarks/bench_call_tokens.py`` measures the curve (the README quotes it).
CALL_TOKENS = 512


def run_in_calls(session, output_name: str, feeds: dict[str, np.ndarray], call_tokens: int | None) -> np.ndarray:
    """``session.run([output_name], feeds)[0]`` as consecutive calls of at most ``call_tokens``
    tokens each (at least one row per call; ``None``: one call), rows in order. The calls are as
    even as the rows allow (21 rows that need two calls run as 11 + 10, not 18 + 3: a call of a few
    rows pays the graph's fixed cost for little work)."""
    rows, width = next(iter(feeds.values())).shape
    most = rows if call_tokens is None else max(1, call_tokens // max(1, width))
    if most >= rows:
        return session.run([output_name], feeds)[0]
    calls = -(-rows // most)
    step = -(-rows // calls)
    outs = [session.run([output_name], {k: v[a:a + step] for k, v in feeds.items()})[0] for a in range(0, rows, step)]
    return np.concatenate(outs)


class ShardedRunner:
    """Runs a single-thread session on ``shards`` contiguous parts of a batch at once: the calling
    thread runs the first part, a small thread pool the others.

    ``make_session()`` builds that session (one intra-op thread). It is called on the first batch
    large enough to split, not at construction: a process that only ever predicts small batches
    (a server answering single texts) never holds the second copy of the backbone's weights, and a
    cold start pays nothing for it. Each part runs as calls of at most ``call_tokens`` tokens
    (:func:`run_in_calls`)."""

    def __init__(self, make_session: Callable[[], Any], shards: int, call_tokens: int | None = CALL_TOKENS):
        if not isinstance(shards, int) or shards < 2:
            raise ValueError(f"shards={shards!r}; a sharded runner needs at least 2 parts.")
        self.make_session = make_session
        self.shards = shards
        self.call_tokens = call_tokens
        self._session = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = -1
        self._lock = threading.Lock()

    @property
    def session(self):
        """The single-thread session (built on first use)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self.make_session()
        return self._session

    def can_shard(self, rows: int) -> bool:
        """True when ``rows`` give every part at least :data:`MIN_SHARD_ROWS` rows."""
        return rows >= self.shards * MIN_SHARD_ROWS

    def part_shapes(self, rows: int, width: int, lengths: np.ndarray | None = None) -> list[tuple[int, int, int]]:
        """``(first row, rows, width)`` of each part :meth:`run` cuts a ``rows x width`` batch into.

        ``lengths``: each row's token count (feeds are padded on the right). With them the parts
        are cut where their padded token counts (rows x longest row) are most even
        (:func:`balanced_bounds`) and each part drops the padding columns none of its rows uses;
        without them the parts are equal row counts at the batch's width."""
        if lengths is None:
            bounds = self._even_bounds(rows)
            return [(a, b - a, width) for a, b in zip(bounds[:-1], bounds[1:])]
        lengths = np.asarray(lengths)
        bounds = balanced_bounds(lengths, self.shards)
        return [(a, b - a, min(width, int(lengths[a:b].max()))) for a, b in zip(bounds[:-1], bounds[1:])]

    def run(self, output_name: str, feeds: dict[str, np.ndarray], lengths: np.ndarray | None = None) -> np.ndarray:
        """``session.run([output_name], feeds)[0]`` computed part by part (:meth:`part_shapes`),
        rows in order."""
        rows, width = next(iter(feeds.values())).shape
        parts = [{k: v[a:a + n, :w] for k, v in feeds.items()} for a, n, w in self.part_shapes(rows, width, lengths)]
        session, tokens = self.session, self.call_tokens
        return np.concatenate(self._side_by_side(lambda p: run_in_calls(session, output_name, p, tokens), parts))

    def map_parts(self, fn: Callable[[list], list], items: list) -> list:
        """``fn(items)`` computed on one contiguous part of ``items`` per core, side by side, and
        concatenated in order (``fn`` maps a list to a list of the same length; tokenising texts).
        Fewer items than :meth:`can_shard` asks for run whole on the calling thread."""
        if not self.can_shard(len(items)):
            return fn(items)
        bounds = self._even_bounds(len(items))
        parts = [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        return [x for out in self._side_by_side(fn, parts) for x in out]

    def _even_bounds(self, n: int) -> list[int]:
        return [n * i // self.shards for i in range(self.shards + 1)]

    def _side_by_side(self, fn: Callable[[Any], Any], parts: list) -> list:
        """``[fn(p) for p in parts]``: the first part on the calling thread, the others on the pool."""
        futures = [self._executor().submit(fn, p) for p in parts[1:]]
        try:
            first = fn(parts[0])
        finally:
            wait(futures)  # never leave a part running when the call returns or raises
        return [first] + [f.result() for f in futures]

    def _executor(self) -> ThreadPoolExecutor:
        # Created on first use and again in a forked child (a pool's threads do not survive fork).
        pid = os.getpid()
        if self._pool is None or self._pool_pid != pid:
            with self._lock:
                if self._pool is None or self._pool_pid != pid:
                    self._pool = ThreadPoolExecutor(max_workers=self.shards - 1, thread_name_prefix="uehead-shard")
                    self._pool_pid = pid
        return self._pool


def balanced_bounds(lengths: np.ndarray, shards: int) -> list[int]:
    """Row bounds ``[0, ..., len(lengths)]`` of ``shards`` contiguous parts, each of at least
    :data:`MIN_SHARD_ROWS` rows, that minimise the largest part cost (rows x longest row of the
    part: the padded tokens it runs); the slowest part sets the batch's time.

    A part's cost only grows as it takes more rows, so for a cost cap the parts that fill up to it
    from the front are as long as possible; a binary search finds the least cap that fits."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if n < shards * MIN_SHARD_ROWS:
        raise ValueError(f"{n} rows cannot make {shards} parts of at least {MIN_SHARD_ROWS} rows.")
    lo, hi = 0, n * int(lengths.max())
    best = _fill(lengths, shards, hi)
    while lo < hi:
        cap = (lo + hi) // 2
        bounds = _fill(lengths, shards, cap)
        if bounds is None:
            lo = cap + 1
        else:
            best, hi = bounds, cap
    return best


def _fill(lengths: np.ndarray, shards: int, cap: int) -> list[int] | None:
    """Bounds of parts filled from the front up to cost ``cap`` each, or None if they do not fit."""
    n, bounds = len(lengths), [0]
    for left in range(shards - 1, 0, -1):  # parts still to cut after this one
        start = bounds[-1]
        limit = n - left * MIN_SHARD_ROWS  # leave every later part its minimum rows
        cost = np.arange(1, limit - start + 1) * np.maximum.accumulate(lengths[start:limit])
        take = int(np.searchsorted(cost, cap, side="right"))  # cost is non-decreasing
        if take < MIN_SHARD_ROWS:
            return None
        bounds.append(start + take)
    start = bounds[-1]
    if (n - start) * int(lengths[start:].max()) > cap:
        return None
    return bounds + [n]
