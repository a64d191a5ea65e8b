"""Transformer graph fusions of the fp32 backbone, applied at export time (``uehead export --fusions``).

:func:`fuse_backbone` runs ONNX Runtime's offline transformer optimizer
(``onnxruntime.transformers.optimizer.optimize_model``, the fusions optimum's O2 applies) on
backbone.onnx: the self-attention blocks become ``Attention``, residual Add + LayerNorm
``SkipLayerNormalization``, the embeddings ``EmbedLayerNormalization``, bias + GELU ``BiasGelu``
(all ``com.microsoft`` operators that ONNX Runtime ships). The fused graph keeps the backbone's
inputs and its one output (``features``, the pooled z) and is checked against the unfused graph
before it replaces it; the export's validation against PyTorch then runs on the fused graph, and
``--int8`` quantises it (``Attention`` -> ``QAttention``).

Off by default: on the AVX-512 VNNI CPUs measured (README "Speed"), the fused graphs ran slower than
the unfused ones that ONNX Runtime fuses itself at session load, fp32 and int8 alike (the
SkipLayerNormalization and Attention kernels dominate). Measure on your machine with
``benchmarks/bench_int8.py``.

Only encoder families the optimizer's BERT fusions recognise are fused (:data:`FUSABLE_MODEL_TYPES`);
other model types (decoders, DeBERTa-v2) keep their graph and the report says why.
"""
from __future__ import annotations

import collections
import logging
from pathlib import Path
from typing import Any, Mapping

from uehead.export.errors import ExportValidationError
from uehead.export.validate import graph_output_diff

#: HF ``model_type`` -> the optimizer's model type whose fusions apply to it.
FUSABLE_MODEL_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "camembert": "bert",
                       "electra": "bert", "distilbert": "bert"}
#: Operators the fusions write; their counts in the saved graph are what the report records.
FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
             "BiasGelu", "Gelu", "FastGelu", "LayerNormalization")
#: The optimizer's level: 0 = its Python fusions only; ONNX Runtime's own graph optimisations still
#: run when a session loads the graph, so the saved file stays hardware-independent.
OPT_LEVEL = 0
#: Max abs diff of ``features`` between the fused and the unfused graph before the fused one is kept.
FUSION_TOLERANCE = 1e-4


def fusion_plan(config: Mapping[str, Any]) -> dict[str, Any]:
    """Whether the backbone of a model with HF config dict ``config`` is fused, and with what:
    ``{"model_type", "optimizer_model_type", "num_heads", "hidden_size"}`` or ``{"model_type",
    "reason"}`` when it is skipped."""
    model_type = config.get("model_type")
    kind = FUSABLE_MODEL_TYPES.get(model_type)
    if kind is None:
        return {"model_type": model_type,
                "reason": f"model type {model_type!r} is not one the ONNX Runtime BERT fusions recognise "
                          f"({sorted(FUSABLE_MODEL_TYPES)}); the graph is left as exported"}
    heads = config.get("num_attention_heads", config.get("n_heads"))
    hidden = config.get("hidden_size", config.get("dim"))
    return {"model_type": model_type, "optimizer_model_type": kind, "num_heads": int(heads or 0),
            "hidden_size": int(hidden or 0)}


def fused_op_counts(path: str | Path) -> dict[str, int]:
    """How many nodes of each :data:`FUSED_OPS` type the graph at ``path`` holds (absent types left out)."""
    import onnx

    counts = collections.Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    return {op: counts[op] for op in FUSED_OPS if counts[op]}


def fuse_backbone(src: str | Path, dst: str | Path, config: Mapping[str, Any], cases: Mapping[str, Any] = (),
                  ) -> dict[str, Any]:
    """Write the fused copy of the fp32 backbone ``src`` to ``dst`` and return the fusion report.

    ``cases``: token batches (``validate.validation_cases``) on which the fused graph's features
    must match the unfused graph's within :data:`FUSION_TOLERANCE`. The report's ``applied`` is
    False (and nothing is written) when the model type is skipped or no fusion matched; then the
    caller keeps ``src``.

    Raises:
        ExportValidationError: the fused graph lost an input or output, or its features differ
            from the unfused graph's beyond tolerance.
    """
    import onnx

    plan = fusion_plan(config)
    report: dict[str, Any] = {"optimizer": "onnxruntime.transformers.optimizer.optimize_model", **plan}
    if "reason" in plan:
        return {**report, "applied": False}
    from onnxruntime.transformers.optimizer import optimize_model

    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the optimizer logs every fusion pass at INFO/WARNING
    try:
        model = optimize_model(str(src), model_type=plan["optimizer_model_type"], num_heads=plan["num_heads"],
                               hidden_size=plan["hidden_size"], opt_level=OPT_LEVEL)
    finally:
        quiet.setLevel(level)
    stats = {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
    report.update(opt_level=OPT_LEVEL, optimizer_statistics=stats)
    if not stats:
        return {**report, "applied": False, "reason": "no fusion pattern matched this graph"}
    before, after = onnx.load(str(src), load_external_data=False).graph, model.model.graph
    if _names(before.input) != _names(after.input) or _names(before.output) != _names(after.output):
        raise ExportValidationError(
            f"the fused graph has inputs {_names(after.input)} and outputs {_names(after.output)}, expected "
            f"{_names(before.input)} and {_names(before.output)}.", path=dst,
            fix="export without --fusions and report this model to uehead.")
    model.save_model_to_file(str(dst))
    report["fused_ops"] = fused_op_counts(dst)
    report["max_abs_diff_vs_unfused"] = graph_output_diff(src, dst, cases)
    if not report["max_abs_diff_vs_unfused"] <= FUSION_TOLERANCE:
        raise ExportValidationError(
            f"the fused backbone's features differ from the unfused graph's by "
            f"{report['max_abs_diff_vs_unfused']:.3g} (tolerance {FUSION_TOLERANCE:g}).", path=dst, report=report,
            fix="export without --fusions.")
    return {**report, "applied": True}


def _names(values) -> list[str]:
    return [v.name for v in values]

