"""What every endpoint shares: the error a bad request gets (:class:`RequestError`, answered as
``{"error": message, "error_type": kind}``), the checks of its texts and options, and the
:class:`Endpoint` shape the protocol adapters (``classify``, ``tei``, ``oip``) fill in.

Every message names the bad input (its JSON path) and the fix.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from uehead import scores as score_registry
from uehead.errors import DataError
from uehead.runtime.inputs import lone_surrogate, surrogate_message
from uehead.serve.batching import PredictOptions

__all__ = ["RequestError", "ParsedRequest", "Endpoint", "ServingContext", "check_count", "check_texts",
           "check_object", "resolve_options", "VALIDATION", "OVERLOADED", "TIMEOUT", "BACKEND", "NOT_FOUND"]

# error_type values (text-embeddings-inference's names where it has one)
VALIDATION, OVERLOADED, TIMEOUT, BACKEND, NOT_FOUND = "validation", "overloaded", "timeout", "backend", "not_found"


class RequestError(Exception):
    """A request answered with ``status`` and ``{"error": message, "error_type": error_type}``."""

    def __init__(self, status: int, message: str, error_type: str = VALIDATION,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error": self.message, "error_type": self.error_type}


@dataclass
class ParsedRequest:
    """A checked request: its texts, the predict options and what the response needs to echo."""

    texts: list[str]
    options: PredictOptions = PredictOptions()
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServingContext:
    """What the adapters read about the served model: the loaded ``model``, the
    :class:`~uehead.serve.config.ServeConfig` and the model's name in the v2 paths."""

    model: Any
    config: Any
    model_name: str

    @property
    def calibrated(self) -> bool:
        return self.model.calibration is not None

    def score_names(self, distances: bool) -> tuple[str, ...]:
        """The scores a prediction carries ("md" and "rmd" only with ``distances`` and baselines)."""
        heads = tuple(h.kind for h in self.model.manifest.head.heads)
        return score_registry.score_names(heads, distances and self.model.baselines is not None)


@dataclass(frozen=True)
class Endpoint:
    """A POST endpoint: ``parse(body, ctx) -> ParsedRequest`` (raises :class:`RequestError`) and
    ``render(predictions, parsed, ctx) -> JSON-able``; ``ctx`` is the :class:`ServingContext`.
    ``names_model``: the path holds a ``{name}`` that must be the served model's."""

    name: str
    path: str
    parse: Callable
    render: Callable
    names_model: bool = False


def check_object(body: Any, example: str) -> dict:
    if not isinstance(body, dict):
        raise RequestError(422, f"the body is a JSON {_json_type(body)}, expected an object such as {example}.")
    return body


def check_count(n: int, max_texts: int) -> None:
    """413 when a request holds more than ``max_texts`` texts."""
    if n > max_texts:
        raise RequestError(413, f"the request holds {n} texts; this server takes at most {max_texts} per "
                                "request. Split it into smaller requests (or start the server with a higher "
                                "--max-request-texts).")


def check_texts(items: list, where: Callable[[int], str], max_texts: int) -> list[str]:
    """``items`` as texts: 413 when there are more than ``max_texts``, 422 naming the first item that
    is not a string or holds a lone surrogate (``where(i)`` is its JSON path)."""
    check_count(len(items), max_texts)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise RequestError(422, f"{where(i)} is a JSON {_json_type(item)} ({_short(item)}), expected a "
                                    "string; send every text as a JSON string.")
        at = lone_surrogate(item)
        if at is not None:
            raise RequestError(422, f"{where(i)} {surrogate_message(item, at)}.")
    return items


def resolve_options(calibration, distances: Any = False, risk: Any = None, coverage: Any = None,
                    where: str = "") -> PredictOptions:
    """Predict options with the calibration's stored levels resolved (so requests that ask for the
    default and those that name it share batches); 422 naming the bad option otherwise."""
    if not isinstance(distances, bool):
        raise RequestError(422, f"{where}distances is {_short(distances)}; pass true or false.")
    for name, value in (("risk", risk), ("coverage", coverage)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise RequestError(422, f"{where}{name} is {_short(value)}; pass a number (a stored level) or null.")
    if calibration is None:
        if risk is not None or coverage is not None:
            raise RequestError(422, f"{where}risk / coverage were given, but the served bundle is not calibrated; "
                                    "drop them, or serve a bundle made by `uehead calibrate`.")
        return PredictOptions(distances=distances)
    try:
        return PredictOptions(distances=distances, risk=calibration.risk_level(risk).risk,
                              coverage=calibration.coverage_level(coverage).coverage)
    except DataError as exc:
        raise RequestError(422, f"{where}{exc}") from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "number", float: "number"}.get(type(value), "value")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
