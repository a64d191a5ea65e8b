"""scores.onnx: head logits -> probabilities, label and every uncertainty score, in standard ONNX operators.

Needs the ``onnx`` package (in the ``[export]`` and ``[test]`` extras); the runtime never imports
this module: it only runs the graph, with ONNX Runtime.

The last step of a prediction as a graph, so that any ONNX Runtime app (Java, C#, Go, Rust,
JavaScript) gets the papers' formulas without re-implementing them. The Python runtime keeps its
numba kernels (:mod:`uehead.runtime.kernels`); ``uehead verify`` checks that both agree.

Inputs, float32 [batch, C]: the task logits and each uncertainty head's logits, named as head.onnx
names its outputs (manifest ``head.task_logits_name`` and ``head.heads[].output_name``), so
head.onnx's outputs feed straight in. Outputs ([batch] unless noted; names in
:data:`uehead.bundle.SCORES_TASK_OUTPUTS`, then one per head kind, then ``uncertainty``)::

    probs             float32 [batch, C]  softmax of the task logits
    label_id          int64               argmax of the task logits (first on ties)
    softmax_response  float32             1 - max probs                       (the "sr" score)
    entropy           float32             -sum p log p of probs, in nats
    <kind>            float32             each head's score: adue = 1 - SmoothMax_lam(softmax(h)),
                                          lam from the manifest; alien = H(softmax(h)) / log C
    uncertainty       float32             the manifest's default kind (a head kind or "sr")

**Every score is higher = more uncertain.** Everything is computed in float64 after a row-max
shift (log-sum-exp), so any finite float32 logits (|logit| up to 1e4 and far beyond) give finite
outputs; NaN or inf in gives NaN out (the Python runtime raises instead). Batch 0 works.

A head kind needs a graph builder here, keyed by the kind's name in the :mod:`uehead.scores`
registry: a new kind adds one with :func:`register_graph_builder` (in this module for a built-in
kind, from its plugin otherwise). A builder is ``fn(graph: ScoresGraph, logits: str, **params) ->
str``: it adds nodes for one head's logits (the kind's parameters as keyword arguments, see
:func:`uehead.scores.head_params`) and returns the name of its float64 [batch] score. A bundle
whose heads include a kind without a builder gets no scores.onnx (:class:`MissingGraphBuilderError`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from uehead.bundle import SCORES_FILE, SCORES_TASK_OUTPUTS, UNCERTAINTY_OUTPUT, FileSpec, HeadSpec
from uehead.errors import UnknownScoreError
from uehead.scores import head_kind, head_params

__all__ = ["OPSET", "TOLERANCE", "MAX_BYTES", "ScoresGraph", "MissingGraphBuilderError", "register_graph_builder",
           "unregister_graph_builder", "graph_builders", "build_scores_graph", "write_scores_graph",
           "validate_scores_graph"]

#: ONNX opset of scores.onnx (ONNX Runtime >= 1.13 runs it) and its IR version.
OPSET = 17
IR_VERSION = 8
#: Export check: max abs diff of every output from the float64 numpy reference, and the file's size limit.
TOLERANCE = 1e-6
MAX_BYTES = 10_000
_F64 = TensorProto.DOUBLE


class MissingGraphBuilderError(UnknownScoreError):
    """A head kind of the bundle has no ONNX graph builder (:func:`register_graph_builder`)."""


class _Softmax:
    """The softmax pieces of one logits tensor, each added to the graph once, when first asked for."""

    def __init__(self, graph: ScoresGraph, logits: str):
        self.g, self.logits = graph, logits
        self._memo: dict[str, str] = {}

    def _get(self, key: str, make: Callable[[], str]) -> str:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def shifted(self) -> str:
        """s = x - max_c x (float64, <= 0, max 0 per row)."""
        def make():
            x = self.g.op("Cast", self.logits, to=_F64)
            return self.g.op("Sub", x, self.g.op("ReduceMax", x, axes=[1], keepdims=1))
        return self._get("s", make)

    def exp(self) -> str:
        return self._get("e", lambda: self.g.op("Exp", self.shifted()))

    def total(self) -> str:
        """S = sum_c exp(s) [batch, 1], >= 1."""
        return self._get("S", lambda: self.g.op("ReduceSum", self.exp(), self.g.axis1, keepdims=1))

    def probs(self) -> str:
        return self._get("p", lambda: self.g.op("Div", self.exp(), self.total()))

    def max_prob(self) -> str:
        """max_c p = 1 / S (the largest exp(s) is exactly 1) [batch, 1]."""
        return self._get("maxp", lambda: self.g.op("Reciprocal", self.total()))

    def entropy(self) -> str:
        """H = log S - sum_c exp(s) s / S (nats) [batch, 1]; 0 * s stays 0 for underflowed terms."""
        def make():
            es = self.g.op("ReduceSum", self.g.op("Mul", self.exp(), self.shifted()), self.g.axis1, keepdims=1)
            return self.g.op("Sub", self.g.op("Log", self.total()), self.g.op("Div", es, self.total()))
        return self._get("H", make)

    def log_classes(self) -> str:
        """log C from the input's shape (so one graph serves any class count) [1]."""
        def make():
            c = self.g.op("Shape", self.logits, start=1, end=2)
            return self.g.op("Log", self.g.op("Cast", c, to=_F64))
        return self._get("logC", make)


