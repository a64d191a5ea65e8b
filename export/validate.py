"""Validation on every export (the optimum habit): PyTorch and ONNX Runtime on the same token ids.

* :class:`TorchReference` - the oracle: plain transformers (the merged model's own forward for the
  task logits, its base model for z) plus the head weights applied with ``F.linear``. It shares no
  code with the wrapper modules in ``graphs.py``, so a broken wrapper fails validation.
* :class:`OnnxPipeline` - backbone.onnx -> head.onnx in ONNX Runtime.
* :func:`validate_graphs` - every case of :func:`validation_cases` (batch 1 and 37, lengths 1 and
  max_length, real tokenizer output) through both; each output's max abs diff is reported and
  :class:`ExportValidationError` is raised when probabilities or uncertainties differ by more than
  the tolerance (features and logits get their own reported diffs).
* :func:`compare_runtime_to_pytorch` - the issue's acceptance check: ``uehead.runtime`` on a bundle
  against the PyTorch checkpoint on any texts.

Every uncertainty score compared here is **higher = more uncertain**.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from uehead.export.checkpoint import Checkpoint, HeadWeights
from uehead.export.errors import ExportValidationError
from uehead.export.graphs import FEATURES, TASK_LOGITS, head_output_name
from uehead.export.tokenization import encode
from uehead import scores as reference

#: Scores held to the tolerance; everything else (features, logits, label ids) is reported only.
CHECKED_PREFIXES = ("probs", "softmax_response", "entropy", "uncertainty_")
DEFAULT_TOLERANCE = 1e-4

#: Real-looking texts used when no dataset is at hand (validation and golden set).
SAMPLE_TEXTS = (
    "a gripping, beautifully acted film that stays with you long after the credits roll.",
    "the plot is a mess and the jokes fall flat.",
    "not bad, not great: a perfectly ordinary thriller.",
    "i expected to hate it, and i was wrong.",
    "",
    "ok",
    "Wow!!! Best. Movie. Ever?",
    "the director's cut adds forty minutes of nothing; still, the score by the composer is superb.",
    "café society, naïve heroes and a soundtrack of déjà vu (日本語のタイトル) 🙂",
    "it's dull , slow and far too long , but the lead actress is luminous .",
    "an uneven but often charming comedy about family, money and the lies that hold them together.",
    " ".join(["an epic that never ends and keeps going with scene after scene of the same story"] * 12),
)


def long_text(texts: Sequence[str]) -> str:
    """A text far past any max_length, built from real texts."""
    return " ".join(list(texts) * 20)[:20000] or "long " * 2000


class TorchReference:
    """Plain transformers + head weights: what the exported graphs must reproduce."""

    def __init__(self, model, architecture: str, heads: Mapping[str, HeadWeights]):
        self.model = model
        self.architecture = architecture
        self.heads = dict(heads)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, model=None) -> "TorchReference":
        return cls(model if model is not None else ckpt.load_model(), ckpt.architecture, ckpt.heads)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch
        import torch.nn.functional as F

        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
        base = getattr(self.model, self.model.base_model_prefix)
        with torch.no_grad():
            task = self.model(**t).logits
            out = base(**t)
            if self.architecture == "bert":
                z = out.pooler_output
            elif self.architecture == "roberta":
                z = out.last_hidden_state[:, 0]
            else:
                last = np.maximum(batch["attention_mask"].sum(axis=1) - 1, 0)
                z = out.last_hidden_state[torch.arange(len(last)), torch.from_numpy(last)]
            result = {FEATURES: z, TASK_LOGITS: task}
            for kind, head in self.heads.items():
                w = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in head.state_dict.items()}
                if head.module == "linear":
                    logits = F.linear(z, w["weight"], w.get("bias"))
                else:
                    logits = F.linear(torch.tanh(F.linear(z, w["dense.weight"], w["dense.bias"])),
                                      w["out_proj.weight"], w["out_proj.bias"])
                result[head_output_name(kind)] = logits
        return {k: v.float().numpy() for k, v in result.items()}


class OnnxPipeline:
    """backbone.onnx -> head.onnx in ONNX Runtime, returning the same dict as TorchReference."""

    def __init__(self, backbone: str | Path, head: str | Path, *, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        self.backbone_path, self.head_path = Path(backbone), Path(head)
        self.backbone = ort.InferenceSession(str(backbone), opts, providers=providers)
        self.head = ort.InferenceSession(str(head), opts, providers=providers)
        self.input_names = tuple(i.name for i in self.backbone.get_inputs())
        self.output_names = tuple(o.name for o in self.head.get_outputs())

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {n: np.ascontiguousarray(batch[n], dtype=np.int64) for n in self.input_names}
        (z,) = self.backbone.run([FEATURES], feed)
        outs = self.head.run(None, {FEATURES: z})
        return {FEATURES: z, **dict(zip(self.output_names, outs))}


def run_texts(pipeline, tok, texts: Sequence[str], *, input_names: Sequence[str], max_length: int,
              pad_token_id: int, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Raw outputs of ``pipeline`` (OnnxPipeline or TorchReference) for many texts, in input order;
    texts are grouped by token length so batches carry little padding (as the runtime does)."""
    lengths = [len(e.ids) for e in _truncating(tok, max_length).encode_batch(list(texts))]
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    parts: dict[str, np.ndarray] = {}
    for start in range(0, len(texts), batch_size):
        idx = order[start:start + batch_size]
        batch = encode(tok, [texts[i] for i in idx], max_length=max_length, pad_token_id=pad_token_id,
                       input_names=input_names)
        for k, v in pipeline(batch).items():
            if k not in parts:
                parts[k] = np.empty((len(texts), *v.shape[1:]), v.dtype)
            parts[k][idx] = v
    return parts


