"""``train`` end to end on tiny random models: the checkpoint layout, round trips, the test split
never influencing selection, bad input, and the ``uehead train`` CLI."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training_settings import SMALL_BASELINE, SMALL_GRID
from uehead.runtime.distances import Baselines
from uehead.scores import adue_uncertainty, alien_uncertainty, softmax_response
from uehead.training import api, checkpoint, train
from uehead.training.heads import forward_numpy

from uehead.datasets import DataError

METHODS = {"sr", "entropy", "md", "md_l2", "rmd", "rmd_l2", "rde", "rde_l2", "adue", "alien"}
ABLATIONS = {"adue_bce", "adue_bce_l2sp", "adue_bce_reg", "adue_rand_cls", "adue_rand_linear"}
KW = {"max_length": 32, "epochs": 2, "batch_size": 32, "progress": False, "grid": SMALL_GRID,
      "baseline": SMALL_BASELINE}


@pytest.fixture(scope="module")
def bert_ckpt(tmp_path_factory, bert_dir, tiny_data):
    out = tmp_path_factory.mktemp("ck") / "bert"
    return train(str(bert_dir), str(tiny_data), out, ablations=True, **KW)


def test_checkpoint_layout(bert_ckpt, bert_dir, tiny_data):
    assert {p.name for p in bert_ckpt.iterdir()} == {"model", "heads", "baselines", "scores", "training.json"}
    info = checkpoint.read_training(bert_ckpt)
    for key in ("uehead_version", "versions", "model", "architecture", "pooling", "data", "num_classes", "label_names",
                "seed", "max_train", "epochs", "max_length", "batch_size", "device", "lora", "heads", "n_rows",
                "accuracy", "roc_auc_test", "timings_s", "merge_max_abs_diff"):
        assert key in info, key
    assert info["architecture"] == "bert" and info["pooling"] == "pooler" and info["device"] == "cpu"
    assert info["n_rows"] == {"train": 200, "valid": 120, "test": 80} and info["heads"] == ["adue", "alien"]
    assert {"torch", "transformers", "peft"} <= set(info["versions"]) and info["merge_max_abs_diff"] < 1e-4
    assert set(info["roc_auc_test"]) == METHODS | ABLATIONS
    for kind in ("adue", "alien"):
        weights, cfg = checkpoint.read_head(bert_ckpt, kind)
        assert set(weights) == {"weight", "bias"} and weights["weight"].shape == (2, 32)
        assert weights["weight"].dtype == np.float32
        assert set(cfg) == {"kind", "lam", "module", "in_features", "num_classes", "bias", "init",
                            "hyperparameters", "validation"}
        assert (cfg["kind"], cfg["lam"], cfg["module"], cfg["in_features"], cfg["num_classes"], cfg["bias"],
                cfg["init"]) == (kind, 100.0, "linear", 32, 2, True, "classifier")
        assert set(cfg["hyperparameters"]) == {"lr", "epochs", "alpha", "beta", "batch_size"}
        assert cfg["hyperparameters"]["lr"] in SMALL_GRID.lrs and cfg["hyperparameters"]["epochs"] in SMALL_GRID.epochs
        assert set(cfg["validation"]) == {"roc_auc", "n_fit", "n_select"}
        assert cfg["validation"]["n_fit"] + cfg["validation"]["n_select"] == 120
    for l2 in (False, True):
        md = checkpoint.read_md(bert_ckpt, l2)
        assert {k: v.shape for k, v in md.items()} == {"class_means": (2, 32), "precision": (32, 32),
                                                       "global_mean": (32,), "global_precision": (32, 32)}
        assert all(v.dtype == np.float64 for v in md.values())
    for split, n in (("valid", 120), ("test", 80)):
        s = checkpoint.read_scores(bert_ckpt, split)
        assert set(s) == {"labels", "predictions", "errors"} | METHODS | ABLATIONS
        assert s["errors"].dtype == np.int8 and all(s[m].dtype == np.float64 and s[m].shape == (n,)
                                                    for m in METHODS | ABLATIONS)
        np.testing.assert_array_equal(s["errors"], (s["labels"] != s["predictions"]).astype(np.int8))


def _z_and_logits(model, tok, texts):
    enc = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        return model.bert(**enc).pooler_output.numpy(), model(**enc).logits.numpy()


def test_round_trip_with_plain_transformers(bert_ckpt, tiny_data):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from uehead.datasets import load_dataset

    model = AutoModelForSequenceClassification.from_pretrained(bert_ckpt / "model").eval()
    tok = AutoTokenizer.from_pretrained(bert_ckpt / "model")
    assert model.config.id2label == {0: "class_0", 1: "class_1"} and tok.pad_token == "[PAD]"
    ds = load_dataset(tiny_data)
    z, logits = _z_and_logits(model, tok, ds["test"].texts)
    s = checkpoint.read_scores(bert_ckpt, "test")
    np.testing.assert_array_equal(logits.argmax(1), s["predictions"])
    np.testing.assert_allclose(softmax_response(logits), s["sr"], atol=1e-5)
    for kind in ("adue", "alien"):
        weights, cfg = checkpoint.read_head(bert_ckpt, kind)
        out = forward_numpy(weights, z)
        u = adue_uncertainty(out, cfg["lam"]) if kind == "adue" else alien_uncertainty(out)
        np.testing.assert_allclose(u, s[kind], atol=1e-5)
    for l2 in (False, True):
        md = Baselines.from_arrays(checkpoint.read_md(bert_ckpt, l2), l2_normalize=l2)
        sfx = "_l2" if l2 else ""
        np.testing.assert_allclose(md.md(z), s["md" + sfx], rtol=1e-4, atol=1e-4)
        # RMD is a difference of two distances: z's float32 noise (padding widths differ) scales with them
        scale = float(np.abs(md.md(z)).max())
        np.testing.assert_allclose(md.rmd(z), s["rmd" + sfx], rtol=0, atol=1e-4 * scale)


def test_test_split_never_influences_training_or_selection(bert_ckpt, tiny_data, bert_dir, tmp_path, monkeypatch):
    poisoned = tmp_path / "poisoned"
    shutil.copytree(tiny_data, poisoned)
    rows = [json.loads(line) for line in (poisoned / "test.jsonl").read_text().splitlines()]
    flipped = [{"text": "awful " * 5 + r["text"], "label": 1 - r["label"]} for r in rows[::-1]]
    (poisoned / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in flipped[:50]))
    seen = []
    real_fit = api.fit_heads

    def spy(variants, classifier, z, logits, errors, grid, seed=0, **kw):
        seen.append(len(z))
        return real_fit(variants, classifier, z, logits, errors, grid, seed=seed, **kw)

    monkeypatch.setattr(api, "fit_heads", spy)
    out = train(str(bert_dir), str(poisoned), tmp_path / "ck", ablations=True, **KW)
    assert seen == [120], "heads were fitted on the 120 validation rows only"
    for kind in ("adue", "alien"):
        (wa, ca), (wb, cb) = checkpoint.read_head(out, kind), checkpoint.read_head(bert_ckpt, kind)
        assert ca == cb and set(wa) == set(wb) and all(np.array_equal(wa[k], wb[k]) for k in wa)
    a, b = checkpoint.read_scores(out, "valid"), checkpoint.read_scores(bert_ckpt, "valid")
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert len(checkpoint.read_scores(out, "test")["labels"]) == 50


def test_llama_checkpoint(llama_dir, tiny_data, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # Like SmolLM2's GGUF tokenizer: LlamaTokenizerFast pads on the LEFT by class default, and
    # save_pretrained only records padding_side when it was given at load time.
    left = tmp_path / "left_padded_llama"
    shutil.copytree(llama_dir, left)
    cfg = json.loads((left / "tokenizer_config.json").read_text())
    cfg.pop("padding_side", None)
    (left / "tokenizer_config.json").write_text(json.dumps({**cfg, "tokenizer_class": "LlamaTokenizerFast"}))
    assert AutoTokenizer.from_pretrained(left).padding_side == "left"
    out = train(str(left), str(tiny_data), tmp_path / "ck", heads=("alien",), baselines=("md",), **KW)
    info = checkpoint.read_training(out)
    assert (info["architecture"], info["pooling"], info["heads"]) == ("llama", "last_token", ["alien"])
    weights, cfg = checkpoint.read_head(out, "alien")
    assert set(weights) == {"weight"} and cfg["bias"] is False and cfg["module"] == "linear"
    assert not (out / "heads" / "adue.json").exists()
    s = checkpoint.read_scores(out, "test")
    assert set(s) == {"labels", "predictions", "errors", "md", "md_l2", "alien", "sr", "entropy"}
    assert (out / "baselines" / "md.npz").is_file()
    model = AutoModelForSequenceClassification.from_pretrained(out / "model")
    tok = AutoTokenizer.from_pretrained(out / "model")
    assert model.config.pad_token_id == tok.pad_token_id is not None and tok.padding_side == "right"


def test_bad_input_fails_early_with_a_clear_message(tiny_data, bert_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_data, broken)
    (broken / "valid.jsonl").write_text('{"text": "good film", "label": 0}\n{"text": "bad", "label": 7}\n')
    with pytest.raises(DataError, match=r"valid\.jsonl:2: label 7 is out of range"):
        train("minilm", str(broken), tmp_path / "o1", progress=False)
    (broken / "valid.jsonl").unlink()
    with pytest.raises(DataError, match="missing split 'valid'"):
        train("minilm", str(broken), tmp_path / "o2", progress=False)
    (broken / "valid.jsonl").write_bytes(b'{"text": "caf\xe9", "label": 0}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        train("minilm", str(broken), tmp_path / "o3", progress=False)
    (broken / "valid.jsonl").write_text("")
    with pytest.raises(DataError, match="no rows"):
        train("minilm", str(broken), tmp_path / "o4", progress=False)
    with pytest.raises(FileNotFoundError, match="not a built-in name"):
        train(str(tmp_path / "nope"), str(tiny_data), tmp_path / "o5", progress=False)
    with pytest.raises(ValueError, match="unknown head kind"):
        train(str(bert_dir), str(tiny_data), tmp_path / "o6", heads=("adue", "mystery"), progress=False)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        train(str(bert_dir), str(tiny_data), tmp_path / "o7", max_length=512, progress=False)
    (tmp_path / "o8").mkdir()
    (tmp_path / "o8" / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a uehead checkpoint"):
        train(str(bert_dir), str(tiny_data), tmp_path / "o8", max_length=32, progress=False)
    assert (tmp_path / "o8" / "precious.txt").read_text() == "keep me"


def test_cli_train_end_to_end(bert_dir, tiny_data, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification

    from uehead.cli import main

    out = tmp_path / "ck"
    argv = ["train", "--model", str(bert_dir), "--data", str(tiny_data), "--out", str(out), "--heads", "adue,alien",
            "--epochs", "1", "--max-length", "32", "--batch-size", "32", "--max-train", "150", "--seed", "3",
            "--device", "cpu"]
    assert main(argv) == 0
    info = checkpoint.read_training(out)
    assert (info["seed"], info["max_train"], info["n_rows"]["train"], info["epochs"]) == (3, 150, 150, 1)
    assert info["heads"] == ["adue", "alien"] and info["ablations"] == []
    assert set(info["roc_auc_test"]) == METHODS
    assert "wrote" in capsys.readouterr().err
    AutoModelForSequenceClassification.from_pretrained(out / "model")
    assert main(argv) == 0, "an existing checkpoint is replaced"
    assert not list(tmp_path.glob(".ck.partial*")), "no temporary folder left behind"
    assert main(["train", "--model", str(bert_dir), "--data", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "x")]) == 2
    assert "not a dataset folder" in capsys.readouterr().err


def test_cli_train_bad_option_exits_2_with_a_message(tmp_path, capsys):
    from uehead.cli import main

    rc = main(["train", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
               "--heads", "bogus"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("uehead train: error:") and "bogus" in err
