"""Shared fixtures of the training tests: tiny random BERT / LLaMA folders and a tiny dataset."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from tiny_models import make_tiny_dataset, make_tiny_model_dir
from uehead.training import BaselineConfig, HeadGridConfig

# A small grid and RDE cap keep end-to-end runs to seconds; the full paper grid is the default.
SMALL_GRID = HeadGridConfig(lrs=(1e-3, 1e-5), epochs=(2, 4), alphas=(0.0, 1.0), betas=(0.01, 1.0))
SMALL_BASELINE = BaselineConfig(rde_max_rows=120, rde_components=8)


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_bert"), "bert")


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_llama"), "llama")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))
