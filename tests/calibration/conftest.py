"""Fixtures of the calibration tests: labelled rows for the shared tiny bundle (random texts whose
labels make the tiny model err more where it is less sure), a JSONL file of them and one
calibrated copy of the tiny bundle per session."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from tiny_models import WORDS


def _labelled_rows(model, n: int = 400, seed: int = 0) -> list[dict]:
    """The true label is the predicted one, flipped with probability 1.6 x the softmax response."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) for _ in range(n)]
    preds = model.predict(texts)
    flip = np.random.default_rng(seed).random(n) < 1.6 * preds.softmax_response
    labels = np.where(flip, 1 - preds.label_ids, preds.label_ids)
    return [{"text": t, "label": int(y)} for t, y in zip(texts, labels)]


def _write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def labelled_rows():
    """``labelled_rows(model, n=400, seed=0)`` -> list of {"text", "label"} rows."""
    return _labelled_rows


@pytest.fixture(scope="session")
def write_jsonl():
    """``write_jsonl(path, rows)`` -> str(path)."""
    return _write_jsonl


@pytest.fixture(scope="session")
def calibration_jsonl(tmp_path_factory, tiny_model):
    return _write_jsonl(tmp_path_factory.mktemp("calib-data") / "valid.jsonl", _labelled_rows(tiny_model))


@pytest.fixture(scope="session")
def calibrated_bundle(tmp_path_factory, tiny_bundle_dir, calibration_jsonl):
    from uehead.calibration import calibrate

    out = tmp_path_factory.mktemp("calibrated") / "bundle"
    calibrate(tiny_bundle_dir, calibration_jsonl, out=out, verbose=False)
    return out
