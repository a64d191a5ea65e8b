"""A user's own data file (uehead.data_files via uehead.datasets): each format, labels as names or
ids, a split column, seeded stratified fractions, the errors, evaluate / calibrate on a file, and
``uehead train --data reviews.csv`` end to end on a tiny random model."""
from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import random

import numpy as np
import pytest

from tiny_models import make_sentence
from uehead.cli import main
from uehead.data_files import min_rows_per_class
from uehead.datasets import DataError, DataFileOptions, load_dataset, load_labelled, load_split

OPTS = DataFileOptions(text_column="body", label_column="stars")


def review_rows(n: int = 100, names=("one star", "five stars"), seed: int = 0) -> list[dict]:
    """``n`` rows {body, stars, id} whose words signal the label (cycling through ``names``)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        text, label = make_sentence(rng, i % len(names), len(names), 0.0)
        rows.append({"id": i, "body": text, "stars": names[label]})
    return rows


def write(path, rows: list[dict]):
    """``rows`` as a file whose format follows ``path``'s suffix."""
    name = path.name
    if name.endswith(".csv"):
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    elif name.endswith(".parquet"):
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        data = "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def as_dict(ds):
    return {s: (ds[s].texts, ds[s].labels.tolist()) for s in ds.splits}


# ------------------------------------------------------------------------------- formats, labels
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".jsonl.gz", ".parquet"])
def test_each_format_gives_the_same_dataset(tmp_path, suffix):
    rows = review_rows(100)
    reference = load_dataset(write(tmp_path / "ref.jsonl", rows), options=OPTS)
    ds = load_dataset(write(tmp_path / f"reviews{suffix}", rows), options=OPTS)
    assert ds.name == f"reviews{suffix}" and ds.label_names == ("five stars", "one star")  # sorted
    assert {s: len(ds[s]) for s in ds.splits} == {"train": 80, "valid": 10, "test": 10}
    assert as_dict(ds) == as_dict(reference)
    assert sum(len(ds[s]) for s in ds.splits) == 100
    assert set(ds["train"].texts) | set(ds["valid"].texts) | set(ds["test"].texts) == {r["body"] for r in rows}


def test_label_names_are_sorted_and_ids_keep_their_values(tmp_path):
    rows = review_rows(60, names=("positive", "negative", "neutral"))
    ds = load_dataset(write(tmp_path / "a.jsonl", rows), options=OPTS)
    assert ds.label_names == ("negative", "neutral", "positive")
    by_text = {r["body"]: r["stars"] for r in rows}
    for s in ds.splits:
        assert [ds.label_names[i] for i in ds[s].labels] == [by_text[t] for t in ds[s].texts]
    ids = [{**r, "stars": ds.label_names.index(r["stars"])} for r in rows]   # the same labels as ids 0..2
    by_id = load_dataset(write(tmp_path / "b.csv", ids), options=OPTS)       # CSV: digit cells are integers
    assert by_id.label_names == ("0", "1", "2") and as_dict(by_id) == as_dict(ds)
    stars = [{**r, "stars": 2 * r["stars"] + 1} for r in ids]                # 1, 3, 5: names by value
    ds5 = load_dataset(write(tmp_path / "c.jsonl", stars), options=OPTS)
    assert ds5.label_names == ("1", "3", "5") and as_dict(ds5) == as_dict(ds)


def test_a_bundle_reads_the_file_with_its_own_names(tmp_path):
    rows = [{**r, "stars": 2 * (r["stars"] == "one star") + 1} for r in review_rows(40)]  # ints 1 and 3
    path = write(tmp_path / "a.jsonl", rows)
    ds = load_dataset(path, options=OPTS)
    got = load_labelled(path, "test", label_names=ds.label_names, options=OPTS)  # 3 -> name "3" -> id 1, not 3
    assert (got.name, got.split, got.num_classes) == ("a.jsonl", "test", 2)
    assert got.rows.texts == ds["test"].texts and got.rows.labels.tolist() == ds["test"].labels.tolist()


