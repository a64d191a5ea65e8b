"""``export_bundle``: a training checkpoint -> a validated ONNX bundle (``uehead export``).

Steps: read the checkpoint (:mod:`uehead.checkpoint`); write tokenizer.json and check that the
runtime's tokenizer of it tokenises like the checkpoint's Hugging Face tokenizer; export
backbone.onnx and head.onnx; optionally apply ONNX Runtime's transformer fusions to the backbone
(:mod:`uehead.export.optimize`); validate them against PyTorch on the runtime's token ids, sessions
and score kernels (typed error above tolerance); optionally quantise the backbone to int8 and measure what that costs;
write golden.json, baselines.npz, scores.onnx (the scores as a standard-ONNX graph for apps outside
Python, checked against the numpy reference) and the manifest; re-check the bundle with the
runtime's ``verify``. Everything is written into a temporary sibling folder that is renamed into place
only at the end, so a failed export never leaves a bundle that looks complete. A token-classification
checkpoint takes the same steps per word (:mod:`uehead.export.token_export`).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from uehead.architectures import POOLING_OF
from uehead.bundle import BACKBONE_FILE, FORMAT_NAME, HEAD_FILE, MANIFEST_FILE, TOKENIZER_FILE, Manifest
from uehead.checkpoint import Checkpoint, read_checkpoint
from uehead.evaluation.paired import describe_default
from uehead.export import graphs, optimize, pooled_row, quantize, validate, writer
from uehead.export.errors import ExportError
from uehead.export.hf import load_model, load_tokenizer
from uehead.export.tokenization import check_tokenizer_agreement, tokenizer_spec, write_tokenizer
from uehead.steps import StepLines
from uehead.token_task import is_token_task

log = logging.getLogger(__name__)

#: golden.json tolerance for int8 bundles. Dynamic quantisation picks activation scales per
#: tensor, i.e. per batch, so the same text can score slightly differently next to other texts
#: (the runtime batches by length); fp32 bundles use validate.DEFAULT_TOLERANCE.
INT8_GOLDEN_TOLERANCE = 2e-2
#: Rows of the dataset's test split used to check tokenizer agreement (all rows go to int8 deltas).
TOKENIZER_CHECK_ROWS = 256


def export_bundle(checkpoint: str | os.PathLike, bundle: str | os.PathLike, *, int8: bool = False, opset: int = 17,
                  data: str | os.PathLike | None = None, default_head: str | None = None,
                  fusions: bool = False, int8_method: str = "dynamic", max_length: int | None = None,
                  full_last_layer: bool = False, progress: bool = True) -> Manifest:
    """Export ``checkpoint`` (the folder ``uehead train`` writes) to the bundle folder ``bundle``.

    Args:
        int8: write a quantised backbone (per-channel int8 weights) and record how it was built and
            its deltas against fp32 in ``manifest.reports["int8"]``. Decoder (last-token) backbones
            get a per-layer mix instead (int8 | smoothed int8 | 4-bit | fp32 from each weight
            MatMul's measured sensitivity on ``data``'s train texts; :mod:`uehead.export.quantize_layers`).
        opset: ONNX opset of both graphs.
        data: a dataset (``rotten_tomatoes`` or a folder); with ``int8``, accuracy and ROC-AUC
            deltas are measured on its test split; its test texts also join the tokenizer check; with
            ``int8_method="static"`` its train split gives the calibration texts.
        default_head: which score fills ``Predictions.uncertainty`` (a head kind of the checkpoint
            or "sr"); default: the checkpoint's do-no-harm choice (training.json ``default_score``:
            a head only when its ROC-AUC gain over "sr" on held-out validation rows is significant;
            printed here and recorded in ``manifest.reports["default_score"]``), for older
            checkpoints the first head kind in registry order (adue, alien, ...), else "sr".
        fusions: apply ONNX Runtime's transformer fusions (Attention, SkipLayerNormalization,
            EmbedLayerNormalization, BiasGelu) to the fp32 backbone, checked against the unfused
            graph; with ``int8`` the fused graph is quantised. Encoder families only (others are left
            as exported); what was fused is in ``manifest.reports["export"]["graph_fusions"]``.
            Default off: measured slower than the unfused graph on an AVX-512 CPU (ONNX Runtime 1.32).
        int8_method: ``"dynamic"`` (activation scales per batch; default, fastest measured) or
            ``"static"`` (QDQ, scales calibrated on ``quantize.CALIBRATION_TEXTS`` train texts of ``data``).
        max_length: the bundle's tokenizer max_length (default: the checkpoint's training max_length),
            at most the backbone's position embeddings; e.g. to serve longer texts than training saw
            (recorded in ``manifest.reports["export"]["max_length"]``). Sequence classification only.
        full_last_layer: keep every row of the last encoder layer. By default a backbone that pools
            the first token computes only that row in its last layer (the query, attention output and
            feed-forward of the other rows are never read; :mod:`uehead.export.pooled_row`), checked
            against the full graph; ``manifest.reports["export"]["pooled_row"]`` says what was done.
        progress: print one line per step on stderr (graph export, validation, int8, golden outputs,
            manifest, the runtime's check) and the total time.
    Returns:
        The manifest as written (checksums filled).
    Raises:
        CheckpointError: the checkpoint is incomplete or unsupported.
        ExportValidationError: ONNX Runtime disagrees with PyTorch (or tokenizer.json with the
            Hugging Face tokenizer) beyond tolerance; ``.report`` holds the diffs.
        ExportError: ``bundle`` exists and is not a uehead bundle; or an option does not apply
            (``int8_method`` unknown, ``static`` without ``data``, ``fusions`` or ``static`` for a
            token-classification checkpoint).
    """
    started = time.perf_counter()
    ckpt = read_checkpoint(checkpoint)
    static = _check_options(ckpt, int8=int8, int8_method=int8_method, fusions=fusions, data=data)
    trained_length = ckpt.max_length
    if max_length is not None:
        ckpt = dataclasses.replace(ckpt, max_length=_check_max_length(ckpt, max_length))
    steps = StepLines("uehead export", 2 if is_token_task(ckpt) else 6 + int8 + fusions, enabled=progress)
    tested = ckpt.training.get("default_score")
    default_kind = writer.choose_default_head(tuple(ckpt.heads), default_head, tested)
    if progress:
        print("uehead export: " + (describe_default(tested) if tested else f"default uncertainty: {default_kind}")
              + (f"; --default-head {default_head} overrides it" if default_head and tested else ""), file=sys.stderr)
    dest = Path(bundle)
    _check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dataset = None
    if data is not None:
        from uehead.datasets import load_dataset
        from uehead.token_datasets import load_token_dataset

        if is_token_task(ckpt):
            dataset = load_token_dataset(data, splits=("test",))
        else:
            mixed = int8 and POOLING_OF.get(ckpt.architecture) == "last_token"  # decoders calibrate on train
            dataset = load_dataset(data, splits=("train", "test") if static or mixed else ("test",),
                                   options=_data_options(ckpt, data))
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    _umask = os.umask(0)
    os.umask(_umask)
    tmp.chmod(0o777 & ~_umask)  # mkdtemp makes it private; a bundle folder is an ordinary folder
    try:
        manifest = _export_into(ckpt, tmp, int8=int8, opset=opset, dataset=dataset, default_kind=default_kind,
                                fusions=fusions, int8_method=int8_method, trained_length=trained_length,
                                full_last_layer=full_last_layer,
                                default_report=writer.default_score_report(tested, default_head, default_kind),
                                started=started, steps=steps)
        steps.start("checking the bundle with the runtime (uehead verify)")
        _verify_with_runtime(tmp)
        _move_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    steps.done(f"wrote {dest}")
    log.info("exported %s -> %s in %.1fs", ckpt.root, dest, time.perf_counter() - started)
    return manifest


def _check_options(ckpt: Checkpoint, *, int8: bool, int8_method: str, fusions: bool, data) -> bool:
    """Refuse option combinations that do not apply; return whether static int8 was asked for."""
    if int8_method not in quantize.INT8_METHODS:
        raise ExportError(f"int8 method {int8_method!r} is not one of {list(quantize.INT8_METHODS)}.",
                          path=ckpt.root, fix="pass --int8-method dynamic or static.")
    static = int8 and int8_method == "static"
    if is_token_task(ckpt) and (fusions or static):
        raise ExportError("--fusions and --int8-method static apply to sequence-classification checkpoints only.",
                          path=ckpt.root, fix="export this token-classification checkpoint without them.")
    if static and data is None:
        raise ExportError("static int8 calibrates on the dataset's train texts, and no dataset was given.",
                          path=ckpt.root, fix="pass --data (e.g. the dataset the checkpoint was trained on).")
    return static


def _check_max_length(ckpt: Checkpoint, max_length) -> int:
    positions = writer.backbone_positions(ckpt)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2 or (
            positions and max_length > positions):
        raise ExportError(f"max_length {max_length!r} is not an integer from 2 to the backbone's "
                          f"{positions or 'unknown number of'} positions.", path=ckpt.model_dir / "config.json",
                          fix="pass a smaller --max-length, or none (the training max_length).")
    if is_token_task(ckpt):
        raise ExportError("--max-length applies to sequence-classification checkpoints only.", path=ckpt.root,
                          fix="export this token-classification checkpoint without it.")
    return max_length


def _data_options(ckpt: Checkpoint, data) -> Any:
    """The data-file options training used (training.json) when ``data`` is a data file: the same
    columns, and for the training file itself the same split rule, so the same test rows. None for
    a dataset folder, a built-in name, or a checkpoint trained without a data file."""
    from uehead.data_files import DataFileOptions, is_data_file

    recorded = (ckpt.training.get("config") or {}).get("data_options")
    return DataFileOptions(**recorded) if recorded and is_data_file(data) else None


def _export_into(ckpt: Checkpoint, out: Path, *, int8: bool, opset: int, dataset, default_kind: str,
                 started: float, steps: StepLines, default_report: dict | None = None, fusions: bool = False,
                 int8_method: str = "dynamic", trained_length: int | None = None,
                 full_last_layer: bool = False) -> Manifest:
    if is_token_task(ckpt):
        steps.start("token-classification export: graphs, validation, golden outputs")
        from uehead.export.token_export import export_token_into

        return export_token_into(ckpt, out, int8=int8, opset=opset, dataset=dataset, default_kind=default_kind,
                                 default_report=default_report,
                                 started=started)
    steps.start(f"loading {ckpt.root} and checking tokenizer.json against the Hugging Face tokenizer")
    model, hf_tok = load_model(ckpt), load_tokenizer(ckpt)
    names = graphs.backbone_input_names(model, hf_tok, ckpt.architecture)
    spec = tokenizer_spec(max_length=ckpt.max_length, pad_token_id=hf_tok.pad_token_id, input_names=names)
    tok = write_tokenizer(hf_tok, out / TOKENIZER_FILE, spec)
    real_texts = list(dataset["test"].texts[:TOKENIZER_CHECK_ROWS]) if dataset is not None else []
    check_texts = list(validate.SAMPLE_TEXTS) + real_texts + [validate.long_text(validate.SAMPLE_TEXTS)]
    tokenizer_report = check_tokenizer_agreement(hf_tok, tok, check_texts, where=out / TOKENIZER_FILE)
    heads = {k: h.params for k, h in ckpt.heads.items()}
    precision = "int8" if int8 else "fp32"

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".fp32-") as scratch:
        fp32_path = (Path(scratch) if int8 else out) / BACKBONE_FILE
        exported = Path(scratch) / "exported.onnx"
        steps.start(f"graph export: backbone and head (opset {opset})")
        backbone = graphs.export_backbone(model, ckpt.architecture, names, exported, opset=opset)
        task = graphs.task_classifier(model, ckpt.architecture)
        head_modules = {k: graphs.head_module(h) for k, h in ckpt.heads.items()}
        head = graphs.export_head(task, head_modules, model.config.hidden_size, out / HEAD_FILE, opset=opset)
        cases = validate.validation_cases(tok, real_texts or validate.SAMPLE_TEXTS)
        fusion_report: dict[str, Any] = {"applied": False, "reason": "not requested (--fusions)"}
        if fusions:
            steps.start("graph fusions: ONNX Runtime's transformer optimizer on the fp32 backbone")
            fusion_report = optimize.fuse_backbone(exported, fp32_path, model.config.to_dict(), cases)
            if not fusion_report["applied"]:
                log.warning("fusions not applied: %s", fusion_report["reason"])
        pooled = _pooled_row(exported, fp32_path, cases, fused=fusion_report["applied"], full=full_last_layer)
        if not (fusion_report["applied"] or pooled["applied"]):
            os.replace(exported, fp32_path)

        steps.start("validation: ONNX Runtime vs PyTorch")
        ref = validate.TorchReference.from_checkpoint(ckpt, model)
        fp32 = validate.OnnxPipeline(fp32_path, out / HEAD_FILE)
        reports: dict[str, Any] = {"validation": validate.validate_graphs(ref, fp32, cases, heads, where=fp32_path)}
        reports["validation"]["tokenizer"] = tokenizer_report
        score_inputs = [fp32(b) for b in cases.values()]  # head outputs that scores.onnx is validated on
        golden_texts = list(validate.SAMPLE_TEXTS)
        if int8:
            steps.start("int8: quantising the backbone, measuring it against fp32"
                        + (f" on {len(dataset['test'].texts)} {dataset.name} test rows" if dataset is not None else ""))
            reports["int8"], golden = _quantize_and_measure(fp32, out, tok, cases, golden_texts, heads, dataset,
                                                            method=int8_method, fused=fusion_report["applied"],
                                                            architecture=ckpt.architecture)
            steps.start("golden outputs (from the int8 graphs)")
        else:
            steps.start("golden outputs (from PyTorch)")
            golden = writer.golden_from_scores(golden_texts, validate.scores(ref(tok(golden_texts)), heads), heads,
                                               source="pytorch", tolerance=validate.DEFAULT_TOLERANCE)

    steps.start("manifest, baselines and scores.onnx")
    uncertainty_params = head.num_parameters - sum(p.numel() for p in task.parameters())
    reports["parameters"] = {
        "backbone": backbone.num_parameters, "head_graph": head.num_parameters,
        "uncertainty_heads": uncertainty_params,
        "uncertainty_heads_percent_of_backbone": 100.0 * uncertainty_params / max(1, backbone.num_parameters)}
    reports["export"] = {"checkpoint": str(ckpt.root), "exporter": "torch.onnx.export(dynamo=False)",
                         "opset": opset, "precision": precision, "graph_fusions": fusion_report, "pooled_row": pooled,
                         "max_length": {"bundle": ckpt.max_length, "trained": trained_length or ckpt.max_length},
                         "seconds": round(time.perf_counter() - started, 2)}
    reports["training"] = writer.training_summary(ckpt)
    reports["default_score"] = default_report
    manifest = writer.build_manifest(
        ckpt, tokenizer=spec, feature_size=model.config.hidden_size, precision=precision,
        backbone_parameters=backbone.num_parameters, head_parameters=head.num_parameters,
        default_head=default_kind, baselines=writer.copy_baselines(ckpt, out),
        golden=writer.write_golden(out, golden), reports=reports)
    return writer.finish(out, writer.add_scores_graph(out, manifest, score_inputs))


def _pooled_row(exported: Path, dst: Path, cases, *, fused: bool, full: bool) -> dict[str, Any]:
    """Write the backbone whose last layer computes only the pooled row to ``dst`` when it applies."""
    if full:
        return {"applied": False, "reason": "not requested (--full-last-layer)"}
    if fused:
        return {"applied": False, "reason": "--fusions: the fused Attention operator computes every row"}
    report = pooled_row.prune_to_pooled_row(exported, dst, cases)
    if not report["applied"]:
        log.info("last layer left whole: %s", report["reason"])
    return report


def _quantize_and_measure(fp32, out: Path, tok, cases, golden_texts, heads, dataset, *, method: str = "dynamic",
                          fused: bool = False, architecture: str = ""):
    """Write the int8 backbone; return (int8 report, golden payload from the int8 graphs)."""
    calibration, source = [], None
    if method == "static":
        calibration = quantize.calibration_batches(tok, dataset["train"].texts)
        source = f"{dataset.name}/train"
    if method == "dynamic" and POOLING_OF.get(architecture) == "last_token":
        # Decoders: activation spikes in some MLP down-projections ruin per-tensor int8 there, so each
        # weight MatMul gets int8 | smoothed int8 | 4-bit | fp32 from its measured sensitivity.
        from uehead.export import quantize_layers

        texts = dataset["train"].texts if dataset is not None else validate.SAMPLE_TEXTS
        if dataset is None:
            log.warning("no --data: the decoder's per-layer sensitivity is measured on %d sample texts only",
                        len(texts))
        feeds = quantize_layers.calibration_feeds(tok, texts, count=quantize_layers.CALIBRATION_ROWS)
        report = quantize_layers.quantize_mixed(fp32.backbone_path, out / BACKBONE_FILE, feeds)
        report.update(calibration_source=f"{dataset.name}/train" if dataset is not None else "sample texts",
                      int8_bytes=report["bytes"])
    else:
        report = quantize.quantize_backbone(fp32.backbone_path, out / BACKBONE_FILE, method=method, fused=fused,
                                            calibration=calibration, calibration_source=source)
    q8 = validate.OnnxPipeline(out / BACKBONE_FILE, out / HEAD_FILE)
    per_case = {n: {"shape": list(b["input_ids"].shape), **validate.compare_outputs(fp32(b), q8(b), heads)}
                for n, b in cases.items()}
    summary = validate.summarise(per_case, validate.DEFAULT_TOLERANCE, validate.checked_names(heads))
    report["validation_cases"] = {"max_abs_diff": summary["max_abs_diff"], "cases": summary["cases"]}
    report["golden"] = quantize.golden_deltas(fp32, q8, tok(golden_texts), heads)
    if dataset is not None:
        test = dataset["test"]
        deltas = quantize.dataset_deltas(fp32, q8, tok, test.texts, test.labels, heads)
        report["data"] = {"name": dataset.name, "split": "test", **deltas}
        if not deltas["within_1_point"]:
            log.warning("int8 moves a metric by more than 1 point on %s test (accuracy delta %.2f, ROC-AUC deltas "
                        "%s; see delta_se for the noise level)", dataset.name, deltas["accuracy"]["delta"],
                        {k: round(v["delta"], 2) for k, v in deltas["roc_auc"].items()})
    golden = writer.golden_from_scores(golden_texts, validate.scores(_per_text(q8, tok, golden_texts), heads), heads,
                                       source="onnxruntime", tolerance=INT8_GOLDEN_TOLERANCE)
    return report, golden


def _per_text(pipeline, tok, texts) -> dict:
    """Outputs for each text run alone (batch 1): a reference that does not depend on batching."""
    import numpy as np

    rows = [pipeline(tok([t])) for t in texts]
    return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


def _verify_with_runtime(out: Path) -> None:
    """Run the torch-free ``uehead verify`` on the finished folder (checksums, graphs, golden)."""
    try:
        from uehead.runtime.verification import verify
    except ImportError:  # pragma: no cover - the runtime ships with uehead
        log.warning("uehead.runtime.verification is not importable; skipping the runtime check")
        return
    verify(out)


def _is_bundle(path: Path) -> bool:
    try:
        import json

        return json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8")).get("format") == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        return False


def _check_destination(dest: Path) -> None:
    if dest.exists() and not (dest.is_dir() and (not any(dest.iterdir()) or _is_bundle(dest))):
        raise ExportError("exists and is not a uehead bundle; refusing to overwrite it.", path=dest,
                          fix="choose a new bundle folder, or remove this one.")


def _move_into_place(tmp: Path, dest: Path) -> None:
    """Rename the finished folder to ``dest``, replacing an older bundle there."""
    _check_destination(dest)
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