def _truncating(tok, max_length: int):
    from tokenizers import Tokenizer

    t = Tokenizer.from_str(tok.to_str())
    t.enable_truncation(max_length=max_length, direction="right")
    return t


def scores(outputs: Mapping[str, np.ndarray], lams: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Probabilities and every uncertainty (higher = more uncertain) from raw outputs, via the
    numpy reference the runtime kernels are tested against."""
    probs, sr, ent, _ = reference.task_outputs(outputs[TASK_LOGITS])
    out = {"probs": probs, "label_ids": probs.argmax(axis=1), "softmax_response": sr, "entropy": ent}
    for kind, lam in lams.items():
        logits = outputs[head_output_name(kind)]
        u = reference.adue_uncertainty(logits, lam) if kind == "adue" else reference.alien_uncertainty(logits)
        out[f"uncertainty_{kind}"] = u
    return out


def max_abs_diffs(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Max abs diff per key present in both (NaN/inf anywhere -> inf)."""
    out = {}
    for k in a:
        if k not in b or k == "label_ids":
            continue
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        if x.shape != y.shape:
            raise ExportValidationError(f"output {k!r} has shape {y.shape}, expected {x.shape}.",
                                        fix="report a bug: the exported graph is wrong.")
        if x.size == 0:
            out[k] = 0.0
        elif not (np.isfinite(x).all() and np.isfinite(y).all()):
            out[k] = float("inf")
        else:
            out[k] = float(np.abs(x - y).max())
    return out


def validation_cases(tok, texts: Sequence[str], *, max_length: int, pad_token_id: int,
                     input_names: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """Token batches from real tokenizer output: batch 1 and 37, natural lengths, length 1 and max_length."""
    texts = [t for t in texts if t.strip()] or list(SAMPLE_TEXTS[:4])
    many = [texts[i % len(texts)] for i in range(37)]
    long = long_text(texts)
    kw = dict(max_length=max_length, pad_token_id=pad_token_id, input_names=input_names)
    cases = {
        "batch1": encode(tok, many[:1], **kw),
        "batch37": encode(tok, many, **kw),
        "batch1_max_length": encode(tok, [long], **kw),
        "batch37_max_length": encode(tok, many[:36] + [long], pad_to=max_length, **kw),
    }
    cases["batch1_length1"] = {k: v[:, :1] for k, v in cases["batch1"].items()}
    cases["batch37_length1"] = {k: v[:, :1] for k, v in cases["batch37"].items()}
    return cases


def compare_outputs(expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray],
                    lams: Mapping[str, float]) -> dict[str, Any]:
    """Diffs of raw outputs and of scores, plus the number of flipped predictions. Non-finite
    outputs count as an infinite diff (they fail any tolerance)."""
    raw = max_abs_diffs(expected, actual)
    se = scores(expected, lams)
    try:
        sa = scores(actual, lams)
    except reference.NonFiniteLogitsError:
        return {"max_abs_diff": {**raw, **{k: float("inf") for k in se if k != "label_ids"}},
                "label_flips": int(len(se["label_ids"]))}
    return {"max_abs_diff": {**raw, **max_abs_diffs(se, sa)},
            "label_flips": int((se["label_ids"] != sa["label_ids"]).sum())}


def summarise(cases: Mapping[str, Mapping[str, Any]], tolerance: float) -> dict[str, Any]:
    """Worst diff per output over all cases, and whether every checked score is within tolerance."""
    worst: dict[str, float] = {}
    for case in cases.values():
        for k, v in case["max_abs_diff"].items():
            worst[k] = max(worst.get(k, 0.0), v)
    failed = sorted(k for k, v in worst.items() if k.startswith(CHECKED_PREFIXES) and not v <= tolerance)
    return {"tolerance": tolerance, "max_abs_diff": worst, "failed": failed, "passed": not failed,
            "cases": dict(cases)}


def validate_graphs(ref, onnx, cases: Mapping[str, Mapping[str, np.ndarray]], lams: Mapping[str, float], *,
                    tolerance: float = DEFAULT_TOLERANCE, where: str | Path = "backbone.onnx",
                    raise_on_failure: bool = True) -> dict[str, Any]:
    """Run ``ref`` (PyTorch) and ``onnx`` (ONNX Runtime) on every case; report each output's max abs
    diff; raise :class:`ExportValidationError` when a probability or uncertainty exceeds ``tolerance``."""
    per_case = {}
    for name, batch in cases.items():
        per_case[name] = {"shape": list(batch["input_ids"].shape), **compare_outputs(ref(batch), onnx(batch), lams)}
    report = summarise(per_case, tolerance)
    if raise_on_failure and not report["passed"]:
        worst = {k: report["max_abs_diff"][k] for k in report["failed"]}
        raise ExportValidationError(
            f"ONNX Runtime differs from PyTorch beyond {tolerance:g} on {worst}.", path=where, report=report,
            fix="check the wrapper modules in uehead.export.graphs against the checkpoint's model "
                "(architecture/pooling), or export with another opset.")
    return report


def compare_runtime_to_pytorch(checkpoint: str | Path, bundle: str | Path, texts: Sequence[str], *,
                               tolerance: float = DEFAULT_TOLERANCE, batch_size: int = 32,
                               raise_on_failure: bool = True) -> dict[str, Any]:
    """The runtime's (``uehead.runtime.load(bundle)``) probabilities and uncertainties on ``texts``
    against the PyTorch checkpoint (plain transformers + head weights, tokenised by the checkpoint's
    Hugging Face tokenizer). Returns per-output max abs diffs; raises :class:`ExportValidationError`
    above ``tolerance`` (meant for fp32 bundles)."""
    from uehead import runtime
    from uehead.bundle import read_manifest
    from uehead.export.checkpoint import read_checkpoint
    from uehead.export.tokenization import hf_encode

    ckpt = read_checkpoint(checkpoint)
    manifest = read_manifest(bundle)
    model = runtime.load(bundle)
    hf_tok = ckpt.load_tokenizer()
    ref = TorchReference.from_checkpoint(ckpt)
    lams = {h.kind: float(h.lam) for h in manifest.head.heads}
    names = tuple(manifest.tokenizer.model_input_names)
    texts = list(texts)
    expected: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(texts), batch_size):
        chunk = texts[i:i + batch_size]
        batch = hf_encode(hf_tok, chunk, max_length=manifest.tokenizer.max_length, input_names=names)
        for k, v in scores(ref(batch), lams).items():
            expected.setdefault(k, []).append(v)
    exp = {k: np.concatenate(v) for k, v in expected.items()} if texts else {}
    got = _runtime_scores(model, texts, batch_size, manifest)
    diffs = max_abs_diffs(exp, got)
    flips = int((exp["label_ids"] != got["label_ids"]).sum()) if texts else 0
    report = {"texts": len(texts), "tolerance": tolerance, "max_abs_diff": diffs, "label_flips": flips}
    failed = sorted(k for k, v in diffs.items() if k.startswith(CHECKED_PREFIXES) and not v <= tolerance)
    report.update(failed=failed, passed=not failed)
    if raise_on_failure and failed:
        raise ExportValidationError(f"the runtime differs from the PyTorch checkpoint beyond {tolerance:g} on "
                                    f"{ {k: diffs[k] for k in failed} }.", path=bundle, report=report,
                                    fix="re-export the bundle from this checkpoint and check `uehead verify`.")
    return report


