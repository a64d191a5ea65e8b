"""Dynamic batching: concurrent requests wait in one bounded queue and are merged into one
``predict`` call of up to ``max_batch_texts`` texts, or whatever arrived within ``max_wait_s`` of
the oldest waiting request; each request gets back its own rows, in its own order.

The queue lives on the event loop; the predict calls run on ``inflight_batches`` worker threads, so
the loop keeps accepting and parsing requests while batches run (ONNX Runtime releases the GIL), and
one batch computes while another's answers go out.
A request larger than ``max_batch_texts`` is split into several queue entries and rejoined. Only
requests with the same :class:`PredictOptions` share a batch. When a merged batch fails, each of its
requests is re-run alone, so one bad request never fails the others.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from uehead.runtime.predictions import Predictions

__all__ = ["Batcher", "PredictOptions", "Overloaded", "ShuttingDown", "take_rows"]

log = logging.getLogger("uehead.serve")


@dataclass(frozen=True)
class PredictOptions:
    """Keyword arguments of ``Model.predict`` that a request may choose; the batching key."""

    distances: bool = False
    risk: float | None = None
    coverage: float | None = None


class Overloaded(Exception):
    """The queue holds too many texts to take this request; ``retry_after_s`` estimates when it frees."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ShuttingDown(Exception):
    """The server stopped taking requests (SIGTERM)."""


@dataclass(eq=False)
class _Entry:
    texts: list[str]
    options: PredictOptions
    future: asyncio.Future
    enqueued: float


def take_rows(preds: Predictions, start: int, stop: int) -> Predictions:
    """Rows ``start:stop`` of ``preds`` (views of its arrays)."""
    def cut(value):
        return None if value is None else value[start:stop]

    return dataclasses.replace(
        preds, labels=preds.labels[start:stop], label_ids=preds.label_ids[start:stop],
        probs=preds.probs[start:stop], uncertainty=preds.uncertainty[start:stop],
        softmax_response=preds.softmax_response[start:stop], entropy=preds.entropy[start:stop],
        scores={k: v[start:stop] for k, v in preds.scores.items()}, p_error=cut(preds.p_error),
        accept=cut(preds.accept), prediction_sets=cut(preds.prediction_sets))


