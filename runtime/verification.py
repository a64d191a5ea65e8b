"""``uehead verify``: check a bundle torch-free (checksums, graph shapes, golden outputs).

``golden.json`` (written by the exporter) holds a few texts and the outputs expected for them::

    {"texts": [...], "tolerance": 1e-4, "source": "pytorch" | "onnxruntime",
     "label_ids": [N], "probs": [[...]], "softmax_response": [N], "entropy": [N],
     "heads": {"adue": [N], "alien": [N]}, "distances": {"md": [N], "rmd": [N]}}

(schema: :mod:`uehead.golden`; ``distances`` is optional). :func:`verify` loads
the bundle (every sha256 and graph check of :func:`uehead.runtime.load`), re-computes the golden
texts through the runtime (one text per call), and reports each output's max abs diff (relative
to max(1, |value|) for the distances). Any diff above the tolerance raises
:class:`GoldenMismatchError`; a label may differ only where the golden probabilities of the top
two classes are within twice the tolerance.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from uehead.bundle import BundleError, IncompatibleBundleError
from uehead.golden import read_golden

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
    from uehead.runtime.loading import load

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
    golden = read_golden(path)
    texts = golden["texts"]
    tol = golden["tolerance"]
    if golden["distances"] and model.baselines is None:
        raise IncompatibleBundleError("has distances, but the bundle has no baselines.", path=path, fix=_FIX)
    # One text per call: int8 backbones quantise activations per batch, so a text's outputs depend on
    # its batch mates; exporters compute golden outputs per text, and so does verify.
    preds = model.predict(texts, batch_size=1, distances=bool(golden["distances"]))
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
