"""The Ray Data engine (uehead.runtime.ray_data) against the single-process batch job.

One local Ray instance for the module (2 logical CPUs, no dashboard, usage stats off, shut down at the
end, with a check that no raylet / gcs_server child survives). Tests that need Ray skip with a reason
when the ``[ray]`` extra is not installed (the torch-free runtime venv has no Ray).

"Equal row for row" means: the same number of rows, in the same order, with the same ids, labels,
label ids and error messages, and the same scores up to float32 rounding. The scores are not bitwise
equal because Ray cuts the file into other batches than the single-process job, and a text's
float32 outputs move in the last bits with the texts it is padded and multiplied with.
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import pytest

from tiny_models import WORDS
from uehead.bundle import BundleError
from uehead.errors import DataError
from uehead.runtime.batch import predict_file
from uehead.runtime.batch_schema import columns_for_bundle, output_columns, select_columns

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

# Ray Data's own context copying warns about its deprecated settings; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated.*:DeprecationWarning:ray")

SCORES = ("uncertainty", "softmax_response", "entropy", "sr", "adue", "alien")
#: The prediction columns of the suite's tiny bundle: heads adue and alien, baselines (tests/conftest.py).
TINY_COLUMNS = select_columns(("adue", "alien"), has_baselines=True)
N_ROWS = 3000


def _ray():
    # Keep every Ray socket on loopback: on Linux Ray otherwise talks to itself over the host's own
    # interface address. This switch (read when ray is imported) makes it use 127.0.0.1 for a local node.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
        import ray.data
    except ImportError:
        pytest.skip("ray[data] is not installed (pip install 'uehead[ray]'); the Ray engine is not tested here")
    return ray


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance for this module, always shut down, leaving no Ray process behind."""
    ray = _ray()
    import psutil

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report over the network
    ctx = ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    assert ctx.address_info["node_ip_address"] == "127.0.0.1", ctx.address_info
    try:
        yield ray
    finally:
        ray.shutdown()
        deadline = time.time() + 20
        while True:
            left = [p for p in psutil.Process().children(recursive=True)
                    if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                    and any(k in " ".join(p.cmdline()) for k in ("raylet", "gcs_server", "ray::"))]
            if not left or time.time() > deadline:
                break
            time.sleep(0.5)
        assert not left, f"Ray processes survived ray.shutdown(): {left}"


@pytest.fixture
def bundle(tiny_bundle_dir):
    """The suite's tiny bundle (tests/conftest.py); the actors load it by this path."""
    assert columns_for_bundle(tiny_bundle_dir) == TINY_COLUMNS
    return tiny_bundle_dir


@pytest.fixture
def model(tiny_model):
    return tiny_model


def records(n: int = N_ROWS) -> list[dict]:
    """Texts of 0-12 words; ids with leading zeros (a reader that parses "00042" as 42 fails);
    bad texts at known places: null, absent key, number, list; numeric strings are valid texts."""
    out = []
    for i in range(n):
        k = (i * 7919) % 13
        rec = {"id": f"{i:05d}", "text": " ".join(WORDS[(i * j + k) % len(WORDS)] for j in range(k))}
        if i % 97 == 5:
            rec["text"] = None
        elif i % 101 == 7:
            del rec["text"]
        elif i % 211 == 11:
            rec["text"] = 12345
        elif i % 307 == 13:
            rec["text"] = ["a", "list"]
        elif i % 50 == 1:
            rec["text"] = str(i)
        out.append(rec)
    return out


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _float(v):
    return v if isinstance(v, float) else float(v)


def assert_same_rows(got: list[dict], want: list[dict], id_name: str) -> None:
    assert len(got) == len(want)
    columns = TINY_COLUMNS
    for i, (g, w) in enumerate(zip(got, want)):
        assert list(g) == list(output_columns(id_name, (), columns)), f"row {i}"
        for c in (id_name, "label", "label_id", "error"):
            assert g[c] == w[c], f"row {i} column {c}: {g[c]!r} != {w[c]!r}"
        if w["error"] not in (None, ""):
            assert all(g[c] in (None, "") for c in columns.names[:-1]), f"row {i}"
            continue
        gp = json.loads(g["probs"]) if isinstance(g["probs"], str) else g["probs"]
        wp = json.loads(w["probs"]) if isinstance(w["probs"], str) else w["probs"]
        assert gp == pytest.approx(wp, abs=1e-5), f"row {i} probs"
        for c in SCORES:
            assert _float(g[c]) == pytest.approx(_float(w[c]), abs=1e-5), f"row {i} {c}"


