"""``uehead verify``: check a bundle torch-free (checksums, graph shapes, golden outputs).

``golden.json`` (written by the exporter) holds a few texts and the outputs expected for them::

    {"texts": [...], "tolerance": 1e-4, "source": "pytorch" | "onnxruntime",
     "label_ids": [N], "probs": [[...]], "softmax_response": [N], "entropy": [N],
     "heads": {"adue": [N], "alien": [N]}}

:func:`verify` loads the bundle (every sha256 and graph check of :func:`uehead.runtime.load`),
re-computes the golden texts through the runtime (one text per call), and reports each output's
max abs diff. Any diff above the tolerance raises :class:`GoldenMismatchError`; a label may differ
only where the golden probabilities of the top two classes are within twice the tolerance.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from uehead.bundle import BundleError, IncompatibleBundleError

__all__ = ["verify", "GoldenMismatchError"]

_FIX = "re-export the bundle with `uehead export`."


class GoldenMismatchError(BundleError):
    """The runtime's outputs on the golden texts differ from golden.json beyond its tolerance."""


def verify(bundle_dir: str | os.PathLike) -> dict[str, Any]:
    """Check a bundle and return a JSON-able report.

    Report keys: ``bundle`` (path), ``ok`` (True), ``format_version``, ``files`` (file -> sha256,
    all checked), ``heads``, ``default_kind``, and ``golden``: None when the bundle has no golden
    set, else ``{"file", "source", "texts", "tolerance", "max_abs_diff": {output: diff},
    "label_mismatches"}``.

    Raises:
        BundleError (or a subclass) for any problem load() finds; GoldenMismatchError naming
        golden.json when an output differs from it by more than its tolerance.
    """
    from uehead.runtime.model import load

    root = Path(bundle_dir)
    model = load(root, warmup=False)
    m = model.manifest
    report: dict[str, Any] = {
        "bundle": str(root), "ok": True, "format_version": m.format_version,
        "files": m.files(), "heads": [h.kind for h in m.head.heads], "default_kind": m.head.default_kind,
        "golden": None,
    }
    if m.golden is not None:
        report["golden"] = _check_golden(model, root / m.golden.file)
    return report


def _check_golden(model, path: Path) -> dict[str, Any]:
    golden = _read_golden(path, model)
    texts = golden["texts"]
    tol = golden["tolerance"]
    # One text per call: int8 backbones quantise activations per batch, so a text's outputs depend on
    # its batch mates; exporters compute golden outputs per text, and so does verify.
    preds = model.predict(texts, batch_size=1)
    diffs: dict[str, float] = {}

    def compare(name: str, got: np.ndarray, expected) -> None:
        try:
            want = np.asarray(expected, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise BundleError(f"'{name}' is not an array of numbers ({exc}).", path=path, fix=_FIX) from exc
        if want.shape != got.shape:
            raise IncompatibleBundleError(f"'{name}' has shape {want.shape}, the runtime gives {got.shape}.",
                                          path=path, fix=_FIX)
        diffs[name] = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0

    compare("probs", preds.probs, golden["probs"])
    compare("softmax_response", preds.softmax_response, golden["softmax_response"])
    compare("entropy", preds.entropy, golden["entropy"])
    for kind, values in golden.get("heads", {}).items():
        if kind not in preds.scores:
            raise IncompatibleBundleError(f"has outputs for head {kind!r}, which the bundle does not have "
                                          f"(heads: {[h.kind for h in model.manifest.head.heads]}).",
                                          path=path, fix=_FIX)
        compare(kind, preds.scores[kind], values)

    # A label may flip only where the golden probabilities are a tie within the tolerance.
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
    real_flips = [int(i) for i in flipped if top2[i, 1] - top2[i, 0] > 2 * tol]

    bad = {k: v for k, v in diffs.items() if not v <= tol}  # NaN counts as bad
    if bad or real_flips:
        parts = [f"{k} max abs diff {v:.3g}" for k, v in bad.items()]
        if real_flips:
            parts.append(f"label_ids differ at texts {real_flips[:10]}")
        raise GoldenMismatchError(
            f"the runtime's outputs differ from the golden ones beyond tolerance {tol:g} "
            f"(source {golden.get('source')!r}): {'; '.join(parts)}.", path=path,
            fix="check onnxruntime/numba versions against the manifest's writer, or re-export the bundle.")
    return {"file": path.name, "source": golden.get("source"), "texts": len(texts), "tolerance": tol,
            "max_abs_diff": diffs, "label_mismatches": int(len(flipped))}


def _read_golden(path: Path, model) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"is not valid UTF-8 JSON ({exc}).", path=path, fix=_FIX) from exc
    if not isinstance(data, dict):
        raise BundleError("must be a JSON object.", path=path, fix=_FIX)
    missing = [k for k in ("texts", "label_ids", "probs", "softmax_response", "entropy") if k not in data]
    if missing:
        raise BundleError(f"lacks keys {missing}.", path=path, fix=_FIX)
    texts = data["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise BundleError("'texts' must be a list of strings.", path=path, fix=_FIX)
    tol = data.get("tolerance", 1e-4)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise BundleError(f"'tolerance' must be a number >= 0, got {tol!r}.", path=path, fix=_FIX)
    heads = data.get("heads", {})
    if not isinstance(heads, dict):
        raise BundleError("'heads' must be an object kind -> list of numbers.", path=path, fix=_FIX)
    data["tolerance"] = float(tol)
    data["heads"] = heads
    return data
