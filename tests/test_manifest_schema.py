"""The manifest's field types and ranges (uehead.manifest_schema): a wrong-typed field fails to load
with a BundleError naming the field and manifest.json, never a TypeError or a silent misreading."""
from __future__ import annotations

import pytest

from tiny_bundle import edit_manifest, make_tiny_bundle
from uehead.bundle import FORMAT_VERSION, BundleError, BundleVersionError, IncompatibleBundleError, read_manifest
from uehead.cli import main


@pytest.fixture
def bundle(tmp_path):
    return make_tiny_bundle(tmp_path / "b")


def _set(section, key, value):
    def change(d):
        target = d
        for part in section:
            target = target[part]
        target[key] = value
    return change


@pytest.mark.parametrize("change, field", [
    (_set(["tokenizer"], "max_length", "128"), "tokenizer.max_length"),
    (_set(["tokenizer"], "max_length", 12.0), "tokenizer.max_length"),
    (_set(["tokenizer"], "pad_token_id", None), "tokenizer.pad_token_id"),
    (_set(["tokenizer"], "pad_token_id", -1), "tokenizer.pad_token_id"),
    (_set(["tokenizer"], "model_input_names", "input_ids"), "tokenizer.model_input_names"),
    (_set(["baselines"], "settings", None), "baselines.settings"),
    (_set(["baselines", "settings"], "l2_normalize", "false"), "baselines.settings.l2_normalize"),
    (_set(["head", "heads", 0], "lam", "abc"), r"head.heads\[0\].lam"),
    (_set(["head", "heads", 1], "hyperparameters", []), r"head.heads\[1\].hyperparameters"),
    (_set(["head"], "num_classes", "2"), "head.num_classes"),
    (_set(["head"], "heads", {"kind": "adue"}), "head.heads"),
    (_set([], "labels", "ab"), "labels"),
    (_set([], "labels", [1, 2]), "labels"),
    (_set([], "writer", "uehead 0.1"), "writer"),
    (_set(["backbone"], "feature_size", True), "backbone.feature_size"),
    (_set(["backbone"], "input_names", [1, 2, 3]), "backbone.input_names"),
    (_set(["golden"], "file", 7), "golden.file"),
    (_set(["backbone"], "max_positions", 8), "tokenizer.max_length 16 exceeds backbone.max_positions 8"),
    # found by benchmarks/fuzz_atheris.py: each crashed the reader or the loader
    (_set([], "head", [{"file": "head.onnx"}]), "'head' must be an object"),
    (_set(["backbone"], "file", "\ud800"), "backbone.file"),
    (_set(["tokenizer"], "max_length", 2**64), "tokenizer.max_length"),
    (_set(["scores"], "file", {"a": 1}), "scores.file"),
])
def test_wrong_typed_fields_name_the_field_and_the_file(bundle, change, field):
    edit_manifest(bundle, change)
    with pytest.raises(BundleError, match=field) as info:
        read_manifest(bundle)
    assert str(bundle / "manifest.json") in str(info.value) and info.value.fix


def test_verify_reports_a_wrong_typed_field_without_a_traceback(bundle, capsys):
    edit_manifest(bundle, _set(["baselines"], "settings", None))
    assert main(["verify", str(bundle)]) == 2
    assert "baselines.settings" in capsys.readouterr().err


@pytest.mark.parametrize("writer", [None, "a string", {"uehead": 5}, {}])
def test_a_newer_format_version_raises_the_version_error_whatever_the_writer(bundle, writer):
    edit_manifest(bundle, lambda d: d.update(format_version=999, writer=writer, tokenizer="anything"))
    with pytest.raises(BundleVersionError, match="format_version 999 is newer") as info:
        read_manifest(bundle)
    assert "pip install -U" in info.value.fix


def test_position_limit_accepts_a_fitting_max_length_and_old_bundles_without_one(bundle):
    edit_manifest(bundle, _set(["backbone"], "max_positions", 16))
    assert read_manifest(bundle).backbone.max_positions == 16
    edit_manifest(bundle, lambda d: d["backbone"].pop("max_positions"))
    assert read_manifest(bundle).backbone.max_positions == 0  # not recorded: not checked
    edit_manifest(bundle, _set(["tokenizer"], "max_length", 0))
    with pytest.raises(IncompatibleBundleError, match="max_length"):
        read_manifest(bundle)


def test_version_error_names_the_writer_when_known(bundle):
    edit_manifest(bundle, lambda d: d.update(format_version=FORMAT_VERSION + 5, writer={"uehead": "9.1"}))
    with pytest.raises(BundleVersionError, match="written by uehead 9.1") as info:
        read_manifest(bundle)
    assert "uehead>=9.1" in info.value.fix
