"""Fixtures shared by the whole suite: one tiny bundle (built with the onnx helper API, no torch)
and one loaded model per session. Tests that alter a bundle build their own
(``tiny_bundle.make_tiny_bundle``; ``tiny_bundle.edit_manifest`` edits one)."""
from __future__ import annotations

import os

# Keep every Ray socket on loopback: on Linux Ray otherwise talks to itself over the host's own
# interface address. The switch is read when ray is first imported, by whichever test does it first.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report over the network

import pytest

from tiny_bundle import make_tiny_bundle


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory):
    """A complete bundle: adue + alien heads (default adue), 2 classes, baselines, golden set."""
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_bundle_dir):
    from uehead import runtime

    return runtime.load(tiny_bundle_dir, threads=1)
