"""The calibration section's format: round trip, version and consistency checks, decide()."""
from __future__ import annotations

import json

import numpy as np
import pytest

from uehead.bundle import BundleError, BundleVersionError
from uehead.calibration.apply import Calibration, calibration_from_dict, read_calibration
from uehead.calibration.fit import fit_calibration
from uehead.errors import DataError, UnknownScoreError


@pytest.fixture(scope="module")
def fitted() -> Calibration:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), 300)
    y = (rng.random(300)[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, 2)
    scores = {"sr": 1 - p.max(axis=1), "md": rng.random(300)}
    return fit_calibration(p, y, scores, score="md", label_names=("a", "b", "c"),
                           graphs={"backbone": "b" * 64, "head": "h" * 64}, data="synthetic", risk=(0.2, 0.3),
                           coverage=(0.8,), class_conditional=True)


def test_round_trip(fitted, tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(fitted.to_dict()))
    back = read_calibration(path)
    assert back.to_dict() == fitted.to_dict()
    u = np.linspace(-1, 2, 7)
    assert np.array_equal(back.p_error(u), fitted.p_error(u))
    assert fitted.needs_distances


def test_decide_needs_the_calibrated_score(fitted):
    probs = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="score 'md'.*distances=True"):
        fitted.decide(probs, {"sr": np.zeros(2)})
    out = fitted.decide(probs, {"md": np.array([0.0, 5.0])}, risk=0.3, coverage=0.8)
    assert len(out["prediction_sets"]) == 2 and out["accept"].shape == (2,)
    with pytest.raises(ValueError, match=r"probs has \(3,\) rows"):
        fitted.decide(np.full((3, 3), 1 / 3), {"md": np.zeros(2)})


def test_fit_refuses_unknown_score():
    with pytest.raises(UnknownScoreError, match="'adue' is not available"):
        fit_calibration(np.full((50, 2), 0.5), np.zeros(50, int), {"sr": np.zeros(50)}, score="adue",
                        label_names=("a", "b"), graphs={})


@pytest.mark.parametrize("change,error,match", [
    (lambda d: d.update(format="other"), BundleError, "not a uehead calibration section"),
    (lambda d: d.update(format_version=2), BundleVersionError, "newer than this runtime reads"),
    (lambda d: d.pop("isotonic"), BundleError, "lacks 'isotonic'"),
    (lambda d: d.update(default_risk=0.5), BundleError, "default_risk 0.5 is not one of the stored levels"),
    (lambda d: d["risk_levels"][0].update(risk=2), BundleError, "risk must be a number strictly between 0 and 1"),
    (lambda d: d["coverage_levels"][0].update(method="raps"), BundleError, "conformal method 'raps' is unknown"),
    (lambda d: d["isotonic"].update(y=[0.5, 0.1]), BundleError, "malformed"),
])
def test_malformed_sections_are_refused(fitted, change, error, match):
    doc = json.loads(json.dumps(fitted.to_dict()))
    change(doc)
    with pytest.raises(error, match=match):
        calibration_from_dict(doc, "calibration.json")


def test_unknown_levels_name_the_stored_ones(fitted):
    with pytest.raises(DataError, match=r"risk 0.05 is not calibrated.*stored risk levels are: 0.2, 0.3.*--risk"):
        fitted.risk_level(0.05)
    assert fitted.risk_level(0.3 + 1e-12).risk == 0.3
