"""Export of a token-classification checkpoint (``uehead export`` dispatches here on its task).

The steps of :mod:`uehead.export.api`, per word: tokenizer.json (checked to split words like the
checkpoint's Hugging Face tokenizer); backbone.onnx returning every position's features [batch,
sequence, H]; head.onnx = the token classifier + the uncertainty heads on [N, H] (the first
sub-token features, gathered by the runtime); validation per word against PyTorch (probabilities
and every score within 1e-4); optional int8 with its per-word deltas; golden.json of sample
sentences (one sentence per call); scores.onnx; the manifest with ``task: token-classification``
and its ``token`` entry (alignment rule, tag scheme, window overlap). Every score is **higher =
more uncertain**.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from uehead.bundle import BACKBONE_FILE, HEAD_FILE, TOKENIZER_FILE, Manifest
from uehead.checkpoint import Checkpoint
from uehead.export import graphs, quantize, validate, writer
from uehead.export.hf import load_model, load_tokenizer
from uehead.export.token_validate import (SAMPLE_SENTENCES, TokenOnnxPipeline, TokenTorchReference, case_of,
                                          check_word_agreement, long_sentence, per_sentence, token_cases)
from uehead.export.tokenization import tokenizer_spec, write_tokenizer
from uehead.golden import golden_payload
from uehead.runtime.word_tokenize import WordTokenizer
from uehead.token_task import FIRST_SUBTOKEN, TOKEN_CLASSIFICATION, TokenTaskSpec

#: Test sentences of the dataset used for the word-agreement check and the validation cases.
CHECK_SENTENCES = 256
#: Test sentences scored by both fp32 and int8 for the int8 report.
INT8_SENTENCES = 1000


def token_classifier(model):
    """The merged model's token classifier (a Linear on each position's hidden state)."""
    return model.score if hasattr(model, "score") else model.classifier


def golden_sentences(sentences) -> list[list[str]]:
    """The golden set: the samples (incl. an empty-string word), an empty sentence and a long one."""
    return [list(s) for s in SAMPLE_SENTENCES] + [[], long_sentence(sentences, 200)]


def token_golden(pipeline, tok: WordTokenizer, sentences, heads, *, source: str, tolerance: float) -> dict:
    """golden.json for ``sentences``: one row per word that makes a token (its ``texts`` entry is
    the word), word after word, one sentence per call; ``sentences`` holds every sentence."""
    windows = tok.encode_words([list(s) for s in sentences])
    words = [w for s in sentences for w in s]
    scored = [s for s in sentences if tok.encode_words([list(s)]).scored.any()]
    out = validate.scores(per_sentence(pipeline, tok, scored), heads)
    payload = golden_payload([w for w, ok in zip(words, windows.scored) if ok], out["label_ids"], out["probs"],
                             {k: out[k] for k in ("sr", "entropy", *heads)}, source=source, tolerance=tolerance)
    return {**payload, "sentences": [list(s) for s in sentences]}


def export_token_into(ckpt: Checkpoint, out: Path, *, int8: bool, opset: int, dataset, default_kind: str,
                      default_report: dict | None = None,
                      started: float) -> Manifest:
    """Write every file of a token-classification bundle into ``out``; return the manifest written."""
    model, hf_tok = load_model(ckpt), load_tokenizer(ckpt)
    names = graphs.backbone_input_names(model, hf_tok, ckpt.architecture)
    spec = tokenizer_spec(max_length=ckpt.max_length, pad_token_id=hf_tok.pad_token_id, input_names=names)
    write_tokenizer(hf_tok, out / TOKENIZER_FILE, spec)
    tok = WordTokenizer(out / TOKENIZER_FILE, spec, ckpt.training.get("window_overlap"))
    real = list(dataset["test"].tokens[:CHECK_SENTENCES]) if dataset is not None else []
    agreement = check_word_agreement(hf_tok, tok, [*SAMPLE_SENTENCES, *real], where=out / TOKENIZER_FILE)
    heads = {k: h.params for k, h in ckpt.heads.items()}
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".fp32-") as scratch:
        fp32_path = (Path(scratch) if int8 else out) / BACKBONE_FILE
        backbone = graphs.export_backbone(model, ckpt.architecture, names, fp32_path, opset=opset, per_token=True)
        task = token_classifier(model)
        head_modules = {k: graphs.head_module(h) for k, h in ckpt.heads.items()}
        head = graphs.export_head(task, head_modules, model.config.hidden_size, out / HEAD_FILE, opset=opset)
        ref, fp32 = TokenTorchReference(model, ckpt.heads), TokenOnnxPipeline(fp32_path, out / HEAD_FILE)
        cases = token_cases(tok, real or SAMPLE_SENTENCES)
        reports: dict[str, Any] = {"validation": validate.validate_graphs(ref, fp32, cases, heads, where=fp32_path)}
        reports["validation"]["tokenizer"] = agreement
        score_inputs = [fp32(c) for c in cases.values()]
        golden_set = golden_sentences(real or SAMPLE_SENTENCES)
        if int8:
            reports["int8"], golden = _quantize(fp32, out, tok, cases, golden_set, heads, dataset)
        else:
            golden = token_golden(ref, tok, golden_set, heads, source="pytorch", tolerance=validate.DEFAULT_TOLERANCE)
    uncertainty_params = head.num_parameters - sum(p.numel() for p in task.parameters())
    reports["parameters"] = {
        "backbone": backbone.num_parameters, "head_graph": head.num_parameters, "uncertainty_heads": uncertainty_params,
        "uncertainty_heads_percent_of_backbone": 100.0 * uncertainty_params / max(1, backbone.num_parameters)}
    reports["export"] = {"checkpoint": str(ckpt.root), "exporter": "torch.onnx.export(dynamo=False)", "opset": opset,
                         "precision": "int8" if int8 else "fp32", "seconds": round(time.perf_counter() - started, 2)}
    reports["training"] = {**writer.training_summary(ckpt),
                           **{k: ckpt.training[k] for k in ("task", "f1", "bio_fixes") if k in ckpt.training}}
    if default_report is not None:
        reports["default_score"] = default_report
    manifest = writer.build_manifest(
        ckpt, tokenizer=spec, feature_size=model.config.hidden_size, precision="int8" if int8 else "fp32",
        backbone_parameters=backbone.num_parameters, head_parameters=head.num_parameters, default_head=default_kind,
        baselines=writer.copy_baselines(ckpt, out), golden=writer.write_golden(out, golden), reports=reports)
    manifest = dataclasses.replace(manifest, task=TOKEN_CLASSIFICATION, token=TokenTaskSpec(
        alignment=ckpt.alignment or FIRST_SUBTOKEN, tag_scheme="BIO", window_overlap=tok.window_overlap))
    return writer.finish(out, writer.add_scores_graph(out, manifest, score_inputs))


def _quantize(fp32: TokenOnnxPipeline, out: Path, tok: WordTokenizer, cases, golden_set, heads, dataset):
    """Write the int8 backbone; return (int8 report, golden payload from the int8 graphs)."""
    report = quantize.quantize_backbone(fp32.backbone_path, out / BACKBONE_FILE)
    q8 = TokenOnnxPipeline(out / BACKBONE_FILE, out / HEAD_FILE)
    per_case = {n: {"shape": list(c["input_ids"].shape), **validate.compare_outputs(fp32(c), q8(c), heads)}
                for n, c in cases.items()}
    summary = validate.summarise(per_case, validate.DEFAULT_TOLERANCE, validate.checked_names(heads))
    report["validation_cases"] = {"max_abs_diff": summary["max_abs_diff"], "cases": summary["cases"]}
    if dataset is not None:
        report["data"] = {"name": dataset.name, "split": "test",
                          **_word_deltas(fp32, q8, tok, dataset, heads)}
    from uehead.export.api import INT8_GOLDEN_TOLERANCE

    golden = token_golden(q8, tok, golden_set, heads, source="onnxruntime", tolerance=INT8_GOLDEN_TOLERANCE)
    return report, golden


def _word_deltas(fp32, int8, tok: WordTokenizer, dataset, heads, batch: int = 32) -> dict[str, Any]:
    """Word accuracy, entity F1 and word-level ROC-AUC (x100) of fp32 and int8 on test sentences."""
    from uehead.evaluation.metrics import roc_auc
    from uehead.evaluation.token_metrics import entity_f1, split_sentences

    test = dataset["test"].head(INT8_SENTENCES)
    windows = tok.encode_words(test.tokens)
    gold, counts, scored = test.flat_tags(), windows.words_per_sentence, windows.scored
    out: dict[str, Any] = {"sentences": len(test), "words": int(scored.sum())}
    runs = {}
    for name, pipe in (("fp32", fp32), ("int8", int8)):
        parts = [pipe(case_of(tok, test.tokens[i:i + batch])) for i in range(0, len(test), batch)]
        runs[name] = validate.scores({k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, heads)
    for name, s in runs.items():
        pred = np.full(len(gold), dataset.scheme.outside_id, np.int64)
        pred[scored] = s["label_ids"]
        errors = (pred[scored] != gold[scored]).astype(np.int8)
        out[name] = {"accuracy": 100 * float(1 - errors.mean()),
                     "entity_f1": 100 * entity_f1(split_sentences(gold, counts), split_sentences(pred, counts),
                                                  dataset.tag_names)["f1"],
                     "roc_auc": {k: 100 * roc_auc(s[k], errors) for k in ("sr", "entropy", *heads)}}
    out["delta"] = {"accuracy": out["int8"]["accuracy"] - out["fp32"]["accuracy"],
                    "entity_f1": out["int8"]["entity_f1"] - out["fp32"]["entity_f1"],
                    "roc_auc": {k: out["int8"]["roc_auc"][k] - v for k, v in out["fp32"]["roc_auc"].items()}}
    return out
