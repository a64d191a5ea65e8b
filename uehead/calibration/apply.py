"""The calibration section of a bundle (``calibration.json``) and its apply path: numpy and stdlib only.

    cal = load_calibration(bundle_dir, manifest)        # None when the bundle is not calibrated
    out = cal.decide(preds.probs, preds.scores)          # default risk and coverage levels
    out["p_error"], out["accept"], out["prediction_sets"]

``calibration.json`` (its own ``format``/``format_version``; listed in the manifest with its
sha256) records the score it calibrates (higher = more uncertain), the sha256 of the backbone and
head graphs it was fitted on (another bundle refuses it), the isotonic map score -> P(error)
(:mod:`.isotonic`), one certified threshold per risk level (:mod:`.risk`: accept when
score <= threshold; null = accept nothing) and one conformal quantile per coverage level
(:mod:`.conformal`), with the defaults, and the report written by ``uehead calibrate``.
Every decision assumes future inputs are exchangeable with the calibration rows: under domain
shift the guarantees do not hold.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uehead.bundle import (BundleError, BundleVersionError, ChecksumError, IncompatibleBundleError, Manifest,
                           MissingFileError, sha256_file)
from uehead.calibration.conformal import ConformalLevel
from uehead.calibration.isotonic import IsotonicMap
from uehead.calibration.risk import RiskThreshold
from uehead.errors import DataError
from uehead.jsonio import read_json_object
from uehead.scores import DISTANCE_SCORES, score_names

__all__ = ["CALIBRATION_FORMAT", "CALIBRATION_FORMAT_VERSION", "Calibration", "calibration_from_dict",
           "read_calibration", "load_calibration"]

CALIBRATION_FORMAT = "uehead-calibration"
#: Bumped on any change a reader of an older version could misread.
CALIBRATION_FORMAT_VERSION = 1
_FIX = "re-run `uehead calibrate` on this bundle."


@dataclass(frozen=True, eq=False)
class Calibration:
    """A fitted calibration section (see the module docstring); ``default_risk`` and
    ``default_coverage`` name the levels used when none is asked for."""

    score: str
    labels: tuple[str, ...]
    #: sha256 of the graphs it was fitted on: {"backbone": ..., "head": ...}.
    graphs: dict[str, str]
    n_rows: int
    data: str
    isotonic: IsotonicMap
    risk_levels: tuple[RiskThreshold, ...]
    default_risk: float | None
    coverage_levels: tuple[ConformalLevel, ...]
    default_coverage: float | None
    report: dict[str, Any] = field(default_factory=dict)
    writer: dict[str, str] = field(default_factory=dict)
    format_version: int = CALIBRATION_FORMAT_VERSION

    @property
    def needs_distances(self) -> bool:
        """True when the calibrated score is "md" or "rmd" (predict with ``distances=True``)."""
        return self.score in DISTANCE_SCORES

    @property
    def risks(self) -> tuple[float, ...]:
        return tuple(level.risk for level in self.risk_levels)

    @property
    def coverages(self) -> tuple[float, ...]:
        return tuple(level.coverage for level in self.coverage_levels)

    # -- level selection ----------------------------------------------------------------------
    def risk_level(self, risk: float | None = None) -> RiskThreshold:
        """The stored level for ``risk`` (None: the default); DataError naming the stored ones otherwise."""
        return _pick(self.risk_levels, self.risks, self.default_risk, risk, "risk", "--risk")

    def coverage_level(self, coverage: float | None = None) -> ConformalLevel:
        """The stored level for ``coverage`` (None: the default); DataError naming the stored ones otherwise."""
        return _pick(self.coverage_levels, self.coverages, self.default_coverage, coverage, "coverage",
                     "--coverage")

    # -- apply --------------------------------------------------------------------------------
    def p_error(self, u) -> np.ndarray:
        """Calibrated probability of error for scores ``u`` of :attr:`score`, float32."""
        return self.isotonic(u).astype(np.float32)

    def accept(self, u, risk: float | None = None) -> np.ndarray:
        """bool mask: score <= the certified threshold of ``risk`` (all False when none was certified)."""
        return self.risk_level(risk).accept(np.asarray(u, dtype=np.float64))

    def prediction_set_mask(self, probs, coverage: float | None = None) -> np.ndarray:
        """bool [N, C]: label c is in the prediction set of row i at ``coverage``."""
        probs = np.asarray(probs)
        if probs.ndim != 2 or probs.shape[1] != len(self.labels):
            raise ValueError(f"probs must have shape [N, {len(self.labels)}], got {probs.shape}")
        return self.coverage_level(coverage).set_mask(probs)

    def prediction_sets(self, probs, coverage: float | None = None) -> list[tuple[str, ...]]:
        """One tuple of label names per row (labels in bundle order; possibly empty with LAC)."""
        mask = self.prediction_set_mask(probs, coverage)
        return [tuple(self.labels[c] for c in np.flatnonzero(row)) for row in mask]

    def decide(self, probs, scores: Mapping[str, np.ndarray], *, risk: float | None = None,
               coverage: float | None = None) -> dict[str, Any]:
        """``p_error`` float32 [N], ``accept`` bool [N] and ``prediction_sets`` (list of N tuples of
        label names) at the given (default: the stored default) risk and coverage levels.

        ``scores`` maps score names to [N] arrays (``Predictions.scores``) and must hold
        :attr:`score`. A level that is not stored raises DataError naming the stored ones, before
        any work is done.
        """
        self.risk_level(risk), self.coverage_level(coverage)  # an unknown level fails before any work
        if self.score not in scores:
            hint = " (predict with distances=True)" if self.needs_distances else ""
            raise ValueError(f"the calibration is on score {self.score!r}, which is not among the scores "
                             f"given ({', '.join(scores) or 'none'}){hint}.")
        u = np.asarray(scores[self.score], dtype=np.float64)
        if np.shape(probs)[:1] != u.shape:
            raise ValueError(f"probs has {np.shape(probs)[:1]} rows but score {self.score!r} has {u.shape}")
        return {"p_error": self.p_error(u), "accept": self.accept(u, risk),
                "prediction_sets": self.prediction_sets(probs, coverage)}

    def to_dict(self) -> dict[str, Any]:
        return {"format": CALIBRATION_FORMAT, "format_version": self.format_version, "writer": dict(self.writer),
                "score": self.score, "labels": list(self.labels), "graphs": dict(self.graphs),
                "n_rows": self.n_rows, "data": self.data, "isotonic": self.isotonic.to_dict(),
                "risk_levels": [r.to_dict() for r in self.risk_levels], "default_risk": self.default_risk,
                "coverage_levels": [c.to_dict() for c in self.coverage_levels],
                "default_coverage": self.default_coverage, "report": self.report}


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _pick(levels: Sequence, values: tuple[float, ...], default: float | None, wanted: float | None,
          what: str, option: str):
    key = default if wanted is None else wanted
    for level, value in zip(levels, values):
        if key is not None and _same(value, float(key)):
            return level
    stored = ", ".join(f"{v:g}" for v in values) or "none"
    raise DataError(f"{what} {wanted!r} is not calibrated in this bundle; the stored {what} levels are: {stored}.",
                    fix=f"pass one of them, or re-run `uehead calibrate` with {option} including it.")


# ----------------------------------------------------------------------------------- reading
def calibration_from_dict(data: Any, path: str | os.PathLike) -> Calibration:
    """Parse and check a calibration.json document (not yet against a bundle: see :func:`load_calibration`)."""
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
        raise BundleError(f"is not a uehead calibration section (format {CALIBRATION_FORMAT!r} expected).",
                          path=path, fix=_FIX)
    version = data.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(f"format_version {version!r} is not a positive integer.", path=path, fix=_FIX)
    if version > CALIBRATION_FORMAT_VERSION:
        writer = (data.get("writer") or {}).get("uehead", "a newer uehead")
        raise BundleVersionError(f"calibration format_version {version} is newer than this runtime reads "
                                 f"({CALIBRATION_FORMAT_VERSION}); it was written by uehead {writer}.", path=path,
                                 fix=f"upgrade the runtime (pip install -U 'uehead>={writer}') or {_FIX}")
    try:
        cal = Calibration(
            score=str(data["score"]), labels=tuple(str(x) for x in data["labels"]),
            graphs={"backbone": str(data["graphs"]["backbone"]), "head": str(data["graphs"]["head"])},
            n_rows=int(data["n_rows"]), data=str(data.get("data", "")),
            isotonic=IsotonicMap.from_dict(data["isotonic"]),
            risk_levels=tuple(RiskThreshold.from_dict(r) for r in data["risk_levels"]),
            default_risk=data.get("default_risk"),
            coverage_levels=tuple(ConformalLevel.from_dict(c) for c in data["coverage_levels"]),
            default_coverage=data.get("default_coverage"),
            report=dict(data.get("report") or {}), writer=dict(data.get("writer") or {}), format_version=version)
    except (KeyError, TypeError, ValueError) as exc:
        what = f"lacks {exc}" if isinstance(exc, KeyError) else f"is malformed ({exc})"
        raise BundleError(f"{what}.", path=path, fix=_FIX) from None
    for default, values, what in ((cal.default_risk, cal.risks, "default_risk"),
                                  (cal.default_coverage, cal.coverages, "default_coverage")):
        if default is None and not values:
            continue
        if isinstance(default, bool) or not isinstance(default, (int, float)) \
                or not any(_same(float(default), v) for v in values):
            raise BundleError(f"{what} {default!r} is not one of the stored levels {list(values)}.",
                              path=path, fix=_FIX)
    return cal


def read_calibration(path: str | os.PathLike) -> Calibration:
    """Read and check one calibration.json file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError("is missing from the bundle.", path=path, fix="copy the complete bundle folder.")
    return calibration_from_dict(read_json_object(path, BundleError, _FIX), path)