def error_count(rows: list[dict]) -> int:
    return sum(r["error"] not in (None, "") for r in rows)


# ----------------------------------------------------------------------------- the file job on Ray
def test_jsonl_with_ids_matches_the_single_process_job(tmp_path, ray_local, bundle, model):
    from uehead.runtime.ray_data import predict_file_ray

    src = tmp_path / "in.jsonl"
    lines = [json.dumps(r) for r in records()]
    lines.insert(10, "")  # blank lines are not rows, in both engines
    lines.insert(20, "   ")
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    predict_file(model, src, tmp_path / "local.parquet", id_column="id", progress=False)
    report = predict_file_ray(bundle, src, tmp_path / "ray.parquet", id_column="id", num_workers=2, threads=1,
                              chunk_rows=256, progress=False)
    want, got = read_rows(tmp_path / "local.parquet"), read_rows(tmp_path / "ray.parquet")
    assert_same_rows(got, want, "id")
    assert [r["id"] for r in got] == [f"{i:05d}" for i in range(N_ROWS)]
    assert report.rows == N_ROWS and report.error_rows == error_count(want) > 50
    assert {r["error"].split(":")[0] for r in got if r["error"]} == {"text missing", "text is not a string"}
    assert got[1]["label"] is not None  # the text "1" is a text
    assert pq.read_schema(tmp_path / "ray.parquet") == pq.read_schema(tmp_path / "local.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "local.parquet", "ray.parquet"]


def test_cli_csv_with_row_numbers_matches_the_single_process_job(tmp_path, ray_local, bundle, model):
    from uehead.cli import main

    src = tmp_path / "in.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "note"])
        for i, r in enumerate(records(1500)):
            text = r.get("text")
            if i % 40 == 2:
                text = "a quoted\nmultiline, text"
            w.writerow(["" if text is None else text, "x"])
    predict_file(model, src, tmp_path / "local.csv", progress=False)
    assert main(["predict", str(bundle), "--input", str(src), "--output", str(tmp_path / "ray.csv"),
                 "--engine", "ray", "--num-workers", "2", "--threads", "1"]) == 0
    want, got = read_rows(tmp_path / "local.csv"), read_rows(tmp_path / "ray.csv")
    assert_same_rows(got, want, "row")
    assert [r["row"] for r in got] == [str(i) for i in range(1500)]
    assert error_count(got) > 10


def test_parquet_with_int_ids_to_jsonl_matches_the_single_process_job(tmp_path, ray_local, bundle, model):
    from uehead.runtime.ray_data import predict_file_ray

    recs = [{"key": 10 * i, "text": r.get("text") if isinstance(r.get("text"), str) or r.get("text") is None
             else str(r["text"])} for i, r in enumerate(records(2000))]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(recs), src, row_group_size=300)
    predict_file(model, src, tmp_path / "local.jsonl", id_column="key", progress=False)
    predict_file_ray(bundle, src, tmp_path / "ray.jsonl", id_column="key", num_workers=1, progress=False)
    want, got = read_rows(tmp_path / "local.jsonl"), read_rows(tmp_path / "ray.jsonl")
    assert_same_rows(got, want, "key")
    assert [r["key"] for r in got] == [10 * i for i in range(2000)]


def test_default_id_and_kept_columns_match_the_single_process_job(tmp_path, ray_local, bundle, model):
    from uehead.runtime.ray_data import predict_file_ray

    recs = [dict(r, label=i % 3, note={"n": i} if i % 2 else None) for i, r in enumerate(records(600))]
    recs[7]["text"] = "lone \ud800 surrogate"
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    predict_file(model, src, tmp_path / "local.jsonl", keep_all_columns=True, progress=False)
    predict_file_ray(bundle, src, tmp_path / "ray.jsonl", keep_all_columns=True, num_workers=1, threads=1,
                     chunk_rows=128, progress=False)
    want, got = read_rows(tmp_path / "local.jsonl"), read_rows(tmp_path / "ray.jsonl")
    assert list(got[0])[:3] == ["id", "input_label", "note"]
    assert [r["id"] for r in got] == [f"{i:05d}" for i in range(600)]
    assert [(r["input_label"], r["note"]) for r in got] == [(r["label"], r["note"]) for r in recs]
    assert "surrogate" in got[7]["error"]
    for g, w in zip(got, want):
        assert {k: g[k] for k in ("id", "input_label", "note", "label", "error")} == \
            {k: w[k] for k in ("id", "input_label", "note", "label", "error")}


