"""``uehead serve``: an HTTP inference server with dynamic batching (the ``[serve]`` extra, torch-free).

    from uehead.serve import serve, create_app, serve_in_thread, ServeConfig
    serve("bundle/", port=8080)                 # blocks until SIGTERM; what `uehead serve` runs
    app = create_app(model, ServeConfig())      # the ASGI app, for another ASGI server or Ray Serve

Endpoints: ``POST /classify`` (uehead's own), ``POST /predict`` (text-embeddings-inference's shapes),
the Open Inference Protocol v2 REST routes under ``/v2``, and ``GET /metrics`` (Prometheus). See
docs/serving.md. :class:`ServeConfig` needs nothing beyond the core (the command line reads its
defaults); the server itself needs the extra: without it, its names raise ImportError naming
``pip install 'uehead[serve]'``.
"""
from __future__ import annotations

import importlib

from uehead._extras import require_extra
from uehead.serve.config import ServeConfig

#: What the extra installs that the server imports.
EXTRA_MODULES = ["starlette", "uvicorn", "prometheus_client"]

_LAZY = {
    "create_app": "uehead.serve.app",
    "serve": "uehead.serve.runner",
    "serve_in_thread": "uehead.serve.runner",
    "RunningServer": "uehead.serve.runner",
}
__all__ = ["EXTRA_MODULES", "RunningServer", "ServeConfig", "create_app", "serve", "serve_in_thread"]


def __getattr__(name: str):
    if name in _LAZY:
        require_extra("uehead.serve", "serve", EXTRA_MODULES)
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'uehead.serve' has no attribute {name!r}")
