"""Bundle assembly: the manifest, golden.json, baselines.npz, scores.onnx and the writer's versions.

File names, baseline keys and the golden.json schema are :mod:`uehead.bundle`'s; checksums are
filled by :func:`uehead.bundle.write_manifest` from the files on disk.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from uehead._extras import installed_versions
from uehead.bundle import (
    BACKBONE_FILE,
    BASELINES_FILE,
    GOLDEN_FILE,
    HEAD_FILE,
    SCORES_FILE,
    BackboneSpec,
    FileSpec,
    HeadSpec,
    Manifest,
    TokenizerSpec,
    UncertaintyHeadSpec,
    read_manifest,
    write_manifest,
)
from uehead.checkpoint import Checkpoint, CheckpointError, read_md
from uehead.golden import golden_payload, read_golden
from uehead import scores_graph
from uehead.export.graphs import FEATURES, TASK_LOGITS, head_output_name
from uehead.scores import DISTANCE_SCORES, TASK_SCORES, head_kinds

log = logging.getLogger(__name__)

_VERSIONED = ("uehead", "torch", "transformers", "onnx", "onnxruntime", "optimum", "optimum-onnx", "tokenizers",
              "numpy")


def writer_versions() -> dict[str, str]:
    """Installed versions of uehead and the stack that wrote the bundle (missing ones omitted)."""
    return installed_versions(_VERSIONED)


def choose_default_head(available: Sequence[str], requested: str | None, tested: Mapping[str, Any] | None = None) -> str:
    """The score that fills ``Predictions.uncertainty``: ``requested``; else the choice of the
    checkpoint's do-no-harm test (``tested``, training.json's ``default_score``, see
    :mod:`uehead.evaluation.paired`: a head only when clearly better than "sr"); else (checkpoints
    written before that test) the first head kind present in registry order
    (:func:`uehead.scores.head_kinds`: adue, then alien), else "sr"."""
    if requested is not None:
        if requested != "sr" and requested not in available:
            raise CheckpointError(f"default head {requested!r} was not trained (heads: {list(available) or 'none'}).",
                                  fix=f"pass --default-head as one of {[*available, 'sr']}.")
        return requested
    chosen = (tested or {}).get("chosen")
    if chosen == "sr" or chosen in available:
        return chosen
    return next((k for k in head_kinds() if k in available), "sr")


def default_score_report(tested: Mapping[str, Any] | None, requested: str | None, chosen: str) -> dict[str, Any]:
    """manifest.reports["default_score"]: the checkpoint's test record, what was asked, what was used."""
    return {**(tested or {"method": "none recorded (checkpoint written before the default-score test)"}),
            "requested": requested, "used": chosen}


def copy_baselines(ckpt: Checkpoint, out_dir: Path) -> FileSpec | None:
    """Copy CKPT/baselines/md.npz (raw z statistics) after checking its arrays; None when absent."""
    src = ckpt.baselines_file
    if not src.is_file():
        return None
    read_md(ckpt.root, l2=False)  # raises CheckpointError on missing arrays, pickles, NaN or inf
    shutil.copyfile(src, out_dir / BASELINES_FILE)
    return FileSpec(BASELINES_FILE, "", {"l2_normalize": False})


def golden_from_scores(texts: Sequence[str], scored: Mapping[str, Any], kinds: Sequence[str], *, source: str,
                       tolerance: float) -> dict[str, Any]:
    """golden.json from the output of ``validate.scores`` on ``texts`` (one entry per head kind)."""
    return golden_payload(texts, scored["label_ids"], scored["probs"],
                          {k: scored[k] for k in (*TASK_SCORES, *kinds)}, source=source, tolerance=tolerance)


def write_golden(out_dir: Path, payload: Mapping[str, Any]) -> FileSpec:
    (out_dir / GOLDEN_FILE).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return FileSpec(GOLDEN_FILE, "", {"texts": len(payload["texts"]), "source": payload["source"],
                                      "tolerance": payload["tolerance"]})


