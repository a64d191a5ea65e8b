"""The last encoder layer cut to the pooled first token (export/pooled_row.py): same features, less work."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from uehead import runtime
from uehead.export import export_bundle
from uehead.export.pooled_row import POOLED_ROW_TOLERANCE, prune_to_pooled_row
from uehead.runtime.session import make_session

TEXTS = ["good film", "the plot was very dull and boring", "", "great " * 50, "a"]


@pytest.fixture(scope="module")
def whole(tiny_ckpts, tmp_path_factory):
    """The tiny BERT exported with every row of its last layer."""
    out = tmp_path_factory.mktemp("whole") / "b"
    return export_bundle(tiny_ckpts["bert"], out, full_last_layer=True, progress=False), out


def _pooled_input(model) -> str:
    """The tensor the pooled Gather(axis=1, index 0) reads: the last layer's output."""
    return next(n.input[0] for n in model.graph.node if n.op_type == "Gather"
                and any(a.name == "axis" and a.i == 1 for a in n.attribute) and "pooler" in n.name)


def _rows_of_last_layer(bundle, feeds) -> int:
    """How many rows per text the last layer's output holds (the graph with it as an extra output)."""
    model = onnx.load(str(bundle / "backbone.onnx"))
    name = _pooled_input(model)
    model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    path = bundle.parent / f"{bundle.name}-probe.onnx"
    onnx.save(model, str(path))
    out = make_session(path, threads=1).run([name], feeds)[0]
    return out.shape[1]


def _feeds(rows: int = 3, width: int = 9) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = np.ones((rows, width), np.int64)
    mask[0, 5:] = 0  # a padded row
    return {"input_ids": rng.integers(5, 40, (rows, width)), "attention_mask": mask,
            "token_type_ids": np.zeros((rows, width), np.int64)}


def test_the_default_export_runs_one_row_in_the_last_layer(fp32_bundles, whole):
    manifest, bundle = fp32_bundles["bert"]
    report = manifest.reports["export"]["pooled_row"]
    assert report["applied"] is True and 0 <= report["max_abs_diff_vs_full"] <= POOLED_ROW_TOLERANCE
    feeds = _feeds()
    assert _rows_of_last_layer(bundle, feeds) == 1
    assert _rows_of_last_layer(whole[1], feeds) == feeds["input_ids"].shape[1]  # the full graph: every token
    assert manifest.reports["validation"]["passed"]  # PyTorch vs the cut graph


def test_cut_and_whole_bundles_predict_the_same(fp32_bundles, whole):
    cut = runtime.load(fp32_bundles["bert"][1], threads=1).predict(TEXTS, distances=True)
    full = runtime.load(whole[1], threads=1).predict(TEXTS, distances=True)
    assert cut.labels == full.labels
    np.testing.assert_allclose(cut.probs, full.probs, atol=1e-6)
    for name in full.scores:
        np.testing.assert_allclose(cut.scores[name], full.scores[name], atol=1e-5)


def test_full_last_layer_keeps_the_graph_whole_and_says_so(whole):
    manifest, bundle = whole
    report = manifest.reports["export"]["pooled_row"]
    assert report == {"applied": False, "reason": "not requested (--full-last-layer)"}
    assert not any("pooled_row" in n.name for n in onnx.load(str(bundle / "backbone.onnx")).graph.node)


def test_the_int8_export_is_cut_before_it_is_quantised(int8_bundle):
    manifest, bundle = int8_bundle
    assert manifest.reports["export"]["pooled_row"]["applied"] is True
    assert _rows_of_last_layer(bundle, _feeds()) == 1


def test_a_graph_that_reads_the_other_rows_is_left_whole(whole, tmp_path):
    """features = pooled row + the mean over tokens: the pattern matches, the outputs would not."""
    model = onnx.load(str(whole[1] / "backbone.onnx"))
    last = _pooled_input(model)
    out = model.graph.output[0].name
    producer = next(n for n in model.graph.node if out in n.output)
    producer.output[0] = "pooled_only"
    model.graph.node.extend([
        helper.make_node("ReduceMean", [last], ["token_mean"], axes=[1], keepdims=0),
        helper.make_node("Add", ["pooled_only", "token_mean"], [out])])
    src = tmp_path / "mean.onnx"
    onnx.save(model, str(src))
    feeds = _feeds()
    report = prune_to_pooled_row(src, tmp_path / "cut.onnx", {"case": feeds})
    assert report["applied"] is False and "differ" in report["reason"]
    assert report["max_abs_diff_vs_full"] > POOLED_ROW_TOLERANCE
    assert not (tmp_path / "cut.onnx").exists()


def test_a_graph_without_a_first_token_pooler_is_left_whole(whole, tmp_path):
    model = onnx.load(str(whole[1] / "backbone.onnx"))
    gather = next(n for n in model.graph.node if n.op_type == "Gather" and "pooler" in n.name)
    model.graph.node.remove(gather)
    model.graph.node.insert(0, helper.make_node("ReduceMean", [gather.input[0]], [gather.output[0]],
                                                axes=[1], keepdims=0))
    onnx.save(model, str(tmp_path / "mean_pooled.onnx"))
    report = prune_to_pooled_row(tmp_path / "mean_pooled.onnx", tmp_path / "cut.onnx")
    assert report == {"applied": False,
                      "reason": "the backbone does not pool the first token with one Gather(axis=1, index 0)"}


def test_the_cli_flag_keeps_the_last_layer_whole(tiny_ckpts, tmp_path):
    from uehead.bundle import read_manifest
    from uehead.cli import main

    assert main(["export", str(tiny_ckpts["bert"]), str(tmp_path / "whole"), "--full-last-layer"]) == 0
    assert main(["export", str(tiny_ckpts["bert"]), str(tmp_path / "cut")]) == 0
    assert read_manifest(tmp_path / "whole").reports["export"]["pooled_row"]["applied"] is False
    assert read_manifest(tmp_path / "cut").reports["export"]["pooled_row"]["applied"] is True
