"""``uehead verify``: check a bundle torch-free (checksums, graph shapes, golden outputs).

``golden.json`` (written by the exporter) holds a few texts and the outputs expected for them::

    {"texts": [...], "tolerance": 1e-4, "source": "pytorch" | "onnxruntime",
     "label_ids": [N], "labels": [N], "probs": [[...]], "softmax_response": [N], "entropy": [N],
     "heads": {"adue": [N], "alien": [N]}, "distances": {"md": [N], "rmd": [N]}}

(schema: :mod:`uehead.golden`; ``labels`` and ``distances`` are optional). :func:`verify` loads
the bundle (every sha256 and graph check of :func:`uehead.runtime.load`), re-computes the golden
texts through the runtime (one text per call), and reports each output's max abs diff (relative
to max(1, |value|) for the distances). Any diff above the tolerance raises
:class:`GoldenMismatchError`; a label may differ only where the golden probabilities of the top
two classes are within twice the tolerance, and a golden label name must be the manifest's name
of its label id (edited or swapped label names fail).

When the bundle has ``scores.onnx`` (the scores as an ONNX graph, for apps outside Python),
:func:`verify` also runs it on the head outputs of the golden texts (and a few extreme logits,
|logit| = 1e4 and ties) and compares it with the runtime's kernels: labels must be equal and every
probability and score within :data:`SCORES_GRAPH_TOLERANCE`, else :class:`ScoresGraphMismatchError`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from uehead.bundle import SCORES_TASK_OUTPUTS, UNCERTAINTY_OUTPUT, BundleError, IncompatibleBundleError
from uehead.golden import read_golden
from uehead.manifest_checksum import check_manifest_sha256
from uehead.runtime.token_model import golden_predictions, sentence_head_outputs
from uehead.scores import head_kind, head_params
from uehead.token_task import is_token_task

__all__ = ["verify", "GoldenMismatchError", "ScoresGraphMismatchError", "SCORES_GRAPH_TOLERANCE", "extreme_logits"]

#: Max abs difference allowed between scores.onnx and the kernels (both float32 from float64 math).
SCORES_GRAPH_TOLERANCE = 1e-6

_FIX = "re-export the bundle with `uehead export`."


class GoldenMismatchError(BundleError):
    """The runtime's outputs on the golden texts differ from golden.json beyond its tolerance."""


class ScoresGraphMismatchError(BundleError):
    """scores.onnx differs from the runtime's kernels beyond :data:`SCORES_GRAPH_TOLERANCE`."""


def verify(bundle_dir: str | os.PathLike, *, expected_sha256: str | None = None) -> dict[str, Any]:
    """Check a bundle and return a JSON-able report.

    ``manifest.json`` itself must have the sha256 ``expected_sha256`` (when given) and the one in
    ``manifest.json.sha256`` (when the bundle has that file; see :mod:`uehead.manifest_checksum`).

    Report keys: ``bundle`` (path), ``ok`` (True), ``format_version``, ``manifest_sha256``, ``files``
    (file -> sha256, all checked), ``heads``, ``default_kind``, ``golden``: None when the bundle has no golden
    set, else ``{"file", "source", "texts", "tolerance", "max_abs_diff": {output: diff},
    "label_mismatches", "label_names"}`` (``label_names``: the golden label names checked against
    the manifest's, None for a golden file without them), and ``scores_graph``: None without scores.onnx, else ``{"file",
    "rows", "tolerance", "max_abs_diff": {output: diff}, "label_mismatches"}``.

    Raises:
        BundleError (or a subclass) for any problem load() finds; GoldenMismatchError naming
        golden.json when an output differs from it by more than its tolerance;
        ScoresGraphMismatchError naming scores.onnx when it disagrees with the kernels.
    """
    from uehead.runtime.loading import load

    root = Path(bundle_dir)
    digest = check_manifest_sha256(root, expected_sha256, checksum_file=True)
    model = load(root, warmup=False)
    m = model.manifest
    report: dict[str, Any] = {
        "bundle": str(root), "ok": True, "format_version": m.format_version, "manifest_sha256": digest,
        "files": m.files(), "heads": [h.kind for h in m.head.heads], "default_kind": m.head.default_kind,
        "golden": None, "scores_graph": None,
    }
    if m.golden is not None:
        report["golden"] = _check_golden(model, root / m.golden.file)
    if m.scores is not None:
        golden = read_golden(root / m.golden.file) if m.golden is not None else {}
        rows = golden.get("sentences") if is_token_task(m) else golden.get("texts")  # token bundles: sentences
        report["scores_graph"] = _check_scores_graph(model, root / m.scores.file,
                                                     rows or ([["a"]] if is_token_task(m) else [""]))
    return report


