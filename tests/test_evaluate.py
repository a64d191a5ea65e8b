"""uehead.evaluation.evaluate / uehead.evaluation.plots / `uehead evaluate`: torch-free, on a fake model and on a tiny bundle."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fake_model import FakeModel
from tiny_models import make_tiny_dataset
from uehead import cli
from uehead.evaluation import metrics
from uehead.evaluation import evaluate as ev
from uehead.datasets import DataError, load_dataset
from uehead.evaluation.metrics import UndefinedMetricWarning

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny", sizes=(20, 30, 80), noise=0.15)


def test_evaluate_fake_model_writes_json_and_plots(data_dir, tmp_path, capsys):
    model = FakeModel()
    out = tmp_path / "res" / "eval.json"
    rec = ev.evaluate_bundle(model, data_dir, json_out=out, batch_size=7)
    assert model.calls == [{"n": 80, "batch_size": 7, "distances": True}]

    # metrics equal a direct computation on the same predictions
    test = load_dataset(data_dir)["test"]
    pred = model.predict(test.texts, distances=True)
    errors = pred.label_ids != test.labels
    assert 0 < errors.sum() < errors.size
    expect = metrics.summarize(pred.scores, errors)
    assert rec["metrics"] == expect
    assert rec["accuracy"] == pytest.approx(1 - errors.mean()) and rec["num_errors"] == int(errors.sum())
    assert set(rec["metrics"]) == {"sr", "entropy", "adue", "alien", "md", "rmd"}
    assert "ece" in rec["metrics"]["adue"] and "ece" not in rec["metrics"]["md"]

    doc = json.loads(out.read_text())
    for key in ("bundle", "data", "split", "n", "accuracy", "metrics", "versions", "directions", "plots"):
        assert key in doc
    assert doc["split"] == "test" and doc["n"] == 80 and doc["data"] == str(data_dir)
    assert doc["versions"]["numpy"] == np.__version__ and doc["directions"]["aurc"] == "lower"
    assert doc["metrics"]["sr"]["roc_auc"] == pytest.approx(expect["sr"]["roc_auc"])

    paths = ev.plot_paths(out)
    assert doc["plots"] == {k: str(v) for k, v in paths.items()}
    for p in paths.values():
        assert p.parent == out.parent and p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 5000

    printed = capsys.readouterr().out
    assert "accuracy" in printed and "ROC-AUC" in printed and f"{expect['alien']['roc_auc']:.4f}" in printed


def test_max_rows_split_and_no_plots(data_dir, tmp_path):
    model = FakeModel()
    out = tmp_path / "e.json"
    rec = ev.evaluate_bundle(model, data_dir, split="valid", json_out=out, plots=False, max_rows=25,
                             verbose=False)
    assert rec["n"] == 25 and rec["split"] == "valid" and model.calls[0]["n"] == 25
    assert rec["plots"] == {} and sorted(p.name for p in tmp_path.iterdir()) == ["e.json"]
    rec = ev.evaluate_bundle(model, data_dir, json_out=None, verbose=False)  # writes nothing
    assert rec["n"] == 80 and sorted(p.name for p in tmp_path.iterdir()) == ["e.json"]


def test_no_errors_gives_null_and_warning_not_a_crash(data_dir, tmp_path):
    labels = load_dataset(data_dir)["test"].labels
    out = tmp_path / "perfect.json"
    with pytest.warns(UndefinedMetricWarning, match="no errors"):
        rec = ev.evaluate_bundle(FakeModel(perfect_labels=labels), data_dir, json_out=out, verbose=False)
    assert rec["accuracy"] == 1.0 and math.isnan(rec["metrics"]["sr"]["roc_auc"])
    doc = json.loads(out.read_text())  # strict JSON: NaN written as null
    assert doc["metrics"]["sr"]["roc_auc"] is None and doc["metrics"]["sr"]["prr"] is None
    assert doc["metrics"]["sr"]["aurc"] == 0.0
    assert all(Path(p).stat().st_size > 0 for p in doc["plots"].values())


def test_bad_inputs_fail_clearly(data_dir, tmp_path):
    with pytest.raises(DataError, match="3 labels"):
        ev.evaluate_bundle(FakeModel(num_classes=2), make_tiny_dataset(tmp_path / "three", num_classes=3,
                                                                      sizes=(5, 5, 9)), verbose=False)
    with pytest.raises(DataError, match="split 'dev'"):
        ev.evaluate_bundle(FakeModel(), data_dir, split="dev", verbose=False)
    with pytest.raises(DataError, match="no split 'dev'"):
        ev.evaluate_bundle(FakeModel(), "rotten_tomatoes", split="dev", verbose=False)
    with pytest.raises(ValueError, match="max_rows"):
        ev.evaluate_bundle(FakeModel(), data_dir, max_rows=0, verbose=False)


def test_missing_matplotlib_fails_before_predicting(data_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    model = FakeModel()
    with pytest.raises(ImportError, match=r"uehead\[eval\].*--no-plots"):
        ev.evaluate_bundle(model, data_dir, json_out=tmp_path / "e.json", verbose=False)
    assert model.calls == []


def test_cli_evaluate_calls_evaluate_bundle(data_dir, tmp_path, monkeypatch, capsys):
    model = FakeModel()
    seen = []
    monkeypatch.setattr(ev, "_load_model", lambda path: seen.append(path) or model)
    out = tmp_path / "cli.json"
    code = cli.main(["evaluate", str(tmp_path / "bundle"), "--data", str(data_dir), "--json", str(out),
                     "--max-rows", "40", "--no-plots"])
    assert code == 0 and seen == [tmp_path / "bundle"]
    doc = json.loads(out.read_text())
    assert doc["n"] == 40 and doc["bundle"] == str(tmp_path / "bundle") and doc["plots"] == {}
    assert "ROC-AUC" in capsys.readouterr().out
    assert cli.main(["evaluate", "b", "--data", str(tmp_path / "nope"), "--json", str(out)]) == 2
    assert "not a dataset folder" in capsys.readouterr().err


def test_plots_write_png_files(tmp_path):
    rng = np.random.default_rng(0)
    e = rng.random(60) < 0.3
    scores = {"sr": np.clip(rng.random(60) * 0.5 + 0.3 * e, 0, 1), "adue": rng.random(60) - 0.01}
    from uehead.evaluation import plots

    r = plots.reliability_diagram(scores, e, tmp_path / "sub" / "rel.png", title="t")
    c = plots.risk_coverage_plot({**scores, "md": rng.random(60) * 40}, e, tmp_path / "rc.png")
    for p in (r, c):
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 5000
    with pytest.raises(ValueError, match="at least one score"):
        plots.risk_coverage_plot({}, e, tmp_path / "x.png")


# ------------------------------------------------------------------------ end to end, real runtime
def _tiny_bundle(tmp_path):
    pytest.importorskip("uehead.runtime.model", reason="the runtime (runtime/model.py) is not written yet")
    tiny_bundle = pytest.importorskip("tiny_bundle")
    return tiny_bundle.make_tiny_bundle(tmp_path / "bundle")


def test_evaluate_tiny_bundle_end_to_end_torch_free(data_dir, tmp_path):
    """`uehead evaluate` in a fresh interpreter where torch & co. cannot be imported."""
    bundle = _tiny_bundle(tmp_path)
    out = tmp_path / "out" / "tiny.json"
    code = ("import sys\n"
            "for m in ('torch', 'transformers', 'peft', 'optimum'): sys.modules[m] = None\n"
            "from uehead.cli import main\n"
            f"sys.exit(main(['evaluate', {str(bundle)!r}, '--data', {str(data_dir)!r}, '--json', {str(out)!r}]))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["n"] == 80 and doc["bundle"] == str(bundle)
    assert {"sr", "entropy", "adue", "alien", "md", "rmd"} <= set(doc["metrics"])
    assert doc["probability_scores"] == [s for s in doc["metrics"] if s in metrics.PROBABILITY_SCORES]
    for p in doc["plots"].values():
        assert Path(p).read_bytes()[:8] == PNG_MAGIC
    assert "ROC-AUC" in proc.stdout and doc["notes"] == [] and doc["default_score"] == "adue"


def test_bundle_without_baselines_says_why_md_is_missing(data_dir, tmp_path):
    pytest.importorskip("uehead.runtime.model", reason="the runtime (runtime/model.py) is not written yet")
    from tiny_bundle import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "nb", with_baselines=False, heads=("alien",), default_kind="alien")
    rec = ev.evaluate_bundle(bundle, data_dir, plots=False, verbose=False, max_rows=30)
    assert set(rec["metrics"]) == {"sr", "entropy", "alien"} and "baselines.npz" in rec["notes"][0]


def test_evaluate_tiny_bundle_matches_direct_metrics(data_dir, tmp_path):
    from uehead.runtime import load

    bundle = _tiny_bundle(tmp_path)
    test = load_dataset(data_dir)["test"]
    pred = load(bundle).predict(test.texts, distances=True)
    errors = np.asarray(pred.label_ids) != test.labels
    rec = ev.evaluate_bundle(bundle, data_dir, plots=False, verbose=False)
    assert rec["accuracy"] == pytest.approx(1 - errors.mean())
    for name, u in pred.scores.items():
        assert rec["metrics"][name]["aurc"] == pytest.approx(metrics.aurc(u, errors))
