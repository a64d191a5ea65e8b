"""benchmarks/bench_decisions.py: a smoke run on the tiny bundle (a few trials)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_decisions.py"


def test_smoke_run_writes_both_checks(tiny_bundle_dir, calibration_jsonl, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_decisions", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "decisions.json"
    bench.main([str(tiny_bundle_dir), "--data", calibration_jsonl, "--trials", "5", "--json", str(out),
                "--score", "sr", "--coverage", "0.9"])
    doc = json.loads(out.read_text())
    assert doc["n_rows"] == 400 and doc["score"] == "sr"
    for resample in ("halves", "bootstrap"):
        check = doc[resample]
        assert check["trials"] == 5 and set(check["risk"]) == {"sr", "entropy", "adue", "alien", "md", "rmd"}
        assert [level["risk"] for level in check["risk"]["sr"]] == [0.05, 0.1]
        assert check["sets"][0]["coverage"] == 0.9 and 0 < check["sets"][0]["mean_coverage"] <= 1
    printed = capsys.readouterr().out
    assert "violations" in printed and "mean set size" in printed
