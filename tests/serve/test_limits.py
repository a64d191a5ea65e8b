"""Every fault answered with its status and a message naming the input and the fix, while the
server keeps serving."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from serve_client import ModelProxy, get, post


def still_serving(url: str) -> None:
    reply = post(url + "/classify", {"texts": ["still here"]})
    assert reply.status == 200, reply.body


def test_body_over_the_limit_is_413(tiny_model, serve_model):
    running = serve_model(tiny_model, max_body_bytes=1000)
    reply = post(running.url + "/classify", {"texts": ["x" * 2000]})
    assert reply.status == 413 and "--max-body-bytes" in reply.body["error"]
    chunked = post(running.url + "/classify", raw=iter([b'{"texts": ["', b"y" * 2000, b'"]}']),
                   headers={"Transfer-Encoding": "chunked"})
    assert chunked.status == 413
    still_serving(running.url)


def test_more_texts_than_allowed_is_413(tiny_model, serve_model):
    running = serve_model(tiny_model, max_request_texts=3)
    for url, body in (("/classify", {"texts": ["a"] * 4}), ("/predict", {"inputs": [["a"]] * 4}),
                      ("/v2/models/tiny/infer", {"inputs": [{"name": "text", "shape": [4], "datatype": "BYTES",
                                                             "data": ["a"] * 4}]})):
        reply = post(running.url + url, body)
        assert reply.status == 413 and "at most 3 per request" in reply.body["error"], (url, reply.body)
    still_serving(running.url)


@pytest.mark.parametrize("raw", [b'{"texts": ["unterminated', b"", b"\xff\xfe not json", b"[" * 100_000])
def test_malformed_json_is_400(server, raw):
    reply = post(server.url + "/classify", raw=raw)
    assert reply.status == 400 and "JSON" in reply.body["error"], reply.body
    still_serving(server.url)


@pytest.mark.parametrize("url, body, where", [
    ("/classify", {"texts": ["ok", None]}, "texts[1] is a JSON null"),
    ("/classify", {"texts": ["ok", "fine", {"t": 1}]}, "texts[2] is a JSON object"),
    ("/predict", {"inputs": [["ok"], [3]]}, "inputs[1][0] is a JSON number"),
    ("/predict", {"inputs": [True]}, "inputs[0] is a JSON boolean"),
    ("/v2/models/tiny/infer", {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", 1]}]},
     "inputs[0].data[1] is a JSON number"),
])
def test_non_string_input_is_422_naming_its_index(server, url, body, where):
    reply = post(server.url + url, body)
    assert reply.status == 422 and where in reply.body["error"], reply.body
    assert "expected a string" in reply.body["error"]
    still_serving(server.url)


def test_lone_surrogate_is_422_naming_its_index(server):
    reply = post(server.url + "/classify", raw=b'{"texts": ["fine", "bad \\ud800 escape"]}')
    assert reply.status == 422 and "texts[1] holds a lone surrogate U+D800" in reply.body["error"], reply.body


@pytest.mark.parametrize("body, fragment", [
    ([1, 2], "expected an object"),
    ({"text": ["a"]}, "unknown field(s) 'text'"),
    ({"texts": 5}, "texts must be a string or an array"),
    ({"texts": ["a"], "distances": "yes"}, "distances is \"yes\""),
])
def test_wrong_shapes_are_422(server, body, fragment):
    reply = post(server.url + "/classify", body)
    assert reply.status == 422 and fragment in reply.body["error"], reply.body


def test_queue_full_is_503_with_retry_after(tiny_model, serve_model):
    proxy = ModelProxy(tiny_model, delay=0.3)
    running = serve_model(proxy, max_queue_texts=8, max_request_texts=8, max_batch_texts=8)
    gate = threading.Barrier(6)

    def client(i):
        gate.wait()
        return post(running.url + "/classify", {"texts": [f"text {i}"] * 8})

    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(client, range(6)))
    statuses = sorted(r.status for r in replies)
    assert 200 in statuses and 503 in statuses, statuses
    refused = next(r for r in replies if r.status == 503)
    assert int(refused.headers["retry-after"]) >= 1 and refused.body["error_type"] == "overloaded"
    assert "takes at most 8" in refused.body["error"]
    metrics = get(running.url + "/metrics").body
    assert 'uehead_requests_total{endpoint="classify",status="503"}' in metrics
    still_serving(running.url)


def test_request_timeout_is_504_and_the_server_goes_on(tiny_model, serve_model):
    proxy = ModelProxy(tiny_model, delay=0.5)
    running = serve_model(proxy, request_timeout_s=0.2)
    reply = post(running.url + "/classify", {"texts": ["slow"]})
    assert reply.status == 504 and "--request-timeout-s" in reply.body["error"], reply.body
    proxy.delay = 0.0
    time.sleep(0.5)  # the slow batch still holds the worker thread until then
    still_serving(running.url)


def test_json_errors_are_json(server):
    reply = post(server.url + "/predict", raw=b"nope")
    assert reply.status == 400 and set(reply.body) == {"error", "error_type"}
    json.dumps(reply.body)


def test_connections_past_the_limit_get_503(tiny_model, serve_model):
    proxy = ModelProxy(tiny_model, delay=0.5)
    running = serve_model(proxy, max_connections=3)  # uvicorn counts the new connection too

    def client(i):
        return post(running.url + "/classify", {"texts": [f"text {i}"]})

    with ThreadPoolExecutor(5) as pool:
        first = [pool.submit(client, i) for i in range(2)]
        while not proxy.calls:
            time.sleep(0.01)
        late = [pool.submit(client, i) for i in range(2, 5)]
        assert {f.result().status for f in late} == {503}
        assert [f.result().status for f in first] == [200, 200]
    still_serving(running.url)
