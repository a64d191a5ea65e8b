"""Inputs a careful user can feed the runtime and its batch jobs, and what each must give.

Lone surrogates, tables passed as text lists, resumes against another bundle or another input,
malformed CSV quoting, an output path that is a folder. Each case is a regression test: it failed
before the runtime handled it.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from batch_files import FakeModel, make_records, read_output, write_input
from tiny_bundle import make_tiny_bundle
from uehead import runtime
from uehead.errors import DataError
from uehead.runtime.batch import predict_file

SURROGATE = "bad \udc00 x"


class FailingModel:
    """A real model whose ``fail_on_call``-th predict call raises (a crash mid-job)."""

    def __init__(self, model, fail_on_call: int):
        self.model, self.fail_on_call, self.calls = model, fail_on_call, 0
        self.path, self.manifest, self.labels = model.path, model.manifest, model.labels

    def predict(self, texts, *, batch_size: int = 32):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("injected failure")
        return self.model.predict(texts, batch_size=batch_size)


# ----------------------------------------------------------------------------- lone surrogates
def test_predict_names_the_index_of_a_lone_surrogate(tiny_model):
    with pytest.raises(ValueError, match=r"texts\[1\].*surrogate U\+DC00.*character 4"):
        tiny_model.predict(["ok", SURROGATE])
    stream = tiny_model.iter_predict(["good"] * 5 + ["\ud800"], chunk_size=2)
    with pytest.raises(ValueError, match=r"texts\[5\].*surrogate U\+D800"):
        list(stream)
    assert tiny_model.predict(["fine \U0001F3AC ok"]).labels  # a real astral character is fine


@pytest.mark.parametrize("out_fmt", ["jsonl", "csv", "parquet"])
def test_batch_job_turns_a_lone_surrogate_into_an_error_row(tmp_path, tiny_model, out_fmt):
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": i, "text": "good film"}) for i in range(7)]
    lines[5] = '{"id": 5, "text": "bad \\ud800 x"}'  # a JSON escape of a lone surrogate, in a later chunk
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    dst = tmp_path / f"out.{out_fmt}"
    report = predict_file(tiny_model, src, dst, id_column="id", chunk_rows=2, progress=False)
    assert report.rows == 7 and report.error_rows == 1
    got = read_output(dst)
    assert [str(r["id"]) for r in got] == [str(i) for i in range(7)]
    assert "surrogate U+D800" in got[5]["error"] and got[5]["label"] is None
    assert all(r["error"] is None for i, r in enumerate(got) if i != 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", dst.name]


def test_ids_with_lone_surrogates_are_written_in_every_format(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a\\udc00", "text": "good"}\n{"id": "b", "text": "bad"}\n', encoding="utf-8")
    predict_file(FakeModel(), src, tmp_path / "out.jsonl", id_column="id", progress=False)
    assert [r["id"] for r in read_output(tmp_path / "out.jsonl")] == ["a\udc00", "b"]  # JSON keeps it exactly
    for fmt in ("csv", "parquet"):
        predict_file(FakeModel(), src, tmp_path / f"out.{fmt}", id_column="id", progress=False)
        assert [r["id"] for r in read_output(tmp_path / f"out.{fmt}")] == ["a\ufffd", "b"]


def test_jsonl_output_keeps_one_line_per_row_whatever_line_breaks_the_values_hold(tmp_path):
    src = tmp_path / "in.jsonl"
    ids = ["a\x85b", "c\u2028d", "e\u2029f", "g\rh"]
    src.write_text("".join(json.dumps({"id": i, "text": "good"}) + "\n" for i in ids), encoding="utf-8")
    predict_file(FakeModel(), src, tmp_path / "out.jsonl", progress=False)
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()  # splits on all of those
    assert [json.loads(line)["id"] for line in lines] == ids


def test_csv_output_quotes_carriage_returns_so_rows_read_back_one_to_one(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "0\\r", "text": "good"}\n{"id": "a\\rb", "text": null}\n{"id": "c", "text": "bad"}\n',
                   encoding="utf-8")
    predict_file(FakeModel(), src, tmp_path / "out.csv", progress=False)
    assert [r["id"] for r in read_output(tmp_path / "out.csv")] == ["0\r", "a\rb", "c"]


@pytest.mark.parametrize("out_fmt", ["jsonl", "csv", "parquet"])
def test_passed_through_column_names_with_lone_surrogates_are_written(tmp_path, out_fmt):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "good", "n\\ud800": 1}\n{"text": "bad", "n\\ud800": 2}\n', encoding="utf-8")
    predict_file(FakeModel(), src, tmp_path / f"out.{out_fmt}", keep_all_columns=True, progress=False)
    got = read_output(tmp_path / f"out.{out_fmt}")
    assert [str(r["n\ufffd"]) for r in got] == ["1", "2"]


def test_cli_predict_and_resume_finish_despite_a_surrogate_row(tmp_path, tiny_bundle_dir, tiny_model):
    from uehead.cli import main

    records = make_records(60)
    records[45]["text"] = "x \ud800 y"
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    dst = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="injected"):
        predict_file(FailingModel(tiny_model, 3), src, dst, id_column="id", chunk_rows=10, progress=False)
    assert main(["predict", str(tiny_bundle_dir), "--input", str(src), "--output", str(dst), "--id-column", "id",
                 "--threads", "1", "--resume"]) == 0
    got = read_output(dst)
    assert len(got) == 60 and "surrogate" in got[45]["error"]


def test_cli_evaluate_names_the_row_of_a_lone_surrogate(tmp_path, tiny_bundle_dir, capsys):
    from uehead.cli import main

    data = tmp_path / "data"
    data.mkdir()
    (data / "labels.json").write_text('["class_0", "class_1"]', encoding="utf-8")
    (data / "test.jsonl").write_text('{"text": "good", "label": 0}\n{"text": "\\ud800", "label": 1}\n',
                                     encoding="utf-8")
    rc = main(["evaluate", str(tiny_bundle_dir), "--data", str(data), "--json", str(tmp_path / "e.json"),
               "--no-plots"])
    assert rc == 2
    assert "texts[1]" in capsys.readouterr().err


# ----------------------------------------------------------------------------- tables
def test_predict_refuses_a_dataframe_and_says_to_pass_the_column(tiny_model):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": ["good", "bad", "fine"], "id": [1, 2, 3]})
    with pytest.raises(TypeError, match=r"DataFrame.*column.*\['text'\]"):
        tiny_model.predict(frame)
    with pytest.raises(TypeError, match="DataFrame"):
        next(tiny_model.iter_predict(frame))
    assert len(tiny_model.predict(frame["text"])) == 3  # the column itself is a sequence of str


# ----------------------------------------------------------------------------- resume identity
def test_resume_refuses_an_output_written_by_another_bundle(tmp_path, tiny_model):
    src = write_input(tmp_path / "in.jsonl", make_records(60))
    dst = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="injected"):
        predict_file(FailingModel(tiny_model, 3), src, dst, id_column="id", chunk_rows=10, progress=False)
    other = runtime.load(make_tiny_bundle(tmp_path / "other", seed=7), threads=1, warmup=False)
    with pytest.raises(DataError, match=r"different job.*bundle"):
        predict_file(other, src, dst, id_column="id", chunk_rows=10, resume=True, progress=False)
    report = predict_file(tiny_model, src, dst, id_column="id", chunk_rows=10, resume=True, progress=False)
    assert report.resumed_from == 20 and report.rows == 60


def test_resume_refuses_another_input_of_the_same_size_and_mtime(tmp_path):
    records = make_records(900)
    src = write_input(tmp_path / "in.jsonl", records)
    dst = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="injected"):
        predict_file(FakeModel(fail_on_call=3), src, dst, id_column="id", chunk_rows=100, progress=False)
    st = src.stat()
    swapped = [dict(r, text=records[-1 - i]["text"]) for i, r in enumerate(records)]  # same bytes, other order
    write_input(src, swapped)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert src.stat().st_size == st.st_size and src.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(DataError, match=r"first 200 rows differ"):
        predict_file(FakeModel(), src, dst, id_column="id", chunk_rows=100, resume=True, progress=False)
    write_input(src, records)  # the same content again, newer mtime: resuming is safe
    report = predict_file(FakeModel(), src, dst, id_column="id", chunk_rows=100, resume=True, progress=False)
    assert report.resumed_from == 200
    reference = tmp_path / "reference.jsonl"
    predict_file(FakeModel(), src, reference, id_column="id", chunk_rows=100, progress=False)
    assert dst.read_bytes() == reference.read_bytes()


# ----------------------------------------------------------------------------- malformed inputs, bad outputs
def test_csv_with_an_unterminated_quote_fails_naming_the_line(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text('id,text\n1,"unterminated\n2,b\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"in\.csv, line 2: malformed CSV.*quote"):
        predict_file(FakeModel(), src, tmp_path / "out.jsonl", id_column="id", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_an_output_path_that_is_a_folder_fails_before_any_work(tmp_path):
    src = write_input(tmp_path / "in.jsonl", make_records(30))
    dst = tmp_path / "out.jsonl"
    dst.mkdir()
    model = FakeModel()
    with pytest.raises(DataError, match=r"out\.jsonl.*is a folder"):
        predict_file(model, src, dst, progress=False)
    assert model.calls == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]
    assert not any(dst.iterdir())


def test_numpy_text_arrays_still_work(tiny_model):
    texts = np.array(["good", "bad"], dtype=object)
    assert len(tiny_model.predict(texts)) == 2


# ----------------------------------------------------------------------------- the manifest's own checksum
def test_load_and_verify_check_an_expected_manifest_sha256(tmp_path):
    from tiny_bundle import edit_manifest
    from uehead.bundle import ChecksumError
    from uehead.manifest_checksum import manifest_sha256

    bundle = make_tiny_bundle(tmp_path / "b")
    digest = manifest_sha256(bundle)
    assert runtime.load(bundle, expected_sha256=digest, warmup=False).labels == ("class_0", "class_1")
    assert runtime.verify(bundle, expected_sha256=digest.upper())["manifest_sha256"] == digest
    edit_manifest(bundle, lambda d: d.update(labels=d["labels"][::-1]))  # loads fine, inverts every label
    for check in (lambda: runtime.load(bundle, expected_sha256=digest), lambda: runtime.verify(bundle, expected_sha256=digest)):
        with pytest.raises(ChecksumError, match=r"manifest\.json.*differs from the expected sha256") as info:
            check()
        assert info.value.fix
    with pytest.raises(ValueError, match="not a sha256 hex digest"):
        runtime.load(bundle, expected_sha256="abc")


def test_verify_checks_a_checksum_file_next_to_the_manifest_and_one_kept_elsewhere(tmp_path, capsys):
    from tiny_bundle import edit_manifest
    from uehead.cli import main
    from uehead.manifest_checksum import CHECKSUM_FILE, write_checksum_file

    bundle = make_tiny_bundle(tmp_path / "b")
    pinned = tmp_path / "pinned.sha256"
    pinned.write_text(write_checksum_file(bundle).read_text(), encoding="utf-8")
    assert main(["verify", str(bundle), "--expected-sha256", str(pinned)]) == 0
    assert (bundle / CHECKSUM_FILE).read_text().endswith("  manifest.json\n")
    edit_manifest(bundle, lambda d: d.update(labels=d["labels"][::-1]))
    assert main(["verify", str(bundle)]) == 2
    assert "differs from manifest.json.sha256" in capsys.readouterr().err
    (bundle / CHECKSUM_FILE).unlink()
    assert main(["verify", str(bundle), "--expected-sha256", str(pinned)]) == 2
    assert "differs from the expected sha256" in capsys.readouterr().err
    (bundle / CHECKSUM_FILE).write_text("not a digest\n", encoding="utf-8")
    assert main(["verify", str(bundle)]) == 2
    assert "64 hex digits" in capsys.readouterr().err
