"""A token-classification bundle end to end: export (per-word validation, manifest, golden set,
int8), the torch-free runtime against PyTorch per word, windows, bad input, the task checks both
ways, predict_entities, verify and evaluate."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from uehead.errors import TaskMismatchError  # noqa: E402
from uehead.scores import adue_uncertainty, alien_uncertainty, softmax_response  # noqa: E402
from uehead.token_datasets import load_token_dataset  # noqa: E402

TOL = 1e-4


def test_manifest_and_export_reports(token_bundle):
    manifest, folder = token_bundle
    assert manifest.task == "token-classification" and manifest.backbone.pooling == "per_token"
    assert manifest.token.alignment == "first_subtoken" and manifest.token.tag_scheme == "BIO"
    assert manifest.labels == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER") and manifest.scores is not None
    validation = manifest.reports["validation"]
    assert validation["passed"] and max(validation["max_abs_diff"][k] for k in validation["max_abs_diff"]) < TOL
    assert {"batch37_windows", "batch1_one_word"} <= set(validation["cases"])
    golden = json.loads((folder / "golden.json").read_text())
    assert len(golden["texts"]) == len(golden["label_ids"]) and [] in golden["sentences"]
    assert manifest.to_dict()["task"] == "token-classification"


def _pytorch_words(ckpt, sentences):
    """Per word, from plain transformers on the checkpoint (its own tokenizer, first sub-tokens)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from uehead.checkpoint import read_checkpoint

    model = AutoModelForTokenClassification.from_pretrained(ckpt / "model").eval()
    tok = AutoTokenizer.from_pretrained(ckpt / "model")
    heads = read_checkpoint(ckpt).heads
    out = []
    for words in sentences:
        enc = tok(words, is_split_into_words=True, return_tensors="pt")
        first = [enc.word_ids().index(w) for w in range(len(words))]
        with torch.no_grad():
            logits = model(**enc).logits[0, first].numpy().astype(np.float64)
            z = model.bert(**enc).last_hidden_state[0, first].numpy().astype(np.float64)
        h = {k: z @ w.state_dict["weight"].T + w.state_dict["bias"] for k, w in heads.items()}
        out.append({"sr": softmax_response(logits), "adue": adue_uncertainty(h["adue"], heads["adue"].lam),
                    "alien": alien_uncertainty(h["alien"]), "tag_ids": logits.argmax(1),
                    "probs": np.exp(logits) / np.exp(logits).sum(1, keepdims=True)})
    return out


def test_runtime_matches_pytorch_per_word(token_runtime, token_ckpt, ner_data):
    test = load_token_dataset(ner_data, splits=("test",))["test"]
    sentences = [s for s in test.tokens if sum(len(w) for w in s) < 9][:12]  # one 16-token window each
    assert len(sentences) >= 5
    got = token_runtime.predict_tokens(sentences, batch_size=5)
    for p, ref in zip(got, _pytorch_words(token_ckpt, sentences)):
        assert p.windows == 1 and p.scored.all()
        np.testing.assert_array_equal(p.tag_ids, ref["tag_ids"])
        np.testing.assert_allclose(p.probs, ref["probs"], atol=TOL)
        for name in ("sr", "adue", "alien"):
            np.testing.assert_allclose(p.scores[name], ref[name], atol=TOL)
        assert p.uncertainty is p.scores["adue"] and p.uncertainty_kind == "adue"


def test_long_sentence_uses_windows_and_matches_each_word_alone(token_runtime):
    words = ["alice", "went", "to", "paris", "with", "bob", "stone"] * 30
    [long] = token_runtime.predict_tokens([words])
    assert len(long) == len(words) and long.windows > 10 and long.scored.all()
    batched = token_runtime.predict_tokens([words, ["rome"]], batch_size=3)
    np.testing.assert_allclose(batched[0].scores["adue"], long.scores["adue"], atol=1e-6)
    assert long.sentence_uncertainty == pytest.approx(float(long.uncertainty.max()))
    assert long.sentence_uncertainty_mean == pytest.approx(float(long.uncertainty.mean()))


def test_bad_input_words(token_runtime):
    empty, blanks, spaced, many = token_runtime.predict_tokens(
        [[], ["", "paris", " ", "\u200b"], ["new york", "to"], ["rome"] * 3000], distances=True)
    assert len(empty) == 0 and empty.tags == [] and empty.sentence_uncertainty == 0.0 and empty.entities == []
    assert blanks.scored.tolist() == [False, True, False, False]
    assert [blanks.tags[i] for i in (0, 2, 3)] == ["O"] * 3 and blanks.probs[0, 0] == 1.0
    assert all(blanks.scores[k][0] == 0.0 for k in blanks.scores) and {"md", "rmd"} <= set(blanks.scores)
    assert len(spaced) == 2 and spaced.scored.all()
    assert len(many) == 3000 and many.windows > 100 and many.scored.all()
    for bad, err, match in ((["a", "b"], TypeError, r"words\[0\] is a str"), ("a b", TypeError, "one str"),
                            ([["a", 3]], TypeError, r"words\[0\]\[1\] is int"),
                            ([["a", "b\ud800"]], ValueError, r"words\[0\]\[1\] holds a lone surrogate"),
                            ({("a",)}, TypeError, "ordered")):
        with pytest.raises(err, match=match):
            token_runtime.predict_tokens(bad)


