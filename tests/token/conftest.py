"""Fixtures of the token-classification tests: a tiny random BERT token classifier, a tiny NER
dataset, one trained checkpoint and its exported bundle, built once per session (seconds)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny_token import TRAIN_KW, make_tiny_ner_dataset, small_grid  # noqa: E402



@pytest.fixture(scope="session")
def ner_data(tmp_path_factory):
    return make_tiny_ner_dataset(tmp_path_factory.mktemp("ner") / "tiny_ner")


@pytest.fixture(scope="session")
def token_model_dir(tmp_path_factory):
    pytest.importorskip("torch")
    from tiny_token import make_tiny_token_model_dir

    return make_tiny_token_model_dir(tmp_path_factory.mktemp("tok_model") / "bert")


@pytest.fixture(scope="session")
def token_ckpt(tmp_path_factory, token_model_dir, ner_data):
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    from uehead.training import train

    torch.set_num_threads(1)
    return train(str(token_model_dir), str(ner_data), tmp_path_factory.mktemp("tok_ckpt") / "ckpt",
                 grid=small_grid(), **TRAIN_KW)


@pytest.fixture(scope="session")
def token_bundle(tmp_path_factory, token_ckpt, ner_data):
    pytest.importorskip("onnx")
    from uehead.export import export_bundle

    out = tmp_path_factory.mktemp("tok_bundle") / "bundle"
    return export_bundle(token_ckpt, out, data=ner_data), out


@pytest.fixture(scope="session")
def token_runtime(token_bundle):
    from uehead import runtime

    return runtime.load(token_bundle[1], threads=1)
