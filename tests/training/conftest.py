"""Shared fixtures of the training tests: tiny random BERT / LLaMA folders and a tiny dataset."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from tiny_models import make_tiny_dataset, make_tiny_model_dir


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_bert"), "bert")


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_llama"), "llama")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))
