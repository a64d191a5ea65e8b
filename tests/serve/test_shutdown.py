"""Graceful shutdown: SIGTERM (or a stop) with requests in flight answers every one of them,
refuses new connections, and the process exits 0."""
from __future__ import annotations

import signal
import sys
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor

import pytest

from serve_client import ModelProxy, get, post, random_texts
from uehead.serve import ServeConfig, serve_in_thread

SLOW_SERVER = """
import sys
from serve_client import ModelProxy
from uehead import runtime
from uehead.serve import serve
serve(ModelProxy(runtime.load(sys.argv[1], threads=1), delay=0.4), port=0, max_batch_texts=8)
"""


def fire(url: str, n: int) -> tuple[ThreadPoolExecutor, list]:
    pool = ThreadPoolExecutor(n)
    bodies = [{"texts": random_texts(2, seed=300 + i)} for i in range(n)]
    return pool, [pool.submit(post, url + "/classify", body, timeout=60) for body in bodies]


def test_sigterm_answers_requests_in_flight_and_exits_0(tiny_bundle_dir, child_server):
    child = child_server([sys.executable, "-c", SLOW_SERVER, str(tiny_bundle_dir)])
    pool, futures = fire(child.url, 12)  # 24 texts: three batches of 8, 0.4 s each
    time.sleep(0.3)  # every request received, the first batch running
    rc = child.stop(signal.SIGTERM)
    replies = [f.result() for f in futures]
    pool.shutdown()
    assert rc == 0, "".join(child.log)
    assert [r.status for r in replies] == [200] * 12
    assert all(len(r.body["predictions"]) == 2 for r in replies)
    with pytest.raises(urllib.error.URLError):
        get(child.url + "/v2/health/live", timeout=5)


def test_stop_in_process_loses_no_request(tiny_model):
    proxy = ModelProxy(tiny_model, delay=0.2)
    with serve_in_thread(proxy, ServeConfig(port=0, max_batch_texts=4)) as running:
        pool, futures = fire(running.url, 8)
        while not proxy.calls:
            time.sleep(0.01)
        stopper = threading.Thread(target=running.stop)
        stopper.start()
        replies = [f.result() for f in futures]
        stopper.join()
        pool.shutdown()
    assert [r.status for r in replies] == [200] * 8
    assert sum(proxy.calls) == 16
