"""A backbone batch split across the cores: one single-thread run per core, side by side.

ONNX Runtime's intra-op threads split every operator of the graph; a small transformer at batch
32 has hundreds of small operators (LayerNorm, Add, Transpose, Softmax, the quantisation steps of
an int8 graph), and each split costs a synchronisation that the work per operator does not
repay. Cutting the batch into one contiguous part per core and running each part on a
single-thread session instead keeps every core busy with whole-graph work and no barriers
(``benchmarks/bench_e2e.py`` measures the effect; the README quotes it). ONNX Runtime sessions may
be run from several threads at once, so one single-thread session serves every part.

Outputs are the same rows as one run of the whole batch: exactly for fp32 graphs, and for int8
graphs with dynamic (per-tensor, per-call) activation quantisation as close as any change of
batch composition makes them, since such a graph picks its activation scales from the rows of
each call.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np

__all__ = ["MIN_SHARD_ROWS", "ShardedRunner"]

#: Rows each part must have at least: below that a part's graph run is dominated by fixed costs,
#: and the batch runs whole on the intra-op session.
MIN_SHARD_ROWS = 8


class ShardedRunner:
    """Runs a single-thread session on ``shards`` contiguous parts of a batch at once: the calling
    thread runs the first part, a small thread pool the others.

    ``make_session()`` builds that session (one intra-op thread). It is called on the first batch
    large enough to split, not at construction: a process that only ever predicts small batches
    (a server answering single texts) never holds the second copy of the backbone's weights, and a
    cold start pays nothing for it."""

    def __init__(self, make_session: Callable[[], Any], shards: int):
        if not isinstance(shards, int) or shards < 2:
            raise ValueError(f"shards={shards!r}; a sharded runner needs at least 2 parts.")
        self.make_session = make_session
        self.shards = shards
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

    def run(self, output_name: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """``session.run([output_name], feeds)[0]`` computed part by part, rows in order."""
        rows = next(iter(feeds.values())).shape[0]
        bounds = [rows * i // self.shards for i in range(self.shards + 1)]
        parts = [{k: v[a:b] for k, v in feeds.items()} for a, b in zip(bounds[:-1], bounds[1:])]
        session, pool = self.session, self._executor()
        futures = [pool.submit(session.run, [output_name], p) for p in parts[1:]]
        try:
            first = session.run([output_name], parts[0])[0]
        finally:
            wait(futures)  # never leave a part running when the call returns or raises
        return np.concatenate([first] + [f.result()[0] for f in futures])

    def _executor(self) -> ThreadPoolExecutor:
        # Created on first use and again in a forked child (a pool's threads do not survive fork).
        pid = os.getpid()
        if self._pool is None or self._pool_pid != pid:
            with self._lock:
                if self._pool is None or self._pool_pid != pid:
                    self._pool = ThreadPoolExecutor(max_workers=self.shards - 1, thread_name_prefix="uehead-shard")
                    self._pool_pid = pid
        return self._pool
