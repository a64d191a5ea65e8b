"""Running the app: :func:`serve` (what ``uehead serve`` calls) and :func:`serve_in_thread` (a
server on a background thread, for tests, notebooks and benchmarks).

SIGTERM (or Ctrl+C) stops accepting connections, answers every request already received, runs the
app's shutdown (the batcher drains) and returns normally, so the process exits 0. With ``workers``
> 1, uvicorn's supervisor starts that many processes on one socket, each loading the model itself
from the settings passed in :data:`CONFIG_ENV`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from uehead.serve.app import create_app
from uehead.serve.config import ServeConfig
from uehead.serve.metrics import MULTIPROC_ENV

__all__ = ["serve", "serve_in_thread", "app_from_environment", "onnx_threads", "RunningServer", "CONFIG_ENV",
           "BUNDLE_ENV"]

CONFIG_ENV = "UEHEAD_SERVE_CONFIG"
BUNDLE_ENV = "UEHEAD_SERVE_BUNDLE"


def onnx_threads(config: ServeConfig) -> int:
    """ONNX Runtime threads per model: ``config.threads``, else the physical cores shared out among
    the workers and the batches each runs at once (so the server never oversubscribes the cores)."""
    if config.threads is not None:
        return config.threads
    from uehead.runtime.session import default_threads

    return max(1, default_threads() // (config.workers * config.inflight_batches))


def _load(bundle: str | os.PathLike, config: ServeConfig):
    from uehead.runtime import load

    return load(bundle, threads=onnx_threads(config))


def _uvicorn_options(config: ServeConfig) -> dict:
    # In-flight requests get the request timeout plus a margin to finish after SIGTERM.
    return dict(log_level="info", access_log=config.access_log, lifespan="on",
                limit_concurrency=config.max_connections, timeout_graceful_shutdown=int(config.request_timeout_s) + 5)


def serve(bundle, config: ServeConfig | None = None, **options) -> None:
    """Serve ``bundle`` (a bundle folder, or a Model already loaded) over HTTP until SIGTERM / Ctrl+C.
    ``options`` override fields of ``config`` (see :class:`ServeConfig`), e.g.
    ``serve("bundle/", port=9000, max_batch_texts=32)``.

    Raises:
        uehead.bundle.BundleError: the bundle cannot be loaded (before any socket is opened).
        ValueError: ``workers`` > 1 with a loaded Model (each worker loads the bundle itself).
    """
    config = dataclasses.replace(config or ServeConfig(), **options)
    loaded = not isinstance(bundle, (str, os.PathLike))
    if loaded and config.workers > 1:
        raise ValueError("--workers > 1 needs the bundle's path (each worker process loads it); pass the path.")
    if config.model_name is None:
        config = dataclasses.replace(config, model_name=Path(bundle.path if loaded else bundle).name)
    if config.workers == 1:
        app = create_app(bundle if loaded else _load(bundle, config), config)
        _run_quietly_on_signals(uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port,
                                                              **_uvicorn_options(config))))
        return
    from uehead.bundle import load_manifest
    from uehead.token_task import SEQUENCE_CLASSIFICATION, require_task

    # fail here, once, rather than in every worker
    require_task(load_manifest(bundle), SEQUENCE_CLASSIFICATION, "uehead serve", path=bundle)
    with tempfile.TemporaryDirectory(prefix="uehead-metrics-") as metrics_dir:
        os.environ.update({CONFIG_ENV: config.to_json(), BUNDLE_ENV: str(Path(bundle).resolve()),
                           MULTIPROC_ENV: metrics_dir})
        try:
            uvicorn.run("uehead.serve.runner:app_from_environment", factory=True, host=config.host,
                        port=config.port, workers=config.workers, **_uvicorn_options(config))
        finally:
            for name in (CONFIG_ENV, BUNDLE_ENV, MULTIPROC_ENV):
                os.environ.pop(name, None)


def app_from_environment():
    """The app of one worker process (``--workers`` > 1): bundle and settings from the environment."""
    config = ServeConfig.from_json(os.environ[CONFIG_ENV])
    return create_app(_load(os.environ[BUNDLE_ENV], config), config)


def _run_quietly_on_signals(server: uvicorn.Server) -> None:
    """Run ``server``; after a graceful stop on SIGTERM / SIGINT, return instead of dying of the signal.

    uvicorn re-raises the signal it stopped on once it has shut down, so that the previous handlers
    see it; handlers that ignore it are installed for that moment.
    """
    if threading.current_thread() is not threading.main_thread():
        server.run()
        return
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class RunningServer:
    """A server started by :func:`serve_in_thread`: its ``url`` (``http://127.0.0.1:PORT``) and ``app``."""

    url: str
    app: object
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop, as on SIGTERM: requests already received are answered first."""
        self.server.should_exit = True
        self.thread.join(timeout)


@contextlib.contextmanager
def serve_in_thread(model, config: ServeConfig | None = None) -> Iterator[RunningServer]:
    """Serve a loaded ``model`` on a background thread (``config.port`` 0: a free port) until the
    block ends::

        with serve_in_thread(model) as server:
            urllib.request.urlopen(server.url + "/v2/health/ready")
    """
    config = config or ServeConfig(port=0)
    app = create_app(model, config)
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, **{**_uvicorn_options(config), "log_level": "warning"}))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uehead-serve", daemon=True)
    thread.start()
    running = RunningServer(f"http://{config.host}:{port}", app, server, thread)
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server thread stopped during startup; see its log above.")
            threading.Event().wait(0.01)
        yield running
    finally:
        running.stop()
        sock.close()
