"""Validation on every export (the optimum habit): PyTorch and the runtime's code on the same token ids.

* :class:`TorchReference` - the oracle: plain transformers (the merged model's own forward for the
  task logits, its base model for z) plus the head weights applied with ``F.linear`` (and the dense
  modules' activations, written out here). It shares no code with the wrapper modules in
  ``graphs.py``, so a broken wrapper fails validation.
* :class:`OnnxPipeline` - backbone.onnx -> head.onnx in sessions built by the runtime's
  :func:`~uehead.runtime.session.make_session`.
* :func:`scores` - probabilities and every score through the head-kind registry: the numpy
  reference on the PyTorch side, the runtime's kernels on the ONNX Runtime side.
* :func:`validate_graphs` - every case of :func:`validation_cases` (batch 1 and 37, lengths 1 and
  max_length, token ids from the runtime's :class:`~uehead.runtime.tokenize.TextTokenizer`, fed
  unchanged to both sides) through both; each output's max abs diff is reported and
  :class:`ExportValidationError` is raised when probabilities or scores differ by more than the
  tolerance (features and logits get their own reported diffs).
* :func:`compare_runtime_to_pytorch` - ``uehead.runtime`` on a finished bundle against the PyTorch
  checkpoint (tokenised by its Hugging Face tokenizer) on any texts.

Score names are those of ``Predictions.scores``: "sr", "entropy" and one per head kind. Every
score compared here is **higher = more uncertain**.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from uehead import scores as reference
from uehead.architectures import DENSE_HEAD_ACTIVATIONS, POOLING_OF, dense_head_prefixes
from uehead.checkpoint import Checkpoint, HeadWeights
from uehead.export.errors import ExportValidationError
from uehead.export.graphs import FEATURES, TASK_LOGITS, head_output_name
from uehead.scores import NonFiniteLogitsError, head_kind, head_params, score_names

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
        if model is None:
            from uehead.export.hf import load_model

            model = load_model(ckpt)
        return cls(model, ckpt.architecture, ckpt.heads)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch
        import torch.nn.functional as F

        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
        base = getattr(self.model, self.model.base_model_prefix)
        activations = {"tanh": torch.tanh, "relu": F.relu, "gelu": F.gelu, "silu": F.silu,
                       "gelu_new": lambda x: 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))}
        with torch.no_grad():
            task = self.model(**t).logits
            out = base(**t)
            pooling = POOLING_OF[self.architecture]
            if pooling == "pooler":
                z = out.pooler_output
            elif pooling == "first_token":
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
                    hid, o = dense_head_prefixes(head.module)
                    act = activations[DENSE_HEAD_ACTIVATIONS[head.module]]
                    logits = F.linear(act(F.linear(z, w[hid + "weight"], w[hid + "bias"])),
                                      w[o + "weight"], w[o + "bias"])
                result[head_output_name(kind)] = logits
        return {k: v.float().numpy() for k, v in result.items()}


class OnnxPipeline:
    """backbone.onnx -> head.onnx in ONNX Runtime, returning the same dict as TorchReference. The
    sessions are built as the runtime builds them (the head graph on one thread)."""

    def __init__(self, backbone: str | Path, head: str | Path, *, threads: int | None = None):
        from uehead.runtime.session import make_session

        self.backbone_path, self.head_path = Path(backbone), Path(head)
        self.backbone = make_session(self.backbone_path, threads=threads)
        self.head = make_session(self.head_path, threads=1)
        self.input_names = tuple(i.name for i in self.backbone.get_inputs())
        self.output_names = tuple(o.name for o in self.head.get_outputs())

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {n: np.ascontiguousarray(batch[n], dtype=np.int64) for n in self.input_names}
        (z,) = self.backbone.run([FEATURES], feed)
        outs = self.head.run(None, {FEATURES: z})
        return {FEATURES: z, **dict(zip(self.output_names, outs))}


def run_texts(pipeline, tok, texts: Sequence[str], *, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Raw outputs of ``pipeline`` (OnnxPipeline or TorchReference) for many texts, in input order.
    ``tok`` is the runtime's TextTokenizer; texts are grouped by token length so batches carry
    little padding, as the runtime does."""
    texts = list(texts)
    ids = tok.encode(texts)
    order = np.argsort(np.asarray([len(x) for x in ids], dtype=np.int64), kind="stable")
    parts: dict[str, np.ndarray] = {}
    for start in range(0, len(texts), batch_size):
        idx = order[start:start + batch_size]
        for k, v in pipeline(tok.pad([ids[i] for i in idx])).items():
            if k not in parts:
                parts[k] = np.empty((len(texts), *v.shape[1:]), v.dtype)
            parts[k][idx] = v
    return parts


