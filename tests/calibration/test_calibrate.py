"""``uehead calibrate`` end to end on the tiny bundle: the new bundle, its section, bad input, tampering."""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tiny_bundle import edit_json, make_tiny_bundle
from uehead import runtime
from uehead.bundle import CALIBRATION_FILE, ChecksumError, FileSpec, IncompatibleBundleError, load_manifest, \
    read_manifest, sha256_file, write_manifest
from uehead.calibration import calibrate, load_calibration
from uehead.cli import main
from uehead.errors import DataError, UnknownScoreError

ALL_SCORES = ("sr", "entropy", "adue", "alien", "md", "rmd")


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(Path(folder).iterdir())}


def test_calibrated_bundle_has_a_checked_section(tiny_bundle_dir, calibrated_bundle, tiny_model):
    manifest = load_manifest(calibrated_bundle)
    assert manifest.calibration.file == CALIBRATION_FILE
    assert manifest.calibration.sha256 == sha256_file(calibrated_bundle / CALIBRATION_FILE)
    assert set(file_hashes(calibrated_bundle)) == set(file_hashes(tiny_bundle_dir)) | {CALIBRATION_FILE}
    cal = load_calibration(calibrated_bundle, manifest)
    original = load_manifest(tiny_bundle_dir)
    assert cal.score == "adue" and cal.n_rows == 400 and cal.data == "valid.jsonl"
    assert cal.graphs == {"backbone": original.backbone.sha256, "head": original.head.sha256}
    assert cal.risks == (0.05, 0.1) and cal.default_risk == 0.05
    assert cal.coverages == (0.9, 0.95) and cal.default_coverage == 0.9
    assert set(cal.report["risk"]) == set(ALL_SCORES)
    doc = json.loads((calibrated_bundle / CALIBRATION_FILE).read_text())
    assert doc["format"] == "uehead-calibration" and doc["format_version"] == 1 and doc["writer"]["uehead"]
    assert runtime.verify(calibrated_bundle)["ok"]


def test_decide_on_runtime_predictions(calibrated_bundle):
    model = runtime.load(calibrated_bundle, threads=1)
    cal = load_calibration(calibrated_bundle, model.manifest)
    preds = model.predict(["a great film", "bad and boring", "", "the plot"], distances=True)
    out = cal.decide(preds.probs, preds.scores)
    assert out["p_error"].dtype == np.float32 and out["p_error"].shape == (4,)
    assert ((0 <= out["p_error"]) & (out["p_error"] <= 1)).all()
    assert out["accept"].dtype == bool
    level = cal.risk_level()
    expected = np.zeros(4, bool) if level.threshold is None else preds.scores["adue"] <= level.threshold
    assert np.array_equal(out["accept"], expected)
    assert all(set(s) <= {"class_0", "class_1"} for s in out["prediction_sets"])
    wide = cal.decide(preds.probs, preds.scores, risk=0.1, coverage=0.95)
    assert all(set(a) <= set(b) for a, b in zip(out["prediction_sets"], wide["prediction_sets"]))
    with pytest.raises(DataError, match=r"stored risk levels are: 0.05, 0.1"):
        cal.decide(preds.probs, preds.scores, risk=0.2)
    with pytest.raises(DataError, match=r"stored coverage levels are: 0.9, 0.95"):
        cal.decide(preds.probs, preds.scores, coverage=0.8)


def test_input_is_unchanged_and_recalibration_replaces(tiny_bundle_dir, calibrated_bundle, calibration_jsonl,
                                                       tmp_path, capsys):
    before = file_hashes(tiny_bundle_dir)
    result = calibrate(calibrated_bundle, calibration_jsonl, out=tmp_path / "again", score="sr", risk=(0.1,),
                       coverage=(0.8,), method="aps", class_conditional=True)
    printed = capsys.readouterr().out
    assert result.replaced and "already calibrated" in printed and "replaced" in printed
    for score in ALL_SCORES:
        assert score in printed
    assert "mean set size" in printed and "ECE" in printed and "Brier" in printed
    cal = load_calibration(result.out, load_manifest(result.out))
    assert cal.score == "sr" and cal.risks == (0.1,) and cal.coverage_levels[0].method == "aps"
    assert isinstance(cal.coverage_levels[0].q, tuple)
    assert file_hashes(tiny_bundle_dir) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no partial folder left


