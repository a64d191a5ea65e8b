"""The export options of the int8 / fusion work: --fusions (ONNX Runtime's transformer fusions at
export time), --int8-method static, --max-length."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest

from uehead import runtime
from uehead.export import ExportError, ExportValidationError, export_bundle
from uehead.export import optimize

pytest.importorskip("onnxruntime.transformers.optimizer")


def _ops(bundle) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(str(bundle / "backbone.onnx")).graph.node)


def _outputs(bundle) -> list[str]:
    return [o.name for o in onnx.load(str(bundle / "backbone.onnx")).graph.output]


@pytest.fixture(scope="module")
def fused_bundles(tiny_ckpts, tiny_data, tmp_path_factory):
    """kind -> (manifest, folder): the tiny BERT fused in fp32, fused + dynamic int8; the tiny LLaMA asked to fuse."""
    root = tmp_path_factory.mktemp("fused")
    out = {"fp32": root / "fp32", "int8": root / "int8", "llama": root / "llama"}
    return {
        "fp32": (export_bundle(tiny_ckpts["bert"], out["fp32"], fusions=True, progress=False), out["fp32"]),
        "int8": (export_bundle(tiny_ckpts["bert"], out["int8"], fusions=True, int8=True, data=tiny_data,
                               progress=False), out["int8"]),
        "llama": (export_bundle(tiny_ckpts["llama"], out["llama"], fusions=True, progress=False), out["llama"]),
    }


def test_fused_fp32_graph_holds_the_fused_operators_and_keeps_its_output(fused_bundles, fp32_bundles):
    manifest, bundle = fused_bundles["fp32"]
    ops = _ops(bundle)
    # Would fail if the optimizer silently fused nothing: the plain export has none of these.
    assert ops["Attention"] == 2 and ops["SkipLayerNormalization"] >= 2 and ops["EmbedLayerNormalization"] == 1
    assert not {"Attention", "SkipLayerNormalization", "EmbedLayerNormalization"} & set(_ops(fp32_bundles["bert"][1]))
    assert _outputs(bundle) == ["features"] == [manifest.backbone.output_name]
    report = manifest.reports["export"]["graph_fusions"]
    assert report["applied"] is True and report["model_type"] == "bert" and report["num_heads"] == 2
    assert report["fused_ops"] == {op: ops[op] for op in optimize.FUSED_OPS if ops[op]}
    assert report["optimizer_statistics"]["Attention"] == 2
    assert 0 <= report["max_abs_diff_vs_unfused"] <= optimize.FUSION_TOLERANCE
    assert manifest.reports["validation"]["passed"]  # PyTorch vs the fused graph
    runtime.verify(bundle)


def test_fused_fp32_predicts_like_the_plain_export(fused_bundles, fp32_bundles):
    texts = ["good film", "the plot was very dull and boring", "", "great " * 50]
    fused = runtime.load(fused_bundles["fp32"][1], threads=1).predict(texts)
    plain = runtime.load(fp32_bundles["bert"][1], threads=1).predict(texts)
    assert np.abs(fused.probs - plain.probs).max() < 1e-5
    assert np.abs(fused.uncertainty - plain.uncertainty).max() < 1e-5


def test_fused_int8_quantises_the_attention_and_records_how(fused_bundles):
    manifest, bundle = fused_bundles["int8"]
    ops = _ops(bundle)
    assert ops["QAttention"] == 2 and "Attention" not in ops
    assert _outputs(bundle) == ["features"]
    r = manifest.reports["int8"]
    assert (r["method"], r["fused_graph"], r["per_channel"], r["calibration"]) == ("dynamic", True, True, None)
    assert "Attention" in r["ops"]
    assert manifest.reports["export"]["graph_fusions"]["applied"] is True
    assert manifest.reports["validation"]["passed"]
    runtime.verify(bundle)


def test_decoders_are_left_unfused_and_say_why(fused_bundles):
    manifest, bundle = fused_bundles["llama"]
    report = manifest.reports["export"]["graph_fusions"]
    assert report["applied"] is False and "llama" in report["reason"]
    assert not set(optimize.FUSED_OPS) - {"LayerNormalization"} & set(_ops(bundle))
    assert _outputs(bundle) == ["features"] and manifest.reports["validation"]["passed"]


def test_plain_exports_record_no_fusions(fp32_bundles):
    assert fp32_bundles["bert"][0].reports["export"]["graph_fusions"]["applied"] is False


def test_fusion_plan_reads_the_config():
    assert optimize.fusion_plan({"model_type": "distilbert", "n_heads": 12, "dim": 768})["num_heads"] == 12
    assert "reason" in optimize.fusion_plan({"model_type": "qwen2", "num_attention_heads": 4})


def test_fusion_beyond_tolerance_fails_the_export(tiny_ckpts, tmp_path, monkeypatch):
    monkeypatch.setattr(optimize, "FUSION_TOLERANCE", -1.0)
    with pytest.raises(ExportValidationError, match="fused backbone"):
        export_bundle(tiny_ckpts["bert"], tmp_path / "b", fusions=True, progress=False)
    assert not (tmp_path / "b").exists()


def test_static_int8_is_calibrated_on_train_texts(tiny_ckpts, tiny_data, tmp_path):
    out = tmp_path / "static"
    manifest = export_bundle(tiny_ckpts["bert"], out, int8=True, int8_method="static", data=tiny_data, progress=False)
    ops = _ops(out)
    assert ops["QuantizeLinear"] and ops["DequantizeLinear"] and _outputs(out) == ["features"]
    r = manifest.reports["int8"]
    assert (r["method"], r["format"], r["per_channel"]) == ("static", "QDQ", True)
    assert r["calibration"]["texts"] == 20 and r["calibration"]["source"].endswith("/train")  # all 20 train rows
    assert r["data"]["rows"] == 60
    runtime.verify(out)


@pytest.mark.parametrize("kwargs, match", [({"int8": True, "int8_method": "static"}, "no dataset"),
                                           ({"int8": True, "int8_method": "qat"}, "int8 method")])
def test_bad_int8_options_are_refused(tiny_ckpts, tmp_path, kwargs, match):
    with pytest.raises(ExportError, match=match):
        export_bundle(tiny_ckpts["bert"], tmp_path / "b", progress=False, **kwargs)


def test_max_length_override_is_used_and_recorded(tiny_ckpts, tmp_path):
    out = tmp_path / "long"
    manifest = export_bundle(tiny_ckpts["bert"], out, max_length=40, progress=False)
    assert manifest.tokenizer.max_length == 40
    assert manifest.reports["export"]["max_length"] == {"bundle": 40, "trained": 24}
    assert manifest.reports["validation"]["cases"]["batch1_max_length"]["shape"] == [1, 40]
    assert runtime.load(out, threads=1).tokenizer.max_length == 40


@pytest.mark.parametrize("length", [10**6, 1, True])
def test_max_length_beyond_the_positions_is_refused(tiny_ckpts, tmp_path, length):
    with pytest.raises(ExportError, match="max_length"):
        export_bundle(tiny_ckpts["bert"], tmp_path / "b", max_length=length, progress=False)
