"""uehead.checkpoint (torch-free): layout, training.json format_version, readers' typed errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from uehead import checkpoint as C
from uehead.errors import CheckpointError, UeheadError, UnknownScoreError

HIDDEN, CLASSES = 4, 2


def _stats():
    rng = np.random.default_rng(0)
    return {"class_means": rng.normal(size=(CLASSES, HIDDEN)), "precision": np.eye(HIDDEN),
            "global_mean": np.zeros(HIDDEN), "global_precision": np.eye(HIDDEN)}


def make_checkpoint(root, heads=("alien", "adue"), record=None):
    """A checkpoint of the documented layout with a config.json standing in for the HF model."""
    C.model_dir(root).mkdir(parents=True)
    (C.model_dir(root) / "config.json").write_text(json.dumps(
        {"model_type": "bert", "hidden_size": HIDDEN, "id2label": {"0": "neg", "1": "pos"}}))
    rng = np.random.default_rng(1)
    for kind in heads:
        C.write_head(root, kind, {"weight": rng.normal(size=(CLASSES, HIDDEN)), "bias": np.zeros(CLASSES)},
                     {"lam": 50.0, "module": "linear", "in_features": HIDDEN, "num_classes": CLASSES, "bias": True})
    C.write_md(root, _stats(), l2=False)
    C.write_scores(root, "test", [0, 1], [0, 0], [0, 1], {"sr": [0.1, 0.4]})
    C.write_training(root, record if record is not None else {"max_length": 16, "label_names": ["neg", "pos"]})
    return root


def test_round_trip_and_format_version(tmp_path):
    pytest.importorskip("safetensors")
    root = make_checkpoint(tmp_path / "ckpt")
    assert C.is_checkpoint(root) and C.read_training(root)["format_version"] == C.FORMAT_VERSION
    ckpt = C.read_checkpoint(root)
    assert (ckpt.architecture, ckpt.pooling, ckpt.max_length, ckpt.label_names) == ("bert", "pooler", 16,
                                                                                     ("neg", "pos"))
    assert list(ckpt.heads) == ["adue", "alien"]  # registry order, not file order
    assert ckpt.heads["adue"].params == {"lam": 50.0} and ckpt.heads["alien"].params == {}
    assert ckpt.heads["adue"].state_dict["weight"].dtype == np.float32
    assert set(C.read_md(root)) == set(_stats()) and C.read_scores(root, "test")["sr"].tolist() == [0.1, 0.4]
    assert C.resolve_model_dir(root) == C.resolve_model_dir(C.model_dir(root)) == C.model_dir(root)


def test_a_checkpoint_without_format_version_reads_as_version_1(tmp_path):
    pytest.importorskip("safetensors")
    root = make_checkpoint(tmp_path / "ckpt")
    record = json.loads((root / C.TRAINING_JSON).read_text())
    del record["format_version"]
    (root / C.TRAINING_JSON).write_text(json.dumps(record))
    assert C.read_checkpoint(root).format_version == 1


def test_a_newer_format_version_names_the_upgrade(tmp_path):
    root = tmp_path / "ckpt"
    root.mkdir()
    C.write_json(root / C.TRAINING_JSON, {"format_version": C.FORMAT_VERSION + 1, "uehead_version": "9.0"})
    with pytest.raises(CheckpointError, match=r"training.json.*newer.*pip install -U 'uehead>=9.0'") as info:
        C.read_training(root)
    assert isinstance(info.value, UeheadError) and info.value.path.endswith(C.TRAINING_JSON)


def test_readers_name_the_file(tmp_path):
    pytest.importorskip("safetensors")
    root = make_checkpoint(tmp_path / "ckpt")
    np.savez(root / "baselines" / "md.npz", class_means=np.zeros((2, HIDDEN)))
    with pytest.raises(CheckpointError, match=r"md.npz.*lacks arrays"):
        C.read_md(root)
    with pytest.raises(CheckpointError, match=r"valid.npz.*missing"):
        C.read_scores(root, "valid")
    (root / "heads" / "adue.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"adue.safetensors.*missing"):
        C.read_checkpoint(root)
    with pytest.raises(CheckpointError, match="no config.json"):
        C.resolve_model_dir(tmp_path)


def test_an_unknown_head_kind_raises_the_registry_error(tmp_path):
    pytest.importorskip("safetensors")
    root = make_checkpoint(tmp_path / "ckpt", heads=("adue", "bogus"))
    with pytest.raises(UnknownScoreError, match=r"bogus.json.*'bogus'.*known kinds: adue, alien"):
        C.read_checkpoint(root)


def test_a_bad_head_parameter_is_a_checkpoint_error(tmp_path):
    pytest.importorskip("safetensors")
    root = make_checkpoint(tmp_path / "ckpt", heads=("adue",))
    meta = json.loads((root / "heads" / "adue.json").read_text())
    (root / "heads" / "adue.json").write_text(json.dumps({**meta, "lam": -1.0}))
    with pytest.raises(CheckpointError, match=r"adue.json.*'lam' must be a finite real > 0"):
        C.read_checkpoint(root)


def test_one_checkpoint_error_class():
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import uehead.export
    import uehead.training.checkpoint

    assert uehead.export.CheckpointError is uehead.training.checkpoint.CheckpointError is CheckpointError


def test_reading_a_checkpoint_imports_no_torch(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("safetensors")
    root = make_checkpoint(tmp_path / "ckpt")
    code = ("import sys, uehead.checkpoint as C; ckpt = C.read_checkpoint(sys.argv[1]); "
            "print(sorted(ckpt.heads), [m for m in ('torch', 'transformers', 'onnxruntime') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['adue', 'alien'] []"