def extreme_logits(num_classes: int) -> np.ndarray:
    """Logits that break a score graph without a max shift or with float32 sums: zeros (ties),
    +-1e4 alternating, all 1e4, uniform in [-1e4, 1e4] (seeded); float32 [5, num_classes]."""
    c = int(num_classes)
    alternating = np.where(np.arange(c) % 2 == 0, 1e4, -1e4)
    return np.stack([np.zeros(c), alternating, -alternating, np.full(c, 1e4),
                     np.random.default_rng(0).uniform(-1e4, 1e4, c)]).astype(np.float32)


def _head_outputs(model, texts: list[str]) -> dict[str, np.ndarray]:
    """head.onnx's outputs for ``texts`` (one batch), followed by :func:`extreme_logits`."""
    m = model.manifest
    if is_token_task(m):
        outs = sentence_head_outputs(model, texts)
    else:
        z = model.backbone_session.run([m.backbone.output_name], model.tokenizer(texts))[0]
        names = [m.head.task_logits_name, *(h.output_name for h in m.head.heads)]
        outs = dict(zip(names, model.head_session.run(names, {m.head.input_name: z})))
    extreme = extreme_logits(m.head.num_classes)
    return {k: np.concatenate([v.astype(np.float32), extreme]) for k, v in outs.items()}


def _check_scores_graph(model, path: Path, texts: list[str]) -> dict[str, Any]:
    """scores.onnx against the kernels on the same head outputs."""
    from uehead.runtime import kernels
    from uehead.runtime.session import make_session

    m = model.manifest
    try:
        session = make_session(path, threads=1)
    except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
        raise BundleError(f"ONNX Runtime cannot load this graph ({type(exc).__name__}: {exc}).", path=path,
                          fix=_FIX) from exc
    kinds = [h.kind for h in m.head.heads]
    wanted = [*SCORES_TASK_OUTPUTS, *kinds, UNCERTAINTY_OUTPUT]
    have_in, have_out = {i.name for i in session.get_inputs()}, {o.name for o in session.get_outputs()}
    logits = _head_outputs(model, texts)
    if not set(logits) <= have_in or not set(wanted) <= have_out:
        raise IncompatibleBundleError(f"takes {sorted(have_in)} and gives {sorted(have_out)}; expected inputs "
                                      f"{sorted(logits)} and outputs {wanted}.", path=path, fix=_FIX)
    got = dict(zip(wanted, session.run(wanted, {k: v for k, v in logits.items() if k in have_in})))
    probs_name, label_name, sr_name, entropy_name = SCORES_TASK_OUTPUTS
    probs, sr, ent, _ = kernels.task_outputs(logits[m.head.task_logits_name])
    expected = {probs_name: probs, sr_name: sr, entropy_name: ent}
    for h in m.head.heads:
        kind = head_kind(h.kind)
        expected[h.kind] = kind.score_kernel(logits[h.output_name], **head_params(kind, h))
    default = m.head.default_kind
    expected[UNCERTAINTY_OUTPUT] = expected[sr_name if default == "sr" else default]
    diffs = {k: float(np.max(np.abs(np.asarray(got[k], np.float64) - v))) if np.shape(got[k]) == v.shape
             else float("inf") for k, v in expected.items()}
    flips = int(np.sum(got[label_name] != logits[m.head.task_logits_name].argmax(axis=1)))
    bad = {k: v for k, v in diffs.items() if not v <= SCORES_GRAPH_TOLERANCE}  # NaN counts as bad
    if bad or flips:
        raise ScoresGraphMismatchError(
            f"differs from the runtime's kernels beyond {SCORES_GRAPH_TOLERANCE:g}: "
            f"{ {k: float(f'{v:.3g}') for k, v in bad.items()} }, {flips} label_id mismatches.", path=path,
            fix="re-export the bundle with `uehead export` (it rebuilds scores.onnx from the manifest).")
    return {"file": path.name, "rows": int(len(sr)), "tolerance": SCORES_GRAPH_TOLERANCE,
            "max_abs_diff": diffs, "label_mismatches": flips}


