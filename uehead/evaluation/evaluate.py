"""``uehead evaluate``: how well each score of a bundle flags the model's mistakes (torch-free).

Runs a bundle through the runtime on one split of a labelled dataset, computes the error
indicator e = [predicted label != true label] and every metric of :mod:`uehead.evaluation.metrics` for
every score the bundle has (softmax response, entropy, AdUE, ALIEN, MD, RMD; all **higher = more
uncertain**), prints a table, and writes JSON plus PNG plots next to it.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from uehead import __version__
from uehead.evaluation import metrics
from uehead._extras import installed_versions
from uehead.jsonio import write_json_atomic
from uehead.datasets import DataError, DataFileOptions, Dataset, is_data_file, load_labelled
from uehead.evaluation.decisions import decision_metrics, format_decisions

__all__ = ["evaluate_bundle", "evaluate_predictions", "collect_scores", "plot_paths"]

#: Attribute of Predictions -> score name, used when ``Predictions.scores`` lacks that name.
_FALLBACK_SCORES = {"softmax_response": "sr", "entropy": "entropy"}
_VERSIONED = ("numpy", "onnxruntime", "tokenizers", "numba", "matplotlib")


def collect_scores(predictions: Any, n: int) -> dict[str, np.ndarray]:
    """Every score of a Predictions object as float64 arrays of length ``n``.

    Takes ``predictions.scores`` (name -> [n]) and adds ``sr`` / ``entropy`` from the
    ``softmax_response`` / ``entropy`` attributes when the dict lacks them.
    """
    raw: dict[str, Any] = dict(getattr(predictions, "scores", None) or {})
    for attr, name in _FALLBACK_SCORES.items():
        if name not in raw and getattr(predictions, attr, None) is not None:
            raw[name] = getattr(predictions, attr)
    if not raw:
        raise ValueError("the predictions carry no uncertainty scores (neither .scores nor .softmax_response)")
    out = {}
    for name, u in raw.items():
        arr = np.asarray(u, dtype=np.float64)
        if arr.shape != (n,):
            raise ValueError(f"score {name!r} has shape {arr.shape}; expected ({n},), one value per text")
        out[name] = arr
    return out


def evaluate_predictions(predictions: Any, labels, *, num_classes: int | None = None,
                         probability_scores: Iterable[str] = metrics.PROBABILITY_SCORES) -> dict[str, Any]:
    """Metrics of every score of ``predictions`` (a runtime Predictions) against true ``labels``.

    Returns ``{"n", "num_classes", "accuracy", "error_rate", "num_errors", "metrics": {score:
    {metric: value}}}``; undefined metrics are NaN (with an :class:`UndefinedMetricWarning`).
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise DataError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    pred = np.asarray(predictions.label_ids)
    if pred.shape != y.shape:
        raise ValueError(f"the model returned {pred.shape[0] if pred.ndim else pred} predictions for "
                         f"{y.shape[0]} texts")
    probs = getattr(predictions, "probs", None)
    c = np.asarray(probs).shape[1] if probs is not None else None
    if num_classes is not None and c is not None and c != num_classes:
        raise DataError(f"the bundle predicts {c} classes but the dataset has {num_classes} labels; "
                        "evaluate a bundle on data with the label set it was trained on")
    limit = c if c is not None else num_classes
    if y.min() < 0 or (limit is not None and y.max() >= limit):
        raise DataError(f"labels must lie in [0, {limit}) for a {limit}-class model; found "
                        f"{int(y.min())}..{int(y.max())}")
    errors = pred != y
    scores = collect_scores(predictions, y.size)
    return {
        "n": int(y.size),
        "num_classes": c if c is not None else num_classes,
        "accuracy": metrics.accuracy(y, pred),
        "error_rate": float(errors.mean()),
        "num_errors": int(errors.sum()),
        "metrics": metrics.summarize(scores, errors, probability_scores),
        "_scores": scores,
        "_errors": errors,
    }


def plot_paths(json_out: str | os.PathLike) -> dict[str, Path]:
    """Where the PNGs of ``json_out`` go: ``<stem>_reliability.png`` and ``<stem>_risk_coverage.png``
    in the JSON's folder."""
    p = Path(json_out)
    return {"reliability": p.with_name(f"{p.stem}_reliability.png"),
            "risk_coverage": p.with_name(f"{p.stem}_risk_coverage.png")}