def test_options_are_a_frozen_documented_dataclass():
    opts = DataFileOptions()
    assert dataclasses.asdict(opts) == {"text_column": "text", "label_column": "label", "split_column": None,
                                        "valid_fraction": 0.1, "test_fraction": 0.1, "seed": 0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.seed = 1
    for field in dataclasses.fields(DataFileOptions):
        assert field.name in DataFileOptions.__doc__
    for kwargs, match in (({"valid_fraction": 0}, r"--valid-fraction 0 must be a number in \(0, 1\)"),
                          ({"test_fraction": 1.5}, "--test-fraction 1.5"),
                          ({"valid_fraction": 0.5, "test_fraction": 0.5}, "must be below 1"),
                          ({"seed": -1}, "--split-seed -1"), ({"text_column": ""}, "--text-column")):
        with pytest.raises(DataError, match=match):
            DataFileOptions(**kwargs)


# ------------------------------------------------------------------------------------- splits
def test_fractions_are_stratified_seeded_and_reproducible(tmp_path):
    rows = review_rows(97, names=("a", "b", "c"))
    path = write(tmp_path / "a.csv", rows)
    counts = {n: sum(r["stars"] == n for r in rows) for n in ("a", "b", "c")}
    opts = dataclasses.replace(OPTS, valid_fraction=0.2, test_fraction=0.15, seed=7)
    ds = load_dataset(path, options=opts)
    for c, name in enumerate(ds.label_names):
        assert (ds["valid"].labels == c).sum() == int(0.2 * counts[name])
        assert (ds["test"].labels == c).sum() == int(0.15 * counts[name])
    assert as_dict(load_dataset(path, options=opts)) == as_dict(ds)
    other = load_dataset(path, options=dataclasses.replace(opts, seed=8))
    assert other["test"].texts != ds["test"].texts and len(other["test"]) == len(ds["test"])
    order = [r["body"] for r in rows]                       # each split keeps the file's row order
    assert ds["train"].texts == sorted(ds["train"].texts, key=order.index)
    assert load_dataset(path, splits=("test",), options=opts).splits.keys() == {"test"}
    assert min_rows_per_class(0.1, 0.1) == 10 and min_rows_per_class(0.2, 0.15) == 7


def test_split_column_with_aliases(tmp_path):
    rows = review_rows(30)
    names = ["train"] * 14 + ["TRAINING", "validation", "dev", "Val ", "valid"] + ["test", "testing"] * 5 + ["train"]
    rows = [{**r, "part": p} for r, p in zip(rows, names)]
    opts = dataclasses.replace(OPTS, split_column="part")
    ds = load_dataset(write(tmp_path / "a.csv", rows), options=opts)
    assert {s: len(ds[s]) for s in ds.splits} == {"train": 16, "valid": 4, "test": 10}
    assert ds["valid"].texts == [rows[i]["body"] for i in (15, 16, 17, 18)]
    name, got = load_split(tmp_path / "a.csv", "validation", label_names=ds.label_names, options=opts)
    assert name == "a.csv:valid" and got.texts == ds["valid"].texts


# ------------------------------------------------------------------------------------- errors
def test_errors_name_the_file_the_column_or_row_and_the_fix(tmp_path):
    rows = review_rows(40)
    path = write(tmp_path / "r.csv", rows)
    with pytest.raises(DataError, match=r"r.csv: has no column 'text'; its columns are \['body', 'id', 'stars'\]"
                                        r"\. Name the right one with --text-column"):
        load_dataset(path)
    with pytest.raises(DataError, match=r"has no column 'part'.*--split-column"):
        load_dataset(path, options=dataclasses.replace(OPTS, split_column="part"))
    few = rows + [{"id": 99, "body": "rare", "stars": "three stars"}] * 9
    with pytest.raises(DataError, match=r"few.csv: class 'three stars' \(column 'stars'\) has 9 rows; splitting by "
                                        r"--valid-fraction 0.1 / --test-fraction 0.1 needs at least 10 rows per class"):
        load_dataset(write(tmp_path / "few.csv", few), options=OPTS)
    bad = rows[:10] + [{"id": 10, "body": 42, "stars": "one star"}]
    with pytest.raises(DataError, match=r"bad.jsonl:11: column 'body' must hold a string, got int"):
        load_dataset(write(tmp_path / "bad.jsonl", bad), options=OPTS)
    with pytest.raises(DataError, match=r"nulls.parquet: row 3: column 'body' must hold a string, got NoneType"):
        load_dataset(write(tmp_path / "nulls.parquet", [*rows[:2], {**rows[2], "body": None}]), options=OPTS)
    with pytest.raises(DataError, match=r"nolabel.csv: row 2: column 'stars' is empty"):
        load_dataset(write(tmp_path / "nolabel.csv", [rows[0], {**rows[1], "stars": ""}]), options=OPTS)
    with pytest.raises(DataError, match=r"mixed.jsonl: column 'stars' mixes integer ids \(.*mixed.jsonl:2: 1\) and "
                                        r"label names \(.*mixed.jsonl:1: 'one star'\)"):
        load_dataset(write(tmp_path / "mixed.jsonl", [rows[0], {**rows[1], "stars": 1}]), options=OPTS)
    with pytest.raises(DataError, match=r"one.csv: column 'stars' holds one label only \('five stars'\)"):
        load_dataset(write(tmp_path / "one.csv", [r for r in rows if r["stars"] == "five stars"]), options=OPTS)


def test_empty_files_and_unknown_types(tmp_path):
    (tmp_path / "zero.csv").write_text("")
    with pytest.raises(DataError, match=r"zero.csv: the file is empty \(no header line, no rows\)"):
        load_dataset(tmp_path / "zero.csv")
    (tmp_path / "header.csv").write_text("text,label\n")
    with pytest.raises(DataError, match=r"header.csv: the file has no rows"):
        load_dataset(tmp_path / "header.csv")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match=r"blank.jsonl: the file has no rows"):
        load_dataset(tmp_path / "blank.jsonl")
    (tmp_path / "reviews.tsv").write_text("text\tlabel\n")
    with pytest.raises(DataError, match=r"reviews.tsv: unknown labelled file type '.tsv'; name it with one of the "
                                        r"suffixes .jsonl, .ndjson, .jsonl.gz, .csv, .parquet"):
        load_dataset(tmp_path / "reviews.tsv")
    with pytest.raises(DataError, match=r"missing.csv: no such file"):
        load_dataset(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="apply to a .csv / .jsonl / .parquet file"):
        load_dataset("rotten_tomatoes", options=OPTS)


