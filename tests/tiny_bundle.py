"""A complete, tiny uehead bundle built WITHOUT torch: ``onnx`` helper API + numpy, in milliseconds.

    from tiny_bundle import make_tiny_bundle
    bundle = make_tiny_bundle(tmp_path / "bundle")            # adue + alien heads, baselines, golden
    model = uehead.runtime.load(bundle)

The backbone graph takes ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64
[batch, seq], dynamic axes) and returns ``z`` = tanh(masked_mean(E[ids] + T[type_ids]) @ W + b)
(float32 [batch, hidden]); padding does not change z. The head graph maps ``z`` to
``task_logits`` and one ``<kind>_logits`` output per head (MatMul + Add). Weights are random
from ``seed``.

:func:`reference_outputs` recomputes everything with numpy (its own tokenisation, forward pass
and ``uehead.scores`` scores); it is how ``golden.json`` is written, so a runtime
that drifts from the graph fails ``verify``, and tests may use it as an independent oracle.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tiny_models import make_tokenizer
from uehead.bundle import (BackboneSpec, FileSpec, HeadSpec, Manifest, TokenizerSpec,
                           UncertaintyHeadSpec, write_manifest)
from uehead import scores as score_ref

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
GOLDEN_TEXTS = ("a great film", "bad and boring", "the plot was not quite good", "", "story",
                "good bad good bad fine awful superb dull the film is a movie of charming weak scenes")
ADUE_LAMBDA = 20.0
OPSET = 17


@dataclass(frozen=True)
class TinyWeights:
    """The random weights of a tiny bundle (all float32)."""

    embeddings: np.ndarray       # [vocab, hidden]
    type_embeddings: np.ndarray  # [2, hidden]
    dense_w: np.ndarray          # [hidden, hidden]
    dense_b: np.ndarray          # [hidden]
    head_w: dict                 # output name -> [hidden, num_classes]
    head_b: dict                 # output name -> [num_classes]


def tiny_weights(seed: int, vocab_size: int, hidden: int, num_classes: int, heads: tuple[str, ...],
                 head_input_size: int | None = None) -> TinyWeights:
    rng = np.random.default_rng(seed)
    f32 = np.float32
    emb = rng.normal(0, 1, (vocab_size, hidden)).astype(f32)
    types = rng.normal(0, 0.1, (2, hidden)).astype(f32)
    dense_w = rng.normal(0, 1 / np.sqrt(hidden), (hidden, hidden)).astype(f32)
    dense_b = rng.normal(0, 0.1, hidden).astype(f32)
    hin = hidden if head_input_size is None else head_input_size
    head_w, head_b = {}, {}
    for name in ("task_logits", *(f"{k}_logits" for k in heads)):
        head_w[name] = rng.normal(0, 2.0, (hin, num_classes)).astype(f32)
        head_b[name] = rng.normal(0, 0.2, num_classes).astype(f32)
    return TinyWeights(emb, types, dense_w, dense_b, head_w, head_b)


def _backbone_graph(w: TinyWeights) -> onnx.ModelProto:
    hidden = w.dense_w.shape[0]
    dyn = ["batch", "sequence"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dyn) for n in INPUT_NAMES]
    output = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", hidden])
    inits = [numpy_helper.from_array(w.embeddings, "E"), numpy_helper.from_array(w.type_embeddings, "T"),
             numpy_helper.from_array(w.dense_w, "W"), numpy_helper.from_array(w.dense_b, "b"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array([-1], np.int64), "axis_last"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["tok"], axis=0),
        helper.make_node("Gather", ["T", "token_type_ids"], ["typ"], axis=0),
        helper.make_node("Add", ["tok", "typ"], ["emb"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis_last"], ["mask3"]),
        helper.make_node("Mul", ["emb", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["maskf", "axis1"], ["count"], keepdims=1),
        helper.make_node("Max", ["count", "one"], ["count1"]),
        helper.make_node("Div", ["summed", "count1"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "W"], ["dense"]),
        helper.make_node("Add", ["dense", "b"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["z"]),
    ]
    graph = helper.make_graph(nodes, "tiny_backbone", inputs, [output], inits)
    return _model(graph)


def _head_graph(w: TinyWeights, num_classes: int) -> onnx.ModelProto:
    names = list(w.head_w)
    hin = w.head_w[names[0]].shape[0]
    inp = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", hin])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", num_classes]) for n in names]
    inits, nodes = [], []
    for n in names:
        inits += [numpy_helper.from_array(w.head_w[n], f"{n}_W"), numpy_helper.from_array(w.head_b[n], f"{n}_b")]
        nodes += [helper.make_node("MatMul", ["z", f"{n}_W"], [f"{n}_mm"]),
                  helper.make_node("Add", [f"{n}_mm", f"{n}_b"], [n])]
    return _model(helper.make_graph(nodes, "tiny_head", [inp], outputs, inits))


def _model(graph) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="uehead-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def numpy_backbone(w: TinyWeights, ids: list[int]) -> np.ndarray:
    """z for one unpadded token-id list (token types all 0), float32 [hidden]."""
    emb = w.embeddings[np.asarray(ids, np.int64)] + w.type_embeddings[0]
    pooled = emb.mean(axis=0, dtype=np.float32) if ids else np.zeros(w.dense_w.shape[0], np.float32)
    return np.tanh(pooled @ w.dense_w + w.dense_b).astype(np.float32)


def reference_outputs(texts, w: TinyWeights, tokenizer, max_length: int, lam: float = ADUE_LAMBDA) -> dict:
    """Every output of the bundle for ``texts``, by numpy alone (see the module docstring)."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    z = np.stack([numpy_backbone(w, tokenizer.encode(t).ids) for t in texts]).astype(np.float32)
    logits = {n: (z @ w.head_w[n] + w.head_b[n]).astype(np.float32) for n in w.head_w}
    probs, sr, ent, _ = score_ref.task_outputs(logits["task_logits"])
    heads = {}
    for name, head_logits in logits.items():
        if name != "task_logits":
            kind = score_ref.head_kind(name.removesuffix("_logits"))
            heads[kind.name] = kind.score_reference(head_logits, **score_ref.head_params(kind, {"lam": lam}))
    return {"z": z, "logits": logits, "label_ids": probs.argmax(axis=1), "probs": probs,
            "softmax_response": sr, "entropy": ent, "heads": heads}