def load_calibration(bundle_dir: str | os.PathLike, manifest: Manifest) -> Calibration | None:
    """The bundle's calibration, checked against it; None when ``manifest.calibration`` is None.

    Raises ChecksumError when calibration.json differs from the manifest's sha256, and
    IncompatibleBundleError when it was fitted on other graphs, other labels or a score the
    bundle does not have (a section copied from another bundle).
    """
    spec = manifest.calibration
    if spec is None:
        return None
    path = Path(bundle_dir) / spec.file
    cal = read_calibration(path)
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise ChecksumError(f"sha256 {actual[:12]}... does not match the manifest's {spec.sha256[:12]}...: the "
                            "calibration was altered.", path=path, fix=f"restore the original file, or {_FIX}")
    for part, expected in (("backbone", manifest.backbone.sha256), ("head", manifest.head.sha256)):
        if cal.graphs.get(part) != expected:
            raise IncompatibleBundleError(
                f"was fitted on another {part} graph (sha256 {cal.graphs.get(part, '')[:12]}..., this bundle's "
                f"{part} is {expected[:12]}...): a calibration is valid only for the bundle it was fitted on.",
                path=path, fix=_FIX)
    if tuple(cal.labels) != tuple(manifest.labels):
        raise IncompatibleBundleError(f"labels {list(cal.labels)} differ from the bundle's {list(manifest.labels)}.",
                                      path=path, fix=_FIX)
    available = score_names([h.kind for h in manifest.head.heads], distances=manifest.baselines is not None)
    if cal.score not in available:
        raise IncompatibleBundleError(f"calibrates score {cal.score!r}, which this bundle does not have "
                                      f"(it has {', '.join(available)}).", path=path, fix=_FIX)
    return cal
