"""The validation failure paths: a tampered graph, a wrong wrapper, a disagreeing tokenizer -> typed errors."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from uehead.bundle import BundleError
from uehead.export import ExportValidationError, graphs
from uehead.checkpoint import read_checkpoint
from uehead.export.hf import load_model, load_tokenizer
from uehead.export.tokenization import (bundle_tokenizer, check_tokenizer_agreement, hf_encode, tokenizer_spec,
                                        write_tokenizer)
from uehead.export.validate import (OnnxPipeline, TorchReference, max_abs_diffs, validate_graphs,
                                    validation_cases)
from uehead.runtime.tokenize import TextTokenizer

TEXTS = ["good film", "the plot was very dull and boring", "", "great " * 50]


@pytest.fixture(scope="module")
def bert(tiny_ckpts, tmp_path_factory):
    ckpt = read_checkpoint(tiny_ckpts["bert"])
    model, hf_tok = load_model(ckpt), load_tokenizer(ckpt)
    names = graphs.backbone_input_names(model, hf_tok, "bert")
    d = tmp_path_factory.mktemp("val")
    graphs.export_backbone(model, "bert", names, d / "backbone.onnx")
    heads = {k: graphs.head_module(h) for k, h in ckpt.heads.items()}
    graphs.export_head(graphs.task_classifier(model, "bert"), heads, 32, d / "head.onnx")
    spec = tokenizer_spec(max_length=ckpt.max_length, pad_token_id=hf_tok.pad_token_id, input_names=names)
    cases = validation_cases(write_tokenizer(hf_tok, d / "tokenizer.json", spec), TEXTS)
    heads = {k: h.params for k, h in ckpt.heads.items()}
    return ckpt, model, hf_tok, d, cases, heads


def test_a_good_export_passes_and_reports_every_output(bert):
    ckpt, model, _, d, cases, heads = bert
    report = validate_graphs(TorchReference.from_checkpoint(ckpt, model), OnnxPipeline(d / "backbone.onnx",
                             d / "head.onnx"), cases, heads)
    assert report["passed"] and report["failed"] == []
    assert set(report["max_abs_diff"]) == {"features", "task_logits", "adue_logits", "alien_logits", "probs",
                                           "sr", "entropy", "adue", "alien"}
    assert all(0 <= v < 1e-4 for v in report["max_abs_diff"].values())


def test_a_tampered_head_graph_fails_validation(bert, tmp_path):
    ckpt, model, _, d, cases, heads = bert
    head = onnx.load(str(d / "head.onnx"))
    # Nudge one weight of the AdUE head only: the task outputs stay right, the uncertainty does not.
    # The linear heads are one Gemm on stacked weights: rows [task (C), adue (C), alien (C)].
    target = next(t for t in head.graph.initializer if numpy_helper.to_array(t).ndim == 2)
    w = numpy_helper.to_array(target).copy()
    assert w.shape[0] == 3 * 2  # C = 2 classes
    w[2] += 0.5
    target.CopyFrom(numpy_helper.from_array(w, target.name))
    onnx.save(head, str(tmp_path / "head.onnx"))
    pipe = OnnxPipeline(d / "backbone.onnx", tmp_path / "head.onnx")
    with pytest.raises(ExportValidationError) as info:
        validate_graphs(TorchReference.from_checkpoint(ckpt, model), pipe, cases, heads, where=tmp_path / "head.onnx")
    err = info.value
    assert isinstance(err, BundleError) and err.fix
    assert err.report["failed"] == ["adue"]
    assert err.report["max_abs_diff"]["adue_logits"] > 1e-3
    assert err.report["max_abs_diff"]["probs"] < 1e-4


def test_tolerance_applies_to_scores_not_raw_logits(bert):
    """Logit diffs are reported, not failed on; probability diffs are failed on."""
    ckpt, model, _, d, cases, heads = bert
    pipe = OnnxPipeline(d / "backbone.onnx", d / "head.onnx")

    def shifted(batch):  # adding a constant to every logit leaves softmax unchanged
        out = pipe(batch)
        return {k: (v + 3.0 if k.endswith("logits") else v) for k, v in out.items()}

    report = validate_graphs(TorchReference.from_checkpoint(ckpt, model), shifted, cases, heads)
    assert report["passed"] and report["max_abs_diff"]["task_logits"] == pytest.approx(3.0, abs=1e-4)

    def scaled(batch):
        out = pipe(batch)
        return {k: (v * 1.5 if k == "task_logits" else v) for k, v in out.items()}

    with pytest.raises(ExportValidationError, match="probs"):
        validate_graphs(TorchReference.from_checkpoint(ckpt, model), scaled, cases, heads)


def test_nan_outputs_fail(bert):
    ckpt, model, _, d, cases, heads = bert
    pipe = OnnxPipeline(d / "backbone.onnx", d / "head.onnx")

    def nan(batch):
        out = pipe(batch)
        return {k: v * np.nan for k, v in out.items()}

    assert max_abs_diffs({"a": np.zeros(2)}, {"a": np.array([0.0, np.nan])}) == {"a": float("inf")}
    with pytest.raises(ExportValidationError) as info:
        validate_graphs(TorchReference.from_checkpoint(ckpt, model), nan, cases, heads)
    assert info.value.report["max_abs_diff"]["probs"] == float("inf")


def test_tokenizer_disagreement_is_caught(bert, tmp_path):
    from tokenizers import processors

    ckpt, _, hf_tok, _, _, _ = bert
    spec = tokenizer_spec(max_length=ckpt.max_length, pad_token_id=0,
                          input_names=("input_ids", "attention_mask", "token_type_ids"))
    report = check_tokenizer_agreement(hf_tok, write_tokenizer(hf_tok, tmp_path / "tokenizer.json", spec), TEXTS)
    assert report == {"texts": 4, "max_tokens": ckpt.max_length}
    altered = bundle_tokenizer(hf_tok)
    altered.post_processor = processors.TemplateProcessing(single="$A [SEP]", special_tokens=[("[SEP]", 3)])
    altered.save(str(tmp_path / "altered.json"))
    with pytest.raises(ExportValidationError, match="input_ids from tokenizer.json differs"):
        check_tokenizer_agreement(hf_tok, TextTokenizer(tmp_path / "altered.json", spec), TEXTS)


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_runtime_tokenizer_matches_the_hf_tokenizer_with_truncation(tiny_ckpts, arch, tmp_path):
    hf_tok = load_tokenizer(read_checkpoint(tiny_ckpts[arch]))
    names = ("input_ids", "attention_mask")
    spec = tokenizer_spec(max_length=10, pad_token_id=hf_tok.pad_token_id, input_names=names)
    ours = write_tokenizer(hf_tok, tmp_path / "tokenizer.json", spec)(TEXTS)
    theirs = hf_encode(hf_tok, TEXTS, max_length=10, input_names=names)
    assert ours["input_ids"].shape == (4, 10)
    for k in names:
        np.testing.assert_array_equal(ours[k], theirs[k])
    first = ours["input_ids"][:, 0]
    if arch == "llama":  # BOS first, then the text, on every row
        assert (first == hf_tok.bos_token_id).all()
    else:
        assert (first == hf_tok.cls_token_id).all()


def test_tokenizer_json_has_no_truncation_or_padding(fp32_bundles):
    import json

    for _, bundle in fp32_bundles.values():
        data = json.loads((bundle / "tokenizer.json").read_text())
        assert data["truncation"] is None and data["padding"] is None
