"""Per-layer mixed quantisation (uehead.export.quantize_layers) on a tiny random LLaMA exported
by the project's own export: every weight MatMul gets a measured sensitivity and a choice, the
tolerance decides, smoothing is exact in fp32, the simulated errors match ONNX Runtime's."""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("onnxruntime")

from uehead.datasets import load_dataset  # noqa: E402
from uehead.export import layer_sensitivity as sens  # noqa: E402
from uehead.export import quantize_layers as ql  # noqa: E402
from uehead.runtime.tokenize import TextTokenizer  # noqa: E402

QUANT_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulNBits"}


@pytest.fixture(scope="module")
def llama(fp32_bundles, tiny_data):
    """(fp32 backbone path, calibration feeds from the tiny TRAIN split, held-out test feeds)."""
    manifest, bundle = fp32_bundles["llama"]
    tok = TextTokenizer(bundle / manifest.tokenizer.file, manifest.tokenizer)
    data = load_dataset(tiny_data, splits=("train", "test"))
    return (bundle / manifest.backbone.file, ql.calibration_feeds(tok, data["train"].texts, batch_size=8),
            ql.calibration_feeds(tok, data["test"].texts, batch_size=16))


@pytest.fixture(scope="module")
def sensitivity(llama):
    path, feeds, _ = llama
    return ql.measure_sensitivity(path, feeds)


def _ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _features(path, feeds):
    return np.concatenate(ql._features(path, feeds, threads=1))


def _rel(a, b) -> float:
    return float(np.mean(np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)))


def test_every_weight_matmul_is_measured_and_chosen(llama, sensitivity, tmp_path):
    path, feeds, _ = llama
    names = [l["name"] for l in ql.weight_matmuls(onnx.load(str(path)))]
    assert len(names) == 2 * 7, "2 layers x (q, k, v, o, gate, up, down)"
    report = ql.quantize_mixed(path, tmp_path / "mixed.onnx", feeds, tolerance=0.05, sensitivity=sensitivity)
    assert [l["name"] for l in report["layers"]] == names
    for layer in report["layers"]:
        assert layer["choice"] in ql.CANDIDATES
        assert layer["error"]["fp32"] == 0.0 and layer["error"]["int8"] > 0 and layer["error"]["int4"] > 0
    assert sum(report["counts"].values()) == len(names)
    assert report["calibration_rows"] == sum(len(b["input_ids"]) for b in feeds)


def test_tolerance_zero_keeps_every_layer_fp32(llama, sensitivity, tmp_path):
    path, feeds, test = llama
    out = tmp_path / "fp32.onnx"
    report = ql.quantize_mixed(path, out, feeds, tolerance=0.0, sensitivity=sensitivity)
    assert report["counts"] == {"int8": 0, "int8_smooth": 0, "int4": 0, "fp32": len(sensitivity)}
    assert not (_ops(out) & QUANT_OPS)
    np.testing.assert_allclose(_features(out, test), _features(path, test), atol=1e-5)


@pytest.mark.parametrize("candidates, op", [(("int8",), "MatMulInteger"), (("int4",), "MatMulNBits"),
                                             (ql.CANDIDATES, None)])
def test_loose_tolerance_quantises_and_stays_close(llama, sensitivity, tmp_path, candidates, op):
    path, feeds, test = llama
    out = tmp_path / "q.onnx"
    report = ql.quantize_mixed(path, out, feeds, tolerance=10.0, candidates=candidates, sensitivity=sensitivity)
    assert report["counts"]["fp32"] == 0, "a loose tolerance quantises every layer"
    assert report["counts"][candidates[0]] >= len(sensitivity) - 2  # smoothing applies to down_proj only
    ops = _ops(out)
    assert ops & QUANT_OPS
    if op == "MatMulInteger":
        assert ops & {"MatMulInteger", "DynamicQuantizeMatMul"}
    elif op:
        assert sum(n.op_type == op for n in onnx.load(str(out)).graph.node) == len(sensitivity)
    assert report["bytes"] < report["fp32_bytes"]
    z32, zq = _features(path, test), _features(out, test)
    assert np.isfinite(zq).all() and 0 < _rel(z32, zq) < 0.25
    assert report["check"]["features_rel_error_mean"] < 0.25


def test_smoothing_sites_are_the_down_projections_and_folding_is_exact(llama, sensitivity, tmp_path):
    path, _, test = llama
    model = onnx.load(str(path))
    sites = ql.smoothing_sites(model)
    assert sorted(sites) == sorted(n for n in (l["name"] for l in sensitivity) if "down_proj" in n) and len(sites) == 2
    for layer in sensitivity:
        assert math.isfinite(layer["error"]["int8_smooth"]) == (layer["name"] in sites)
    layers = {l["name"]: l for l in ql.weight_matmuls(model)}
    rng = np.random.default_rng(0)
    smooth = {n: {"smooth_scales": rng.uniform(0.2, 5.0, layers[n]["shape"][0]).tolist(), "smooth_into": w}
              for n, w in sites.items()}
    ql._fold_smoothing(model, layers, smooth)
    out = tmp_path / "folded.onnx"
    onnx.save(model, str(out))
    before = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    after = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert any(not np.array_equal(before[k], after[k]) for k in before), "the weights did change"
    np.testing.assert_allclose(_features(out, test), _features(path, test), rtol=1e-4, atol=1e-5)