def checked_names(heads: Mapping[str, Any]) -> tuple[str, ...]:
    """Outputs held to the tolerance: the probabilities and every score. Features, logits and label
    ids are reported only."""
    return ("probs", *score_names(tuple(heads)))


def scores(outputs: Mapping[str, np.ndarray], heads: Mapping[str, Mapping[str, float]], *,
           kernels: bool = False) -> dict[str, np.ndarray]:
    """Probabilities, label ids and every score (higher = more uncertain) from raw outputs, keyed
    "probs", "label_ids", "sr", "entropy" and one per head kind (``heads``: kind -> score kwargs).

    ``kernels=False``: the numpy reference (float64); ``True``: the runtime's kernels (float32),
    i.e. what the runtime serves for these outputs."""
    if kernels:
        from uehead.runtime import kernels as impl
    else:
        impl = reference
    probs, sr, ent, _ = impl.task_outputs(outputs[TASK_LOGITS])
    out = {"probs": probs, "label_ids": probs.argmax(axis=1), "sr": sr, "entropy": ent}
    for kind, params in heads.items():
        entry = head_kind(kind)
        score = entry.score_kernel if kernels else entry.score_reference
        out[kind] = score(outputs[head_output_name(kind)], **params)
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


def validation_cases(tok, texts: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """Token batches from the runtime's TextTokenizer ``tok``: batch 1 and 37, natural lengths,
    length 1 and max_length."""
    texts = [t for t in texts if t.strip()] or list(SAMPLE_TEXTS[:4])
    many = [texts[i % len(texts)] for i in range(37)]
    long = long_text(texts)
    cases = {
        "batch1": tok(many[:1]),
        "batch37": tok(many),
        "batch1_max_length": tok([long]),
        "batch37_max_length": tok(many[:36] + [long]),
    }
    cases["batch1_length1"] = {k: v[:, :1] for k, v in cases["batch1"].items()}
    cases["batch37_length1"] = {k: v[:, :1] for k, v in cases["batch37"].items()}
    return cases


def graph_output_diff(a: str | Path, b: str | Path, cases: Mapping[str, Mapping[str, np.ndarray]]) -> float:
    """Max abs diff of two ONNX graphs' first output over the token batches ``cases`` (one thread,
    as validation does): how a rewritten backbone is checked against the graph it replaces."""
    from uehead.runtime.session import make_session

    sa, sb = make_session(a, threads=1), make_session(b, threads=1)
    inputs = [i.name for i in sa.get_inputs()]
    worst = 0.0
    for batch in dict(cases).values():
        feed = {n: np.ascontiguousarray(batch[n], dtype=np.int64) for n in inputs}
        (x,), (y,) = sa.run(None, feed), sb.run(None, feed)
        worst = max(worst, float(np.abs(x.astype(np.float64) - y).max()) if x.size else 0.0)
    return worst


def compare_outputs(expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray],
                    heads: Mapping[str, Mapping[str, float]], *, kernels: bool = True) -> dict[str, Any]:
    """Diffs of raw outputs and of scores, plus the number of flipped predictions. ``expected`` is
    scored by the numpy reference, ``actual`` by the runtime's kernels (``kernels=True``) or the
    reference. Non-finite outputs count as an infinite diff (they fail any tolerance)."""
    raw = max_abs_diffs(expected, actual)
    se = scores(expected, heads)
    try:
        sa = scores(actual, heads, kernels=kernels)
    except NonFiniteLogitsError:
        return {"max_abs_diff": {**raw, **{k: float("inf") for k in se if k != "label_ids"}},
                "label_flips": int(len(se["label_ids"]))}
    return {"max_abs_diff": {**raw, **max_abs_diffs(se, sa)},
            "label_flips": int((se["label_ids"] != sa["label_ids"]).sum())}


