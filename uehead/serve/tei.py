"""``POST /predict``: the request and response shapes of Hugging Face text-embeddings-inference's
``/predict`` for sequence classifiers, so its clients work unchanged.

Request: ``{"inputs": ..., "raw_scores": false, "truncate": false}``, where ``inputs`` is one text
(``"a great film"`` or ``["a great film"]``) or a batch of one-element arrays
(``[["a great film"], ["dull"]]``). As in text-embeddings-inference, a flat array of two strings is a
*text pair*; this model classifies single texts, so pairs are refused with a 422 that shows the
batch form. Response: for one text, ``[{"label", "score"}, ...]`` sorted by score, highest first;
for a batch, one such list per text, in input order.

Differences: ``raw_scores: true`` returns log-probabilities, i.e. the logits up to a per-text
constant (their softmax is the same; the bundle's graphs give probabilities and the raw logits are
not kept); texts are always truncated to the model's maximum length, whatever ``truncate`` says.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from uehead.runtime.predictions import Predictions
from uehead.serve.protocol import (Endpoint, ParsedRequest, RequestError, ServingContext, check_count, check_object,
                                   check_texts)

__all__ = ["TEI_PREDICT"]

_EXAMPLE = '{"inputs": "a great film"} or {"inputs": [["a great film"], ["dull"]]}'
_BATCH_FIX = 'send one text as "inputs": "a great film", or a batch as "inputs": [["text 1"], ["text 2"]]'
#: The smallest normal float32: probabilities that underflowed to 0 count as it in raw scores, so
#: their log is a finite JSON number.
_TINY = np.finfo(np.float32).tiny


def _texts(inputs: Any, max_texts: int) -> tuple[list[str], bool]:
    """(texts, is_batch) of a text-embeddings-inference ``inputs`` value."""
    if isinstance(inputs, str):
        return [inputs], False
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(422, f"inputs must be a string or a non-empty array; {_BATCH_FIX}.")
    if not isinstance(inputs[0], list):  # a single sequence: one text, or a text pair
        if len(inputs) == 1:
            return check_texts(inputs, lambda i: f"inputs[{i}]", max_texts), False
        if len(inputs) == 2:
            raise RequestError(422, f"inputs is a pair of texts (text-embeddings-inference reads a flat "
                                    f"array of two as one text pair); this model classifies single texts: "
                                    f"{_BATCH_FIX}.")
        raise RequestError(422, f"inputs is a flat array of {len(inputs)} items, which text-embeddings-inference "
                                f"does not accept (one item is a text, two a text pair): {_BATCH_FIX}.")
    check_count(len(inputs), max_texts)
    texts = []
    for i, item in enumerate(inputs):
        if not isinstance(item, list) or len(item) != 1:
            kind = "a text pair" if isinstance(item, list) and len(item) == 2 else "not a one-element array"
            raise RequestError(422, f"inputs[{i}] is {kind}; in a batch every text is a one-element array: "
                                    f"{_BATCH_FIX}.")
        texts.append(item[0])
    return check_texts(texts, lambda i: f"inputs[{i}][0]", max_texts), True


def parse(body: Any, ctx: ServingContext) -> ParsedRequest:
    body = check_object(body, _EXAMPLE)
    if "inputs" not in body:
        raise RequestError(422, f"the body has no \"inputs\" field; send {_EXAMPLE}.")
    raw_scores = body.get("raw_scores", False)
    if not isinstance(raw_scores, bool):
        raise RequestError(422, "raw_scores must be true or false.")
    if not isinstance(body.get("truncate", False), (bool, type(None))):
        raise RequestError(422, "truncate must be true or false (texts are always truncated to the model's "
                                "maximum length).")
    direction = body.get("truncation_direction", "right")
    if not isinstance(direction, str) or direction.lower() != "right":
        raise RequestError(422, f"truncation_direction {direction!r} is not supported; this server truncates on "
                                "the right: drop the field or send \"right\".")
    texts, batch = _texts(body["inputs"], ctx.config.max_request_texts)
    return ParsedRequest(texts, context={"batch": batch, "raw_scores": raw_scores})


def render(preds: Predictions, parsed: ParsedRequest, ctx: ServingContext) -> list:
    values = preds.probs
    if parsed.context["raw_scores"]:
        values = np.log(np.maximum(values, _TINY))
    labels = ctx.model.labels
    rows = []
    for row in values.tolist():
        ranked = sorted(zip(row, labels), key=lambda pair: pair[0])  # stable, then reversed: ties as TEI
        rows.append([{"score": score, "label": label} for score, label in reversed(ranked)])
    return rows if parsed.context["batch"] else rows[0]


TEI_PREDICT = Endpoint("predict", "/predict", parse, render)
