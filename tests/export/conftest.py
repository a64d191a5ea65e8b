"""Fixtures of the export tests: tiny random checkpoints (BERT, LLaMA) and their exported bundles,
built once per session (a tiny export takes about a second). Tests that alter or fail an export
build their own from the checkpoints."""
from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnx")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny_checkpoint import make_tiny_checkpoint  # noqa: E402
from tiny_models import make_tiny_dataset  # noqa: E402

ARCHS = ("bert", "llama")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny matmuls: torch threads only add contention on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_ckpts(tmp_path_factory):
    """arch -> a tiny checkpoint folder with adue + alien heads."""
    root = tmp_path_factory.mktemp("ckpts")
    return {arch: make_tiny_checkpoint(root / arch, arch=arch, seed=1) for arch in ARCHS}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny", sizes=(20, 20, 60))


@pytest.fixture(scope="session")
def fp32_bundles(tiny_ckpts, tmp_path_factory):
    """arch -> (manifest, bundle folder) of an fp32 export."""
    from uehead.export import export_bundle

    root = tmp_path_factory.mktemp("bundles")
    return {arch: (export_bundle(ckpt, root / arch), root / arch) for arch, ckpt in tiny_ckpts.items()}


@pytest.fixture(scope="session")
def int8_bundle(tiny_ckpts, tiny_data, tmp_path_factory):
    """(manifest, bundle folder) of an int8 export of the tiny BERT, with dataset deltas."""
    from uehead.export import export_bundle

    out = tmp_path_factory.mktemp("bundles_int8") / "bert_int8"
    return export_bundle(tiny_ckpts["bert"], out, int8=True, data=tiny_data), out
