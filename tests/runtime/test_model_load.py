"""runtime.load: a complete Model, or a typed BundleError naming the file and the fix."""
from __future__ import annotations


import numpy as np
import pytest

from tiny_bundle import edit_manifest, make_tiny_bundle, rechecksum_bundle as rechecksum
from uehead import runtime
from uehead.bundle import (BundleError, BundleVersionError, ChecksumError, IncompatibleBundleError,
                           MissingFileError)
from uehead.runtime.model import Model


@pytest.fixture
def bundle(tmp_path):
    return make_tiny_bundle(tmp_path / "b", with_golden=False)


def test_load_returns_a_complete_model(tiny_bundle_dir):
    model = runtime.load(tiny_bundle_dir, threads=1, graph_optimization="basic")
    assert isinstance(model, Model)
    assert model.path == tiny_bundle_dir
    assert model.labels == ("class_0", "class_1") == model.manifest.labels
    assert model.baselines is not None and model.baselines.class_means.shape == (2, 16)
    assert model.backbone_session.get_session_options().intra_op_num_threads == 1
    assert "adue" in repr(model)
    assert len(model.predict("good")) == 1


def test_missing_bundle_folder_and_manifest(tmp_path, bundle):
    with pytest.raises(MissingFileError, match="nowhere"):
        runtime.load(tmp_path / "nowhere")
    (bundle / "manifest.json").unlink()
    with pytest.raises(MissingFileError, match="manifest.json") as info:
        runtime.load(bundle)
    assert info.value.fix


@pytest.mark.parametrize("name", ["backbone.onnx", "head.onnx", "tokenizer.json", "baselines.npz"])
def test_missing_file(bundle, name):
    (bundle / name).unlink()
    with pytest.raises(MissingFileError, match=name) as info:
        runtime.load(bundle)
    assert info.value.path.endswith(name)


@pytest.mark.parametrize("name", ["backbone.onnx", "head.onnx", "tokenizer.json", "baselines.npz"])
def test_altered_file_fails_its_checksum(bundle, name):
    with open(bundle / name, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ChecksumError, match=name):
        runtime.load(bundle)


def test_newer_format_version(bundle):
    edit_manifest(bundle, lambda d: d.update(format_version=99, writer={"uehead": "9.0"}))
    with pytest.raises(BundleVersionError, match="format_version 99") as info:
        runtime.load(bundle)
    assert "upgrade" in info.value.fix


def test_unknown_head_kind(bundle):
    edit_manifest(bundle, lambda d: d["head"]["heads"][0].update(kind="mystery"))
    with pytest.raises(IncompatibleBundleError, match="mystery"):
        runtime.load(bundle)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\xff\xfe"])
def test_bad_manifest_json(bundle, text):
    (bundle / "manifest.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(BundleError, match="manifest.json"):
        runtime.load(bundle)


def test_head_input_does_not_fit_backbone_features(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", head_input_size=12, with_golden=False)
    with pytest.raises(IncompatibleBundleError, match="head.onnx.*feature_size 16"):
        runtime.load(bundle)


def test_manifest_feature_size_disagrees_with_graphs(bundle):
    edit_manifest(bundle, lambda d: d["backbone"].update(feature_size=32))
    with pytest.raises(IncompatibleBundleError, match="backbone.onnx"):
        runtime.load(bundle)


def test_backbone_output_width_checked_at_run_time(tiny_model):
    """Graphs whose z width is symbolic pass the static checks; the first run still catches it."""

    class NarrowBackbone:
        def run(self, names, feeds):
            return [np.zeros((feeds["input_ids"].shape[0], 8), np.float32)]

    m = tiny_model
    broken = Model(m.path, m.manifest, m.tokenizer, NarrowBackbone(), m.head_session, None)
    with pytest.raises(IncompatibleBundleError, match=r"backbone.onnx.*\(2, 8\).*\(2, 16\)"):
        broken.predict(["a", "b"])


@pytest.mark.parametrize("change, match", [
    (lambda d: d["backbone"].update(output_name="hidden"), "no output 'hidden'"),
    (lambda d: d["head"].update(task_logits_name="logits"), "no output 'logits'"),
    (lambda d: d["head"]["heads"][1].update(output_name="gone"), "no output 'gone'"),
    (lambda d: d["head"].update(input_name="features"), "head.input_name"),
    (lambda d: [d[k].update({n: ["input_ids", "attention_mask"]}) for k, n in
                (("backbone", "input_names"), ("tokenizer", "model_input_names"))], "backbone.input_names"),
])
def test_graph_names_checked_against_manifest(bundle, change, match):
    edit_manifest(bundle, change)
    with pytest.raises(IncompatibleBundleError, match=match):
        runtime.load(bundle)


def test_num_classes_must_match_head_outputs(bundle):
    edit_manifest(bundle, lambda d: (d.update(labels=["a", "b", "c"]), d["head"].update(num_classes=3),
                                     d.update(baselines=None)))
    with pytest.raises(IncompatibleBundleError, match=r"head.onnx.*\[batch, 3\]"):
        runtime.load(bundle)


def test_corrupt_graph_with_checks_off_is_a_bundle_error(bundle):
    (bundle / "head.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(BundleError, match="head.onnx"):
        runtime.load(bundle, check_files=False)


def test_baselines_never_unpickled_and_shapes_checked(bundle):
    np.savez(bundle / "baselines.npz", class_means=np.array([{"x": 1}], dtype=object))
    rechecksum(bundle)
    with pytest.raises(BundleError, match="baselines.npz"):
        runtime.load(bundle)
    np.savez(bundle / "baselines.npz", class_means=np.zeros((2, 16)), precision=np.eye(16),
             global_mean=np.zeros(15), global_precision=np.eye(16))
    rechecksum(bundle)
    with pytest.raises(IncompatibleBundleError, match="global_mean"):
        runtime.load(bundle)
    np.savez(bundle / "baselines.npz", class_means=np.zeros((2, 16)))
    rechecksum(bundle)
    with pytest.raises(IncompatibleBundleError, match="lacks arrays"):
        runtime.load(bundle)


def test_corrupt_tokenizer_is_named(bundle):
    (bundle / "tokenizer.json").write_text("{}", encoding="utf-8")
    rechecksum(bundle)
    with pytest.raises(BundleError, match="tokenizer.json"):
        runtime.load(bundle)


def test_bad_session_option_is_a_value_error(tiny_bundle_dir):
    with pytest.raises(ValueError, match="graph_optimization"):
        runtime.load(tiny_bundle_dir, graph_optimization="turbo")