def build_manifest(ckpt: Checkpoint, *, tokenizer: TokenizerSpec, feature_size: int, precision: str,
                   backbone_parameters: int, head_parameters: int, default_head: str,
                   baselines: FileSpec | None, golden: FileSpec | None, reports: Mapping[str, Any]) -> Manifest:
    """The manifest (checksums empty: :func:`finish` fills them). ``tokenizer`` is the spec the
    export validated with."""
    heads = tuple(
        UncertaintyHeadSpec(kind=kind, output_name=head_output_name(kind), lam=h.lam,
                            hyperparameters=dict(h.meta.get("hyperparameters") or {}),
                            validation=dict(h.meta.get("validation") or {}))
        for kind, h in ckpt.heads.items())
    input_names = tuple(tokenizer.model_input_names)
    return Manifest(
        labels=ckpt.label_names,
        tokenizer=tokenizer,
        backbone=BackboneSpec(file=BACKBONE_FILE, sha256="", input_names=input_names, output_name=FEATURES,
                              feature_size=int(feature_size), architecture=ckpt.architecture, pooling=ckpt.pooling,
                              precision=precision, num_parameters=int(backbone_parameters),
                              max_positions=backbone_positions(ckpt)),
        head=HeadSpec(file=HEAD_FILE, sha256="", input_name=FEATURES, task_logits_name=TASK_LOGITS,
                      num_classes=len(ckpt.label_names), heads=heads, default_kind=default_head,
                      num_parameters=int(head_parameters)),
        writer=writer_versions(),
        baselines=baselines,
        golden=golden,
        reports=dict(reports),
    )


def backbone_positions(ckpt: Checkpoint) -> int:
    """Longest token sequence the backbone has position embeddings for (0 = not known): the model
    config's ``max_position_embeddings``, less RoBERTa's offset (its positions start after the pad id)."""
    try:
        config = json.loads((ckpt.model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    n = config.get("max_position_embeddings")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        return 0
    if ckpt.architecture == "roberta":
        n -= int(config.get("pad_token_id") or 0) + 1
    return max(n, 0)


def training_summary(ckpt: Checkpoint) -> dict[str, Any]:
    """The parts of training.json a bundle user wants to see (model, data, accuracy, ROC-AUC)."""
    keys = ("model", "data", "architecture", "pooling", "max_length", "seed", "epochs", "accuracy",
            "roc_auc_test", "merge_max_abs_diff", "uehead_version")
    return {k: ckpt.training[k] for k in keys if k in ckpt.training}


def add_scores_graph(out_dir: Path, manifest: Manifest, outputs: Sequence[Mapping[str, Any]]) -> Manifest:
    """Write scores.onnx for the manifest's heads and validate it on ``outputs`` (head.onnx outputs,
    e.g. of the validation cases); return the manifest with its entry and the report in
    ``reports["validation"]["scores_graph"]``. A head kind without an ONNX graph builder leaves the
    bundle without scores.onnx (a warning; the report says why)."""
    reports = dict(manifest.reports)
    validation = dict(reports.get("validation") or {})
    try:
        spec = scores_graph.write_scores_graph(out_dir, manifest.head)
    except scores_graph.MissingGraphBuilderError as exc:
        log.warning("no %s in this bundle: %s", SCORES_FILE, exc)
        reports["validation"] = {**validation, "scores_graph": {"skipped": str(exc)}}
        return dataclasses.replace(manifest, reports=reports)
    report = scores_graph.validate_scores_graph(out_dir / SCORES_FILE, manifest.head, outputs)
    reports["validation"] = {**validation, "scores_graph": report}
    return dataclasses.replace(manifest, scores=spec, reports=reports)


def finish(out_dir: Path, manifest: Manifest) -> Manifest:
    """Fill checksums and write manifest.json, after completing golden.json (:func:`complete_golden`);
    return the manifest as written."""
    write_manifest(out_dir, manifest)
    if manifest.golden is not None:
        complete_golden(out_dir)
        write_manifest(out_dir, read_manifest(out_dir))  # golden.json's checksum changed
    return read_manifest(out_dir)


def complete_golden(out_dir: Path) -> None:
    """Add what only the assembled bundle knows to golden.json: the label name of each golden label
    id and, when the bundle has baselines, the md/rmd scores of the golden texts (computed by the
    runtime from the exported backbone's features, one text per call like the other outputs)."""
    from uehead.runtime import load
    from uehead.runtime.token_model import golden_predictions

    model = load(out_dir, threads=1, warmup=False)
    golden = read_golden(out_dir / GOLDEN_FILE)
    scores = {"sr": golden["softmax_response"], "entropy": golden["entropy"], **golden["heads"], **golden["distances"]}
    if model.baselines is not None and not golden["distances"]:
        preds = golden_predictions(model, golden, distances=True)
        scores.update({k: preds.scores[k] for k in DISTANCE_SCORES})
    payload = golden_payload(golden["texts"], golden["label_ids"], golden["probs"], scores, source=golden["source"],
                             tolerance=golden["tolerance"], label_names=model.labels)
    if golden.get("sentences") is not None:  # token classification: the rows are these sentences' words
        payload["sentences"] = golden["sentences"]
    write_golden(out_dir, payload)
