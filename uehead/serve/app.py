"""The ASGI app: routes, request bodies under their limit, the batcher's lifecycle, metrics.

    from uehead.serve import create_app
    app = create_app(model, ServeConfig())      # any ASGI server runs it; `uehead serve` uses uvicorn

Routes: ``POST /classify`` (uehead's own), ``POST /predict`` (text-embeddings-inference),
``POST /v2/models/{name}/infer`` + ``GET /v2``, ``/v2/models/{name}``, ``/v2/models/{name}/ready``,
``/v2/health/live``, ``/v2/health/ready`` (Open Inference Protocol), ``GET /health`` and
``GET /metrics`` (Prometheus). Errors are ``{"error": message, "error_type": kind}``.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from uehead.errors import NonFiniteLogitsError
from uehead.serve import oip
from uehead.serve.batching import Batcher, Overloaded, PredictOptions, ShuttingDown
from uehead.serve.classify import CLASSIFY
from uehead.serve.config import ServeConfig
from uehead.serve.metrics import CONTENT_TYPE_LATEST, ServeMetrics
from uehead.serve.protocol import (BACKEND, NOT_FOUND, OVERLOADED, TIMEOUT, Endpoint, RequestError,
                                   ServingContext)
from uehead.serve.tei import TEI_PREDICT
from uehead.token_task import SEQUENCE_CLASSIFICATION, require_task

__all__ = ["create_app"]

log = logging.getLogger("uehead.serve")
_JSON = "application/json"
#: A body past the limit is still read (and dropped) up to this many more bytes before the 413: a
#: client that is still sending and asked for ``Connection: close`` then reads the answer instead
#: of a connection reset.
_DRAIN_BYTES = 16 * 1024 * 1024


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return Response(body, status_code=status, media_type=_JSON, headers=headers)


def error_response(error: RequestError) -> Response:
    return json_response(error.body(), error.status, error.headers)


async def read_json(request: Request, max_bytes: int) -> Any:
    """The body parsed as JSON: 413 past ``max_bytes`` (kept in memory up to ``max_bytes`` only), 400
    when it is not JSON."""
    too_large = RequestError(413, f"the request body is larger than this server's limit of {max_bytes} bytes; "
                                  "send fewer texts per request (or start the server with a higher "
                                  "--max-body-bytes).")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + _DRAIN_BYTES:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes + _DRAIN_BYTES:
            raise too_large
        if size <= max_bytes:
            chunks.append(chunk)
    if size > max_bytes:
        raise too_large
    try:
        return json.loads(b"".join(chunks))
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"the body is not valid JSON ({exc}); send a JSON object, e.g. "
                                '{"texts": ["a great film"]}.') from None
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the body is not UTF-8 text ({exc}); encode the JSON as UTF-8.") from None
    except RecursionError:
        raise RequestError(400, "the body nests JSON arrays or objects too deeply to parse; send a flat "
                                '{"texts": [...]} object.') from None


class _Server:
    """The state behind the routes: the serving context, the batcher and the metrics."""

    def __init__(self, model, config: ServeConfig, model_name: str):
        self.ctx = ServingContext(model, config, model_name)
        self.config = config
        self.metrics = ServeMetrics(config.max_batch_texts)
        self.batcher = Batcher(self._predict, max_batch_texts=config.max_batch_texts, max_wait_s=config.max_wait_s,
                               max_queue_texts=config.max_queue_texts, inflight_batches=config.inflight_batches,
                               merge=config.batching, on_batch=self.metrics.batch_texts.observe,
                               on_queue=self.metrics.queue_texts.set)
        self.ready = False

    def _predict(self, texts: list[str], options: PredictOptions):
        return self.ctx.model.predict(texts, batch_size=self.config.predict_batch_size, distances=options.distances,
                                      risk=options.risk, coverage=options.coverage)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        await self.batcher.start()
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            await self.batcher.stop()
            self.metrics.worker_exited()

    async def predict(self, texts: list[str], options: PredictOptions):
        """The batcher's answer, its faults as RequestErrors (503 / 504 / 422 / 500)."""
        try:
            return await asyncio.wait_for(self.batcher.submit(texts, options), self.config.request_timeout_s)
        except Overloaded as exc:
            raise RequestError(503, str(exc), OVERLOADED, {"Retry-After": str(exc.retry_after_s)}) from None
        except ShuttingDown as exc:
            raise RequestError(503, str(exc), OVERLOADED, {"Retry-After": "1", "Connection": "close"}) from None
        except asyncio.TimeoutError:
            raise RequestError(504, f"the request was not answered within {self.config.request_timeout_s:g} s "
                                    "(--request-timeout-s); retry, send fewer texts, or add workers.",
                               TIMEOUT) from None
        except NonFiniteLogitsError as exc:
            raise RequestError(500, f"the model gave NaN or infinite logits for these texts ({exc}).",
                               BACKEND) from None
        except (TypeError, ValueError) as exc:  # the runtime's input errors name the text and the fix
            raise RequestError(422, str(exc)) from None
        except Exception as exc:
            log.exception("predict failed")
            raise RequestError(500, f"prediction failed ({type(exc).__name__}: {exc}).", BACKEND) from None

    def endpoint(self, endpoint: Endpoint):
        async def handle(request: Request) -> Response:
            start = time.perf_counter()
            try:
                if endpoint.names_model:
                    self.check_model_name(request)
                parsed = endpoint.parse(await read_json(request, self.config.max_body_bytes), self.ctx)
                preds = await self.predict(parsed.texts, parsed.options)
                response = json_response(endpoint.render(preds, parsed, self.ctx))
            except RequestError as exc:
                response = error_response(exc)
            self.metrics.observe_request(endpoint.name, response.status_code, time.perf_counter() - start)
            return response

        return handle

    def check_model_name(self, request: Request) -> None:
        name = request.path_params["name"]
        if name != self.ctx.model_name:
            raise RequestError(404, f"no model named {name!r}; this server serves {self.ctx.model_name!r} "
                                    f"(/v2/models/{self.ctx.model_name}).", NOT_FOUND)

    # -- GET routes ---------------------------------------------------------------------------
    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def readiness(self, request: Request) -> Response:
        ready = self.ready and self.batcher.accepting
        return json_response({"ready": ready}, 200 if ready else 503)

    async def model_ready(self, request: Request) -> Response:
        try:
            self.check_model_name(request)
        except RequestError as exc:
            return error_response(exc)
        return await self.readiness(request)

    async def model_metadata(self, request: Request) -> Response:
        try:
            self.check_model_name(request)
        except RequestError as exc:
            return error_response(exc)
        return json_response(oip.model_metadata(self.ctx))

    async def server_metadata(self, request: Request) -> Response:
        return json_response(oip.server_metadata())

    async def metrics_text(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Unknown paths and wrong methods, answered in the servers' error shape."""
    hint = ("POST /classify, POST /predict, POST /v2/models/<name>/infer, GET /v2/models/<name>, "
            "GET /v2/health/live, GET /v2/health/ready, GET /metrics")
    error_type = NOT_FOUND if exc.status_code == 404 else "validation"
    message = f"{request.method} {request.url.path}: {exc.detail}; this server answers {hint}."
    return json_response({"error": message, "error_type": error_type}, exc.status_code, exc.headers)


def create_app(model, config: ServeConfig | None = None) -> Starlette:
    """The server's ASGI app for a loaded ``model`` (:func:`uehead.runtime.load`).

    Serves sequence-classification bundles (a token-classification bundle raises
    ``uehead.errors.TaskMismatchError``). The batcher starts and stops with the app's lifespan (uvicorn, Ray Serve and other ASGI servers
    run it); on shutdown every queued and running request is answered before the threads stop.
    """
    require_task(model.manifest, SEQUENCE_CLASSIFICATION, "uehead serve", path=model.path)
    config = config or ServeConfig()
    server = _Server(model, config, config.model_name or Path(model.path).name)
    routes = [Route(e.path, server.endpoint(e), methods=["POST"]) for e in (CLASSIFY, TEI_PREDICT, oip.OIP_INFER)]
    routes += [
        Route("/v2", server.server_metadata, methods=["GET"]),
        Route("/v2/health/live", server.live, methods=["GET"]),
        Route("/v2/health/ready", server.readiness, methods=["GET"]),
        Route("/health", server.readiness, methods=["GET"]),
        Route("/v2/models/{name}", server.model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", server.model_ready, methods=["GET"]),
        Route("/metrics", server.metrics_text, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=server.lifespan, exception_handlers={HTTPException: _http_error})
    app.state.uehead = server
    return app