class Batcher:
    """Merges concurrent ``submit`` calls into batched calls of ``predict(texts, options) -> Predictions``.

    Args:
        predict: thread-safe function run on the worker threads.
        max_batch_texts: texts per predict call at most (larger requests are split).
        max_wait_s: how long the oldest waiting request waits for more to join its batch.
        max_queue_texts: texts waiting at most; ``submit`` raises :class:`Overloaded` past it.
        inflight_batches: predict calls running at once (one thread each).
        merge: False runs each request (entry) alone.
        on_batch: called with the number of texts of each predict call (metrics).
        on_queue: called with the number of texts waiting whenever it changes (metrics).
    """

    def __init__(self, predict: Callable[[list[str], PredictOptions], Predictions], *, max_batch_texts: int,
                 max_wait_s: float, max_queue_texts: int, inflight_batches: int = 1, merge: bool = True,
                 on_batch: Callable[[int], None] | None = None, on_queue: Callable[[int], None] | None = None):
        self.predict = predict
        self.max_batch_texts = max_batch_texts
        self.max_wait_s = max_wait_s
        self.max_queue_texts = max_queue_texts
        self.inflight_batches = inflight_batches
        self.merge = merge
        self.on_batch = on_batch or (lambda n: None)
        self.on_queue = on_queue or (lambda n: None)
        self.queued_texts = 0
        self._queue: collections.deque[_Entry] = collections.deque()
        self._queued_by_options: collections.Counter = collections.Counter()
        self._seconds_per_text = 0.0  # moving average, for Retry-After
        self._closed = False
        self._running: set[asyncio.Task] = set()

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(self.inflight_batches, thread_name_prefix="uehead-predict")
        self._slots = asyncio.Semaphore(self.inflight_batches)
        self._wakeup = asyncio.Event()
        self._collector = asyncio.create_task(self._collect_forever(), name="uehead-batcher")

    async def stop(self) -> None:
        """Refuse new requests, answer every queued and running one, then stop the threads."""
        self._closed = True
        self._wakeup.set()
        await self._collector
        for _ in range(self.inflight_batches):  # every running batch has given its slot back
            await self._slots.acquire()
        self._executor.shutdown(wait=True)

    @property
    def accepting(self) -> bool:
        return not self._closed

    # -- requests -----------------------------------------------------------------------------
    async def submit(self, texts: list[str], options: PredictOptions = PredictOptions()) -> Predictions:
        """Predictions for ``texts`` (in order), predicted together with whatever else is queued.

        Raises:
            Overloaded: the queue cannot take ``len(texts)`` more texts now.
            ShuttingDown: :meth:`stop` was called.
            Whatever ``predict`` raised for these texts when run alone.
        """
        if self._closed:
            raise ShuttingDown("the server is shutting down and takes no new requests.")
        n = len(texts)
        if not n:
            return await self._loop.run_in_executor(self._executor, self.predict, texts, options)
        if self.queued_texts + n > self.max_queue_texts:
            raise Overloaded(f"the queue holds {self.queued_texts} texts and takes at most {self.max_queue_texts}; "
                             "retry after the Retry-After seconds, or add workers.", self._retry_after(n))
        now = self._loop.time()
        step = self.max_batch_texts
        entries = [_Entry(texts[i:i + step], options, self._loop.create_future(), now) for i in range(0, n, step)]
        self._queue.extend(entries)
        self._queued_by_options[options] += n
        self.queued_texts += n
        self.on_queue(self.queued_texts)
        self._wakeup.set()
        try:
            parts = await asyncio.gather(*(e.future for e in entries))
        finally:
            for entry in entries:  # on a timeout or an error: queued parts are dropped, not run
                entry.future.cancel()
        return parts[0] if len(parts) == 1 else Predictions.concat(parts)

    def _retry_after(self, n: int) -> int:
        """Seconds until the queue has drained enough to take ``n`` more texts (at least 1)."""
        backlog = self.queued_texts + n - self.max_queue_texts
        return max(1, min(60, math.ceil(backlog * self._seconds_per_text / self.inflight_batches)))

    # -- the collector ------------------------------------------------------------------------
    async def _collect_forever(self) -> None:
        while True:
            await self._slots.acquire()
            batch = await self._next_batch()
            if batch is None:
                self._slots.release()
                return
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _next_batch(self) -> list[_Entry] | None:
        """The next batch to run: entries sharing the oldest entry's options; None once stopped and empty."""
        while True:
            self._drop_cancelled()
            if not self._queue:
                if self._closed:
                    return None
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            head = self._queue[0]
            if self.merge and not self._closed:
                deadline = head.enqueued + self.max_wait_s
                while (self._queued_by_options[head.options] < self.max_batch_texts and not head.future.done()
                       and (left := deadline - self._loop.time()) > 0):
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), left)
                    except asyncio.TimeoutError:
                        break
                if head.future.done():  # timed out while waiting for company
                    continue
            return self._take(head.options)

    def _take(self, options: PredictOptions) -> list[_Entry]:
        """Queued entries with ``options``, oldest first, up to an even share of them per idle worker
        (so that a burst of requests that arrived together keeps every worker busy) and at most
        ``max_batch_texts`` texts; always at least one entry."""
        idle = max(1, self.inflight_batches - len(self._running))
        limit = min(self.max_batch_texts, max(1, math.ceil(self._queued_by_options[options] / idle)))
        batch, size, kept = [], 0, collections.deque()
        while self._queue:
            entry = self._queue.popleft()
            fits = not batch or (self.merge and size + len(entry.texts) <= limit)
            if entry.future.done():
                self._forget(entry)
            elif entry.options == options and fits:
                batch.append(entry)
                size += len(entry.texts)
                self._forget(entry)
            else:
                kept.append(entry)
                if entry.options == options or size >= limit:
                    break  # keep the order among requests of the same options
        kept.extend(self._queue)
        self._queue = kept
        self.on_queue(self.queued_texts)
        return batch

    def _drop_cancelled(self) -> None:
        while self._queue and self._queue[0].future.done():
            self._forget(self._queue.popleft())
        self.on_queue(self.queued_texts)

    def _forget(self, entry: _Entry) -> None:
        n = len(entry.texts)
        self.queued_texts -= n
        self._queued_by_options[entry.options] -= n
        if not self._queued_by_options[entry.options]:
            del self._queued_by_options[entry.options]

    async def _run(self, batch: list[_Entry]) -> None:
        try:
            outcomes = await self._loop.run_in_executor(self._executor, self._predict_entries, batch)
            for entry, outcome in zip(batch, outcomes):
                if entry.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    entry.future.set_exception(outcome)
                else:
                    entry.future.set_result(outcome)
        finally:
            self._slots.release()

    def _predict_entries(self, batch: list[_Entry]) -> list:
        """Runs on a worker thread: one predict call for the batch, its rows split per entry; when it
        fails, each entry alone, so the failure lands only on the entries that cause it."""
        texts = [t for entry in batch for t in entry.texts]
        self.on_batch(len(texts))
        start = time.perf_counter()
        try:
            preds = self.predict(texts, batch[0].options)
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            log.warning("a batch of %d requests failed (%s: %s); predicting each alone", len(batch),
                        type(exc).__name__, exc)
            return [self._predict_alone(entry) for entry in batch]
        self._seconds_per_text = 0.8 * self._seconds_per_text + 0.2 * (time.perf_counter() - start) / len(texts)
        outcomes, offset = [], 0
        for entry in batch:
            outcomes.append(take_rows(preds, offset, offset + len(entry.texts)))
            offset += len(entry.texts)
        return outcomes

    def _predict_alone(self, entry: _Entry):
        try:
            return self.predict(entry.texts, entry.options)
        except Exception as exc:
            return exc