def test_one_graph_holds_every_kind_of_layer(llama, sensitivity, tmp_path):
    """int8, smoothed int8, 4-bit and fp32 layers side by side (the 4-bit outputs carry no ONNX type
    for the int8 quantiser's shape inference), and the graph still runs close to fp32."""
    path, _, test = llama
    names = [l["name"] for l in sensitivity]
    kinds = {"/base/layers.0/mlp/down_proj/MatMul": "int8_smooth", "/base/layers.1/mlp/down_proj/MatMul": "int4",
             "/base/layers.0/self_attn/q_proj/MatMul": "fp32"}
    assert set(kinds) <= set(names)
    choices = {n: kinds.get(n, "int4" if "up_proj" in n else "int8") for n in names}
    out = tmp_path / "all_kinds.onnx"
    ql.write_mixed(path, out, choices, sensitivity=sensitivity)
    nodes = onnx.load(str(out)).graph.node
    assert sum(n.op_type == "MatMulNBits" for n in nodes) == 3  # two up_proj + one down_proj
    remaining = [n.name for n in nodes if n.op_type == "MatMul"]
    assert "/base/layers.0/self_attn/q_proj/MatMul" in remaining
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & {n.op_type for n in nodes}
    z32, zq = _features(path, test), _features(out, test)
    assert np.isfinite(zq).all() and 0 < _rel(z32, zq) < 0.25
    with pytest.raises(ValueError, match="smoothing scales"):
        ql.write_mixed(path, tmp_path / "x.onnx", {"/base/layers.0/mlp/down_proj/MatMul": "int8_smooth"})


def test_choose_layers_takes_the_first_candidate_within_tolerance():
    sens = [{"name": "a", "error": {"int8": 0.01, "int8_smooth": 0.005, "int4": 0.02, "fp32": 0.0}},
            {"name": "b", "error": {"int8": 0.5, "int8_smooth": 0.03, "int4": 0.02, "fp32": 0.0}},
            {"name": "c", "error": {"int8": 0.5, "int8_smooth": math.inf, "int4": 0.04, "fp32": 0.0}},
            {"name": "d", "error": {"int8": 0.5, "int8_smooth": math.inf, "int4": 0.3, "fp32": 0.0}}]
    assert ql.choose_layers(sens, tolerance=0.05) == {"a": "int8", "b": "int8_smooth", "c": "int4", "d": "fp32"}
    assert ql.choose_layers(sens, tolerance=math.inf, candidates=("int8_smooth",))["c"] == "fp32"
    assert set(ql.choose_layers(sens, tolerance=0.0).values()) == {"fp32"}
    with pytest.raises(ValueError, match="candidates"):
        ql.choose_layers(sens, tolerance=0.1, candidates=("int3",))


def test_without_onnx_ir_the_4bit_candidate_is_dropped(llama, sensitivity, tmp_path, monkeypatch):
    import importlib.util

    path, feeds, _ = llama
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx_ir" else real(name, *a))
    assert ql.available_candidates() == ("int8", "int8_smooth", "fp32")
    report = ql.quantize_mixed(path, tmp_path / "q.onnx", feeds, tolerance=10.0, candidates=("int4", "fp32"),
                               sensitivity=sensitivity, check=False)
    assert report["unavailable"] == ["int4"] and report["candidates"] == ["fp32"]
    assert report["counts"]["fp32"] == len(sensitivity)


def _one_matmul(tmp_path, w: np.ndarray):
    k, n = w.shape
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    path = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_simulated_errors_match_onnxruntime_and_flag_activation_spikes(tmp_path):
    """The sensitivity is only as good as its simulation: each candidate's simulated error must
    match what ONNX Runtime's kernels produce, and a spike in one token must make int8 per-tensor
    far worse than 4-bit per-block (the SmolLM2 down-projection case)."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    k, n = 64, 48
    w = rng.normal(0, 0.05, (k, n)).astype(np.float32)
    path = _one_matmul(tmp_path, w)
    x = rng.normal(size=(4, 12, k)).astype(np.float32)
    spiky = x.copy()
    spiky[0, 0, 3] = 400.0  # one token, one channel
    for name, act in (("plain", x), ("spiky", spiky)):
        flat = act.reshape(-1, k)
        y = flat @ w
        simulated = {"int8": sens._row_errors(y, sens._uint8_dynamic(flat) @ sens._int8_weight(w)).mean(),
                     "int4": sens._row_errors(y, sens._int8_blocks(flat, 32) @ sens._int4_weight(w, 32)).mean()}
        real = {}
        for cand in ("int8", "int4"):
            out = tmp_path / f"{name}_{cand}.onnx"
            ql.write_mixed(path, out, {"mm": cand})
            got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": act})[0]
            real[cand] = sens._row_errors(y, got.reshape(-1, n)).mean()
        for cand in real:
            assert simulated[cand] == pytest.approx(real[cand], rel=0.3), (name, cand, simulated, real)
        if name == "spiky":
            assert simulated["int8"] > 5 * simulated["int4"]
