"""benchmarks/reproduce_paper.py: runs, resume, JSON/markdown tables, --aggregate-only (offline, seconds).

Most tests use a fake ``train`` that writes the documented checkpoint files (training.json,
scores/test.npz, a model/ folder); one test trains for real on a tiny random BERT.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tiny_models import make_tiny_dataset

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "reproduce_paper.py"
METHODS = ("sr", "entropy", "md", "md_l2", "rmd", "rmd_l2", "rde", "rde_l2", "adue", "alien",
           "adue_bce", "adue_bce_l2sp", "adue_bce_reg", "adue_rand_cls", "adue_rand_linear")
#: signal strength per method in the fake scores: AdUE strongest, MD weakest
SIGNAL = {"sr": 1.0, "entropy": 0.9, "md": 0.1, "md_l2": 0.2, "rmd": 0.5, "rmd_l2": 0.6, "rde": 0.3,
          "rde_l2": 0.3, "adue": 1.6, "alien": 1.3, "adue_bce": 1.2, "adue_bce_l2sp": 1.1, "adue_bce_reg": 1.4,
          "adue_rand_cls": 0.4, "adue_rand_linear": 0.2}


def _load_script():
    spec = importlib.util.spec_from_file_location("reproduce_paper", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rp = _load_script()
from paper.markdown import ranks  # noqa: E402  (benchmarks/ is on sys.path once the script is loaded)


class FakeTrain:
    """Stands in for uehead.training.train: writes the documented files, records each call."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[dict] = []
        self.fail_on = fail_on

    def __call__(self, model, data, out, *, max_train, epochs, max_length, seed, device, batch_size,
                 ablations, progress, protocol="uehead", finetune="lora", lora=None):
        name = Path(data).name
        self.calls.append({"model": model, "data": data, "out": Path(out), "max_train": max_train,
                           "epochs": epochs, "max_length": max_length, "seed": seed, "ablations": ablations,
                           "protocol": protocol, "finetune": finetune, "lora": lora})
        if name == self.fail_on:
            raise RuntimeError(f"boom on {name}")
        out = Path(out)
        (out / "model").mkdir(parents=True)
        (out / "model" / "model.safetensors").write_bytes(b"0" * 100)
        (out / "model" / "config.json").write_text("{}")
        (out / "scores").mkdir()
        rng = np.random.default_rng([seed, sum(map(ord, name))])
        n = 200
        errors = (rng.random(n) < 0.2).astype(np.int8)
        labels = rng.integers(0, 2, n)
        predictions = np.where(errors == 1, 1 - labels, labels)
        scores = {m: SIGNAL[m] * errors + rng.normal(0, 1, n) for m in METHODS}
        np.savez(out / "scores" / "test.npz", labels=labels, predictions=predictions, errors=errors, **scores)
        record = {"model": model, "seed": seed, "max_train": max_train, "epochs": epochs,
                  "max_length": max_length, "batch_size": batch_size, "device": "cpu",
                  "n_rows": {"train": max_train or 500, "valid": 100, "test": n},
                  "accuracy": {"valid": 0.8, "test": float((labels == predictions).mean())},
                  "roc_auc_test": {"sr": 0.7, "adue": 0.75}, "timings_s": {"lora_finetune": 1.0, "total": 2.0},
                  "versions": {"torch": "x", "transformers": "y"}, "head_selection": {"adue": {"lr": 1e-3}}}
        (out / "training.json").write_text(json.dumps(record), encoding="utf-8")
        return out


@pytest.fixture()
def datasets(tmp_path):
    root = tmp_path / "datasets"
    make_tiny_dataset(root / "sst2", sizes=(60, 60, 40), seed=1, gzip_files=True)
    make_tiny_dataset(root / "cola", sizes=(60, 60, 40), seed=2, gzip_files=True)
    return root


