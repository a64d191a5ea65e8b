"""Load generators for ``bench_serve.py``: closed-loop clients and an open-loop (fixed arrival rate)
sender, over plain HTTP/1.1 keep-alive connections on asyncio streams.

A hand-rolled client, because the load generator shares the CPU with the server under test: this
one costs a few tens of microseconds per request, a general HTTP client several times more.
Bodies are encoded once, before the clock starts.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

__all__ = ["Connection", "Tally", "closed_loop", "open_loop"]


class Connection:
    """One keep-alive connection; reopened after the server closes it."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """One request; a kept-alive connection the server closed meanwhile (its keep-alive timeout)
        is reopened and the request sent again once, as HTTP clients do."""
        reused = self.writer is not None
        try:
            return await self._exchange(path, body)
        except (OSError, asyncio.IncompleteReadError):
            self.close()
            if not reused:
                raise
            return await self._exchange(path, body)

    async def _exchange(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
        payload = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Tally:
    """What a load run saw: latencies of the 200s, counts by status, texts answered."""

    texts_per_request: int
    latencies: list = field(default_factory=list)
    statuses: dict = field(default_factory=dict)
    failures: int = 0          # connection errors
    failure_kinds: dict = field(default_factory=dict)
    dropped: int = 0           # open loop: arrivals with no free connection (the client's own limit)
    texts_ok: int = 0
    seconds: float = 0.0
    #: (body index, response payload) of the first answers, to check them
    first_answers: list = field(default_factory=list)

    def record(self, status: int, seconds: float, payload: bytes, body_index: int, keep: int = 4) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.latencies.append(seconds)
            self.texts_ok += self.texts_per_request
            if len(self.first_answers) < keep:
                self.first_answers.append((body_index, payload))

    def fail(self, exc: BaseException) -> None:
        self.failures += 1
        kind = type(exc).__name__
        self.failure_kinds[kind] = self.failure_kinds.get(kind, 0) + 1

    def summary(self) -> dict:
        lat = np.asarray(self.latencies) * 1000.0
        pct = {f"p{q}_ms": (round(float(np.percentile(lat, q)), 3) if lat.size else None) for q in (50, 95, 99)}
        requests = sum(self.statuses.values())
        errors = requests - self.statuses.get(200, 0) + self.failures
        return {"texts_per_request": self.texts_per_request, "seconds": round(self.seconds, 3),
                "requests": requests, "ok": self.statuses.get(200, 0), "errors": errors,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}, "connection_errors": self.failures,
                "connection_error_kinds": self.failure_kinds,
                "client_dropped": self.dropped,
                "texts_per_s": round(self.texts_ok / self.seconds, 1) if self.seconds else None,
                "requests_per_s": round(self.statuses.get(200, 0) / self.seconds, 1) if self.seconds else None, **pct}


def encode_bodies(texts: list[str], per_request: int, n_bodies: int) -> list[tuple[list[str], bytes]]:
    """``n_bodies`` /classify bodies of ``per_request`` consecutive texts each (cycling over ``texts``)."""
    out = []
    for b in range(n_bodies):
        chunk = [texts[(b * per_request + i) % len(texts)] for i in range(per_request)]
        out.append((chunk, json.dumps({"texts": chunk}).encode()))
    return out


async def closed_loop(url: str, bodies: list, concurrency: int, seconds: float, max_requests: int,
                      path: str = "/classify") -> Tally:
    """``concurrency`` clients, each sending its next request as soon as the previous one is answered,
    until ``seconds`` have passed or ``max_requests`` were sent."""
    parts = urlsplit(url)
    tally = Tally(len(bodies[0][0]))
    counter = iter(range(max_requests))
    deadline = time.perf_counter() + seconds

    async def client():
        conn = Connection(parts.hostname, parts.port)
        try:
            for i in counter:
                if time.perf_counter() > deadline:
                    break
                start = time.perf_counter()
                try:
                    status, payload = await conn.post(path, bodies[i % len(bodies)][1])
                except (OSError, asyncio.IncompleteReadError) as exc:
                    tally.fail(exc)
                    conn.close()
                    continue
                tally.record(status, time.perf_counter() - start, payload, i % len(bodies))
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    tally.seconds = time.perf_counter() - start
    return tally


async def open_loop(url: str, bodies: list, rate: float, seconds: float, max_connections: int = 1024,
                    path: str = "/classify") -> Tally:
    """Requests sent at ``rate`` per second for ``seconds``, whether or not earlier ones were answered
    (at most ``max_connections`` outstanding; arrivals beyond are counted as ``client_dropped``)."""
    parts = urlsplit(url)
    tally = Tally(len(bodies[0][0]))
    idle: list[Connection] = []
    outstanding = 0
    tasks = set()

    async def one(i: int):
        nonlocal outstanding
        conn = idle.pop() if idle else Connection(parts.hostname, parts.port)
        start = time.perf_counter()
        try:
            status, payload = await conn.post(path, bodies[i % len(bodies)][1])
            tally.record(status, time.perf_counter() - start, payload, i % len(bodies))
            idle.append(conn)
        except (OSError, asyncio.IncompleteReadError) as exc:
            tally.fail(exc)
            conn.close()
        finally:
            outstanding -= 1

    start = time.perf_counter()
    sent = 0
    while (now := time.perf_counter() - start) < seconds:
        due = int(now * rate) + 1
        for i in range(sent, due):
            if outstanding >= max_connections:
                tally.dropped += 1
                continue
            outstanding += 1
            task = asyncio.create_task(one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent = due
        await asyncio.sleep(min(0.002, 1.0 / rate))
    await asyncio.gather(*tasks)
    tally.seconds = time.perf_counter() - start
    for conn in idle:
        conn.close()
    return tally
