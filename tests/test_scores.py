"""uehead.scores: the head-kind registry. A new kind registered here flows through the bundle
checks, runtime scoring, golden verification and the batch columns without editing them."""
from __future__ import annotations

import numpy as np
import pytest

from tiny_bundle import edit_manifest, make_tiny_bundle
from uehead import runtime, scores
from uehead.bundle import IncompatibleBundleError, read_manifest
from uehead.errors import UnknownScoreError


def toy_uncertainty(logits, power: float = 2.0):
    """A toy kind: (1 - max softmax) ** power. Higher = more uncertain."""
    return scores.softmax_response(logits) ** power


def toy_uncertainty_f32(logits, power: float = 2.0):
    return toy_uncertainty(logits, power).astype(np.float32)


@pytest.fixture
def toy_kind():
    kind = scores.register_head_kind(scores.HeadKind(
        name="toy", summary="(1 - max softmax) ** 2", reference=toy_uncertainty,
        kernel=f"{__name__}:toy_uncertainty_f32", torch_twin=f"{__name__}:toy_uncertainty"))
    yield kind
    scores.unregister_head_kind("toy")


def test_builtin_kinds_in_preference_order():
    assert scores.head_kinds()[:2] == ("adue", "alien")
    adue = scores.head_kind("adue")
    assert adue.params == ("lam",) and adue.target == "sr" and scores.head_kind("alien").target == "nent"
    assert adue.higher_is_more_uncertain
    x = np.random.default_rng(0).normal(0, 3, (7, 4))
    np.testing.assert_allclose(adue.score_kernel(x, lam=100.0), scores.adue_uncertainty(x, 100.0), atol=1e-6)
    np.testing.assert_allclose(scores.head_kind("alien").score_kernel(x), scores.alien_uncertainty(x), atol=1e-6)


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(UnknownScoreError, match="unknown uncertainty head kind 'nope'; known kinds: adue, alien"):
        scores.head_kind("nope")


@pytest.mark.parametrize("name", ["sr", "entropy", "md", "rmd"])
def test_builtin_score_names_cannot_be_heads(name):
    with pytest.raises(ValueError, match="built-in score name"):
        scores.register_head_kind(scores.HeadKind(name, "", toy_uncertainty, "x:y", "x:y"))


def test_head_params_validates():
    adue = scores.head_kind("adue")
    assert scores.head_params(adue, {}) == {"lam": scores.DEFAULT_LAMBDA}
    with pytest.raises(ValueError, match="'lam' must be a finite real > 0"):
        scores.head_params(adue, {"lam": float("nan")})


def test_toy_kind_flows_through_bundle_runtime_and_verify(toy_kind, tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", heads=("adue", "toy"), default_kind="toy")
    assert [h.kind for h in read_manifest(bundle).head.heads] == ["adue", "toy"]
    model = runtime.load(bundle, threads=1)
    texts = ["a", "bb cc", "a much longer text than the others"]
    preds = model.predict(texts)
    assert preds.uncertainty_kind == "toy" and set(preds.scores) == {"sr", "entropy", "adue", "toy"}
    head_logits = model.head_session.run(["toy_logits"], {"z": model.backbone_session.run(
        ["z"], model.tokenizer.pad(model.tokenizer.encode(texts)))[0]})[0]
    np.testing.assert_allclose(preds.scores["toy"], toy_uncertainty(head_logits), atol=1e-6)
    assert preds.scores["toy"].dtype == np.float32
    assert runtime.verify(bundle)["golden"]["max_abs_diff"]["toy"] < 1e-5


def test_bundle_with_unregistered_kind_is_refused(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b")
    edit_manifest(bundle, lambda d: d["head"]["heads"][1].update(kind="toy"))
    with pytest.raises(IncompatibleBundleError, match="unknown uncertainty head kind 'toy'"):
        read_manifest(bundle)