def _argv(tmp_path, datasets, *extra, model="minilm"):
    return ["--datasets", str(datasets), "--names", "sst2,cola", "--model", model, "--seeds", "0", "1",
            "--max-train", "40", "--max-length", "32", "--epochs", "1", "--device", "cpu",
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out" / "paper"), *extra]


def _read(tmp_path, stem="paper"):
    out = tmp_path / "out"
    return (json.loads((out / f"{stem}.json").read_text(encoding="utf-8")),
            (out / f"{stem}.md").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ one real run
@pytest.mark.torch
def test_one_real_tiny_run_then_resume(tmp_path, datasets, monkeypatch):
    """The real uehead.training.train on a tiny random BERT: its files are what the script expects."""
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from tiny_models import make_tiny_model_dir

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = make_tiny_model_dir(tmp_path / "tiny_bert")
    argv = _argv(tmp_path, datasets, "--batch-size", "16", "--names", "sst2", "--seeds", "0", model=str(model))
    assert rp.main(argv) == 0
    run = tmp_path / "work" / "sst2" / "seed0"
    assert rp.is_complete(run) and not (run / "model").exists(), "--keep-models is off: merged model deleted"
    assert json.loads((run / "reproduce_run.json").read_text())["wall_s"] > 0
    assert not list((tmp_path / "work").glob("*/.*")), "no temp folders left behind"
    result, md = _read(tmp_path)
    sst2 = result["datasets"]["sst2"]
    assert set(METHODS) <= set(sst2["metrics"]), "train(ablations=True) scores every method of the table"
    assert sst2["caps"] == {"max_train": 40, "max_length": 32, "epochs": 1, "batch_size": 16}
    assert sst2["runs"][0]["n_rows"] == {"train": 40, "valid": 60, "test": 40}
    assert sst2["runs"][0]["timings_s"]["total"] > 0 and "torch" in result["versions"]
    assert result["settings"]["model"] == str(model.resolve()) and "`tiny_bert`" in md
    assert "| Method | SST-2 | Rank ↓ |" in md and "| ALIEN |" in md and "| Loss: BCE+reg |" in md

    spy = FakeTrain()  # resume: cached, nothing trained again, same tables
    assert rp.main(argv, train_fn=spy) == 0 and spy.calls == []
    assert _read(tmp_path)[1] == md


# ------------------------------------------------------------------------------ fake train
def test_fake_runs_tables_and_json(tmp_path, datasets):
    fake = FakeTrain()
    assert rp.main(_argv(tmp_path, datasets), train_fn=fake) == 0
    assert len(fake.calls) == 4 and all(c["ablations"] and c["max_length"] == 32 for c in fake.calls)
    assert [(Path(c["data"]).name, c["seed"]) for c in fake.calls] == [
        ("sst2", 0), ("cola", 0), ("sst2", 1), ("cola", 1)], "seed-major order"
    assert all(c["out"].name == f".seed{c['seed']}.tmp" for c in fake.calls), "trained into a temp folder"
    result, md = _read(tmp_path)
    # every cell is recomputed from the scores with uehead.evaluation.metrics
    from uehead.evaluation import metrics
    with np.load(tmp_path / "work" / "cola" / "seed1" / "scores" / "test.npz") as f:
        expect = metrics.roc_auc(f["adue"], f["errors"])
    cola = result["datasets"]["cola"]
    assert cola["runs"][1]["metrics"]["adue"]["roc_auc"] == pytest.approx(expect)
    aucs = [r["metrics"]["adue"]["roc_auc"] for r in cola["runs"]]
    assert cola["metrics"]["adue"]["roc_auc"]["mean"] == pytest.approx(np.mean(aucs))
    assert cola["metrics"]["adue"]["roc_auc"]["std"] == pytest.approx(np.std(aucs, ddof=1))
    assert "ece" in cola["metrics"]["sr"] and "ece" not in cola["metrics"]["md"]
    assert cola["roc_auc_paired"]["adue_minus_sr"]["count"] == 2
    assert result["paper_reference_roberta_roc_auc_x100"]["adue"]["cola"] == [75.4, 3.0]
    # Table 1 layout: paper column order, method rows, AdUE best (bold), the accuracy row, caps, reference
    lines = md.splitlines()
    header = lines.index("| Method | CoLA | SST-2 | Rank ↓ |")
    rows = [ln.split(" | ")[0].lstrip("| ") for ln in lines[header + 2:header + 12]]
    assert rows == ["SR", "Entropy", "MD", "MD L2", "RMD", "RMD L2", "RDE", "RDE L2", "AdUE", "ALIEN"]
    adue_row = lines[header + 10]
    assert adue_row.count("**") == 4 and adue_row.endswith("| 1.0 |")
    assert any(ln.startswith("| Accuracy (task, %) |") for ln in lines)
    assert "**Caps used:** backbone `minilm`; LoRA epochs 1; batch 64; max_train 40" in md
    assert "max_length 32 tokens; seeds 0, 1; device cpu" in md
    assert "RoBERTa-base" in md and "| AdUE (paper) | 75.4 ± 3.0 | 80.8 ± 2.0 |" in md
    assert "### PRR x100" in md and "### AURC x100 (lower is better)" in md and "Brier x100" in md
    assert "Command: `python benchmarks/reproduce_paper.py --datasets" in md

    # resume: a second invocation trains nothing and writes the same tables
    spy = FakeTrain()
    assert rp.main(_argv(tmp_path, datasets), train_fn=spy) == 0 and spy.calls == []
    result2, md2 = _read(tmp_path)
    assert md2 == md and result2["datasets"] == result["datasets"]

    # --aggregate-only: no datasets, no training; seeds found on disk; the same tables
    agg = ["--aggregate-only", "--names", "sst2,cola", "--work", str(tmp_path / "work"),
           "--out", str(tmp_path / "out" / "again.md")]
    assert rp.main(agg, train_fn=spy) == 0 and spy.calls == []
    result3, md3 = _read(tmp_path, "again")
    assert md3 == md and result3["datasets"] == result["datasets"] and result3["settings"]["seeds"] == [0, 1]
    assert result3["settings"]["requested"]["command"] == result["command"]


def test_partial_run_is_redone_and_stale_temp_removed(tmp_path, datasets):
    fake = FakeTrain()
    argv = _argv(tmp_path, datasets, "--seeds", "0")
    assert rp.main(argv, train_fn=fake) == 0 and len(fake.calls) == 2
    work = tmp_path / "work"
    (work / "cola" / "seed0" / "scores" / "test.npz").unlink()       # interrupted / damaged run
    (work / "sst2" / ".seed1.tmp").mkdir()                           # leftovers of an interrupted seed 1
    (work / "sst2" / "..seed1.tmp.partial-123").mkdir()
    fake2 = FakeTrain()
    assert rp.main(_argv(tmp_path, datasets), train_fn=fake2) == 0
    assert sorted((Path(c["data"]).name, c["seed"]) for c in fake2.calls) == [
        ("cola", 0), ("cola", 1), ("sst2", 1)]
    assert not list(work.glob("*/.*"))
    assert rp.is_complete(work / "cola" / "seed0")


def test_keep_models(tmp_path, datasets):
    assert rp.main(_argv(tmp_path, datasets, "--seeds", "0", "--keep-models"), train_fn=FakeTrain()) == 0
    assert (tmp_path / "work" / "sst2" / "seed0" / "model" / "model.safetensors").is_file()


def test_cached_run_with_other_caps_is_an_error(tmp_path, datasets, capsys):
    assert rp.main(_argv(tmp_path, datasets, "--seeds", "0"), train_fn=FakeTrain()) == 0
    fake = FakeTrain()
    argv = _argv(tmp_path, datasets, "--seeds", "0") + ["--max-length", "sst2=48"]
    assert rp.main(argv, train_fn=fake) == 2 and fake.calls == []
    err = capsys.readouterr().err
    assert "sst2" in err and "max_length=32" in err and "48" in err and "--work" in err


def test_failed_run_is_reported_and_others_aggregated(tmp_path, datasets, capsys):
    assert rp.main(_argv(tmp_path, datasets), train_fn=FakeTrain(fail_on="cola")) == 1
    result, md = _read(tmp_path)
    assert result["missing_runs"] == ["cola seed0", "cola seed1"] and len(result["failed_runs"]) == 2
    assert list(result["datasets"]) == ["sst2"] and "Missing runs" in md
    assert "boom on cola" in (tmp_path / "work" / "reproduce.log").read_text()
    assert "failed runs" in capsys.readouterr().err


def test_per_dataset_caps_and_defaults():
    args = rp.parse_args(["--datasets", "d", "--max-length", "newsgroups20=512", "--max-train", "sst2=1000"])
    assert args.names == ["sst2", "cola", "sst5", "newsgroups20", "toxigen"] and args.seeds == [0, 1, 2]
    assert args.max_length == {"sst2": 64, "cola": 64, "sst5": 64, "newsgroups20": 512, "toxigen": 64}
    assert args.max_train == {"sst2": 1000, "cola": None, "sst5": None, "newsgroups20": None, "toxigen": None}
    assert args.out.name == "paper_minilm" and args.out.parent.name == "results"
    assert rp.parse_args(["--aggregate-only"]).seeds is None, "aggregate-only finds the seeds on disk"
    args = rp.parse_args(["--datasets", "d", "--names", "cola", "--max-length", "100", "--max-train", "all"])
    assert args.max_length == {"cola": 100} and args.max_train == {"cola": None}
    with pytest.raises(SystemExit):
        rp.parse_args(["--datasets", "d", "--names", "cola", "--max-length", "sst2=10"])
    with pytest.raises(SystemExit):
        rp.parse_args(["--names", "cola"])  # --datasets is required unless --aggregate-only
    assert ranks([0.8, 0.9, 0.8, float("nan")], higher=True)[:3] == [2.5, 1.0, 2.5]


def test_missing_dataset_and_empty_work_are_clear_errors(tmp_path, datasets, capsys):
    argv = _argv(tmp_path, datasets) + ["--names", "sst2,sst5"]
    assert rp.main(argv, train_fn=FakeTrain()) == 2
    assert "no dataset 'sst5'" in capsys.readouterr().err
    assert rp.main(["--aggregate-only", "--work", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "no complete runs" in capsys.readouterr().err


def test_aggregate_only_cli_is_torch_free(tmp_path, datasets):
    assert rp.main(_argv(tmp_path, datasets, "--seeds", "0"), train_fn=FakeTrain()) == 0
    code = ("import runpy, sys; sys.argv = ['reproduce_paper.py', '--aggregate-only', '--names', 'sst2,cola', "
            f"'--work', {str(tmp_path / 'work')!r}, '--out', {str(tmp_path / 'out' / 'cli')!r}]\n"
            f"try:\n    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert 'torch' not in sys.modules, 'aggregate-only imported torch'")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result, md = _read(tmp_path, "cli")
    assert result["settings"]["seeds"] == [0] and "| Method | CoLA | SST-2 | Rank ↓ |" in md


def test_second_protocol_shares_the_first_runs_lora_models(tmp_path, datasets):
    """--protocol authors --lora-from W fits heads on W's merged model of the same dataset and seed."""
    first = tmp_path / "ue"
    assert rp.main(_argv(tmp_path, datasets, "--seeds", "0", "--work", str(first), "--keep-models"),
                   train_fn=FakeTrain()) == 0
    fake = FakeTrain()
    argv = _argv(tmp_path, datasets, "--seeds", "0", "--work", str(tmp_path / "au"), "--protocol", "authors",
                 "--lora-from", str(first), "--warmup-ratio", "0.1", "--out", str(tmp_path / "au_report"))
    assert rp.main(argv, train_fn=fake) == 0
    assert {c["protocol"] for c in fake.calls} == {"authors"} and {c["finetune"] for c in fake.calls} == {"none"}
    assert all(Path(c["model"]) == first / Path(c["data"]).name / "seed0" / "model" for c in fake.calls)
    assert all(c["lora"].warmup_ratio == 0.1 for c in fake.calls)
    missing = rp.main(_argv(tmp_path, datasets, "--seeds", "1", "--work", str(tmp_path / "au2"), "--protocol",
                            "authors", "--lora-from", str(first), "--out", str(tmp_path / "au2_report")),
                      train_fn=FakeTrain())
    assert missing != 0   # seed 1 has no kept model to share: every run fails and says why
