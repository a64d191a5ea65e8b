"""Dynamic batching through the real server: concurrent requests merge, answers keep each request's
order, large requests are split and rejoined, and one failing request leaves the others unharmed."""
from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serve_client import ModelProxy, get, post, random_texts
from uehead.serve.batching import Batcher, Overloaded, PredictOptions


def run_clients(n: int, work):
    """``work(i)`` on ``n`` threads that all start at once; their results in order."""
    barrier = threading.Barrier(n)

    def client(i):
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(client, range(n)))


def batch_sizes(url: str) -> tuple[float, float]:
    """(sum, count) of the uehead_batch_texts histogram."""
    text = get(url + "/metrics").body
    total = float(re.search(r"^uehead_batch_texts_sum (\S+)$", text, re.M).group(1))
    count = float(re.search(r"^uehead_batch_texts_count (\S+)$", text, re.M).group(1))
    return total, count


def test_64_concurrent_clients_answered_correctly_and_in_order(tiny_model, serve_model):
    # a slow model makes the requests pile up, so batches must merge
    running = serve_model(ModelProxy(tiny_model, delay=0.02), max_wait_ms=20)
    texts = [random_texts(1 + i % 5, seed=100 + i) for i in range(64)]

    def work(i):
        return post(running.url + "/classify", {"texts": texts[i]})

    replies = run_clients(64, work)
    for i, reply in enumerate(replies):
        assert reply.status == 200, reply.body
        preds = tiny_model.predict(texts[i])
        rows = reply.body["predictions"]
        assert [r["label"] for r in rows] == preds.labels
        np.testing.assert_allclose([r["probs"] for r in rows], preds.probs, atol=1e-6, rtol=0)
        np.testing.assert_allclose([r["uncertainty"] for r in rows], preds.uncertainty, atol=1e-6, rtol=0)
    total, count = batch_sizes(running.url)
    assert total == sum(len(t) for t in texts)
    assert count < 64 / 2, f"{count} predict calls for 64 requests: batches did not merge"


def test_large_request_is_split_and_rejoined(tiny_model, serve_model):
    proxy = ModelProxy(tiny_model)
    running = serve_model(proxy, max_batch_texts=4)
    texts = random_texts(10, seed=7)
    reply = post(running.url + "/classify", {"texts": texts})
    assert reply.status == 200, reply.body
    assert max(proxy.calls) <= 4 and sum(proxy.calls) == 10
    np.testing.assert_allclose([r["probs"] for r in reply.body["predictions"]], tiny_model.predict(texts).probs,
                               atol=1e-6, rtol=0)


def test_a_failing_request_leaves_its_batch_mates_unharmed(tiny_model, serve_model):
    proxy = ModelProxy(tiny_model, delay=0.01, poison=frozenset({"boom"}))
    running = serve_model(proxy, max_wait_ms=50)
    bodies = [{"texts": ["boom"] if i == 5 else random_texts(2, seed=200 + i)} for i in range(16)]
    replies = run_clients(16, lambda i: post(running.url + "/classify", bodies[i]))
    assert replies[5].status == 500 and "poisoned text 'boom'" in replies[5].body["error"]
    for i, reply in enumerate(replies):
        if i != 5:
            assert reply.status == 200, reply.body
            expected = tiny_model.predict(bodies[i]["texts"]).labels
            assert [r["label"] for r in reply.body["predictions"]] == expected
    assert post(running.url + "/classify", {"texts": ["fine"]}).status == 200


def test_batching_disabled_runs_each_request_alone(tiny_model, serve_model):
    proxy = ModelProxy(tiny_model, delay=0.01)
    running = serve_model(proxy, batching=False)
    replies = run_clients(8, lambda i: post(running.url + "/classify", {"texts": ["a", "b"]}))
    assert all(r.status == 200 for r in replies)
    assert proxy.calls == [2] * 8


# -- the batcher alone, on an event loop -------------------------------------------------------
def run(coro):
    return asyncio.run(coro)


def test_batcher_merges_only_requests_with_the_same_options(tiny_model):
    seen = []

    def predict(texts, options):
        seen.append((len(texts), options))
        return tiny_model.predict(texts, distances=options.distances)

    async def main():
        b = Batcher(predict, max_batch_texts=64, max_wait_s=0.05, max_queue_texts=100)
        await b.start()
        plain, far = PredictOptions(), PredictOptions(distances=True)
        results = await asyncio.gather(b.submit(["a"], plain), b.submit(["b", "c"], far), b.submit(["d"], plain))
        await b.stop()
        return results

    one, two, three = run(main())
    assert sorted(seen, key=lambda s: s[0]) == [(2, PredictOptions()), (2, PredictOptions(distances=True))]
    assert len(one) == 1 and len(two) == 2 and "md" in two.scores and "md" not in three.scores


def test_batcher_queue_is_bounded_and_says_when_to_retry(tiny_model):
    release = threading.Event()

    def predict(texts, options):
        release.wait(5)
        return tiny_model.predict(texts)

    async def main():
        b = Batcher(predict, max_batch_texts=4, max_wait_s=0.0, max_queue_texts=8)
        await b.start()
        running = asyncio.ensure_future(b.submit(["x"] * 4))  # taken by the worker thread
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(b.submit(["y"] * 8))   # fills the queue
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded) as info:
            await b.submit(["z"])
        assert info.value.retry_after_s >= 1 and b.queued_texts == 8
        release.set()
        done = await asyncio.gather(running, queued)
        await b.stop()
        return done

    first, second = run(main())
    assert len(first) == 4 and len(second) == 8


def test_batcher_drops_requests_that_timed_out_in_the_queue(tiny_model):
    release, seen = threading.Event(), []

    def predict(texts, options):
        seen.append(list(texts))
        release.wait(5)
        return tiny_model.predict(texts)

    async def main():
        b = Batcher(predict, max_batch_texts=4, max_wait_s=0.0, max_queue_texts=64)
        await b.start()
        first = asyncio.ensure_future(b.submit(["busy"]))
        await asyncio.sleep(0.05)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(b.submit(["late"]), 0.05)
        release.set()
        await first
        await b.stop()

    run(main())
    assert seen == [["busy"]]


def test_batcher_shares_a_burst_among_idle_workers(tiny_model):
    sizes = []

    def predict(texts, options):
        sizes.append(len(texts))
        return tiny_model.predict(texts)

    async def main():
        b = Batcher(predict, max_batch_texts=64, max_wait_s=0.05, max_queue_texts=100, inflight_batches=2)
        await b.start()
        results = await asyncio.gather(*(b.submit([f"text {i}"]) for i in range(8)))
        await b.stop()
        return results

    results = run(main())
    assert sorted(sizes) == [4, 4]
    assert [r.labels for r in results] == [tiny_model.predict([f"text {i}"]).labels for i in range(8)]
