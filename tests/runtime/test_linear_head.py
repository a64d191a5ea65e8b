"""The fused linear head (runtime/linear_head.py): read off the head session, equal to the
session + per-kind kernels path, refused for heads that are not affine or of unknown kinds."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from uehead import scores as score_ref
from uehead.errors import NonFiniteLogitsError
from uehead.runtime import load
from uehead.runtime.linear_head import fuse_linear_head

from tests.tiny_bundle import make_tiny_bundle

TEXTS = ["a fine film", "", "dull and far too long " * 5, "ok", "the best of the year, truly", "meh"]


def _session(nodes, inits, hidden, outputs, c):
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", hidden])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["n", c]) for o in outputs],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _specs(kinds):
    return {k: {"lam": 100.0} for k in kinds}


@pytest.mark.parametrize("num_classes", [2, 3, 7])
def test_fused_predictions_equal_the_session_path(tmp_path, num_classes):
    bundle = make_tiny_bundle(tmp_path / "b", num_classes=num_classes)
    model = load(bundle)
    assert model.linear_head is not None and model.linear_head.kinds == ("adue", "alien")
    fused = model.predict(TEXTS, batch_size=4, distances=True)
    model.linear_head = None
    plain = model.predict(TEXTS, batch_size=4, distances=True)
    assert fused.labels == plain.labels
    np.testing.assert_array_equal(fused.label_ids, plain.label_ids)
    np.testing.assert_allclose(fused.probs, plain.probs, atol=1e-6)
    assert set(fused.scores) == set(plain.scores)
    for name in fused.scores:
        np.testing.assert_allclose(fused.scores[name], plain.scores[name], atol=2e-6, err_msg=name)
    np.testing.assert_allclose(fused.uncertainty, plain.uncertainty, atol=2e-6)


def test_fused_scores_equal_the_numpy_definitions():
    rng = np.random.default_rng(1)
    hidden, c = 24, 5
    inits = {"W": rng.normal(0, 2, (hidden, 3 * c)).astype(np.float32), "b": rng.normal(0, 1, 3 * c).astype(np.float32)}
    nodes = [helper.make_node("Gemm", ["z", "W", "b"], ["all"]),
             helper.make_node("Split", ["all"], ["task", "adue", "alien"], axis=1, num_outputs=3)]
    sess = _session(nodes, inits, hidden, ["task", "adue", "alien"], c)
    head = fuse_linear_head(sess, "z", ["task", "adue", "alien"], hidden, c, _specs(("adue", "alien")))
    assert head is not None
    z = rng.normal(0, 3, (40, hidden)).astype(np.float32)
    rows = rng.permutation(40).astype(np.int64)  # the kernel scatters to these rows
    probs, ids, scores = np.empty((40, c), np.float32), np.empty(40, np.int64), np.empty((4, 40), np.float32)
    head.score_into(z, rows, probs, ids, scores)
    # float64 reference; the kernel accumulates the logits (|l| ~ 30 here) in float32, as ORT's Gemm does
    logits = z.astype(np.float64) @ inits["W"] + inits["b"]
    p, sr, ent, _ = score_ref.task_outputs(logits[:, :c])
    np.testing.assert_allclose(probs[rows], p, atol=5e-6)
    np.testing.assert_array_equal(ids[rows], logits[:, :c].argmax(1))
    np.testing.assert_allclose(scores[0, rows], sr, atol=5e-6)
    np.testing.assert_allclose(scores[1, rows], ent, atol=5e-6)
    adue, alien = score_ref.head_kind("adue"), score_ref.head_kind("alien")
    np.testing.assert_allclose(scores[2, rows], adue.score_reference(logits[:, c:2 * c], lam=100.0), atol=5e-6)
    np.testing.assert_allclose(scores[3, rows], alien.score_reference(logits[:, 2 * c:]), atol=5e-6)


def test_a_head_that_is_not_affine_keeps_the_session_path():
    rng = np.random.default_rng(2)
    hidden, c = 16, 2
    inits = {"D": rng.normal(0, 1, (hidden, hidden)).astype(np.float32),
             "W": rng.normal(0, 1, (hidden, 2 * c)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["z", "D"], ["d"]), helper.make_node("Tanh", ["d"], ["t"]),
             helper.make_node("MatMul", ["t", "W"], ["all"]),
             helper.make_node("Split", ["all"], ["task", "adue"], axis=1, num_outputs=2)]
    sess = _session(nodes, inits, hidden, ["task", "adue"], c)
    assert fuse_linear_head(sess, "z", ["task", "adue"], hidden, c, _specs(("adue",))) is None


def test_an_unknown_head_kind_keeps_the_session_path():
    hidden, c = 8, 2
    inits = {"W": np.ones((hidden, 2 * c), np.float32)}
    nodes = [helper.make_node("MatMul", ["z", "W"], ["all"]),
             helper.make_node("Split", ["all"], ["task", "toy"], axis=1, num_outputs=2)]
    sess = _session(nodes, inits, hidden, ["task", "toy"], c)
    assert fuse_linear_head(sess, "z", ["task", "toy"], hidden, c, {"toy": {}}) is None


def test_non_finite_features_raise_naming_the_output_row(tmp_path):
    model = load(make_tiny_bundle(tmp_path / "b"))
    head = model.linear_head
    h = model.manifest.backbone.feature_size
    z = np.zeros((3, h), np.float32)
    z[2, 0] = np.inf
    rows = np.array([5, 0, 7], np.int64)  # sorted order: the bad feature row lands at text 7
    out = (np.empty((8, 2), np.float32), np.empty(8, np.int64), np.empty((4, 8), np.float32))
    with pytest.raises(NonFiniteLogitsError, match=r"row 7"):
        head.score_into(z, rows, *out)
    z[2, 0] = np.nan
    with pytest.raises(NonFiniteLogitsError, match=r"row 7"):
        head.score_into(z, rows, *out)


def test_the_decoder_bundle_kind_of_head_fuses_too(tmp_path):
    """Weights of the scale a decoder's classifier sees (hidden states in the hundreds) pass the check."""
    rng = np.random.default_rng(3)
    hidden, c = 32, 3
    inits = {"W": rng.normal(0, 0.05, (hidden, 2 * c)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["z", "W"], ["all"]),
             helper.make_node("Split", ["all"], ["task", "alien"], axis=1, num_outputs=2)]
    sess = _session(nodes, inits, hidden, ["task", "alien"], c)
    head = fuse_linear_head(sess, "z", ["task", "alien"], hidden, c, _specs(("alien",)))
    assert head is not None and head.kinds == ("alien",)
    z = rng.normal(0, 200, (5, hidden)).astype(np.float32)
    probs, ids, scores = np.empty((5, c), np.float32), np.empty(5, np.int64), np.empty((3, 5), np.float32)
    head.score_into(z, np.arange(5, dtype=np.int64), probs, ids, scores)
    task, alien = sess.run(["task", "alien"], {"z": z})
    np.testing.assert_array_equal(ids, task.argmax(1))
    np.testing.assert_allclose(scores[2], score_ref.head_kind("alien").score_reference(alien), atol=1e-5)
