"""export_bundle end to end: manifest contents, golden set, runtime round trip, tampering, destinations."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from uehead import runtime
from uehead.bundle import ChecksumError, MissingFileError, load_manifest
from uehead.export import CheckpointError, ExportError, ExportValidationError, compare_runtime_to_pytorch, export_bundle
from uehead.export.validate import SAMPLE_TEXTS

ARCHS = ("bert", "llama")


@pytest.mark.parametrize("arch", ARCHS)
def test_manifest_contents(fp32_bundles, tiny_ckpts, arch):
    manifest, bundle = fp32_bundles[arch]
    assert manifest == load_manifest(bundle)  # written as returned, checksums verified
    assert manifest.labels == ("class_0", "class_1")
    tok = manifest.tokenizer
    assert (tok.file, tok.max_length, tok.pad_token_id, tok.truncation_side) == ("tokenizer.json", 24, 0, "right")
    names = ("input_ids", "attention_mask", "token_type_ids") if arch == "bert" else ("input_ids", "attention_mask")
    assert tok.model_input_names == names == manifest.backbone.input_names
    bb = manifest.backbone
    assert (bb.file, bb.output_name, bb.feature_size, bb.architecture, bb.precision) == (
        "backbone.onnx", "features", 32, arch, "fp32")
    assert bb.pooling == ("pooler" if arch == "bert" else "last_token")
    head = manifest.head
    assert (head.input_name, head.task_logits_name, head.num_classes, head.default_kind) == (
        "features", "task_logits", 2, "adue")
    meta = json.loads((tiny_ckpts[arch] / "heads" / "adue.json").read_text())
    assert [(h.kind, h.output_name, h.lam) for h in head.heads] == [("adue", "adue_logits", 100.0),
                                                                    ("alien", "alien_logits", 100.0)]
    assert head.heads[0].hyperparameters == meta["hyperparameters"]
    assert head.heads[0].validation == meta["validation"]
    per_head = 2 * 32 + (2 if arch == "bert" else 0)
    assert head.num_parameters == 3 * per_head
    assert bb.num_parameters > 10_000
    assert set(manifest.writer) >= {"uehead", "torch", "transformers", "onnx", "onnxruntime", "optimum"}
    assert manifest.baselines.settings == {"l2_normalize": False}
    r = manifest.reports
    assert r["validation"]["passed"] and r["validation"]["tolerance"] == 1e-4
    assert set(r["validation"]["cases"]) == {"batch1", "batch37", "batch1_max_length", "batch37_max_length",
                                             "batch1_length1", "batch37_length1"}
    for key in ("features", "task_logits", "adue_logits", "alien_logits", "probs", "sr", "adue", "alien"):
        assert r["validation"]["max_abs_diff"][key] < 1e-4, key
    assert r["parameters"]["uncertainty_heads"] == 2 * per_head
    assert r["export"]["precision"] == "fp32" and r["training"]["architecture"] == arch


@pytest.mark.parametrize("arch", ARCHS)
def test_golden_file_and_runtime_round_trip(fp32_bundles, arch):
    manifest, bundle = fp32_bundles[arch]
    golden = json.loads((bundle / "golden.json").read_text())
    assert set(golden) == {"texts", "tolerance", "source", "label_ids", "labels", "probs", "softmax_response",
                           "entropy", "heads", "distances"}  # the tiny checkpoints have baselines
    assert golden["source"] == "pytorch" and golden["tolerance"] == 1e-4
    assert 8 <= len(golden["texts"]) <= 16 and golden["texts"] == list(SAMPLE_TEXTS)
    assert set(golden["heads"]) == {"adue", "alien"}
    model = runtime.load(bundle, threads=1)
    preds = model.predict(golden["texts"], batch_size=1)
    np.testing.assert_allclose(preds.probs, golden["probs"], atol=1e-4)
    np.testing.assert_allclose(preds.scores["alien"], golden["heads"]["alien"], atol=1e-4)
    np.testing.assert_allclose(preds.uncertainty, golden["heads"]["adue"], atol=1e-4)
    report = runtime.verify(bundle)
    assert report["golden"]["source"] == "pytorch"
    assert max(report["golden"]["max_abs_diff"].values()) < 1e-4
    assert preds.probs.shape == (len(golden["texts"]), 2)


@pytest.mark.parametrize("arch", ARCHS)
def test_runtime_matches_pytorch_checkpoint(fp32_bundles, tiny_ckpts, tiny_data, arch):
    texts = [json.loads(line)["text"] for line in (tiny_data / "test.jsonl").read_text().splitlines()]
    texts += ["", "good " * 100, "the film was dull " * 2000]  # the last one passes the runtime's pre-cut
    report = compare_runtime_to_pytorch(tiny_ckpts[arch], fp32_bundles[arch][1], texts, batch_size=7)
    assert report["passed"] and report["texts"] == len(texts)
    assert set(report["max_abs_diff"]) >= {"probs", "sr", "entropy", "adue", "alien"}


def test_compare_runtime_to_pytorch_catches_a_different_model(fp32_bundles, tmp_path):
    from tiny_checkpoint import make_tiny_checkpoint

    other = make_tiny_checkpoint(tmp_path / "other", arch="bert", seed=7)
    with pytest.raises(ExportValidationError) as info:
        compare_runtime_to_pytorch(other, fp32_bundles["bert"][1], list(SAMPLE_TEXTS))
    assert info.value.report["failed"]


@pytest.mark.parametrize("victim", ["backbone.onnx", "head.onnx", "tokenizer.json", "golden.json", "baselines.npz"])
def test_tampered_bundle_is_refused_by_the_runtime(fp32_bundles, tmp_path, victim):
    bundle = tmp_path / "b"
    shutil.copytree(fp32_bundles["bert"][1], bundle)
    with open(bundle / victim, "ab") as f:
        f.write(b" ")
    with pytest.raises(ChecksumError, match=victim):
        runtime.load(bundle)
    (bundle / victim).unlink()
    with pytest.raises(MissingFileError, match=victim):
        runtime.load(bundle)


def test_default_head_override_and_unknown_head(tiny_ckpts, tmp_path):
    m = export_bundle(tiny_ckpts["llama"], tmp_path / "alien", default_head="alien")
    assert m.head.default_kind == "alien"
    assert runtime.load(tmp_path / "alien", threads=1).predict(["good"]).uncertainty_kind == "alien"
    with pytest.raises(CheckpointError, match="default head 'bogus'"):
        export_bundle(tiny_ckpts["llama"], tmp_path / "bogus", default_head="bogus")
    assert not (tmp_path / "bogus").exists()


def test_single_head_and_sr_default(tmp_path):
    from tiny_checkpoint import make_tiny_checkpoint

    alien_only = make_tiny_checkpoint(tmp_path / "a", arch="bert", heads=("alien",))
    m = export_bundle(alien_only, tmp_path / "ba")
    assert [h.kind for h in m.head.heads] == ["alien"] and m.head.default_kind == "alien"
    none = make_tiny_checkpoint(tmp_path / "n", arch="bert", heads=())
    m = export_bundle(none, tmp_path / "bn")
    assert m.head.heads == () and m.head.default_kind == "sr"
    assert json.loads((tmp_path / "bn" / "golden.json").read_text())["heads"] == {}
    assert runtime.verify(tmp_path / "bn")["ok"]


def test_destination_rules(tiny_ckpts, tmp_path):
    dest = tmp_path / "bundle"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not a uehead bundle"):
        export_bundle(tiny_ckpts["bert"], dest)
    assert (dest / "notes.txt").read_text() == "mine"
    shutil.rmtree(dest)
    first = export_bundle(tiny_ckpts["bert"], dest)
    second = export_bundle(tiny_ckpts["bert"], dest, default_head="alien")  # an older bundle is replaced
    assert first.head.default_kind == "adue" and load_manifest(dest).head.default_kind == "alien" == \
        second.head.default_kind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no temporary folders left


def test_failed_export_leaves_no_bundle(tiny_ckpts, tmp_path, monkeypatch):
    from uehead.export import graphs

    def broken(self, *tensors):  # BERT: the first-token state instead of the pooled output
        return self.base(**dict(zip(self.input_names, tensors))).last_hidden_state[:, 0]

    monkeypatch.setattr(graphs.BackboneFeatures, "forward", broken)
    with pytest.raises(ExportValidationError) as info:
        export_bundle(tiny_ckpts["bert"], tmp_path / "bundle")
    report = info.value.report
    assert "probs" in report["failed"] and report["max_abs_diff"]["features"] > 1e-3
    assert "backbone.onnx" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_errors_name_the_file(tiny_ckpts, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpts["bert"], ckpt)
    (ckpt / "heads" / "alien.safetensors").unlink()
    with pytest.raises(CheckpointError, match="alien.safetensors"):
        export_bundle(ckpt, tmp_path / "b")
    (ckpt / "training.json").unlink()
    with pytest.raises(CheckpointError, match="training.json"):
        export_bundle(ckpt, tmp_path / "b")
    with pytest.raises(CheckpointError, match="not a folder"):
        export_bundle(tmp_path / "nowhere", tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_head_with_wrong_shape_is_refused(tiny_ckpts, tmp_path):
    from safetensors.numpy import save_file

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpts["bert"], ckpt)
    save_file({"weight": np.zeros((3, 32), np.float32), "bias": np.zeros(3, np.float32)},
              str(ckpt / "heads" / "adue.safetensors"))
    with pytest.raises(CheckpointError, match="3 classes"):
        export_bundle(ckpt, tmp_path / "b")


def test_cli_export_then_verify(tiny_ckpts, tmp_path, capsys):
    from uehead.cli import main

    assert main(["export", str(tiny_ckpts["llama"]), str(tmp_path / "b"), "--opset", "17"]) == 0
    assert main(["verify", str(tmp_path / "b")]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "c")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_roberta_style_head_exports_and_matches(tmp_path):
    """RoBERTa-style: z = first-token state; classifier and heads = dense + tanh + out_proj."""
    from tiny_checkpoint import make_tiny_checkpoint

    ckpt = make_tiny_checkpoint(tmp_path / "ckpt", arch="roberta")
    m = export_bundle(ckpt, tmp_path / "b")
    assert (m.backbone.architecture, m.backbone.pooling) == ("roberta", "first_token")
    assert m.head.num_parameters == 3 * (32 * 32 + 32 + 2 * 32 + 2)
    report = compare_runtime_to_pytorch(ckpt, tmp_path / "b", list(SAMPLE_TEXTS))
    assert report["passed"]


def test_verify_compares_golden_distances_when_present(fp32_bundles, tmp_path):
    from uehead.bundle import read_manifest, write_manifest
    from uehead.runtime.verification import GoldenMismatchError

    bundle = tmp_path / "b"
    shutil.copytree(fp32_bundles["bert"][1], bundle)
    golden = json.loads((bundle / "golden.json").read_text())
    preds = runtime.load(bundle, threads=1).predict(golden["texts"], batch_size=1, distances=True)
    golden["distances"] = {k: preds.scores[k].astype(float).tolist() for k in ("md", "rmd")}

    def write(data):
        (bundle / "golden.json").write_text(json.dumps(data))
        write_manifest(bundle, read_manifest(bundle))

    write(golden)
    assert set(runtime.verify(bundle)["golden"]["max_abs_diff"]) >= {"md", "rmd"}
    golden["distances"]["md"][0] += 0.01 * max(1.0, abs(golden["distances"]["md"][0]))  # relative diff 0.01
    write(golden)
    with pytest.raises(GoldenMismatchError, match="md max abs diff"):
        runtime.verify(bundle)
