"""--int8 (default method): a dynamically quantised backbone, its deltas vs fp32 in the manifest, golden from ONNX Runtime."""
from __future__ import annotations

import json

import numpy as np
import onnx

from uehead import runtime
from uehead.export.api import INT8_GOLDEN_TOLERANCE


def test_int8_backbone_is_quantised_per_channel(int8_bundle, fp32_bundles):
    manifest, bundle = int8_bundle
    assert manifest.backbone.precision == "int8"
    graph = onnx.load(str(bundle / "backbone.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert "DynamicQuantizeLinear" in ops and ({"MatMulInteger", "DynamicQuantizeMatMul"} & ops)
    assert not ({"MatMul", "Gemm"} & ops) or all(  # any MatMul left has no constant weight
        not any(i in {t.name for t in graph.initializer} for i in n.input) for n in graph.node
        if n.op_type in ("MatMul", "Gemm"))
    scales = [t for t in graph.initializer if t.name.endswith("_scale") and len(t.dims) == 1 and t.dims[0] > 1]
    assert scales, "per-channel weights have one scale per output channel"
    fp32_manifest = fp32_bundles["bert"][0]
    assert manifest.head.num_parameters == fp32_manifest.head.num_parameters
    assert manifest.backbone.num_parameters == fp32_manifest.backbone.num_parameters


def test_int8_reports(int8_bundle):
    manifest, _ = int8_bundle
    r = manifest.reports["int8"]
    assert r["per_channel"] is True and r["weight_type"] == "int8"
    assert (r["method"], r["calibration"], r["fused_graph"]) == ("dynamic", None, False)  # the default
    assert manifest.reports["export"]["graph_fusions"]["applied"] is False
    assert r["int8_bytes"] < r["fp32_bytes"]
    assert manifest.reports["validation"]["passed"]  # fp32 graphs were validated before quantising
    golden = r["golden"]["max_abs_diff"]
    assert set(golden) >= {"features", "probs", "sr", "adue", "alien"}
    assert 0 < golden["features"] < 0.5 and golden["probs"] < 0.05
    data = r["data"]
    assert data["rows"] == 60 and data["split"] == "test"
    assert set(data["accuracy"]) == {"fp32", "int8", "delta", "delta_se"}
    assert data["roc_auc"], "the tiny model makes errors, so ROC-AUC is defined"
    for entry in [data["accuracy"], *data["roc_auc"].values()]:
        assert abs(entry["delta"] - (entry["int8"] - entry["fp32"])) < 1e-9
        assert entry["delta_se"] is not None and entry["delta_se"] >= 0
    assert isinstance(data["within_1_point"], bool)


def test_int8_golden_comes_from_onnxruntime_and_verifies(int8_bundle):
    manifest, bundle = int8_bundle
    golden = json.loads((bundle / "golden.json").read_text())
    assert golden["source"] == "onnxruntime" and golden["tolerance"] == INT8_GOLDEN_TOLERANCE
    report = runtime.verify(bundle)
    assert report["golden"]["source"] == "onnxruntime"
    assert max(report["golden"]["max_abs_diff"].values()) < 1e-4  # same graph, one text per call


def test_int8_predictions_stay_close_to_fp32(int8_bundle, fp32_bundles):
    texts = ["good film", "the plot was very dull and boring", "", "great " * 50, "a charming but messy story"]
    p8 = runtime.load(int8_bundle[1], threads=1).predict(texts)
    p32 = runtime.load(fp32_bundles["bert"][1], threads=1).predict(texts)
    assert np.abs(p8.probs - p32.probs).max() < 0.05
    assert np.abs(p8.uncertainty - p32.uncertainty).max() < 0.05


def test_decoder_int8_takes_per_layer_precision_from_measured_sensitivity(tiny_ckpts, tiny_data, tmp_path):
    """LLaMA-family backbones: every weight MatMul's precision is chosen and recorded in the manifest."""
    from uehead.export import export_bundle

    manifest = export_bundle(tiny_ckpts["llama"], tmp_path / "llama_int8", int8=True, data=tiny_data)
    r = manifest.reports["int8"]
    assert r["method"].startswith("per-layer mix")
    assert r["calibration_source"].endswith("/train") and r["calibration_rows"] > 0
    assert r["layers"] and all(l["choice"] in ("int8", "int8_smooth", "int4", "fp32") for l in r["layers"])
    assert sum(r["counts"].values()) == len(r["layers"])
    assert r["bytes"] == (tmp_path / "llama_int8" / "backbone.onnx").stat().st_size
    preds = runtime.load(tmp_path / "llama_int8").predict(["a fine film", "dull"])
    assert np.isfinite(preds.probs).all() and len(preds.labels) == 2
