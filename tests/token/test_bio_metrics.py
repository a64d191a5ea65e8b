"""BIO tags (repair, spans; the same entities as seqeval), the NER dataset reader, and the
token-classification metrics (entity F1, word and sentence views). Torch-free."""
from __future__ import annotations

import json

import numpy as np
import pytest

from uehead.bio import BioTags, Span
from uehead.errors import DataError
from uehead.evaluation import metrics
from uehead.evaluation.token_metrics import entity_f1, entity_mask, sentence_scores, split_sentences, token_metrics
from uehead.token_datasets import is_token_dataset, load_token_dataset

NAMES = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")


def test_repair_rewrites_entity_starting_inside_tags():
    bio = BioTags(NAMES)
    fixed, n = bio.repair([0, 2, 2, 4, 0, 1, 2, 3, 2])
    # I-LOC after O -> B-LOC; I-PER after I-LOC -> B-PER; I-LOC after B-PER -> B-LOC
    assert fixed.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 1] and n == 3
    assert bio.repair([2])[0].tolist() == [1]  # the sentence start counts as O
    assert bio.spans([0, 2, 2, 4, 0]) == [Span(1, 3, "LOC"), Span(3, 4, "PER")]
    assert bio.spans([]) == [] and bio.spans([1, 1]) == [Span(0, 1, "LOC"), Span(1, 2, "LOC")]


def test_spans_match_seqeval_on_random_sequences():
    from seqeval.metrics.sequence_labeling import get_entities

    bio, rng = BioTags(NAMES), np.random.default_rng(0)
    for _ in range(300):
        ids = rng.integers(0, len(NAMES), rng.integers(0, 12))
        ours = [(s.label, s.start, s.end - 1) for s in bio.spans(ids)]
        assert ours == get_entities([NAMES[i] for i in ids])


@pytest.mark.parametrize("names", [("B-X", "I-X"), ("O", "PER"), ("O", "I-PER"), ("O", "O")])
def test_bad_tag_names(names):
    with pytest.raises(ValueError):
        BioTags(names)


def test_dataset_reader_counts_fixes_and_rejects_bad_rows(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps(list(NAMES)))
    rows = [{"tokens": ["a", "b"], "tags": [0, 2]}, {"tokens": [], "tags": []}, {"tokens": ["x"], "tags": [4]}]
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_token_dataset(tmp_path)
    assert is_token_dataset(tmp_path) and ds["train"].bio_fixes == 2
    assert [t.tolist() for t in ds["train"].tags] == [[0, 1], [], [3]] and ds["train"].n_words == 3
    (tmp_path / "test.jsonl").write_text(json.dumps({"tokens": ["a"], "tags": [0, 0]}))
    with pytest.raises(DataError, match=r"test.jsonl:1: 'tags' must be a list with one tag id per token"):
        load_token_dataset(tmp_path)
    (tmp_path / "test.jsonl").write_text(json.dumps({"tokens": ["a"], "tags": [9]}))
    with pytest.raises(DataError, match="out of range"):
        load_token_dataset(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps(["O", "PER"]))
    with pytest.raises(DataError, match="not BIO tag names"):
        load_token_dataset(tmp_path)


def test_entity_f1_is_seqeval():
    gold = [np.array([1, 2, 0, 3]), np.array([0, 3, 4])]
    pred = [np.array([1, 2, 0, 0]), np.array([0, 3, 0])]
    f = entity_f1(gold, pred, NAMES)
    # gold entities: LOC(0-1), PER(3), PER(1-2); predicted: LOC(0-1) correct, PER(1) wrong span
    assert f["precision"] == pytest.approx(0.5) and f["recall"] == pytest.approx(1 / 3)
    assert f["f1"] == pytest.approx(0.4)


def test_token_metrics_views():
    counts = np.array([4, 0, 3])
    gold = np.array([1, 2, 0, 0, 0, 3, 4])
    pred = np.array([1, 0, 0, 0, 0, 3, 4])
    u = np.array([0.1, 0.9, 0.2, 0.05, 0.3, 0.2, 0.1])
    out = token_metrics(gold, pred, {"u": u}, counts, NAMES)
    errors = (gold != pred).astype(int)
    assert out["word_errors"] == 1 and out["sentence_errors"] == 1 and out["n_sentences"] == 3
    assert out["word"]["u"]["roc_auc"] == pytest.approx(metrics.roc_auc(u, errors))
    inside = entity_mask(split_sentences(gold, counts), split_sentences(pred, counts), BioTags(NAMES))
    assert inside.tolist() == [True, True, False, False, False, True, True] and out["words_in_entities"] == 4
    assert out["word_in_entities"]["u"]["roc_auc"] == pytest.approx(metrics.roc_auc(u[inside], errors[inside]))
    # sentences: max over words; the empty one has score 0 and no error
    assert sentence_scores(u, counts).tolist() == [0.9, 0.0, 0.3]
    assert sentence_scores(u, counts, "mean") == pytest.approx([0.3125, 0.0, 0.2])
    assert out["sentence"]["max"]["u"]["roc_auc"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one tag per word"):
        token_metrics(gold[:-1], pred, {"u": u}, counts, NAMES)