class ScoresGraph:
    """Nodes and constants of scores.onnx under construction; graph builders add to it."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._softmax: dict[str, _Softmax] = {}
        self.axis1 = self.const(np.array([1], np.int64), "axis1")

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        """Add one node; return the name of its (single) output."""
        out = f"{op_type.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def const(self, value, name: str | None = None) -> str:
        """A constant tensor (float64 unless ``value`` is a numpy array of another dtype)."""
        arr = value if isinstance(value, np.ndarray) else np.asarray(value, np.float64)
        name = name or f"const_{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(arr, name))
        return name

    def softmax(self, logits: str) -> _Softmax:
        """The softmax pieces of graph input ``logits`` (shared by every builder that asks)."""
        if logits not in self._softmax:
            self._softmax[logits] = _Softmax(self, logits)
        return self._softmax[logits]

    def rows(self, column: str) -> str:
        """[batch, 1] -> [batch]."""
        return self.op("Squeeze", column, self.axis1)

    def output(self, value: str, name: str, to: int = TensorProto.FLOAT) -> None:
        self.nodes.append(helper.make_node("Cast", [value], [name], to=to))


def _adue_graph(g: ScoresGraph, logits: str, *, lam: float) -> str:
    """1 - SmoothMax_lam(p) = 1 - max p - log(sum_c exp(lam (p_c - max p))) / lam (max-shifted)."""
    sm = g.softmax(logits)
    gap = g.op("Sub", sm.probs(), sm.max_prob())
    lam_ = g.const(float(lam))
    lse = g.op("Log", g.op("ReduceSum", g.op("Exp", g.op("Mul", gap, lam_)), g.axis1, keepdims=1))
    smooth = g.op("Add", sm.max_prob(), g.op("Div", lse, lam_))
    return g.rows(g.op("Sub", g.const(1.0), smooth))


def _alien_graph(g: ScoresGraph, logits: str) -> str:
    """H(softmax(h)) / log C."""
    sm = g.softmax(logits)
    return g.op("Div", g.rows(sm.entropy()), sm.log_classes())


_BUILDERS: dict[str, Callable[..., str]] = {"adue": _adue_graph, "alien": _alien_graph}


def register_graph_builder(kind: str, builder: Callable[..., str], *, replace: bool = False) -> None:
    """Register the ONNX graph builder of head kind ``kind`` (see the module docstring)."""
    if kind in _BUILDERS and not replace:
        raise ValueError(f"head kind {kind!r} already has a graph builder; pass replace=True to override.")
    _BUILDERS[kind] = builder


def unregister_graph_builder(kind: str) -> None:
    """Remove the graph builder of ``kind`` (for plugins and tests)."""
    _BUILDERS.pop(kind, None)


def graph_builders() -> tuple[str, ...]:
    """Head kinds that have a graph builder."""
    return tuple(_BUILDERS)


def build_scores_graph(head: HeadSpec) -> onnx.ModelProto:
    """scores.onnx for the head graph described by ``head`` (the manifest's HeadSpec); a
    ``num_classes`` of 0 leaves the class axis symbolic (one graph for any class count)."""
    missing = [h.kind for h in head.heads if h.kind not in _BUILDERS]
    if missing:
        raise MissingGraphBuilderError(
            f"head kinds {missing} have no ONNX graph builder; known: {', '.join(_BUILDERS)}.",
            fix="register one with uehead.scores_graph.register_graph_builder(kind, fn).")
    if head.default_kind not in ("sr", *(h.kind for h in head.heads)):
        raise ValueError(f"default kind {head.default_kind!r} is not 'sr' nor one of the heads.")
    probs, label_id, sr, entropy = SCORES_TASK_OUTPUTS
    g = ScoresGraph()
    task = g.softmax(head.task_logits_name)
    g.output(task.probs(), probs)
    g.nodes.append(helper.make_node("ArgMax", [head.task_logits_name], [label_id], axis=1, keepdims=0))
    scores = {"sr": g.rows(g.op("Sub", g.const(1.0), task.max_prob()))}
    g.output(scores["sr"], sr)
    g.output(g.rows(task.entropy()), entropy)
    for h in head.heads:
        scores[h.kind] = _BUILDERS[h.kind](g, h.output_name, **head_params(head_kind(h.kind), h))
        g.output(scores[h.kind], h.kind)
    g.output(scores[head.default_kind], UNCERTAINTY_OUTPUT)

    c = int(head.num_classes) if head.num_classes else "classes"
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", c])
              for n in (head.task_logits_name, *(h.output_name for h in head.heads))]
    outputs = [helper.make_tensor_value_info(probs, TensorProto.FLOAT, ["batch", c]),
               helper.make_tensor_value_info(label_id, TensorProto.INT64, ["batch"])]
    outputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch"])
                for n in (sr, entropy, *(h.kind for h in head.heads), UNCERTAINTY_OUTPUT)]
    graph = helper.make_graph(g.nodes, "uehead_scores", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="uehead")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def write_scores_graph(out_dir: str | Path, head: HeadSpec) -> FileSpec:
    """Write ``out_dir``/scores.onnx for ``head``; return its manifest entry (sha256 filled later)."""
    model = build_scores_graph(head)
    onnx.save(model, str(Path(out_dir) / SCORES_FILE))
    return FileSpec(SCORES_FILE, "", {"opset": OPSET, "inputs": [i.name for i in model.graph.input],
                                      "outputs": [o.name for o in model.graph.output]})


def validate_scores_graph(path: str | Path, head: HeadSpec, outputs: Sequence[Mapping[str, np.ndarray]], *,
                          tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Run scores.onnx at ``path`` on head outputs (``outputs``: batches keyed by head.onnx's output
    names, e.g. those of the export's validation cases, plus
    :func:`~uehead.runtime.verification.extreme_logits`) and compare it with the numpy reference of
    every score; return the report (max abs diff per output); raise ExportValidationError when an
    output differs by more than ``tolerance``, a label differs, or the file exceeds MAX_BYTES."""
    # Imported here: the export package (torch) is only needed when an export validates its graph.
    from uehead.export.errors import ExportValidationError
    from uehead.export.graphs import TASK_LOGITS, head_output_name
    from uehead.export.validate import max_abs_diffs, scores
    from uehead.runtime.session import make_session
    from uehead.runtime.verification import extreme_logits

    path = Path(path)
    names = (head.task_logits_name, *(h.output_name for h in head.heads))
    batches = [{n: np.asarray(o[n], np.float32) for n in names} for o in outputs]
    batches.append({n: extreme_logits(head.num_classes) for n in names})
    session = make_session(path, threads=1)
    out_names = [o.name for o in session.get_outputs()]
    params = {h.kind: head_params(head_kind(h.kind), h) for h in head.heads}
    worst: dict[str, float] = {}
    flips = rows = 0
    for batch in batches:
        got = dict(zip(out_names, session.run(None, batch)))
        ref = scores({TASK_LOGITS: batch[head.task_logits_name],
                      **{head_output_name(h.kind): batch[h.output_name] for h in head.heads}}, params)
        want = {"probs": ref["probs"], "softmax_response": ref["sr"], "entropy": ref["entropy"],
                **{k: ref[k] for k in params}, UNCERTAINTY_OUTPUT: ref[head.default_kind]}
        for k, v in max_abs_diffs(want, got).items():
            worst[k] = max(worst.get(k, 0.0), v)
        flips += int((got["label_id"] != ref["label_ids"]).sum())
        rows += len(ref["label_ids"])
    size = path.stat().st_size
    failed = sorted(k for k, v in worst.items() if not v <= tolerance)
    report = {"tolerance": tolerance, "rows": rows, "bytes": size, "max_abs_diff": worst, "label_flips": flips,
              "failed": failed, "passed": not (failed or flips or size > MAX_BYTES)}
    if not report["passed"]:
        raise ExportValidationError(
            f"scores.onnx differs from the numpy reference (beyond {tolerance:g} on {failed}, {flips} label "
            f"flips) or exceeds {MAX_BYTES} bytes ({size}).", path=path, report=report,
            fix="check the graph builders in uehead.scores_graph against uehead.scores.")
    return report
