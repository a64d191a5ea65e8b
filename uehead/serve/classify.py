"""``POST /classify``: uehead's own endpoint.

Request: ``{"texts": ["a great film", ...]}`` (or one string), optionally ``"distances": true`` and,
on a calibrated bundle, ``"risk"`` / ``"coverage"`` (stored levels; default: the calibration's).
Response: ``{"labels": [label names in probs order], "predictions": [one object per text, in input
order]}``; each object has ``label``, ``label_id``, ``probs``, ``uncertainty`` (the bundle's default
score), ``uncertainty_kind`` and ``scores`` (every score by name; all of them higher = more
uncertain), plus ``p_error``, ``accept`` and ``prediction_set`` when the bundle is calibrated (then the
response also states the ``risk`` and ``coverage`` levels used).
"""
from __future__ import annotations

from typing import Any

from uehead.runtime.predictions import Predictions
from uehead.serve.protocol import (Endpoint, ParsedRequest, RequestError, ServingContext, check_object,
                                   check_texts, resolve_options)

__all__ = ["CLASSIFY"]

_EXAMPLE = '{"texts": ["a great film"]}'
_KEYS = ("texts", "distances", "risk", "coverage")


def parse(body: Any, ctx: ServingContext) -> ParsedRequest:
    body = check_object(body, _EXAMPLE)
    unknown = sorted(set(body) - set(_KEYS))
    if unknown:
        raise RequestError(422, f"unknown field(s) {', '.join(map(repr, unknown))}; /classify takes "
                                f"{', '.join(_KEYS)}, e.g. {_EXAMPLE}.")
    if "texts" not in body:
        raise RequestError(422, f"the body has no \"texts\" field; send {_EXAMPLE}.")
    texts = body["texts"]
    if isinstance(texts, str):
        texts = [texts]
    elif not isinstance(texts, list):
        raise RequestError(422, "texts must be a string or an array of strings, e.g. " + _EXAMPLE + ".")
    check_texts(texts, lambda i: f"texts[{i}]", ctx.config.max_request_texts)
    options = resolve_options(ctx.model.calibration, body.get("distances", False), body.get("risk"),
                              body.get("coverage"))
    return ParsedRequest(texts, options)


def render(preds: Predictions, parsed: ParsedRequest, ctx: ServingContext) -> dict:
    probs = preds.probs.tolist()
    label_ids = preds.label_ids.tolist()
    uncertainty = preds.uncertainty.tolist()
    scores = {name: values.tolist() for name, values in preds.scores.items()}
    rows = []
    for i, label in enumerate(preds.labels):
        rows.append({"label": label, "label_id": label_ids[i], "probs": probs[i], "uncertainty": uncertainty[i],
                     "uncertainty_kind": preds.uncertainty_kind,
                     "scores": {name: values[i] for name, values in scores.items()}})
    out: dict[str, Any] = {"labels": list(ctx.model.labels), "predictions": rows}
    if preds.calibrated:
        p_error, accept = preds.p_error.tolist(), preds.accept.tolist()
        for i, row in enumerate(rows):
            row.update(p_error=p_error[i], accept=accept[i], prediction_set=list(preds.prediction_sets[i]))
        out.update(risk=preds.risk, coverage=preds.coverage)
    return out


CLASSIFY = Endpoint("classify", "/classify", parse, render)
