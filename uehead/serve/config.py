"""The server's settings: :class:`ServeConfig`, one field per ``uehead serve`` option.

Every limit that bounds memory lives here, so one object says how much a server may hold: at most
``max_queue_texts`` texts wait in the queue, at most ``inflight_batches x max_batch_texts`` are
being predicted, and at most ``max_connections`` request bodies of at most ``max_body_bytes`` each
are read at once.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

__all__ = ["ServeConfig", "DEFAULTS"]


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one server (all workers share them). Each field is the ``uehead serve`` option
    of the same name (``max_batch_texts`` -> ``--max-batch-texts``).

    Attributes:
        host, port: where to listen (loopback by default; port 0 picks a free one).
        max_batch_texts: texts merged into one ``Model.predict`` call at most.
        max_wait_ms: how long the first request of a batch waits for others to join it.
        max_request_texts: texts one request may carry (more -> 413).
        max_queue_texts: texts waiting for a batch at most (more -> 503 with ``Retry-After``).
        max_body_bytes: request body size at most (more -> 413).
        max_connections: open connections and requests at most (uvicorn answers 503 past it); with
            ``max_body_bytes`` it bounds the memory of bodies being read.
        request_timeout_s: a request not answered in this time gets 504 (and leaves the queue).
        predict_batch_size: ``batch_size`` of each ``Model.predict`` call (texts per ONNX Runtime run).
        inflight_batches: batches predicted at once, each on its own thread: while one computes, the
            answers of another go out and the next requests are read, so the cores do not idle.
        batching: False predicts each request alone (no merging), for comparison.
        threads: ONNX Runtime intra-op threads of the backbone per worker (None: the physical cores
            divided by ``workers x inflight_batches``, at least 1).
        workers: server processes, each with its own copy of the model.
        model_name: the model's name in the Open Inference Protocol paths (None: the bundle folder's name).
        access_log: log one line per request.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    max_batch_texts: int = 64
    max_wait_ms: float = 5.0
    max_request_texts: int = 256
    max_queue_texts: int = 2048
    max_body_bytes: int = 1024 * 1024
    max_connections: int = 4096
    request_timeout_s: float = 30.0
    predict_batch_size: int = 32
    inflight_batches: int = 2
    batching: bool = True
    threads: int | None = None
    workers: int = 1
    model_name: str | None = None
    access_log: bool = False

    def __post_init__(self):
        for name in ("max_batch_texts", "max_request_texts", "max_queue_texts", "max_body_bytes",
                     "max_connections", "predict_batch_size", "inflight_batches", "workers"):
            _positive_int(name, getattr(self, name))
        if self.threads is not None:
            _positive_int("threads", self.threads)
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"--port {self.port!r} is not a TCP port; pass 0..65535 (0 picks a free one).")
        if not isinstance(self.max_wait_ms, (int, float)) or self.max_wait_ms < 0:
            raise ValueError(f"--max-wait-ms {self.max_wait_ms!r}; pass a number >= 0 (0: no waiting).")
        if not isinstance(self.request_timeout_s, (int, float)) or self.request_timeout_s <= 0:
            raise ValueError(f"--request-timeout-s {self.request_timeout_s!r}; pass a number > 0.")
        if self.max_request_texts > self.max_queue_texts:
            raise ValueError(f"--max-request-texts {self.max_request_texts} exceeds --max-queue-texts "
                             f"{self.max_queue_texts}, so such a request could never be queued; raise "
                             "--max-queue-texts or lower --max-request-texts.")

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1000.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls(**json.loads(text))


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        option = "--" + name.replace("_", "-")
        raise ValueError(f"{option} {value!r}; pass a positive integer.")


#: The defaults, for help texts and docs.
DEFAULTS = ServeConfig()