def _load_model(bundle: str | os.PathLike):
    from uehead.runtime import load  # noqa: PLC0415  (torch-free)

    return load(bundle)


def _evaluate_tokens(bundle, data, split, json_out, plots, max_rows, batch_size, probability_scores, verbose):
    from uehead.evaluation.token_evaluate import evaluate_token_bundle  # noqa: PLC0415

    model = bundle if hasattr(bundle, "predict_tokens") else _load_model(bundle)
    return evaluate_token_bundle(model, data, split=split, json_out=json_out, plots=plots, max_rows=max_rows,
                                 batch_size=batch_size, probability_scores=tuple(probability_scores),
                                 verbose=verbose, bundle=None if hasattr(bundle, "predict") else str(bundle))


def _is_token_bundle(bundle) -> bool:
    """Whether ``bundle`` (a loaded model or a bundle folder) is for token classification."""
    from uehead.bundle import read_manifest  # noqa: PLC0415
    from uehead.token_task import is_token_task  # noqa: PLC0415

    manifest = getattr(bundle, "manifest", None)
    if manifest is None and not hasattr(bundle, "predict") and Path(bundle, "manifest.json").is_file():
        manifest = read_manifest(bundle)
    return manifest is not None and is_token_task(manifest)


def _versions(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"uehead": __version__, "python": platform.python_version(),
                           **installed_versions(_VERSIONED)}
    manifest = getattr(model, "manifest", None)
    writer = getattr(manifest, "writer", None)
    if writer:
        out["bundle_writer"] = dict(writer)
    return out


def evaluate_bundle(bundle: str | os.PathLike | Any, data: str | os.PathLike | Dataset, *, split: str = "test",
                    json_out: str | os.PathLike | None = None, plots: bool = True, max_rows: int | None = None,
                    batch_size: int = 32, probability_scores: Iterable[str] = metrics.PROBABILITY_SCORES,
                    verbose: bool = True, text_column: str = "text", label_column: str = "label",
                    data_options: DataFileOptions | None = None) -> dict[str, Any]:
    """Evaluate every uncertainty score of a bundle on ``data[split]``.

    Args:
        bundle: a bundle folder (loaded with :func:`uehead.runtime.load`) or an already loaded
            model, i.e. any object with ``predict(texts, batch_size=..., distances=True)`` returning
            Predictions (``label_ids``, ``probs``, ``softmax_response``, ``entropy``, ``scores``).
        data: ``"rotten_tomatoes"``, a dataset folder, a :class:`~uehead.datasets.Dataset`, or a
            JSONL / CSV / Parquet file (labels as the bundle's label names or as ids), read by
            :func:`uehead.datasets.load_labelled`: every row with ``text_column`` and ``label_column``
            when ``data_options`` is None, else its ``split`` part (the split column, or the same
            seeded fractions training used). A token-classification bundle: a ``{"tokens", "tags"}``
            folder (:func:`uehead.evaluation.token_evaluate.evaluate_token_bundle`).
        split: which split to score (never the one the heads were selected on, for honest numbers).
        json_out: JSON file to write; the PNGs go next to it (see :func:`plot_paths`). None writes
            nothing.
        plots: draw a reliability diagram (probability-like scores) and risk-coverage curves
            (every score; the calibrated thresholds marked when the bundle is calibrated). Needs
            matplotlib; checked before any prediction runs.
        max_rows: score only the first ``max_rows`` rows of the split.
        batch_size: texts per runtime batch.
        probability_scores: score names that are error probabilities (ECE, Brier, reliability).
        verbose: print the metrics table to stdout.
        data_options: how to read and split a data file (:class:`~uehead.datasets.DataFileOptions`;
            its columns replace ``text_column`` / ``label_column``); None scores the whole file.

    Returns the record written as JSON: ``bundle, data, split, n, num_classes, accuracy,
    error_rate, num_errors, metrics {score: {metric: value}}, directions, probability_scores,
    default_score (the score filling Predictions.uncertainty), decisions (selective risk and
    coverage at each calibrated level; None when the bundle is not calibrated), versions,
    plots, seconds, notes``. Undefined metrics are NaN in the dict and null in the JSON.
    """
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be >= 1 (or None for all rows), got {max_rows}")
    if _is_token_bundle(bundle):
        return _evaluate_tokens(bundle, data, split, json_out, plots, max_rows, batch_size, probability_scores, verbose)
    draw = plots and json_out is not None
    if draw:
        from uehead.evaluation.plots import require_matplotlib  # noqa: PLC0415

        require_matplotlib()
    loaded = hasattr(bundle, "predict")
    model = bundle if loaded else None
    file = not isinstance(data, Dataset) and str(data) != "rotten_tomatoes" and is_data_file(data)
    if model is None and file:
        model = _load_model(bundle)  # a file's label names are the bundle's
    got = load_labelled(data, split, label_names=tuple(model.labels) if file else None, options=data_options,
                        text_column=text_column, label_column=label_column)
    name = got.name if isinstance(data, Dataset) or file else str(data)
    split, num_classes = got.split, got.num_classes
    rows = got.rows.head(max_rows)
    model = model if model is not None else _load_model(bundle)
    t0 = time.perf_counter()
    predictions = model.predict(list(rows.texts), batch_size=batch_size, distances=True)
    seconds = time.perf_counter() - t0
    prob = tuple(probability_scores)
    result = evaluate_predictions(predictions, rows.labels, num_classes=num_classes, probability_scores=prob)
    scores, errors = result.pop("_scores"), result.pop("_errors")
    calibration = getattr(model, "calibration", None)
    record: dict[str, Any] = {
        "bundle": str(getattr(bundle, "path", type(bundle).__name__)) if loaded else str(bundle),
        "data": name,
        "split": split,
        "max_rows": max_rows,
        **result,
        "directions": dict(metrics.DIRECTIONS),
        "probability_scores": [s for s in scores if s in prob],
        "default_score": getattr(model, "uncertainty_kind", None),
        "decisions": None if calibration is None else decision_metrics(
            calibration, predictions.probs, scores, rows.labels),
        "versions": _versions(model),
        "seconds": {"predict": round(seconds, 4)},
        "plots": {},
        "notes": [],
    }
    if file and split is None:
        record["notes"].append(f"scored every row of {name}; to score only the test rows of a file the bundle was "
                               "trained on, pass the training's --split-column or --valid-fraction / "
                               "--test-fraction / --split-seed")
    if "md" not in scores and hasattr(model, "baselines") and model.baselines is None:
        record["notes"].append("no MD/RMD scores: the bundle carries no baselines.npz (re-export it from a "
                               "checkpoint with baseline statistics)")
    if draw:
        record["plots"] = _draw_plots(record, scores, errors, prob, json_out)
    if json_out is not None:
        write_json_atomic(json_out, record)
    if verbose:
        _print_record(record, json_out)
    return record


