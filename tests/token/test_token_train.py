"""``train(task="token-classification")`` on a tiny random BERT token classifier: the checkpoint,
word alignment in the loss, BIO repairs counted, scores per word, and the ``uehead train`` CLI."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from tiny_token import TRAIN_KW, small_grid  # noqa: E402
from uehead.checkpoint import read_checkpoint, read_scores, read_training  # noqa: E402
from uehead.scores import adue_uncertainty, softmax_response  # noqa: E402
from uehead.token_datasets import load_token_dataset  # noqa: E402

METHODS = {"sr", "entropy", "md", "md_l2", "rmd", "rmd_l2", "adue", "alien"}


def test_checkpoint_records_task_alignment_and_bio_fixes(token_ckpt, ner_data):
    info = read_training(token_ckpt)
    ds = load_token_dataset(ner_data)
    assert (info["task"], info["alignment"], info["pooling"], info["tag_scheme"]) == \
        ("token-classification", "first_subtoken", "per_token", "BIO")
    assert info["bio_fixes"] == {s: ds[s].bio_fixes for s in ("train", "valid", "test")}
    assert info["bio_fixes"]["train"] >= 3                     # the dataset plants three I-PER after O
    assert info["n_words"]["valid"] == ds["valid"].n_words and info["n_rows"]["test"] == len(ds["test"])
    assert info["n_windows"]["train"] > info["n_rows"]["train"]  # 16-token windows: long sentences split
    assert set(info["f1"]["test"]) == {"precision", "recall", "f1"} and info["baselines"] == ["md", "rmd"]
    assert info["merge_max_abs_diff"] < 1e-4 and info["token_classifier_max_abs_diff"] < 1e-4
    assert info["lora"]["modules_to_save"] == ["classifier"]
    test = info["default_score"]  # do no harm, on the scored words of the select part
    assert test["baseline"] == "sr" and test["chosen"] in ("sr", *info["heads"])
    assert test["n_rows"] == info["head_selection"]["adue"]["n_select"]
    ckpt = read_checkpoint(token_ckpt)
    assert ckpt.task == "token-classification" and ckpt.alignment == "first_subtoken"
    assert all(h.module == "linear" and h.state_dict["weight"].shape == (5, 32) for h in ckpt.heads.values())


def test_scores_cover_every_word_in_dataset_order(token_ckpt, ner_data):
    ds = load_token_dataset(ner_data)
    for split in ("valid", "test"):
        s = read_scores(token_ckpt, split)
        assert set(s) == {"labels", "predictions", "errors"} | METHODS
        np.testing.assert_array_equal(s["labels"], ds[split].flat_tags())
        np.testing.assert_array_equal(s["errors"], (s["labels"] != s["predictions"]).astype(np.int8))


def test_scores_reproduce_with_plain_transformers(token_ckpt, ner_data):
    """Per word, from the saved model + HF tokenizer (is_split_into_words, first sub-token)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from uehead.checkpoint import read_head

    model = AutoModelForTokenClassification.from_pretrained(token_ckpt / "model").eval()
    tok = AutoTokenizer.from_pretrained(token_ckpt / "model")
    test = load_token_dataset(ner_data, splits=("test",))["test"]
    short = [i for i, s in enumerate(test.tokens) if len(tok(s, is_split_into_words=True)["input_ids"]) <= 16]
    starts = np.concatenate([[0], np.cumsum([len(t) for t in test.tokens])])
    scores = read_scores(token_ckpt, "test")
    weights, meta = read_head(token_ckpt, "adue")
    for i in short[:10]:
        enc = tok(test.tokens[i], is_split_into_words=True, return_tensors="pt")
        first = [enc.word_ids().index(w) for w in range(len(test.tokens[i]))]
        with torch.no_grad():
            logits = model(**enc).logits[0, first].numpy()
            z = model.bert(**enc).last_hidden_state[0, first].numpy()
        rows = slice(starts[i], starts[i + 1])
        np.testing.assert_allclose(scores["sr"][rows], softmax_response(logits), atol=1e-5)
        head = z @ weights["weight"].T + weights["bias"]
        np.testing.assert_allclose(scores["adue"][rows], adue_uncertainty(head, meta["lam"]), atol=1e-5)
        np.testing.assert_array_equal(scores["predictions"][rows], logits.argmax(1))


def test_loss_ignores_all_but_first_subtokens(ner_data):
    from uehead.training.token_data import IGNORE_INDEX, TokenEncoded
    from uehead.runtime.word_tokenize import WordWindows

    windows = WordWindows([[2, 10, 11, 12, 3], [2, 13, 3]], np.array([0, 1]), np.array([0, 0, 1, -1]),
                          np.array([1, 3, 1, 0]), np.array([2, 2]))
    enc = TokenEncoded(windows, np.array([3, 4, 1, 2]))
    labels = enc.labels(np.array([0, 1]), 5, enc.window_words())
    assert labels.tolist() == [[IGNORE_INDEX, 3, IGNORE_INDEX, 4, IGNORE_INDEX],
                               [IGNORE_INDEX, 1, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]


def test_cli_train_token_task(tmp_path, token_model_dir, ner_data, monkeypatch):
    from uehead import cli
    from uehead.training import api

    seen = {}
    monkeypatch.setattr(api, "run", lambda cfg: seen.setdefault("cfg", cfg))
    assert cli.main(["train", "--model", str(token_model_dir), "--data", str(ner_data), "--out",
                     str(tmp_path / "c"), "--task", "token-classification", "--max-length", "16"]) == 0
    assert seen["cfg"].task == "token-classification" and seen["cfg"].max_length == 16


def test_sequence_data_for_token_task_fails_clearly(tmp_path, token_model_dir):
    from tiny_models import make_tiny_dataset
    from uehead.errors import DataError
    from uehead.training import train

    data = make_tiny_dataset(tmp_path / "seq", sizes=(10, 10, 10))
    with pytest.raises(DataError, match="without --task token-classification"):
        train(str(token_model_dir), str(data), tmp_path / "c", grid=small_grid(), **TRAIN_KW)


def test_old_checkpoint_without_task_is_sequence_classification(tmp_path):
    import json

    from tiny_checkpoint import make_tiny_checkpoint
    from uehead.checkpoint import CheckpointError

    ckpt = make_tiny_checkpoint(tmp_path / "seq")
    assert "task" not in read_training(ckpt)
    loaded = read_checkpoint(ckpt)
    assert loaded.task == "sequence-classification" and loaded.alignment is None
    record = json.loads((ckpt / "training.json").read_text())
    (ckpt / "training.json").write_text(json.dumps({**record, "task": "token-classification",
                                                    "alignment": "last_subtoken", "pooling": "per_token"}))
    with pytest.raises(CheckpointError, match="alignment 'last_subtoken'"):
        read_checkpoint(ckpt)
