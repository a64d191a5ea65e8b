"""runtime.verify: checksums + golden outputs re-computed torch-free."""
from __future__ import annotations

import json

import onnx
import pytest

from tiny_bundle import edit_json, make_tiny_bundle, rechecksum_bundle as rechecksum
from uehead import runtime
from uehead.bundle import BundleError, ChecksumError
from uehead.cli import main
from uehead.runtime.verification import GoldenMismatchError


def edit_golden(bundle, change):
    edit_json(bundle / "golden.json", change)
    rechecksum(bundle)


@pytest.fixture
def bundle(tmp_path):
    return make_tiny_bundle(tmp_path / "b")


def test_verify_ok_reports_every_output(tiny_bundle_dir):
    report = runtime.verify(tiny_bundle_dir)
    assert report["ok"] is True and report["format_version"] == 1
    assert set(report["files"]) == {"tokenizer.json", "backbone.onnx", "head.onnx", "baselines.npz", "golden.json",
                                    "scores.onnx"}
    assert report["scores_graph"]["label_mismatches"] == 0  # scores.onnx vs the kernels: tests/export/test_scores_graph.py
    golden = report["golden"]
    assert golden["texts"] == 6 and golden["tolerance"] == 1e-4 and golden["label_mismatches"] == 0
    assert set(golden["max_abs_diff"]) == {"probs", "softmax_response", "entropy", "adue", "alien"}
    assert all(0 <= d < 1e-5 for d in golden["max_abs_diff"].values())
    json.dumps(report)  # JSON-able for the CLI


def test_verify_without_golden(tmp_path):
    assert runtime.verify(make_tiny_bundle(tmp_path / "b", with_golden=False))["golden"] is None


@pytest.mark.parametrize("key", ["probs", "softmax_response", "entropy", "adue", "alien"])
def test_tampered_golden_value_fails(bundle, key):
    def change(d):
        if key in ("adue", "alien"):
            d["heads"][key][2] += 1e-3
        elif key == "probs":
            d["probs"][2][0] += 1e-3
        else:
            d[key][2] += 1e-3

    edit_golden(bundle, change)
    with pytest.raises(GoldenMismatchError, match=rf"golden.json.*{key} max abs diff 0.001") as info:
        runtime.verify(bundle)
    assert isinstance(info.value, BundleError) and info.value.path.endswith("golden.json")


def test_flipped_golden_label_fails(bundle):
    edit_golden(bundle, lambda d: d["label_ids"].__setitem__(0, 1 - d["label_ids"][0]))
    with pytest.raises(GoldenMismatchError, match=r"label_ids differ at texts \[0\]"):
        runtime.verify(bundle)


def test_tolerance_is_honoured(bundle):
    edit_golden(bundle, lambda d: (d["entropy"].__setitem__(1, d["entropy"][1] + 5e-5)))
    assert runtime.verify(bundle)["golden"]["max_abs_diff"]["entropy"] > 4e-5


def test_graph_drift_fails_golden(bundle):
    """A head whose weights changed (checksums re-written) no longer reproduces the golden set."""
    model = onnx.load(bundle / "head.onnx")
    init = next(i for i in model.graph.initializer if i.name == "task_logits_b")
    arr = onnx.numpy_helper.to_array(init).copy()
    arr[0] += 0.05  # one class only: a shift of all logits would leave the softmax unchanged
    init.CopyFrom(onnx.numpy_helper.from_array(arr, "task_logits_b"))
    onnx.save(model, bundle / "head.onnx")
    rechecksum(bundle)
    with pytest.raises(GoldenMismatchError, match="probs max abs diff"):
        runtime.verify(bundle)


def test_tampered_golden_without_checksum_update(bundle):
    path = bundle / "golden.json"
    path.write_text(path.read_text().replace("0.", "0.1", 1))
    with pytest.raises(ChecksumError, match="golden.json"):
        runtime.verify(bundle)


@pytest.mark.parametrize("change, match", [
    (lambda d: d.pop("probs"), "lacks keys"),
    (lambda d: d.update(texts=["a", 3]), "texts"),
    (lambda d: d.update(tolerance=-1), "tolerance"),
    (lambda d: d["heads"].update(rde=[0.0] * 6), "rde"),
    (lambda d: d.update(entropy=[0.0]), "'entropy' has shape"),
    (lambda d: d.update(softmax_response=[None] * 6), "softmax_response"),
])
def test_malformed_golden(bundle, change, match):
    edit_golden(bundle, change)
    with pytest.raises(BundleError, match=match):
        runtime.verify(bundle)


def test_golden_not_json(bundle):
    (bundle / "golden.json").write_text("{oops", encoding="utf-8")
    rechecksum(bundle)
    with pytest.raises(BundleError, match="golden.json.*JSON"):
        runtime.verify(bundle)


def test_cli_verify(bundle, capsys):
    assert main(["verify", str(bundle)]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    edit_golden(bundle, lambda d: d["heads"]["adue"].__setitem__(0, 5.0))
    assert main(["verify", str(bundle)]) == 2
    assert "golden.json" in capsys.readouterr().err