def make_tiny_bundle(out_dir, *, heads=("adue", "alien"), default_kind: str = "adue", num_classes: int = 2,
                     with_baselines: bool = True, with_golden: bool = True, with_scores: bool = True, seed: int = 0,
                     hidden: int = 16, max_length: int = 16, l2_normalize: bool = False,
                     head_input_size: int | None = None, golden_tolerance: float = 1e-4) -> Path:
    """Write a complete bundle folder and return its path.

    ``head_input_size`` (default ``hidden``) lets a test build a head that does not fit the
    backbone; the manifest then still claims ``feature_size = hidden``. ``with_scores`` writes
    scores.onnx through :mod:`uehead.scores_graph` (as an export does, not for a head kind
    without a graph builder).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    heads = tuple(heads)
    tok = make_tokenizer("bert")
    tok.save(str(out / "tokenizer.json"))
    w = tiny_weights(seed, tok.get_vocab_size(), hidden, num_classes, heads, head_input_size)
    onnx.save(_backbone_graph(w), str(out / "backbone.onnx"))
    onnx.save(_head_graph(w, num_classes), str(out / "head.onnx"))

    baselines = golden = None
    if with_baselines:
        rng = np.random.default_rng(seed + 1)

        def precision():
            a = rng.normal(0, 1, (hidden, hidden))
            return (a @ a.T / hidden + np.eye(hidden)).astype(np.float32)

        np.savez(out / "baselines.npz", class_means=rng.normal(0, 0.5, (num_classes, hidden)).astype(np.float32),
                 precision=precision(), global_mean=rng.normal(0, 0.1, hidden).astype(np.float32),
                 global_precision=precision())
        baselines = FileSpec("baselines.npz", "", {"l2_normalize": l2_normalize})
    if with_golden:
        ref = reference_outputs(list(GOLDEN_TEXTS), w, make_tokenizer("bert"), max_length)
        doc = {"texts": list(GOLDEN_TEXTS), "tolerance": golden_tolerance, "source": "numpy",
               "label_ids": ref["label_ids"].tolist(), "probs": ref["probs"].tolist(),
               "softmax_response": ref["softmax_response"].tolist(), "entropy": ref["entropy"].tolist(),
               "heads": {k: v.tolist() for k, v in ref["heads"].items()}}
        (out / "golden.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
        golden = FileSpec("golden.json", "")

    vocab = tok.get_vocab()
    manifest = Manifest(
        labels=tuple(f"class_{c}" for c in range(num_classes)),
        tokenizer=TokenizerSpec("tokenizer.json", "", max_length=max_length, pad_token_id=vocab["[PAD]"],
                                truncation_side="right", model_input_names=INPUT_NAMES),
        backbone=BackboneSpec("backbone.onnx", "", input_names=INPUT_NAMES, output_name="z",
                              feature_size=hidden, architecture="bert", pooling="pooler",
                              num_parameters=int(w.embeddings.size + w.type_embeddings.size + w.dense_w.size
                                                 + w.dense_b.size)),
        head=HeadSpec("head.onnx", "", input_name="z", task_logits_name="task_logits", num_classes=num_classes,
                      heads=tuple(UncertaintyHeadSpec(k, f"{k}_logits", lam=ADUE_LAMBDA if k == "adue" else 100.0)
                                  for k in heads),
                      default_kind=default_kind,
                      num_parameters=int(sum(a.size for a in w.head_w.values()) + sum(a.size for a in w.head_b.values()))),
        writer={"uehead": "tests", "onnx": onnx.__version__, "numpy": np.__version__},
        baselines=baselines,
        golden=golden,
    )
    builder = scores_graph_module() if with_scores else None
    if builder is not None and all(h.kind in builder.graph_builders() for h in manifest.head.heads):
        manifest = dataclasses.replace(manifest, scores=builder.write_scores_graph(out, manifest.head))
    write_manifest(out, manifest)
    return out


def scores_graph_module():
    """:mod:`uehead.scores_graph`, or None without ``onnx`` (it needs onnx, not torch)."""
    try:
        from uehead import scores_graph
    except ImportError:
        return None
    return scores_graph


def tiny_bundle_weights(seed: int = 0, *, heads=("adue", "alien"), num_classes: int = 2, hidden: int = 16) -> TinyWeights:
    """The weights :func:`make_tiny_bundle` used for the same arguments (for independent oracles)."""
    return tiny_weights(seed, make_tokenizer("bert").get_vocab_size(), hidden, num_classes, tuple(heads))


def edit_json(path, change) -> None:
    """Load the JSON file at ``path``, apply ``change(data)`` in place, write it back."""
    path = Path(path)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def edit_manifest(bundle, change, *, rechecksum: bool = False) -> None:
    """Apply ``change`` to ``bundle``'s manifest.json; ``rechecksum`` then accepts every file as it
    is on disk now (as if an exporter had written them)."""
    edit_json(Path(bundle) / "manifest.json", change)
    if rechecksum:
        rechecksum_bundle(bundle)


def rechecksum_bundle(bundle) -> None:
    """Recompute the manifest's checksums from the files on disk."""
    from uehead.bundle import read_manifest, write_manifest

    write_manifest(bundle, read_manifest(bundle))