def _runtime_scores(model, texts: Sequence[str], batch_size: int, manifest) -> dict[str, np.ndarray]:
    """Scores from a runtime Model, in the keys of :func:`scores` (one entry per head kind)."""
    p = model.predict(list(texts), batch_size=batch_size)
    out = {"probs": np.asarray(p.probs), "label_ids": np.asarray(p.label_ids),
           "softmax_response": np.asarray(p.softmax_response), "entropy": np.asarray(p.entropy)}
    for h in manifest.head.heads:
        out[f"uncertainty_{h.kind}"] = np.asarray(p.scores[h.kind])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m uehead.export.validate CKPT BUNDLE [--data rotten_tomatoes] [--rows 200]``:
    the issue's acceptance check (runtime vs PyTorch on test texts); prints the JSON report."""
    import argparse
    import json

    from uehead.datasets import load_dataset

    p = argparse.ArgumentParser(prog="python -m uehead.export.validate", description=main.__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("bundle", type=Path)
    p.add_argument("--data", default="rotten_tomatoes", help="dataset whose test texts are compared")
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    a = p.parse_args(argv)
    texts = load_dataset(a.data, splits=("test",))["test"].texts[: a.rows]
    report = compare_runtime_to_pytorch(a.checkpoint, a.bundle, texts, tolerance=a.tolerance,
                                        raise_on_failure=False)
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