def test_split_column_errors(tmp_path):
    rows = review_rows(20)
    parts = ["train"] * 12 + ["valid"] * 4 + ["test"] * 4
    rows = [{**r, "part": p} for r, p in zip(rows, parts)]
    opts = dataclasses.replace(OPTS, split_column="part")
    odd = rows[:19] + [{**rows[19], "part": "holdout"}]
    with pytest.raises(DataError, match=r"odd.csv: row 20: column 'part' holds 'holdout'; a split is train, valid or "
                                        r"test \(also accepted: training, validation, val, dev, testing\)"):
        load_dataset(write(tmp_path / "odd.csv", odd), options=opts)
    for split in ("test", "valid"):
        only = rows + [{"id": 50, "body": "rare words", "stars": "zero stars", "part": split}] * 2
        with pytest.raises(DataError, match=rf"label 'zero stars' \(column 'stars'\) has rows only outside train "
                                            rf"\(2 in {split}\) by column 'part'"):
            load_dataset(write(tmp_path / f"only_{split}.csv", only), options=opts)
    no_test = [{**r, "part": "train" if r["part"] == "test" else r["part"]} for r in rows]
    with pytest.raises(DataError, match=r"no_test.csv: no row has split 'test' in column 'part'.*drop --split-column"):
        load_dataset(write(tmp_path / "no_test.csv", no_test), options=opts)
    with pytest.raises(DataError, match=r"--split 'dev2' is not a split of a data file"):
        load_labelled(tmp_path / "no_test.csv", "dev2", label_names=("a", "b"), options=opts)


# ---------------------------------------------------------------------- evaluate and calibrate
def tiny_rows(n: int, seed: int = 1) -> list[dict]:
    """Rows whose labels are the tiny bundle's names (class_0 / class_1)."""
    return [{**r, "stars": r["stars"].replace("five stars", "class_1").replace("one star", "class_0")}
            for r in review_rows(n, seed=seed)]


def test_evaluate_a_file_whole_or_its_test_split(tmp_path, tiny_bundle_dir, capsys):
    pytest.importorskip("sklearn")
    from uehead.evaluation.evaluate import evaluate_bundle

    path = write(tmp_path / "reviews.csv", tiny_rows(200))
    whole = evaluate_bundle(tiny_bundle_dir, path, plots=False, verbose=False, text_column="body",
                            label_column="stars")
    assert (whole["data"], whole["split"], whole["n"]) == ("reviews.csv", None, 200)
    assert "scored every row of reviews.csv" in whole["notes"][0]
    test = evaluate_bundle(tiny_bundle_dir, path, plots=False, verbose=False, data_options=OPTS)
    assert (test["data"], test["split"], test["n"]) == ("reviews.csv", "test", 20) and not test["notes"]
    out = tmp_path / "m.json"
    assert main(["evaluate", str(tiny_bundle_dir), "--data", str(path), "--text-column", "body", "--label-column",
                 "stars", "--test-fraction", "0.1", "--json", str(out), "--no-plots"]) == 0
    doc = json.loads(out.read_text())
    assert (doc["split"], doc["n"], doc["accuracy"]) == ("test", 20, test["accuracy"])
    assert "reviews.csv:test, n = 20" in capsys.readouterr().out