def test_order_survives_a_first_block_that_finishes_last(tmp_path, ray_local, bundle, model, monkeypatch):
    """The first block sleeps, so the other worker finishes the later ones first; the output must still
    be in input order (preserve_order; the driver also checks the carried row numbers)."""
    from ray import cloudpickle

    from uehead.runtime import ray_data

    class SlowFirstBlock(ray_data.BundlePredictor):
        def __call__(self, batch):
            if batch.column("__row")[0].as_py() == 0:
                time.sleep(3)
            return super().__call__(batch)

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    monkeypatch.setattr(ray_data, "BundlePredictor", SlowFirstBlock)
    try:
        src = tmp_path / "in.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in records(1200)), encoding="utf-8")
        predict_file(model, src, tmp_path / "local.jsonl", id_column="id", progress=False)
        ray_data.predict_file_ray(bundle, src, tmp_path / "ray.jsonl", id_column="id", num_workers=2, threads=1,
                                  chunk_rows=100, progress=False)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert_same_rows(read_rows(tmp_path / "ray.jsonl"), read_rows(tmp_path / "local.jsonl"), "id")


def test_workers_take_onnx_runtime_threads_from_their_cpu_allotment(ray_local, bundle):
    from uehead.runtime.ray_data import BundlePredictor

    @ray_local.remote
    class Probe:
        def __init__(self, path):
            self.p = BundlePredictor(path)

        def threads(self):
            opts = self.p.model.backbone_session.get_session_options()
            return self.p.threads, opts.intra_op_num_threads, os.environ.get("RAYON_NUM_THREADS")

    for cpus in (2, 1):
        probe = Probe.options(num_cpus=cpus).remote(str(bundle))
        assert ray_local.get(probe.threads.remote()) == (cpus, cpus, str(cpus))
        ray_local.kill(probe)


# ----------------------------------------------------------------------------- the callable class alone
def test_callable_class_adds_prediction_columns_to_pandas_and_arrow_batches(bundle, model):
    pd = pytest.importorskip("pandas")
    from uehead.runtime.ray_data import BundlePredictor

    predictor = BundlePredictor(bundle, threads=1)
    texts = ["a great film", None, "bad and boring", 7, ""]
    table = pa.table({"text": pa.array([t if not isinstance(t, int) else None for t in texts]),
                      "gold": [1, 0, 0, 1, 0]})
    out = predictor(table)
    assert isinstance(out, pa.Table)
    assert out.column_names == ["text", "gold", *TINY_COLUMNS.names]
    assert out.column("gold").to_pylist() == [1, 0, 0, 1, 0]
    want = model.predict(["a great film", "bad and boring", ""])
    assert out.column("label_id").to_pylist() == [want.label_ids[0], None, want.label_ids[1], None, want.label_ids[2]]
    assert out.column("error").to_pylist()[1].startswith("text missing")

    frame = pd.DataFrame({"text": pd.Series(texts, dtype=object), "gold": [1, 0, 0, 1, 0]})
    got = predictor(frame)
    assert isinstance(got, pd.DataFrame) and list(got.columns) == ["text", "gold", *TINY_COLUMNS.names]
    assert got["label_id"].tolist()[2] == want.label_ids[1] and got["label_id"].isna().tolist()[1]
    assert got["error"].tolist()[3] == "text is not a string: column 'text' holds a int"
    assert got["probs"].tolist()[0] == pytest.approx(want.probs[0].tolist(), abs=1e-6)
    assert math.isclose(got["uncertainty"].tolist()[4], float(want.uncertainty[2]), abs_tol=1e-6)

    with pytest.raises(ValueError, match="rename or drop"):
        predictor(pa.table({"text": ["x"], "label": ["pos"]}))
    assert predictor(pa.table({"other": ["x"]})).column("error").to_pylist()[0].startswith("text missing")


