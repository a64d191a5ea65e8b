"""uehead.datasets.read_labelled_file / load_split: JSONL, CSV, Parquet files of labelled texts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from uehead.datasets import DataError, load_split, read_labelled_file

NAMES = ("neg", "pos")


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_names_and_ids(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", [{"text": "x", "label": "pos"}, {"text": "y", "label": 0},
                                        {"sentence": "z", "text": "", "label": 1}])
    split = read_labelled_file(path, label_names=NAMES)
    assert split.texts == ["x", "y", ""] and split.labels.tolist() == [1, 0, 1]
    assert split.labels.dtype == np.int64


def test_custom_columns_and_csv_digits(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("sentence,y\n\"good, really\",1\nbad,neg\nmeh, 0\n", encoding="utf-8")
    split = read_labelled_file(path, "sentence", "y", NAMES)
    assert split.texts == ["good, really", "bad", "meh"] and split.labels.tolist() == [1, 0, 0]
    path.write_text("sentence,y\na,1\nb,0\nc, 1\n", encoding="utf-8")
    digit_names = ("1", "0")                       # a label name made of digits wins over the id reading
    assert read_labelled_file(path, "sentence", "y", digit_names).labels.tolist() == [0, 1, 1]


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a", "b"], "label": [1, 0]}), tmp_path / "a.parquet")
    assert read_labelled_file(tmp_path / "a.parquet", label_names=NAMES).labels.tolist() == [1, 0]
    pq.write_table(pa.table({"text": ["a", None], "label": ["pos", "neg"]}), tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"b.parquet: row 2: column 'text' must hold a string, got NoneType"):
        read_labelled_file(tmp_path / "b.parquet", label_names=NAMES)
    with pytest.raises(DataError, match=r"has no column 'label'; its columns are \['label_id', 'text'\]"):
        pq.write_table(pa.table({"text": ["a"], "label_id": [0]}), tmp_path / "c.parquet")
        read_labelled_file(tmp_path / "c.parquet", label_names=NAMES)


@pytest.mark.parametrize("rows,match", [
    ([{"text": "a", "label": 0}, {"text": "b"}], r"a.jsonl:2: has no column 'label'; its columns are \['text'\]"),
    ([{"text": 3, "label": 0}], r"a.jsonl:1: column 'text' must hold a string, got int"),
    ([{"text": "a", "label": "meh"}], r"unknown label name 'meh'; the known labels are \['neg', 'pos'\]"),
    ([{"text": "a", "label": 2}], r"label id 2 is out of range \[0, 2\)"),
    ([{"text": "a", "label": -1}], r"label id -1 is out of range"),
    ([{"text": "a", "label": True}], r"label True must be a label name or an integer id"),
    ([{"text": "a", "label": 0.5}], r"label 0.5 must be a label name or an integer id"),
    ([], r"the file has no rows"),
])
def test_bad_rows_name_the_row(tmp_path, rows, match):
    with pytest.raises(DataError, match=match):
        read_labelled_file(jsonl(tmp_path / "a.jsonl", rows), label_names=NAMES)


def test_bad_files(tmp_path):
    (tmp_path / "a.csv").write_text("sentence,label\nx,0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"has no column 'text'; its columns are \['label', 'sentence'\]"):
        read_labelled_file(tmp_path / "a.csv", label_names=NAMES)
    with pytest.raises(DataError, match="unknown labelled file type"):
        read_labelled_file(tmp_path / "a.txt", label_names=NAMES)
    with pytest.raises(DataError, match="no such file"):
        read_labelled_file(tmp_path / "missing.jsonl", label_names=NAMES)
    (tmp_path / "b.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match="b.jsonl:1: not valid JSON"):
        read_labelled_file(tmp_path / "b.jsonl", label_names=NAMES)
    (tmp_path / "c.jsonl").write_bytes(b'{"text": "\xff", "label": 0}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        read_labelled_file(tmp_path / "c.jsonl", label_names=NAMES)
    with pytest.raises(DataError, match="needs the label names"):
        read_labelled_file(tmp_path / "a.csv", label_names=())


def test_load_split_of_a_dataset_folder(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "labels.json").write_text(json.dumps(["a", "b", "c"]))
    jsonl(root / "valid.jsonl", [{"text": "x", "label": 2}])
    name, rows = load_split(root, "valid", label_names=("a", "b", "c"))
    assert name == "ds:valid" and rows.labels.tolist() == [2]
    with pytest.raises(DataError, match="has 3 classes .* but the model has 2"):
        load_split(root, "valid", label_names=NAMES)
    with pytest.raises(DataError, match="missing split 'test'"):
        load_split(root, "test")
    with pytest.raises(DataError, match="has no split 'dev'"):
        load_split("rotten_tomatoes", "dev")
    name, rows = load_split(jsonl(tmp_path / "f.jsonl", [{"text": "x", "label": "pos"}]), label_names=NAMES)
    assert name == "f.jsonl" and rows.labels.tolist() == [1]
