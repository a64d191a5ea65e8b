"""scores.onnx: the scores as a standard-ONNX graph, against the runtime's kernels (hypothesis: batch 0
included, 2 to 1,000 classes, |logit| up to 1e4), at export, in ``uehead verify``, and for older bundles."""
from __future__ import annotations

import dataclasses
import functools
import json
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tiny_bundle import edit_manifest, make_tiny_bundle, rechecksum_bundle
from tiny_checkpoint import make_tiny_checkpoint
from uehead import runtime, scores
from uehead.bundle import SCORES_FILE, HeadSpec, IncompatibleBundleError, UncertaintyHeadSpec, read_manifest
from uehead import scores_graph
from uehead.export import export_bundle
from uehead.runtime import kernels
from uehead.runtime.session import make_session
from uehead.runtime.verification import ScoresGraphMismatchError

ATOL = 1e-6
LAMS = (1.0, 20.0, 100.0, 1000.0)
#: Operators of the default ONNX domain that the graph may use.
STANDARD_OPS = {"Cast", "ReduceMax", "ReduceSum", "Sub", "Exp", "Div", "Reciprocal", "Mul", "Log", "Add",
                "Shape", "Squeeze", "ArgMax"}


def head_spec(lam=100.0, heads=("adue", "alien"), default="adue", num_classes=0) -> HeadSpec:
    return HeadSpec("head.onnx", "", input_name="z", task_logits_name="task_logits", num_classes=num_classes,
                    heads=tuple(UncertaintyHeadSpec(k, f"{k}_logits", lam=lam) for k in heads), default_kind=default)


@functools.lru_cache(maxsize=None)
def session(lam=100.0, heads=("adue", "alien"), default="adue"):
    return in_memory_session(scores_graph.build_scores_graph(head_spec(lam, heads, default)))


def in_memory_session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run(sess, task, **head_logits):
    outs = sess.run(None, {"task_logits": task, **{f"{k}_logits": v for k, v in head_logits.items()}})
    return dict(zip([o.name for o in sess.get_outputs()], outs))


def assert_matches_kernels(x, lam=100.0):
    """Task, AdUE and ALIEN inputs get different logits (reversed / negated x): each output must
    come from its own input."""
    adue_x, alien_x = np.ascontiguousarray(x[:, ::-1]), -x
    got = run(session(lam), x, adue=adue_x, alien=alien_x)
    probs, sr, ent, _ = kernels.task_outputs(x)
    want = {"probs": probs, "softmax_response": sr, "entropy": ent,
            "adue": kernels.adue_uncertainty(adue_x, lam), "alien": kernels.alien_uncertainty(alien_x)}
    want["uncertainty"] = want["adue"]
    for name, w in want.items():
        g = got[name]
        assert g.dtype == np.float32 and g.shape == w.shape, (name, g.dtype, g.shape, w.shape)
        if g.size:
            err = float(np.max(np.abs(g.astype(np.float64) - w)))
            assert err <= ATOL, f"{name}: max abs diff {err:.2e} for {x.shape}, lam={lam}"
    assert got["label_id"].dtype == np.int64
    np.testing.assert_array_equal(got["label_id"], x.argmax(axis=1) if len(x) else np.zeros(0, np.int64))


def logits(seed, n, c, kind, scale):
    rng = np.random.default_rng(seed)
    if kind == "normal":
        x = rng.standard_normal((n, c)) * scale
    elif kind == "spiky":
        x = rng.standard_normal((n, c))
        x[np.arange(n), rng.integers(0, c, n)] += scale
    elif kind == "ties":
        x = rng.integers(-2, 3, (n, c)) * scale
    else:  # a large common offset that the max shift must cancel
        x = rng.standard_normal((n, c)) + rng.choice([-1, 1], (n, 1)) * scale
    return np.clip(x, -1e4, 1e4).astype(np.float32)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.one_of(st.integers(0, 8), st.integers(0, 300)),
       c=st.one_of(st.integers(2, 6), st.integers(2, 1000)),
       kind=st.sampled_from(["normal", "spiky", "ties", "offset"]),
       scale=st.sampled_from([1e-3, 1.0, 30.0, 1e3, 1e4]), lam=st.sampled_from(LAMS))
def test_graph_matches_the_kernels(seed, n, c, kind, scale, lam):
    assert_matches_kernels(logits(seed, n, c, kind, scale), lam)


@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=12)
                    .filter(lambda s: s[1] >= 2), elements=st.floats(-1e4, 1e4, width=32)))
def test_graph_matches_the_kernels_on_hypothesis_values(x):
    assert_matches_kernels(x)


@pytest.mark.parametrize("heads, default", [(("adue", "alien"), "alien"), (("alien",), "sr"), ((), "sr")])
def test_outputs_follow_the_heads_and_the_default(heads, default):
    x = logits(0, 5, 3, "normal", 3.0)
    got = run(session(100.0, heads, default), x, **{k: x * 2 for k in heads})
    assert list(got) == ["probs", "label_id", "softmax_response", "entropy", *heads, "uncertainty"]
    np.testing.assert_array_equal(got["uncertainty"], got["softmax_response" if default == "sr" else default])


def test_graph_is_small_standard_and_declares_its_shapes(tmp_path):
    spec = scores_graph.write_scores_graph(tmp_path, head_spec(lam=20.0, num_classes=4))
    path = tmp_path / SCORES_FILE
    assert spec.file == SCORES_FILE and path.stat().st_size < scores_graph.MAX_BYTES
    assert spec.settings["inputs"] == ["task_logits", "adue_logits", "alien_logits"]
    model = onnx.load(str(path))
    assert {n.domain for n in model.graph.node} == {""} and {n.op_type for n in model.graph.node} <= STANDARD_OPS
    assert [(op.domain, op.version) for op in model.opset_import] == [("", scores_graph.OPSET)]
    dims = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 4]
    sess = make_session(path, threads=1)
    assert {o.name: o.type for o in sess.get_outputs()}["label_id"] == "tensor(int64)"


