"""Bundles written by the previous release (uehead 0.1.0, format_version 1) still load, verify and
predict the outputs they were exported with, and can be calibrated.

``tests/data/bundle-0.1.0-bert`` was written by ``uehead export`` of release 0.1.0 from a tiny
random BERT checkpoint (``tests/tiny_checkpoint.py``, seed 1): no scores.onnx, no calibration
entry, golden.json without distances.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from uehead import runtime
from uehead.bundle import read_manifest

OLD = Path(__file__).parent / "data" / "bundle-0.1.0-bert"


@pytest.fixture
def old_bundle(tmp_path):
    return Path(shutil.copytree(OLD, tmp_path / "old"))


def test_old_bundle_loads_and_verifies(old_bundle):
    raw = json.loads((old_bundle / "manifest.json").read_text())
    assert raw["format_version"] == 1 and "scores" not in raw and "calibration" not in raw
    m = read_manifest(old_bundle)
    assert m.scores is None and m.calibration is None
    report = runtime.verify(old_bundle)
    assert report["ok"] and report["golden"]["label_mismatches"] == 0 and report["scores_graph"] is None


def test_old_bundle_predicts_its_golden_outputs(old_bundle):
    golden = json.loads((old_bundle / "golden.json").read_text())
    preds = runtime.load(old_bundle, threads=1).predict(golden["texts"], batch_size=1)
    np.testing.assert_allclose(preds.probs, golden["probs"], atol=1e-5)
    np.testing.assert_array_equal(preds.label_ids, golden["label_ids"])
    for kind, values in golden["heads"].items():
        np.testing.assert_allclose(preds.scores[kind], values, atol=1e-5)


def test_old_bundle_can_be_calibrated(old_bundle, tmp_path):
    from uehead.calibration import calibrate

    model = runtime.load(old_bundle, threads=1)
    rng = np.random.default_rng(0)
    words = ["good", "bad", "film", "plot", "great", "dull", "cast", "slow"]
    texts = [" ".join(rng.choice(words, rng.integers(1, 6))) for _ in range(300)]
    preds = model.predict(texts)
    labels = np.where(rng.random(300) < 2 * preds.softmax_response, 1 - preds.label_ids, preds.label_ids)
    data = tmp_path / "cal.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": int(y)}) + "\n" for t, y in zip(texts, labels)))
    out = tmp_path / "calibrated"
    calibrate(old_bundle, str(data), out=out, verbose=False)
    assert runtime.load(out, threads=1).predict(texts[:5]).p_error is not None