def test_task_mismatch_errors_name_the_right_call(token_runtime, tiny_model):
    for call in (lambda: token_runtime.predict(["text"]), lambda: list(token_runtime.iter_predict(["text"])),
                 lambda: token_runtime.predict_stages(["text"])):
        with pytest.raises(TaskMismatchError, match=r"predict_tokens\(words\).*predict_entities\(texts\)"):
            call()
    with pytest.raises(TaskMismatchError, match=r"call Model.predict\(texts\)"):
        tiny_model.predict_tokens([["a"]])
    with pytest.raises(TaskMismatchError, match=r"call Model.predict\(texts\)"):
        tiny_model.predict_entities(["a"])


def test_predict_entities_offsets(token_runtime):
    text = "We met  Alice Stone in New York today."
    [e, blank] = token_runtime.predict_entities([text, ""])
    assert [w for w in e.tokens.words] == ["We", "met", "Alice", "Stone", "in", "New", "York", "today", "."]
    assert all(text[a:b] == w for (a, b), w in zip(e.offsets.tolist(), e.tokens.words))
    for ent in e.entities:
        assert text[ent.start:ent.end] == ent.text and ent.label in ("LOC", "PER")
        assert ent.uncertainty == pytest.approx(float(e.tokens.uncertainty[ent.word_start:ent.word_end].max()))
    assert blank.entities == [] and len(blank.tokens) == 0 and blank.offsets.shape == (0, 2)
    json.dumps(e.to_dict())


def test_old_manifest_without_task_is_sequence_classification(tiny_bundle_dir):
    from uehead.bundle import manifest_from_dict, read_manifest

    data = read_manifest(tiny_bundle_dir).to_dict()
    data.pop("task"), data.pop("token")
    m = manifest_from_dict(data, tiny_bundle_dir / "manifest.json")
    assert m.task == "sequence-classification" and m.token is None
    from uehead.errors import IncompatibleBundleError

    for edit, match in (({"task": "token-classification"}, "'token' entry is missing"),
                        ({"token": {"alignment": "first_subtoken"}}, "has a 'token' entry"),
                        ({"task": "ner"}, "task 'ner' is not one of")):
        with pytest.raises(IncompatibleBundleError, match=match):
            manifest_from_dict({**data, **edit}, tiny_bundle_dir / "manifest.json")


def test_verify_and_evaluate_token_bundle(token_bundle, ner_data, tmp_path):
    from uehead import cli
    from uehead.runtime import verify

    report = verify(token_bundle[1])
    assert report["golden"]["label_mismatches"] == 0 and report["scores_graph"]["label_mismatches"] == 0
    out = tmp_path / "eval.json"
    assert cli.main(["evaluate", str(token_bundle[1]), "--data", str(ner_data), "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["task"] == "token-classification" and record["n_sentences"] == 40
    assert {"sr", "entropy", "adue", "alien", "md", "rmd"} <= set(record["word"])
    assert set(record["sentence"]) == {"max", "mean"} and set(record["entity"]) == {"precision", "recall", "f1"}
    assert all((tmp_path / f"eval_{p}.png").is_file() for p in ("reliability", "risk_coverage"))


def test_int8_token_bundle(token_ckpt, ner_data, tmp_path):
    from uehead import runtime
    from uehead.export import export_bundle

    manifest = export_bundle(token_ckpt, tmp_path / "int8", int8=True, data=ner_data)
    report = manifest.reports["int8"]
    assert manifest.backbone.precision == "int8" and report["data"]["words"] > 0
    assert abs(report["data"]["delta"]["accuracy"]) < 5.0
    [p] = runtime.load(tmp_path / "int8", threads=1).predict_tokens([["alice", "in", "paris"]])
    assert p.tags and len(p.tags) == 3


def test_compare_runtime_to_pytorch_words(token_bundle, token_ckpt, ner_data):
    from uehead.export.token_validate import compare_runtime_to_pytorch_words

    test = load_token_dataset(ner_data, splits=("test",))["test"]
    report = compare_runtime_to_pytorch_words(token_ckpt, token_bundle[1], test.tokens + [["", "rome"], []])
    assert report["passed"] and report["label_flips"] == 0 and report["words"] > 20
    assert report["sentences"] + report["skipped"] == len(test) + 2
    assert max(report["max_abs_diff"].values()) < TOL


def test_llama_token_bundle(tmp_path, ner_data):
    """A decoder (LLaMA) token classifier: trained, exported (causal, right padding), matched per word."""
    from tiny_token import TRAIN_KW, small_grid
    from tiny_token import make_tiny_token_model_dir
    from uehead.export import export_bundle
    from uehead.export.token_validate import compare_runtime_to_pytorch_words
    from uehead.training import train

    model_dir = make_tiny_token_model_dir(tmp_path / "llama", arch="llama")
    ckpt = train(str(model_dir), str(ner_data), tmp_path / "ckpt", grid=small_grid(), **{**TRAIN_KW, "epochs": 1})
    manifest = export_bundle(ckpt, tmp_path / "bundle")
    assert manifest.backbone.architecture == "llama"
    assert manifest.backbone.input_names == ("input_ids", "attention_mask")
    test = load_token_dataset(ner_data, splits=("test",))["test"]
    report = compare_runtime_to_pytorch_words(ckpt, tmp_path / "bundle", test.tokens)
    assert report["passed"] and report["words"] > 20