# ----------------------------------------------------------------------------- errors before any Ray work
def test_bad_inputs_fail_before_ray_starts_with_the_batch_jobs_messages(tmp_path, bundle):
    from uehead.runtime.ray_data import predict_file_ray

    src = tmp_path / "in.jsonl"
    src.write_text('{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="no text column 'text'.*--text-column"):
        predict_file_ray(bundle, src, tmp_path / "out.parquet", progress=False)
    with pytest.raises(BundleError):
        predict_file_ray(tmp_path / "nope", src, tmp_path / "out.parquet", text_column="body", progress=False)
    with pytest.raises(ValueError, match="num_workers"):
        predict_file_ray(bundle, src, tmp_path / "out.parquet", text_column="body", num_workers=0)
    assert not (tmp_path / "out.parquet").exists()


def test_without_ray_the_error_names_the_extra(tmp_path, bundle, monkeypatch):
    from uehead.runtime.ray_data import predict_file_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "x"}\n', encoding="utf-8")
    with pytest.raises(ImportError, match=r"pip install 'uehead\[ray\]'"):
        predict_file_ray(bundle, src, tmp_path / "out.jsonl", progress=False)
    assert not (tmp_path / "out.jsonl").exists()


# ----------------------------------------------------------------------------- the examples
def _example(name: str):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"uehead_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ray_example_scores_a_parquet_folder(tmp_path, ray_local, bundle, model):
    example = _example("ray_map_batches")
    src = tmp_path / "in"
    src.mkdir()
    recs = [{"id": i, "text": None if i % 9 == 4 else " ".join(WORDS[(i * j) % len(WORDS)] for j in range(1, 6)),
             "label": i % 2} for i in range(600)]
    pq.write_table(pa.Table.from_pylist(recs[:350]), src / "a.parquet")
    pq.write_table(pa.Table.from_pylist(recs[350:]), src / "b.parquet")
    example.run(str(bundle), str(src), str(tmp_path / "out"), workers=1, threads=1)
    got = sorted(pq.read_table(tmp_path / "out").to_pylist(), key=lambda r: r["id"])
    assert [r["id"] for r in got] == list(range(600))
    assert [r["gold_label"] for r in got] == [i % 2 for i in range(600)]
    want = model.predict([r["text"] for r in recs if r["text"] is not None])
    ok = [r for r in got if r["error"] is None]
    assert len(ok) == len(want) and all(r["label"] is None for r in got if r["error"] is not None)
    assert [r["label_id"] for r in ok] == want.label_ids.tolist()
    assert [r["uncertainty"] for r in ok] == pytest.approx(want.uncertainty.tolist(), abs=1e-5)


def test_spark_predict_fn_returns_what_predict_batch_udf_requires(bundle, model):
    """Spark itself is not installed here; its make_predict_fn is plain numpy and checked against the
    struct-result contract of pyspark.ml.functions.predict_batch_udf (dict of 1-D arrays, 2-D for
    array fields, one row per input) and against Model.predict."""
    import numpy as np

    example = _example("spark_predict_udf")
    predict = example.make_predict_fn(str(bundle), threads=1)()
    texts = np.array(["a great film", None, "bad and boring"], dtype=object)
    out = predict(texts)
    assert set(out) == set(TINY_COLUMNS.names)
    assert out["probs"].shape == (3, 2) and all(out[c].shape == (3,) for c in out if c != "probs")
    want = model.predict(["a great film", "bad and boring"])
    assert out["label_id"].tolist() == [want.label_ids[0], None, want.label_ids[1]]
    assert out["error"].tolist()[1].startswith("text missing") and np.isnan(out["probs"][1]).all()
    assert out["uncertainty"][[0, 2]].tolist() == pytest.approx(want.uncertainty.tolist(), abs=1e-6)
    one = predict(np.squeeze(np.array(["a great film"], dtype=object)))  # Spark's one-row batch is 0-d
    assert one["probs"].shape == (1, 2) and one["label"].tolist() == [want.labels[0]]


def test_cli_refuses_resume_with_the_ray_engine(tmp_path, capsys):
    from uehead.cli import main

    rc = main(["predict", str(tmp_path / "b"), "--input", str(tmp_path / "in.jsonl"), "--output",
               str(tmp_path / "out.parquet"), "--engine", "ray", "--resume"])
    assert rc == 2
    assert "--resume works with --engine local only" in capsys.readouterr().err
    assert not (tmp_path / "out.parquet").exists()