def summarise(cases: Mapping[str, Mapping[str, Any]], tolerance: float, checked: Sequence[str]) -> dict[str, Any]:
    """Worst diff per output over all cases, and whether every ``checked`` output is within tolerance."""
    worst: dict[str, float] = {}
    for case in cases.values():
        for k, v in case["max_abs_diff"].items():
            worst[k] = max(worst.get(k, 0.0), v)
    failed = sorted(k for k, v in worst.items() if k in checked and not v <= tolerance)
    return {"tolerance": tolerance, "max_abs_diff": worst, "failed": failed, "passed": not failed,
            "cases": dict(cases)}


def validate_graphs(ref, onnx, cases: Mapping[str, Mapping[str, np.ndarray]],
                    heads: Mapping[str, Mapping[str, float]], *, tolerance: float = DEFAULT_TOLERANCE,
                    where: str | Path = "backbone.onnx", raise_on_failure: bool = True) -> dict[str, Any]:
    """Run ``ref`` (PyTorch) and ``onnx`` (ONNX Runtime) on every case, score them (reference vs the
    runtime's kernels), report each output's max abs diff; raise :class:`ExportValidationError` when
    a probability or score exceeds ``tolerance``. ``heads``: kind -> score kwargs."""
    per_case = {}
    for name, batch in cases.items():
        per_case[name] = {"shape": list(batch["input_ids"].shape), **compare_outputs(ref(batch), onnx(batch), heads)}
    report = summarise(per_case, tolerance, checked_names(heads))
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
    """The runtime's (``uehead.runtime.load(bundle)``) probabilities and scores on ``texts``
    against the PyTorch checkpoint (plain transformers + head weights, tokenised by the checkpoint's
    Hugging Face tokenizer). Returns per-output max abs diffs; raises :class:`ExportValidationError`
    above ``tolerance`` (meant for fp32 bundles)."""
    from uehead import runtime
    from uehead.checkpoint import read_checkpoint
    from uehead.export.hf import load_tokenizer
    from uehead.export.tokenization import hf_encode

    ckpt = read_checkpoint(checkpoint)
    model = runtime.load(bundle)
    spec = model.manifest.tokenizer
    hf_tok = load_tokenizer(ckpt)
    ref = TorchReference.from_checkpoint(ckpt)
    heads = {h.kind: head_params(h.kind, h) for h in model.manifest.head.heads}
    texts = list(texts)
    expected: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(texts), batch_size):
        batch = hf_encode(hf_tok, texts[i:i + batch_size], max_length=spec.max_length,
                          input_names=spec.model_input_names)
        for k, v in scores(ref(batch), heads).items():
            expected.setdefault(k, []).append(v)
    exp = {k: np.concatenate(v) for k, v in expected.items()}
    got = _runtime_outputs(model, texts, batch_size)
    diffs = max_abs_diffs(exp, got)
    flips = int((exp["label_ids"] != got["label_ids"]).sum()) if texts else 0
    report = {"texts": len(texts), "tolerance": tolerance, "max_abs_diff": diffs, "label_flips": flips}
    failed = sorted(k for k, v in diffs.items() if k in checked_names(heads) and not v <= tolerance)
    report.update(failed=failed, passed=not failed)
    if raise_on_failure and failed:
        raise ExportValidationError(f"the runtime differs from the PyTorch checkpoint beyond {tolerance:g} on "
                                    f"{ {k: diffs[k] for k in failed} }.", path=bundle, report=report,
                                    fix="re-export the bundle from this checkpoint and check `uehead verify`.")
    return report


def _runtime_outputs(model, texts: Sequence[str], batch_size: int) -> dict[str, np.ndarray]:
    """A runtime Model's probabilities, label ids and scores, in the keys of :func:`scores`."""
    p = model.predict(list(texts), batch_size=batch_size)
    return {"probs": np.asarray(p.probs), "label_ids": np.asarray(p.label_ids),
            **{k: np.asarray(v) for k, v in p.scores.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m uehead.export.validate CKPT BUNDLE [--data rotten_tomatoes] [--rows 200]``:
    the runtime against PyTorch on a dataset's test texts; prints the JSON report."""
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