def test_labels_as_names_in_csv_match_ids(tiny_bundle_dir, tiny_model, calibrated_bundle, tmp_path, labelled_rows):
    rows = labelled_rows(tiny_model)
    lines = ["text,label"] + [f"\"{r['text']}\",class_{r['label']}" for r in rows]
    (tmp_path / "valid.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = calibrate(tiny_bundle_dir, tmp_path / "valid.csv", out=tmp_path / "csv", verbose=False)
    by_ids = load_calibration(calibrated_bundle, load_manifest(calibrated_bundle))
    assert result.calibration.risk_levels == by_ids.risk_levels
    assert result.calibration.coverage_levels == by_ids.coverage_levels


@pytest.mark.parametrize("kwargs,error,match", [
    ({"risk": (0.0,)}, DataError, r"outside \(0, 1\)"),
    ({"risk": (0.05, 1.5)}, DataError, r"outside \(0, 1\)"),
    ({"delta": 1.0}, DataError, r"delta 1.0 is outside"),
    ({"coverage": (0.9, 1.0)}, DataError, r"coverage 1.0 is outside"),
    ({"method": "raps"}, DataError, "lac, aps"),
    ({"score": "rde"}, UnknownScoreError, "sr, entropy, adue, alien, md, rmd"),
    ({"risk": (0.001,)}, DataError, "needs at least 2302 rows"),
])
def test_bad_options_are_refused(tiny_bundle_dir, calibration_jsonl, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        calibrate(tiny_bundle_dir, calibration_jsonl, out=tmp_path / "out", verbose=False, **kwargs)
    assert not (tmp_path / "out").exists()


def test_bad_labels_and_too_few_rows(tiny_bundle_dir, tmp_path, write_jsonl):
    rows = [{"text": "good", "label": 0}] * 44
    path = write_jsonl(tmp_path / "few.jsonl", rows)
    with pytest.raises(DataError, match="needs at least 45 rows"):
        calibrate(tiny_bundle_dir, path, out=tmp_path / "out", verbose=False)
    path = write_jsonl(tmp_path / "bad.jsonl", rows + [{"text": "bad", "label": "awful"}])
    with pytest.raises(DataError, match=r"bad.jsonl:45: unknown label name 'awful'.*'class_0', 'class_1'"):
        calibrate(tiny_bundle_dir, path, out=tmp_path / "out", verbose=False)
    path = write_jsonl(tmp_path / "range.jsonl", rows + [{"text": "bad", "label": 2}])
    with pytest.raises(DataError, match=r"range.jsonl:45: label id 2 is out of range \[0, 2\)"):
        calibrate(tiny_bundle_dir, path, out=tmp_path / "out", verbose=False)


def test_out_must_be_new_and_not_the_input(tiny_bundle_dir, calibration_jsonl, tmp_path):
    with pytest.raises(ValueError, match="is the input bundle"):
        calibrate(tiny_bundle_dir, calibration_jsonl, out=tiny_bundle_dir, verbose=False)
    with pytest.raises(ValueError, match="inside the input bundle"):
        calibrate(tiny_bundle_dir, calibration_jsonl, out=Path(tiny_bundle_dir) / "sub", verbose=False)
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        calibrate(tiny_bundle_dir, calibration_jsonl, out=tmp_path / "taken", verbose=False)


def test_tampered_section_is_refused(calibrated_bundle, tmp_path):
    bundle = tmp_path / "tampered"
    shutil.copytree(calibrated_bundle, bundle)
    edit_json(bundle / CALIBRATION_FILE, lambda d: d["risk_levels"][0].update(threshold=10.0))
    with pytest.raises(ChecksumError, match="calibration.json"):
        load_manifest(bundle)
    with pytest.raises(ChecksumError, match="calibration was altered"):
        load_calibration(bundle, read_manifest(bundle))
    with pytest.raises(ChecksumError):
        runtime.load(bundle)


def test_section_copied_onto_another_bundle_is_refused(calibrated_bundle, tmp_path):
    other = make_tiny_bundle(tmp_path / "other", seed=1)
    shutil.copy(calibrated_bundle / CALIBRATION_FILE, other / CALIBRATION_FILE)
    write_manifest(other, dataclasses.replace(read_manifest(other), calibration=FileSpec(CALIBRATION_FILE, "")))
    manifest = load_manifest(other)          # checksums now agree: only the graph check can tell
    with pytest.raises(IncompatibleBundleError, match="fitted on another backbone graph.*uehead calibrate"):
        load_calibration(other, manifest)


def test_uncalibrated_bundles_have_no_section(tiny_bundle_dir):
    manifest = load_manifest(tiny_bundle_dir)
    assert manifest.calibration is None and load_calibration(tiny_bundle_dir, manifest) is None


def test_cli_verb(tiny_bundle_dir, calibration_jsonl, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["calibrate", str(tiny_bundle_dir), "--data", calibration_jsonl, "--out", str(out),
                 "--risk", "0.05,0.1", "--coverage", "0.9", "--score", "alien"]) == 0
    assert "accepted fraction" in capsys.readouterr().out
    assert load_calibration(out, load_manifest(out)).score == "alien"
    assert main(["calibrate", str(tiny_bundle_dir), "--data", calibration_jsonl, "--out", str(tmp_path / "x"),
                 "--risk", "2"]) == 2
    assert "risk 2.0 is outside (0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["calibrate", str(tiny_bundle_dir), "--data", calibration_jsonl, "--out", str(out), "--risk", "a,b"])


def test_apply_path_imports_only_numpy_and_the_stdlib(calibrated_bundle):
    code = textwrap.dedent(f"""
        import json, sys
        from uehead.bundle import load_manifest
        from uehead.calibration.apply import load_calibration
        import numpy as np
        manifest = load_manifest({str(calibrated_bundle)!r})
        cal = load_calibration({str(calibrated_bundle)!r}, manifest)
        out = cal.decide(np.array([[0.9, 0.1], [0.5, 0.5]]), {{"adue": np.array([0.0, 0.6])}})
        top = sorted({{m.split(".")[0] for m in sys.modules}} - set(sys.stdlib_module_names) - {{"numpy", "uehead"}})
        print(json.dumps({{"third_party": [m for m in top if not m.startswith("_")], "n": len(out["accept"])}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"third_party": [], "n": 2}


def test_a_detached_manifest_checksum_is_not_copied_stale(tiny_bundle_dir, calibration_jsonl, tmp_path):
    import shutil

    from uehead import runtime
    from uehead.calibration import calibrate
    from uehead.manifest_checksum import CHECKSUM_FILE, write_checksum_file

    src = shutil.copytree(tiny_bundle_dir, tmp_path / "src")
    write_checksum_file(src)
    out = tmp_path / "out"
    calibrate(src, calibration_jsonl, out=out, verbose=False)
    assert not (out / CHECKSUM_FILE).exists()
    assert runtime.verify(out)["ok"]
