"""Prometheus metrics of one server (prometheus-client): requests by endpoint and status, request
latency, texts per predict call, texts waiting in the queue.

Each app has its own registry, so several apps in one process (tests) do not collide. With
``--workers N`` the runner sets ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums every worker's
files (prometheus-client's multiprocess mode), whichever worker answers the scrape.
"""
from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

__all__ = ["ServeMetrics", "CONTENT_TYPE_LATEST", "MULTIPROC_ENV"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _batch_buckets(max_batch_texts: int) -> tuple[float, ...]:
    edges, b = [], 1
    while b < max_batch_texts:
        edges.append(float(b))
        b *= 2
    return (*edges, float(max_batch_texts))


class ServeMetrics:
    """The server's metrics, registered in a registry of their own (``registry``)."""

    def __init__(self, max_batch_texts: int):
        self.registry = CollectorRegistry()
        self.requests = Counter("uehead_requests", "HTTP requests answered, by endpoint and status code.",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("uehead_request_duration_seconds", "Time from request to response, by endpoint.",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_texts = Histogram("uehead_batch_texts", "Texts per Model.predict call (dynamic batches).",
                                     buckets=_batch_buckets(max_batch_texts), registry=self.registry)
        self.queue_texts = Gauge("uehead_queue_texts", "Texts waiting in the queue for a batch.",
                                 registry=self.registry, multiprocess_mode="livesum")

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of this server (of every worker in multiprocess mode)."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

    @staticmethod
    def worker_exited() -> None:
        """Drop this process's live gauges from the multiprocess files (no-op otherwise)."""
        if os.environ.get(MULTIPROC_ENV):
            multiprocess.mark_process_dead(os.getpid())
