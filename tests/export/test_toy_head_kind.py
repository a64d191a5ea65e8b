"""A head kind registered from outside uehead (this module) flows through the checkpoint reader,
export validation, the bundle, ``verify`` and runtime scoring without editing any of them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tiny_checkpoint import make_tiny_checkpoint
from uehead import runtime, scores
from uehead.checkpoint import read_checkpoint
from uehead.errors import UnknownScoreError
from uehead.export import compare_runtime_to_pytorch, export_bundle
from uehead.export.validate import SAMPLE_TEXTS

TOY = "toy"


def toy_reference(logits: np.ndarray) -> np.ndarray:
    """1 - max softmax of the head logits (float64 [N]); higher = more uncertain."""
    return 1.0 - scores.softmax(logits).max(axis=1, initial=0.0)


def toy_kernel(logits: np.ndarray) -> np.ndarray:
    """The "fast" runtime twin: the same score in float32."""
    return toy_reference(logits).astype(np.float32)


def toy_torch(outputs):
    """The differentiable twin: stacked head outputs [K, N, C] -> [K, N]."""
    return 1.0 - outputs.softmax(-1).max(-1).values


@pytest.fixture
def toy_kind():
    kind = scores.register_head_kind(scores.HeadKind(
        name=TOY, summary="1 - max softmax(h(z))", reference=toy_reference, kernel=f"{__name__}:toy_kernel",
        torch_twin=f"{__name__}:toy_torch", params=(), target="sr"))
    yield kind
    scores.unregister_head_kind(TOY)


def test_toy_kind_twins_agree(toy_kind):
    import torch

    logits = np.random.default_rng(0).normal(size=(3, 7, 4))
    twin = scores.resolve(toy_kind.torch_twin)(torch.from_numpy(logits)).numpy()
    for k in range(3):
        np.testing.assert_allclose(twin[k], toy_kind.score_reference(logits[k]), atol=1e-12)
        np.testing.assert_allclose(toy_kind.score_kernel(logits[k]), toy_kind.score_reference(logits[k]), atol=1e-6)


def test_a_registered_toy_kind_exports_validates_and_serves(toy_kind, tmp_path):
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt", arch="bert", heads=("adue", TOY), seed=3)
    assert list(read_checkpoint(ckpt).heads) == ["adue", TOY]
    manifest = export_bundle(ckpt, tmp_path / "bundle")
    assert [(h.kind, h.output_name) for h in manifest.head.heads] == [("adue", "adue_logits"), (TOY, "toy_logits")]
    validation = manifest.reports["validation"]
    assert validation["passed"] and validation["max_abs_diff"][TOY] < 1e-4
    assert "toy_logits" in validation["max_abs_diff"]

    golden = json.loads((tmp_path / "bundle" / "golden.json").read_text())
    assert set(golden["heads"]) == {"adue", TOY}
    preds = runtime.load(tmp_path / "bundle", threads=1).predict(golden["texts"], batch_size=1)
    np.testing.assert_allclose(preds.scores[TOY], golden["heads"][TOY], atol=1e-4)
    assert not np.allclose(preds.scores[TOY], preds.scores["sr"], atol=1e-6)  # its own head's logits
    assert runtime.verify(tmp_path / "bundle")["golden"]["max_abs_diff"][TOY] < 1e-4

    report = compare_runtime_to_pytorch(ckpt, tmp_path / "bundle", list(SAMPLE_TEXTS))
    assert report["passed"] and report["max_abs_diff"][TOY] < 1e-4


def test_an_unregistered_kind_in_a_checkpoint_is_a_typed_error(tmp_path):
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt", arch="bert", heads=(TOY,))
    with pytest.raises(UnknownScoreError, match=r"toy\.json.*'toy'.*known kinds: adue, alien") as info:
        export_bundle(ckpt, tmp_path / "bundle")
    assert info.value.fix and "register_head_kind" in info.value.fix
    assert not (tmp_path / "bundle").exists()