def test_non_finite_logits_give_nan():
    x = np.array([[0.0, np.nan], [np.inf, 0.0]], np.float32)
    got = run(session(), x, adue=x, alien=x)
    assert np.isnan(got["entropy"]).all() and np.isnan(got["adue"]).all()


def test_a_kind_without_a_graph_builder_is_a_typed_error_and_one_can_be_registered():
    scores.register_head_kind(scores.HeadKind(
        name="toy_sr", summary="1 - max softmax(h(z))", reference=lambda x: 1.0 - scores.softmax(x).max(axis=1),
        kernel="uehead.runtime.kernels:alien_uncertainty", torch_twin="uehead.training.losses:alien_uncertainty"))
    try:
        spec = head_spec(heads=("adue", "toy_sr"))
        with pytest.raises(scores_graph.MissingGraphBuilderError, match=r"\['toy_sr'\].*known: adue, alien") as info:
            scores_graph.build_scores_graph(spec)
        assert "register_graph_builder" in info.value.fix

        def toy_graph(g, name):
            sm = g.softmax(name)
            return g.rows(g.op("Sub", g.const(1.0), sm.max_prob()))

        scores_graph.register_graph_builder("toy_sr", toy_graph)
        with pytest.raises(ValueError, match="already has a graph builder"):
            scores_graph.register_graph_builder("toy_sr", toy_graph)
        x = logits(1, 6, 3, "normal", 2.0)
        got = run(in_memory_session(scores_graph.build_scores_graph(spec)), x, adue=x, toy_sr=x * 3)
        np.testing.assert_allclose(got["toy_sr"], 1.0 - scores.softmax(x * 3).max(axis=1), atol=ATOL)
    finally:
        scores_graph.unregister_graph_builder("toy_sr")
        scores.unregister_head_kind("toy_sr")


# -- in bundles: export validation, verify, older bundles -------------------------------------------

def test_every_export_writes_and_validates_scores_onnx(fp32_bundles, int8_bundle):
    for manifest, bundle in [*fp32_bundles.values(), int8_bundle]:
        assert manifest.scores is not None and (bundle / SCORES_FILE).is_file()
        assert SCORES_FILE in manifest.files()
        report = manifest.reports["validation"]["scores_graph"]
        assert report["passed"] and report["label_flips"] == 0 and report["bytes"] < 10_000
        assert set(report["max_abs_diff"]) == {"probs", "softmax_response", "entropy", "adue", "alien",
                                               "uncertainty"}
        assert max(report["max_abs_diff"].values()) <= ATOL
        checked = runtime.verify(bundle)["scores_graph"]
        assert checked["label_mismatches"] == 0 and max(checked["max_abs_diff"].values()) <= ATOL


def test_verify_checks_the_scores_graph_on_a_tiny_bundle(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b")
    report = runtime.verify(bundle)["scores_graph"]
    assert report["file"] == SCORES_FILE and report["rows"] == 6 + 5  # golden texts + extreme rows
    assert max(report["max_abs_diff"].values()) <= ATOL
    json.dumps(report)


def test_verify_rejects_a_scores_graph_with_another_lambda(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b")
    head = read_manifest(bundle).head
    wrong = dataclasses.replace(head, heads=tuple(dataclasses.replace(h, lam=h.lam * 3) for h in head.heads))
    scores_graph.write_scores_graph(bundle, wrong)
    rechecksum_bundle(bundle)
    with pytest.raises(ScoresGraphMismatchError, match=r"scores.onnx.*'adue'") as info:
        runtime.verify(bundle)
    assert "re-export" in info.value.fix


def test_verify_rejects_a_scores_graph_for_other_heads(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b")
    scores_graph.write_scores_graph(bundle, dataclasses.replace(read_manifest(bundle).head, heads=(), default_kind="sr"))
    rechecksum_bundle(bundle)
    with pytest.raises(IncompatibleBundleError, match=r"scores.onnx.*expected inputs"):
        runtime.verify(bundle)


def test_bundles_without_scores_onnx_still_load_and_verify(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", with_scores=False)
    edit_manifest(bundle, lambda d: d.pop("scores"))  # as written before the entry existed
    assert read_manifest(bundle).scores is None and not (bundle / SCORES_FILE).exists()
    assert runtime.verify(bundle)["scores_graph"] is None
    assert len(runtime.load(bundle, threads=1).predict(["a great film"])) == 1


def test_a_kind_without_a_graph_builder_exports_without_scores_onnx(tmp_path, caplog):
    kind = scores.register_head_kind(scores.HeadKind(
        name="toy_nent", summary="H(softmax(h(z))) / log C", reference=scores.alien_uncertainty,
        kernel="uehead.runtime.kernels:alien_uncertainty", torch_twin="uehead.training.losses:alien_uncertainty",
        target="nent"))
    try:
        ckpt = make_tiny_checkpoint(tmp_path / "ckpt", arch="bert", heads=("adue", kind.name), seed=2)
        with caplog.at_level(logging.WARNING, logger="uehead.export.writer"):
            manifest = export_bundle(ckpt, tmp_path / "bundle")
        assert manifest.scores is None and not (tmp_path / "bundle" / SCORES_FILE).exists()
        assert "toy_nent" in manifest.reports["validation"]["scores_graph"]["skipped"]
        assert "no scores.onnx" in caplog.text
    finally:
        scores.unregister_head_kind(kind.name)
