"""uehead.bundle: manifest round trip, checksums, and every typed error (no ONNX Runtime needed)."""
from __future__ import annotations


import pytest

from tiny_bundle import edit_manifest, make_tiny_bundle
from uehead.bundle import (FORMAT_VERSION, BundleError, BundleVersionError, ChecksumError,
                           IncompatibleBundleError, Manifest, MissingFileError, load_manifest, read_manifest,
                           sha256_file, write_manifest)


@pytest.fixture
def bundle(tmp_path):
    return make_tiny_bundle(tmp_path / "b")


def test_tiny_bundle_manifest_round_trip(bundle):
    m = load_manifest(bundle)
    assert isinstance(m, Manifest) and m.format_version == FORMAT_VERSION
    assert m.labels == ("class_0", "class_1")
    assert [h.kind for h in m.head.heads] == ["adue", "alien"] and m.head.default_kind == "adue"
    assert m.baselines.settings == {"l2_normalize": False} and m.golden.file == "golden.json"
    for name, digest in m.files().items():
        assert sha256_file(bundle / name) == digest
    write_manifest(bundle, m)
    assert read_manifest(bundle) == m


def test_missing_manifest_and_folder(tmp_path, bundle):
    with pytest.raises(MissingFileError, match="not a folder"):
        read_manifest(tmp_path / "absent")
    (bundle / "manifest.json").unlink()
    with pytest.raises(MissingFileError, match="manifest.json") as info:
        load_manifest(bundle)
    assert "uehead export" in info.value.fix


@pytest.mark.parametrize("name", ["backbone.onnx", "head.onnx", "tokenizer.json", "baselines.npz", "golden.json"])
def test_missing_and_altered_files(bundle, name):
    original = (bundle / name).read_bytes()
    (bundle / name).write_bytes(original[:-1])
    with pytest.raises(ChecksumError, match=name):
        load_manifest(bundle)
    read_manifest(bundle)  # the manifest alone does not look at the files
    load_manifest(bundle, check_files=False)
    (bundle / name).unlink()
    with pytest.raises(MissingFileError, match=name):
        load_manifest(bundle)


def test_newer_format_version_names_the_upgrade(bundle):
    edit_manifest(bundle, lambda d: d.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(BundleVersionError, match=f"format_version {FORMAT_VERSION + 1}") as info:
        read_manifest(bundle)
    assert "pip install -U" in info.value.fix


@pytest.mark.parametrize("change, error, match", [
    (lambda d: d["head"]["heads"][1].update(kind="rde"), IncompatibleBundleError, "unknown uncertainty head kind 'rde'"),
    (lambda d: d["head"].update(default_kind="alien2"), IncompatibleBundleError, "default_kind"),
    (lambda d: d["head"]["heads"][0].update(lam=0), IncompatibleBundleError, "parameter 'lam' must be a finite real > 0"),
    (lambda d: d["head"].update(num_classes=3), IncompatibleBundleError, "num_classes is 3"),
    (lambda d: d.update(format="other"), BundleError, "not a uehead bundle"),
    (lambda d: d.update(format_version="1"), BundleError, "positive integer"),
    (lambda d: d["backbone"].pop("feature_size"), BundleError, "backbone.feature_size' is missing"),
    (lambda d: d["backbone"].update(file="../backbone.onnx"), BundleError, "plain name"),
    (lambda d: d.update(tokenizer=[1]), BundleError, "'tokenizer' must be an object"),
])
def test_bad_manifest_fields(bundle, change, error, match):
    edit_manifest(bundle, change)
    with pytest.raises(error, match=match) as info:
        read_manifest(bundle)
    assert str(bundle / "manifest.json") in str(info.value) and info.value.fix


@pytest.mark.parametrize("raw", [b"{bad json", b"[]", b"\xff\xfe\x00"])
def test_bad_json(bundle, raw):
    (bundle / "manifest.json").write_bytes(raw)
    with pytest.raises(BundleError, match="manifest.json"):
        read_manifest(bundle)