def _draw_plots(record: dict[str, Any], scores, errors, prob: tuple[str, ...], json_out) -> dict[str, str]:
    from uehead.evaluation import plots as plotting  # noqa: PLC0415

    paths = plot_paths(json_out)
    where = Path(record["data"]).name + (f":{record['split']}" if record["split"] else "")
    title = f"{Path(str(record['bundle'])).name} on {where} (n={record['n']})"
    out = {}
    prob_scores = {k: v for k, v in scores.items() if k in prob}
    if prob_scores:
        out["reliability"] = str(plotting.reliability_diagram(prob_scores, errors, paths["reliability"], title=title))
    decisions = record["decisions"]
    marks = [] if decisions is None else [
        (decisions["score"], r["accepted_fraction"], r["selective_risk"], r["risk"])
        for r in decisions["risk_levels"] if r["selective_risk"] is not None]
    out["risk_coverage"] = str(plotting.risk_coverage_plot(scores, errors, paths["risk_coverage"], title=title,
                                                           marks=marks))
    return out


def _print_record(record: dict[str, Any], json_out) -> None:
    where = record["data"] + (f":{record['split']}" if record["split"] else "")
    print(f"{record['bundle']} on {where}, n = {record['n']}, accuracy "
          f"{record['accuracy']:.4f}, {record['num_errors']} errors")
    print(metrics.format_table(record["metrics"], markdown=False))
    if record["decisions"] is not None:
        print(format_decisions(record["decisions"]))
    for note in record["notes"]:
        print(f"note: {note}")
    if json_out is not None:
        print(f"wrote {json_out}" + "".join(f", {p}" for p in record["plots"].values()))
    sys.stdout.flush()
