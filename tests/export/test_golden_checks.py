"""golden.json catches edits of the manifest that every checksum misses: it carries the label names
and, when the bundle has baselines, the md/rmd scores, and ``uehead verify`` compares both."""
from __future__ import annotations

import json
import shutil

import pytest

from tiny_bundle import edit_manifest
from uehead import runtime
from uehead.runtime.verification import GoldenMismatchError


@pytest.fixture
def bundle(fp32_bundles, tmp_path):
    out = tmp_path / "b"
    shutil.copytree(fp32_bundles["bert"][1], out)
    return out


def test_golden_carries_label_names_and_distances(bundle):
    golden = json.loads((bundle / "golden.json").read_text())
    labels = json.loads((bundle / "manifest.json").read_text())["labels"]
    assert golden["labels"] == [labels[i] for i in golden["label_ids"]]
    assert set(golden["distances"]) == {"md", "rmd"}
    assert len(golden["distances"]["md"]) == len(golden["texts"])
    report = runtime.verify(bundle)["golden"]
    assert {"md", "rmd"} <= set(report["max_abs_diff"]) and report["label_names"] == len(golden["texts"])


def test_swapped_label_names_fail_verify(bundle):
    edit_manifest(bundle, lambda d: d.update(labels=d["labels"][::-1]), rechecksum=True)
    with pytest.raises(GoldenMismatchError, match=r"label names differ.*manifest's labels"):
        runtime.verify(bundle)


def test_an_edited_baselines_setting_fails_verify(bundle):
    edit_manifest(bundle, lambda d: d["baselines"]["settings"].update(l2_normalize=True), rechecksum=True)
    with pytest.raises(GoldenMismatchError, match=r"md max abs diff"):
        runtime.verify(bundle)


def test_the_manifest_records_the_backbone_position_limit(fp32_bundles, tiny_ckpts):
    for arch, (manifest, _) in fp32_bundles.items():
        config = json.loads((tiny_ckpts[arch] / "model" / "config.json").read_text())
        assert manifest.backbone.max_positions == config["max_position_embeddings"] >= manifest.tokenizer.max_length
