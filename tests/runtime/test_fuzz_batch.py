"""Property tests of batch jobs over random files: every format, random values (lone surrogates,
control characters, huge texts, wrong types), random corruptions of the bytes, random chunk sizes
and random kill points. The invariants are :mod:`fuzz_batch_checks`'s: a job completes or raises a
DataError, never loses, repeats or reorders a row, and a killed job resumed equals an uninterrupted
one, never mixing two inputs or two models."""
from __future__ import annotations

import csv
import io
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_batch_checks import KILL_MODES, Kill, check_batch_job
from uehead.runtime.inputs import replace_surrogates

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

ODD_CHARACTERS = ["\ud800", "\udfff", "\x00", "\x1c", "\x7f", "\u2028", "\r", "\n", "\t", '"', ",", "\ufeff",
                  "\u3000", "\u4e2d", "\U0001F3AC", "\\"]
_chars = st.one_of(st.characters(codec="utf-8"), st.sampled_from(ODD_CHARACTERS))
_texts = st.one_of(
    st.text(alphabet=_chars, max_size=40),
    st.sampled_from(["good film", "bad", "", " ", "dull"]),
    st.tuples(st.sampled_from([" ", "good ", "x", "\u4e2d", "\n\t"]), st.integers(1, 60_000)).map(lambda p: p[0] * p[1]),
)
_values = st.one_of(st.none(), _texts, st.integers(-2**70, 2**70), st.floats(), st.booleans(),
                    st.lists(st.integers(0, 9), max_size=2))
_records = st.lists(st.fixed_dictionaries({"text": st.one_of(_texts, _values)},
                                          optional={"id": _values, "extra": _values}), max_size=30)
_SNIPPETS = [b'"', b"\n", b"\r\n", b"\x00", b"\xff\xfe", b"{", b"}", b",", b'\\ud800', b"\xed\xa0\x80", b"[" * 3000]
_corruption = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, len(_SNIPPETS) - 1)),
)


def _jsonl(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode("ascii")  # ASCII JSON escapes surrogates


def _csv(records) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = list(dict.fromkeys(k for r in records for k in r)) or ["text"]
    w.writerow(keys)
    w.writerows([["" if r.get(k) is None else r[k] for k in keys] for r in records])
    return buf.getvalue().encode("utf-8", "replace")  # a lone surrogate cannot be UTF-8: "?" instead


def _parquet(records) -> bytes:
    def cell(v):
        return None if v is None else replace_surrogates(v if isinstance(v, str) else json.dumps(v))
    keys = list(dict.fromkeys(k for r in records for k in r)) or ["text"]
    table = pa.table({k: pa.array([cell(r.get(k)) for r in records], pa.string()) for k in keys})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=7)
    return sink.getvalue()


WRITERS = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}
#: Examples per input format; raise it for a longer campaign (the suite keeps it small).
EXAMPLES = int(os.environ.get("UEHEAD_FUZZ_EXAMPLES", "40"))


def _corrupt(data: bytes, ops) -> bytes:
    out = bytearray(data)
    for op, at, arg in ops:
        at = at % (len(out) + 1)
        if op == "flip" and at < len(out):
            out[at] ^= arg
        elif op == "truncate":
            del out[at:]
        elif op == "insert":
            out[at:at] = _SNIPPETS[arg]
    return bytes(out)


@pytest.mark.parametrize("in_fmt", list(WRITERS))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(records=_records, corruptions=st.lists(_corruption, max_size=2), out_fmt=st.sampled_from(list(WRITERS)),
       chunk_rows=st.integers(1, 7), kill=st.builds(Kill, st.sampled_from(KILL_MODES), st.integers(1, 5)),
       keep_all_columns=st.booleans())
def test_batch_jobs_keep_their_invariants_on_random_files(tmp_path_factory, in_fmt, records, corruptions, out_fmt,
                                                          chunk_rows, kill, keep_all_columns):
    work = tmp_path_factory.mktemp("fuzz")
    src = work / f"in.{in_fmt}"
    data = WRITERS[in_fmt](records)
    src.write_bytes(_corrupt(data, corruptions))
    outcome = check_batch_job(src, work / "out", out_fmt=out_fmt, chunk_rows=chunk_rows, kill=kill,
                              keep_all_columns=keep_all_columns)
    # Intact files must go through, except where a format cannot hold the values: the csv module
    # refuses NUL characters, and Parquet needs one type per column (JSON values may mix types).
    intact_ok = {"parquet": True, "jsonl": out_fmt != "parquet", "csv": b"\x00" not in data}[in_fmt]
    if not corruptions and intact_ok:
        assert outcome == "ok"
