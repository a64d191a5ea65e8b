"""Model.predict / iter_predict / predict_stages on tiny bundles (torch-free, seconds)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from tiny_bundle import ADUE_LAMBDA, make_tiny_bundle, reference_outputs, tiny_bundle_weights
from tiny_models import NEGATIVE, NEUTRAL, POSITIVE, make_tokenizer
from uehead import runtime
from uehead.runtime import model as model_module
from uehead.runtime.model import Predictions

TEXTS = ["a great film", "bad", "", "the plot was not quite good and the actor was very dull but fun",
         "story", "messy boring flat weak scene of the movie", "unknownword zzz", "good " * 40]


def assert_same(a: Predictions, b: Predictions, atol=1e-6):
    assert len(a) == len(b)
    assert a.labels == b.labels
    np.testing.assert_array_equal(a.label_ids, b.label_ids)
    np.testing.assert_allclose(a.probs, b.probs, atol=atol, rtol=0)
    np.testing.assert_allclose(a.uncertainty, b.uncertainty, atol=atol, rtol=0)
    assert a.scores.keys() == b.scores.keys()
    for k in a.scores:
        np.testing.assert_allclose(a.scores[k], b.scores[k], atol=atol, rtol=0, err_msg=k)


def test_matches_independent_numpy_oracle(tiny_model):
    preds = tiny_model.predict(TEXTS, batch_size=3)
    ref = reference_outputs(TEXTS, tiny_bundle_weights(0), make_tokenizer("bert"), max_length=16)
    np.testing.assert_allclose(preds.probs, ref["probs"], atol=1e-5)
    np.testing.assert_allclose(preds.softmax_response, ref["softmax_response"], atol=1e-5)
    np.testing.assert_allclose(preds.entropy, ref["entropy"], atol=1e-5)
    np.testing.assert_allclose(preds.scores["adue"], ref["heads"]["adue"], atol=1e-5)
    np.testing.assert_allclose(preds.scores["alien"], ref["heads"]["alien"], atol=1e-5)
    np.testing.assert_array_equal(preds.label_ids, ref["logits"]["task_logits"].argmax(1))


def test_record_types_and_shapes(tiny_model):
    preds = tiny_model.predict(TEXTS)
    n = len(TEXTS)
    assert len(preds) == n
    assert preds.label_ids.dtype == np.int64 and preds.label_ids.shape == (n,)
    assert preds.probs.dtype == np.float32 and preds.probs.shape == (n, 2)
    np.testing.assert_allclose(preds.probs.sum(1), 1.0, atol=1e-6)
    assert preds.labels == [tiny_model.labels[i] for i in preds.label_ids]
    assert preds.uncertainty_kind == "adue"
    assert preds.uncertainty is preds.scores["adue"]
    assert sorted(preds.scores) == ["adue", "alien", "entropy", "sr"]
    for name, s in preds.scores.items():
        assert s.dtype == np.float32 and s.shape == (n,), name
    np.testing.assert_allclose(preds.softmax_response, 1 - preds.probs.max(1), atol=1e-6)
    with pytest.raises(AttributeError):
        preds.probs = None  # frozen


def test_single_str_list_tuple(tiny_model):
    one = tiny_model.predict("a great film")
    assert len(one) == 1
    as_list = tiny_model.predict(["a great film", "bad"])
    as_tuple = tiny_model.predict(("a great film", "bad"))
    assert_same(as_list, as_tuple, atol=0)
    np.testing.assert_allclose(one.probs[0], as_list.probs[0], atol=1e-6)


def test_empty_sequence_gives_empty_arrays(tiny_model):
    for empty in ([], (), iter([])):
        preds = tiny_model.predict(empty, distances=True)
        assert len(preds) == 0 and preds.labels == []
        assert preds.probs.shape == (0, 2) and preds.probs.dtype == np.float32
        assert preds.label_ids.shape == (0,) and preds.label_ids.dtype == np.int64
        assert preds.uncertainty.shape == (0,)
        assert sorted(preds.scores) == ["adue", "alien", "entropy", "md", "rmd", "sr"]
        assert all(s.shape == (0,) for s in preds.scores.values())


def test_empty_strings_and_huge_text(tiny_model):
    huge = "good movie " * 100_000  # ~1.1 MB
    preds = tiny_model.predict(["", "", huge])
    assert np.isfinite(preds.probs).all()
    np.testing.assert_allclose(preds.probs[0], preds.probs[1])
    # Truncated to max_length=16 tokens: the same as its first 14 words.
    prefix = tiny_model.predict(" ".join(["good", "movie"] * 7))
    np.testing.assert_allclose(preds.probs[2], prefix.probs[0], atol=1e-6)


@pytest.mark.parametrize("bad, index", [(["ok", "fine", None], 2), (["ok", 3], 1), ([b"bytes"], 0)])
def test_non_str_item_names_its_index(tiny_model, bad, index):
    with pytest.raises(TypeError, match=rf"texts\[{index}\]"):
        tiny_model.predict(bad)


@pytest.mark.parametrize("bad", [b"bytes", {"a", "b"}, {"a": 1}, 42])
def test_non_sequence_input_rejected(tiny_model, bad):
    with pytest.raises(TypeError):
        tiny_model.predict(bad)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_batch_size(tiny_model, bad):
    with pytest.raises(ValueError, match="batch_size"):
        tiny_model.predict(["a"], batch_size=bad)


def _mixed_texts(n, seed=1):
    rng = np.random.default_rng(seed)
    words = POSITIVE + NEGATIVE + NEUTRAL
    return [" ".join(rng.choice(words, size=int(rng.integers(0, 30)))) for _ in range(n)]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7, 32, 1000])
def test_order_restored_across_lengths_and_batch_sizes(tiny_model, batch_size):
    texts = _mixed_texts(41)
    one_by_one = Predictions.concat([tiny_model.predict(t) for t in texts])
    assert_same(tiny_model.predict(texts, batch_size=batch_size), one_by_one)


def test_iter_predict_streams_a_generator_in_order(tiny_model):
    texts = _mixed_texts(23, seed=2)
    consumed = []

    def gen():
        for t in texts:
            consumed.append(t)
            yield t

    stream = tiny_model.iter_predict(gen(), batch_size=2, chunk_size=5)
    first = next(stream)
    assert len(first) == 5 and len(consumed) <= 10  # lazy: not everything read up front
    chunks = [first, *stream]
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
    assert_same(Predictions.concat(chunks), tiny_model.predict(texts, batch_size=4))
    assert list(tiny_model.iter_predict(iter([]))) == []
    assert len(list(tiny_model.iter_predict("one text"))) == 1


def test_iter_predict_bad_item_index_is_global(tiny_model):
    stream = tiny_model.iter_predict((t for t in ["a", "b", "c", "d", "e", 5.0]), chunk_size=2)
    assert len(next(stream)) == 2 and len(next(stream)) == 2
    with pytest.raises(TypeError, match=r"texts\[5\]"):
        next(stream)
    with pytest.raises(ValueError, match="chunk_size"):
        next(tiny_model.iter_predict(["a"], chunk_size=0))


def test_concurrent_predict_equals_sequential(tiny_model):
    inputs = [_mixed_texts(30 + 7 * i, seed=10 + i) for i in range(6)]
    expected = [tiny_model.predict(t, batch_size=4, distances=True) for t in inputs]
    results: dict[tuple[int, int], Predictions] = {}
    errors = []
    barrier = threading.Barrier(6)

    def work(i):
        try:
            barrier.wait()
            for r in range(5):
                results[i, r] = tiny_model.predict(inputs[i], batch_size=4, distances=True)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (i, _), preds in results.items():
        assert_same(preds, expected[i], atol=0)
    assert len(results) == 30


def test_distances_match_numpy_formula(tiny_model, tiny_bundle_dir):
    preds = tiny_model.predict(TEXTS, batch_size=3, distances=True)
    z = reference_outputs(TEXTS, tiny_bundle_weights(0), make_tokenizer("bert"), 16)["z"].astype(np.float64)
    with np.load(tiny_bundle_dir / "baselines.npz") as b:
        mu, p, mu0, p0 = (b[k].astype(np.float64) for k in ("class_means", "precision", "global_mean",
                                                              "global_precision"))
    md_c = np.array([[(zi - m) @ p @ (zi - m) for m in mu] for zi in z])
    md_0 = np.array([(zi - mu0) @ p0 @ (zi - mu0) for zi in z])
    np.testing.assert_allclose(preds.scores["md"], md_c.min(1), rtol=1e-5)
    np.testing.assert_allclose(preds.scores["rmd"], (md_c - md_0[:, None]).min(1), rtol=1e-4, atol=1e-4)
    assert "md" not in tiny_model.predict(TEXTS).scores


def test_distances_l2_normalize_and_missing_baselines(tmp_path):
    model = runtime.load(make_tiny_bundle(tmp_path / "l2", l2_normalize=True), threads=1)
    preds = model.predict(TEXTS, distances=True)
    z = reference_outputs(TEXTS, tiny_bundle_weights(0), make_tokenizer("bert"), 16)["z"].astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    with np.load(model.path / "baselines.npz") as b:
        mu, p = b["class_means"].astype(np.float64), b["precision"].astype(np.float64)
    md = np.array([min((zi - m) @ p @ (zi - m) for m in mu) for zi in z])
    np.testing.assert_allclose(preds.scores["md"], md, rtol=1e-5)

    bare = runtime.load(make_tiny_bundle(tmp_path / "bare", with_baselines=False), threads=1)
    assert bare.baselines is None
    assert "md" not in bare.predict(TEXTS, distances=True).scores


@pytest.mark.parametrize("heads, default_kind", [(("adue", "alien"), "alien"), ((), "sr"), (("adue",), "sr"),
                                                  (("alien",), "alien")])
def test_default_kind_fills_uncertainty(tmp_path, heads, default_kind):
    model = runtime.load(make_tiny_bundle(tmp_path / "b", heads=heads, default_kind=default_kind,
                                          num_classes=3, with_golden=False), threads=1)
    preds = model.predict(TEXTS)
    assert preds.uncertainty_kind == default_kind
    assert sorted(preds.scores) == sorted(["sr", "entropy", *heads])
    expected = preds.softmax_response if default_kind == "sr" else preds.scores[default_kind]
    np.testing.assert_array_equal(preds.uncertainty, expected)
    assert preds.probs.shape == (len(TEXTS), 3)
    if "adue" in heads:  # the manifest's lambda is the one used
        ref = reference_outputs(TEXTS, tiny_bundle_weights(0, heads=heads, num_classes=3),
                                make_tokenizer("bert"), 16)
        np.testing.assert_allclose(preds.scores["adue"], ref["heads"]["adue"], atol=1e-5)
        assert ADUE_LAMBDA != 100.0


class _CountingHead:
    """A LinearHead that records the rows of each call."""

    def __init__(self, head, calls):
        self.head, self.calls, self.kinds = head, calls, head.kinds

    def score_into(self, z, *args):
        self.calls.append(len(z))
        return self.head.score_into(z, *args)


def test_predict_stages_times_one_batch(tiny_model):
    stages = tiny_model.predict_stages(TEXTS, distances=True)
    for key in ("tokenize", "backbone", "head", "kernels", "assemble"):
        assert isinstance(stages[key], float) and stages[key] >= 0.0
    assert stages["batch_size"] == len(TEXTS) and stages["n_batches"] == 1 and stages["head_calls"] == 1
    assert stages["shapes"] == [(len(TEXTS), 16)]
    assert stages["sequence_length"] == 16  # the longest text is truncated to max_length
    with pytest.raises(ValueError, match="at least one text"):
        tiny_model.predict_stages([])


@pytest.mark.parametrize("fused", [True, False], ids=["fused-linear-head", "head-session"])
@pytest.mark.parametrize("block_rows, batch_size, head_calls", [(4, 3, 4), (4, 2, 3), (8, 4, 2), (1024, 3, 1), (1, 5, 2)])
def test_head_runs_once_per_block_of_whole_batches(tiny_model, monkeypatch, block_rows, batch_size, head_calls, fused):
    texts = _mixed_texts(10, seed=3)
    assert tiny_model.linear_head is not None  # the tiny bundle's head is linear
    if not fused:
        monkeypatch.setattr(tiny_model, "linear_head", None)
    expected = Predictions.concat([tiny_model.predict(t) for t in texts])
    monkeypatch.setattr(model_module, "BLOCK_ROWS", block_rows)
    calls = []
    if fused:
        head = tiny_model.linear_head
        monkeypatch.setattr(tiny_model, "linear_head", _CountingHead(head, calls))
    else:
        run_head = tiny_model._run_head
        monkeypatch.setattr(tiny_model, "_run_head", lambda z: calls.append(len(z)) or run_head(z))
    stages = tiny_model.predict_stages(texts, batch_size=batch_size, distances=True)
    assert stages["head_calls"] == len(calls) == head_calls  # block = batch_size * max(1, block_rows // batch_size)
    assert sum(calls) == 10
    assert stages["n_batches"] == -(-10 // batch_size) and sum(r for r, _ in stages["shapes"]) == 10
    assert [w for _, w in stages["shapes"]] == sorted(w for _, w in stages["shapes"])  # length-sorted batches
    assert_same(tiny_model.predict(texts, batch_size=batch_size), expected)
    with_z = tiny_model.predict(texts, batch_size=batch_size, distances=True)
    np.testing.assert_allclose(with_z.scores["md"], Predictions.concat(
        [tiny_model.predict(t, distances=True) for t in texts]).scores["md"], rtol=1e-5)
