"""Fixtures of the server tests: a real server (uvicorn on a free loopback port, in a thread or a
child process) and a calibrated copy of the tiny bundle. Helpers live in ``serve_client``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

# the helpers module sits beside this file; --import-mode=importlib does not put this folder on sys.path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_client import ChildServer, random_texts  # noqa: E402
from uehead.serve import ServeConfig, serve_in_thread  # noqa: E402


@pytest.fixture(scope="module")
def server(tiny_model):
    """The tiny model served with the default settings (a free port)."""
    with serve_in_thread(tiny_model, ServeConfig(port=0, model_name="tiny")) as running:
        yield running


@pytest.fixture
def serve_model():
    """``serve_model(model, **config)`` -> a running server, stopped after the test."""
    stack = []

    def start(model, **config):
        context = serve_in_thread(model, ServeConfig(port=0, **config))
        stack.append(context)
        return context.__enter__()

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


@pytest.fixture(scope="session")
def calibrated_serve_bundle(tmp_path_factory, tiny_bundle_dir, tiny_model):
    """A calibrated copy of the tiny bundle (labels: the predicted ones, some flipped)."""
    from uehead.calibration import calibrate

    texts = random_texts(300, seed=1)
    predicted = tiny_model.predict(texts).label_ids
    flip = np.random.default_rng(1).random(len(texts)) < 0.2
    rows = [{"text": t, "label": int(1 - y if f else y)} for t, y, f in zip(texts, predicted, flip)]
    data = tmp_path_factory.mktemp("serve-calib") / "valid.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path_factory.mktemp("serve-calibrated") / "bundle"
    calibrate(tiny_bundle_dir, str(data), out=out, verbose=False)
    return out


@pytest.fixture
def child_server():
    """``child_server(args)`` -> a :class:`ChildServer`; killed after the test if still running."""
    started = []

    def start(args):
        started.append(ChildServer(args))
        return started[-1]

    yield start
    for child in started:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()


@pytest.fixture(scope="session")
def uehead_cli():
    return [sys.executable, "-m", "uehead"]