def _check_golden(model, path: Path) -> dict[str, Any]:
    golden = read_golden(path)
    texts = golden["texts"]
    tol = golden["tolerance"]
    if golden["distances"] and model.baselines is None:
        raise IncompatibleBundleError("has distances, but the bundle has no baselines.", path=path, fix=_FIX)
    # One text per call: int8 backbones quantise activations per batch, so a text's outputs depend on
    # its batch mates; exporters compute golden outputs per text, and so does verify.
    preds = golden_predictions(model, golden, distances=bool(golden["distances"]))
    diffs: dict[str, float] = {}

    def compare(name: str, got: np.ndarray, expected, relative: bool = False) -> None:
        try:
            want = np.asarray(expected, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise BundleError(f"'{name}' is not an array of numbers ({exc}).", path=path, fix=_FIX) from exc
        if want.shape != got.shape:
            raise IncompatibleBundleError(f"'{name}' has shape {want.shape}, the runtime gives {got.shape}.",
                                          path=path, fix=_FIX)
        err = np.abs(got.astype(np.float64) - want)
        if relative:
            err = err / np.maximum(1.0, np.abs(want))
        diffs[name] = float(np.max(err)) if want.size else 0.0

    compare("probs", preds.probs, golden["probs"])
    compare("softmax_response", preds.softmax_response, golden["softmax_response"])
    compare("entropy", preds.entropy, golden["entropy"])
    for group, relative in (("heads", False), ("distances", True)):
        for name, values in golden[group].items():
            if name not in preds.scores:
                raise IncompatibleBundleError(f"has {group} output {name!r}, which the bundle does not give "
                                              f"(scores: {sorted(preds.scores)}).", path=path, fix=_FIX)
            compare(name, preds.scores[name], values, relative)

    flipped, real_flips = _label_flips(golden, preds, path, tol)
    renamed = _renamed_labels(golden, model.labels, path)
    bad = {k: v for k, v in diffs.items() if not v <= tol}  # NaN counts as bad
    if bad or real_flips or renamed:
        parts = [f"{k} max abs diff {v:.3g}" for k, v in bad.items()]
        if real_flips:
            parts.append(f"label_ids differ at texts {real_flips[:10]}")
        if renamed:
            i, k = renamed[0], golden["label_ids"][renamed[0]]
            parts.append(f"label names differ at texts {renamed[:10]} (label id {k} is {golden['labels'][i]!r} in "
                         f"golden.json, {model.labels[k]!r} in the manifest: the manifest's labels were changed)")
        raise GoldenMismatchError(
            f"the runtime's outputs differ from the golden ones beyond tolerance {tol:g} "
            f"(source {golden.get('source')!r}): {'; '.join(parts)}.", path=path,
            fix="check onnxruntime/numba versions against the manifest's writer, or re-export the bundle.")
    return {"file": path.name, "source": golden.get("source"), "texts": len(texts), "tolerance": tol,
            "max_abs_diff": diffs, "label_mismatches": int(len(flipped)),
            "label_names": None if golden.get("labels") is None else len(golden["labels"])}


def _renamed_labels(golden: dict[str, Any], labels: tuple[str, ...], path: Path) -> list[int]:
    """Texts whose golden label name is not the manifest's name of their golden label id (golden
    files without names: none)."""
    names = golden.get("labels")
    if names is None:
        return []
    ids = [int(k) for k in golden["label_ids"]]
    if any(not 0 <= k < len(labels) for k in ids):
        raise IncompatibleBundleError(f"'label_ids' name classes outside the manifest's {len(labels)} labels.",
                                      path=path, fix=_FIX)
    return [i for i, (k, name) in enumerate(zip(ids, names)) if labels[k] != name]


def _label_flips(golden: dict[str, Any], preds, path: Path, tol: float) -> tuple[np.ndarray, list[int]]:
    """(texts whose label differs, those of them that are not a tie): a label may flip only where
    the golden probabilities of the top two classes are within twice the tolerance."""
    try:
        want_ids = np.asarray(golden["label_ids"], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"'label_ids' is not a list of ints ({exc}).", path=path, fix=_FIX) from exc
    if want_ids.shape != preds.label_ids.shape:
        raise IncompatibleBundleError(f"'label_ids' has shape {want_ids.shape}, expected {preds.label_ids.shape}.",
                                      path=path, fix=_FIX)
    want_probs = np.asarray(golden["probs"], dtype=np.float64)
    flipped = np.flatnonzero(want_ids != preds.label_ids)
    top2 = np.sort(want_probs, axis=1)[:, -2:] if len(want_probs) else np.zeros((0, 2))
    return flipped, [int(i) for i in flipped if top2[i, 1] - top2[i, 0] > 2 * tol]