def test_calibrate_a_file_on_its_valid_split(tmp_path, tiny_bundle_dir):
    from uehead.calibration import calibrate

    path = write(tmp_path / "reviews.jsonl", tiny_rows(1000))
    result = calibrate(tiny_bundle_dir, path, out=tmp_path / "cal", data_options=OPTS, risk=(0.3,), verbose=False)
    assert result.calibration.data == "reviews.jsonl:valid" and result.calibration.n_rows == 100
    rc = main(["calibrate", str(tiny_bundle_dir), "--data", str(path), "--out", str(tmp_path / "cal2"), "--risk", "0.3",
               "--text-column", "body", "--label-column", "stars", "--valid-fraction", "0.2"])
    assert rc == 0
    from uehead.bundle import load_manifest
    from uehead.calibration.apply import load_calibration

    cal2 = load_calibration(tmp_path / "cal2", load_manifest(tmp_path / "cal2"))
    assert cal2.n_rows == 200 and cal2.data == "reviews.jsonl:valid"


def test_cli_refuses_file_options_for_a_folder_and_says_which(tmp_path, capsys):
    rc = main(["evaluate", str(tmp_path / "b"), "--data", "rotten_tomatoes", "--split-column", "part", "--json",
               str(tmp_path / "m.json")])
    assert rc == 2 and "--split-column apply to a .csv / .jsonl / .parquet data file only" in capsys.readouterr().err
    rc = main(["train", "--model", "minilm", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
               "--text-column", "body", "--valid-fraction", "0.2"])
    assert rc == 2 and "--text-column, --valid-fraction apply to" in capsys.readouterr().err


def test_cli_train_help_names_the_new_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--finetune {lora,none}", "none: --model is an already fine-tuned classifier folder; skip LoRA and "
                   "fit only the heads (default: lora)", "--protocol {uehead,authors}", "authors (the AdUE authors' "
                   "recipe:", "early stopping on valid) (default: uehead)",
                   "--valid-fraction", "--split-seed", "(default: 0.1)"):
        assert phrase in text, phrase


# --------------------------------------------------------------------------------- train, end to end
def test_cli_train_on_a_csv_end_to_end(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from tiny_models import make_tiny_model_dir
    from uehead.checkpoint import read_training
    from uehead.training import api

    model = make_tiny_model_dir(tmp_path / "model", "bert")
    path = write(tmp_path / "reviews.csv", review_rows(300))
    seen = {}
    real = api.train

    def spy(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(api, "train", spy)
    monkeypatch.setattr("uehead.training.train", spy)
    out = tmp_path / "ck"
    assert main(["train", "--data", str(path), "--text-column", "body", "--label-column", "stars", "--model",
                 str(model), "--out", str(out), "--epochs", "1", "--max-length", "32", "--batch-size", "64",
                 "--heads", "adue", "--device", "cpu"]) == 0
    assert seen["data_options"] == OPTS and (seen["finetune"], seen["protocol"]) == ("lora", "uehead")
    info = read_training(out)
    assert info["label_names"] == ["five stars", "one star"]
    assert info["n_rows"] == {"train": 240, "valid": 30, "test": 30}
    assert info["config"]["data_options"] == dataclasses.asdict(OPTS)  # the split is recorded, reproducible
    assert 0 <= info["accuracy"]["test"] <= 1
    # export --data with the training file reads it with the recorded columns and split: its test rows
    # join the tokenizer check (without the recorded options this file has no 'text' column)
    from uehead.export import export_bundle

    manifest = export_bundle(out, tmp_path / "bundle", data=str(path), progress=False)
    assert manifest.reports["default_score"]["used"] in ("sr", "adue")
    with pytest.raises(DataError, match="text"):
        from uehead.datasets import load_dataset

        load_dataset(path, splits=("test",))
