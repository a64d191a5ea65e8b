"""Helpers of the batch-job tests: a per-text deterministic fake model (hash rule, failure and delay
injection), input writers and output readers for every format, and the rows a job must write."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest

from uehead.runtime import Predictions
from uehead.runtime.batch_schema import PREDICTION_COLUMNS, output_columns

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

FORMATS = ("jsonl", "csv", "parquet")


# ----------------------------------------------------------------------------- a fake model
class FakeModel:
    """Deterministic per text; ``fail_on_call`` raises on that predict call; ``delay`` sleeps per call."""

    labels = ("neg", "pos")

    def __init__(self, fail_on_call: int | None = None, delay: float = 0.0):
        self.fail_on_call, self.delay, self.calls = fail_on_call, delay, 0

    def predict(self, texts, *, batch_size: int = 32) -> Predictions:
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise RuntimeError(f"injected failure on predict call {self.calls}")
        if self.delay:
            time.sleep(self.delay)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] is {type(t).__name__}")
        x = np.array([(sum(map(ord, t)) % 89 + 1) / 91 for t in texts], dtype=np.float32)
        probs = np.stack([1 - x, x], axis=1).astype(np.float32).reshape(len(texts), 2)
        ids = probs.argmax(axis=1).astype(np.int64)
        sr = (1 - probs.max(axis=1)).astype(np.float32)
        ent = (-(probs * np.log(probs)).sum(axis=1)).astype(np.float32)
        return Predictions([self.labels[i] for i in ids], ids, probs, (sr * 0.5).astype(np.float32), "fake", sr, ent)


def expected_row(model, text, id_name, id_value) -> dict:
    """One output row computed independently of uehead.runtime.batch (one predict call per text)."""
    row = {id_name: id_value}
    if not isinstance(text, str):
        row.update({c: None for c in PREDICTION_COLUMNS[:-1]})
        row["error"] = "not a string" if text is not None else "missing"
        return row
    p = FakeModel().predict([text]) if isinstance(model, FakeModel) else model.predict([text])
    row.update(label=p.labels[0], label_id=int(p.label_ids[0]), probs=[float(v) for v in p.probs[0]],
               uncertainty=float(p.uncertainty[0]), softmax_response=float(p.softmax_response[0]),
               entropy=float(p.entropy[0]), error=None)
    return row


def assert_rows_match(got: list[dict], expected: list[dict], id_name: str) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert list(g) == list(output_columns(id_name))
        assert g[id_name] == e[id_name]
        if e["error"] is None:
            assert g == e
        else:
            assert g["error"] and (e["error"] in g["error"])
            assert all(g[c] is None for c in PREDICTION_COLUMNS[:-1])


# ----------------------------------------------------------------------------- file helpers
def write_input(path: Path, records: list[dict], row_group_size: int | None = None) -> Path:
    fmt = path.suffix.lstrip(".")
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif fmt == "csv":
        keys = list(dict.fromkeys(k for r in records for k in r)) or ["text"]
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(keys)
            w.writerows([["" if r.get(k) is None else r[k] for k in keys] for r in records])
    else:
        table = pa.Table.from_pylist(records) if records else pa.table({"text": pa.array([], pa.string())})
        pq.write_table(table, path, row_group_size=row_group_size)
    return path


def read_output(path: Path) -> list[dict]:
    fmt = path.suffix.lstrip(".")
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # huge texts and ids
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    conv = {"label_id": int, "probs": json.loads, "uncertainty": float, "softmax_response": float,
            "entropy": float}
    out = []
    for r in rows:
        r = {k: (None if v == "" else v) for k, v in r.items()}
        out.append({k: (conv[k](v) if k in conv and v is not None else v) for k, v in r.items()})
    return out


def make_records(n: int) -> list[dict]:
    words = ["good", "bad", "dull", "fine", "the film", "was", "not", "quite", "charming", "🎬 ünïcode"]
    recs = []
    for i in range(n):
        text = None if i % 11 == 3 else " ".join(words[(i * k) % len(words)] for k in range(1, 2 + i % 5))
        recs.append({"id": f"id-{i}", "text": text, "other": i})
    return recs


def expected_for(model, records, id_column):
    id_name = id_column or "row"
    return [expected_row(model, r.get("text"), id_name, r[id_column] if id_column else i)
            for i, r in enumerate(records)]
