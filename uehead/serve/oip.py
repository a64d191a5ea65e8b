"""The Open Inference Protocol (KServe v2, Triton) over REST: ``POST /v2/models/{name}/infer`` and
the metadata the protocol's clients read first.

Input: one tensor ``{"name": "text", "datatype": "BYTES", "shape": [N] (or [N, 1]), "data": [texts]}``.
Request ``parameters`` may hold ``distances`` (bool) and, on a calibrated bundle, ``risk`` /
``coverage``; ``outputs: [{"name": ...}]`` picks outputs (asking for ``md`` / ``rmd`` turns distances
on). Outputs, rows in input order: ``label`` BYTES [N], ``label_id`` INT64 [N], ``probs`` FP32 [N, C],
``uncertainty`` FP32 [N] (the bundle's default score), one FP32 [N] per score by name (``sr``,
``entropy``, ``adue``, ...; all higher = more uncertain) and, when calibrated, ``p_error`` FP32 [N],
``accept`` BOOL [N] and ``prediction_set`` BOOL [N, C] (label c is in the set of text i).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from uehead import __version__
from uehead.runtime.predictions import Predictions
from uehead.scores import DISTANCE_SCORES
from uehead.serve.protocol import (Endpoint, ParsedRequest, RequestError, ServingContext, check_object,
                                   check_texts, resolve_options)

__all__ = ["OIP_INFER", "model_metadata", "server_metadata", "output_specs"]

INPUT_NAME = "text"
_EXAMPLE = '{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a great film"]}]}'


def output_specs(ctx: ServingContext, distances: bool = True) -> list[dict]:
    """``{"name", "datatype", "shape"}`` of every output this model can give (-1: any number of texts)."""
    c = len(ctx.model.labels)
    specs = [("label", "BYTES", [-1]), ("label_id", "INT64", [-1]), ("probs", "FP32", [-1, c]),
             ("uncertainty", "FP32", [-1])]
    specs += [(name, "FP32", [-1]) for name in ctx.score_names(distances)]
    if ctx.calibrated:
        specs += [("p_error", "FP32", [-1]), ("accept", "BOOL", [-1]), ("prediction_set", "BOOL", [-1, c])]
    return [{"name": n, "datatype": d, "shape": s} for n, d, s in specs]


def server_metadata() -> dict:
    return {"name": "uehead", "version": __version__, "extensions": []}


def model_metadata(ctx: ServingContext) -> dict:
    parameters = {"labels": list(ctx.model.labels), "uncertainty_kind": ctx.model.uncertainty_kind,
                  "calibrated": ctx.calibrated}
    return {"name": ctx.model_name, "versions": [], "platform": "uehead",
            "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
            "outputs": output_specs(ctx), "parameters": parameters}


def _flatten(data: Any) -> list:
    if not isinstance(data, list):
        raise RequestError(422, f"inputs[0].data must be an array of strings, e.g. {_EXAMPLE}.")
    if any(isinstance(x, list) for x in data):  # nested row-major form, e.g. [[t1], [t2]] for shape [N, 1]
        flat = []
        for x in data:
            flat.extend(_flatten(x) if isinstance(x, list) else [x])
        return flat
    return data


def _input_texts(body: dict, max_texts: int) -> list[str]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise RequestError(422, f"inputs must be an array of one tensor object (the texts), e.g. {_EXAMPLE}.")
    tensor = inputs[0]
    if tensor.get("name") != INPUT_NAME:
        raise RequestError(422, f"inputs[0].name is {tensor.get('name')!r}; this model's input is named "
                                f"{INPUT_NAME!r} (GET /v2/models/<name> lists it).")
    if tensor.get("datatype") != "BYTES":
        raise RequestError(422, f"inputs[0].datatype is {tensor.get('datatype')!r}; send the texts as a "
                                "\"BYTES\" tensor.")
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2 or (len(shape) == 2 and shape[1] != 1)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise RequestError(422, f"inputs[0].shape is {shape!r}; send [N] (or [N, 1]) for N texts.")
    flat = _flatten(tensor.get("data"))
    if math.prod(shape) != len(flat):
        raise RequestError(422, f"inputs[0].shape {shape} holds {math.prod(shape)} elements but data has "
                                f"{len(flat)}; make them agree.")
    return check_texts(flat, lambda i: f"inputs[0].data[{i}]", max_texts)


def parse(body: Any, ctx: ServingContext) -> ParsedRequest:
    body = check_object(body, _EXAMPLE)
    texts = _input_texts(body, ctx.config.max_request_texts)
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError(422, "parameters must be an object such as {\"risk\": 0.05}.")
    requested = body.get("outputs")
    names = None
    if requested is not None:
        if not isinstance(requested, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                      for o in requested):
            raise RequestError(422, "outputs must be an array of objects such as {\"name\": \"probs\"}.")
        names = [o["name"] for o in requested]
        known = [spec["name"] for spec in output_specs(ctx)]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise RequestError(422, f"output(s) {', '.join(map(repr, unknown))} do not exist; this model gives "
                                    f"{', '.join(known)}.")
    distances = parameters.get("distances", False)
    if names is not None and any(n in DISTANCE_SCORES for n in names):
        distances = True
    options = resolve_options(ctx.model.calibration, distances, parameters.get("risk"),
                              parameters.get("coverage"), where="parameters.")
    return ParsedRequest(texts, options, context={"id": body.get("id"), "outputs": names})


def render(preds: Predictions, parsed: ParsedRequest, ctx: ServingContext) -> dict:
    n, c = preds.probs.shape[0], len(ctx.model.labels)
    tensors = {"label": ("BYTES", [n], list(preds.labels)),
               "label_id": ("INT64", [n], preds.label_ids.tolist()),
               "probs": ("FP32", [n, c], preds.probs.ravel().tolist()),
               "uncertainty": ("FP32", [n], preds.uncertainty.tolist())}
    for name, values in preds.scores.items():
        tensors[name] = ("FP32", [n], values.tolist())
    if preds.calibrated:
        index = {label: j for j, label in enumerate(ctx.model.labels)}
        mask = np.zeros((n, c), bool)
        for i, members in enumerate(preds.prediction_sets):
            mask[i, [index[m] for m in members]] = True
        tensors.update(p_error=("FP32", [n], preds.p_error.tolist()), accept=("BOOL", [n], preds.accept.tolist()),
                       prediction_set=("BOOL", [n, c], mask.ravel().tolist()))
    names = parsed.context["outputs"] or list(tensors)
    parameters: dict[str, Any] = {"uncertainty_kind": preds.uncertainty_kind}
    if preds.calibrated:
        parameters.update(risk=preds.risk, coverage=preds.coverage)
    out = {"model_name": ctx.model_name, "parameters": parameters,
           "outputs": [{"name": name, "datatype": tensors[name][0], "shape": tensors[name][1],
                        "data": tensors[name][2]} for name in names]}
    if parsed.context["id"] is not None:
        out["id"] = parsed.context["id"]
    return out


OIP_INFER = Endpoint("v2_infer", "/v2/models/{name}/infer", parse, render, names_model=True)
