"""The last encoder layer computes only the pooled token's row (``[CLS]``), at export time.

A sequence classifier that pools the first token (BERT's pooler, RoBERTa's and ELECTRA's heads,
DistilBERT) reads one row of the last layer's output and drops the other ``sequence - 1``. In that
layer every operation after attention works row by row (output projection, residual, LayerNorm,
feed-forward), and attention itself needs the keys and values of every token but the query of the
pooled row only. :func:`prune_to_pooled_row` rewrites the backbone graph so that the last layer's
query projection, attention rows, output projection, residual branch and feed-forward run on that
row alone; keys and values still see every token. The features are the same numbers (the
computation per row is unchanged; only rows nobody reads are dropped), so the rewritten graph is
checked against the original on the validation cases before it replaces it. Only the last layer
can be cut: every earlier layer's output feeds the keys and values of the next.

The rewrite matches the graph the HF exporter writes for these encoders (query, key and value
projections as ``MatMul`` with constant weights, attention as ``MatMul -> Softmax -> MatMul``,
the pooled row taken by ``Gather(axis=1, index 0)``). A graph it does not recognise is left as
exported, and the report says why.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from uehead.export.validate import graph_output_diff

#: Max abs diff of ``features`` between the rewritten and the original graph before the rewrite is kept.
POOLED_ROW_TOLERANCE = 1e-4
#: Ops a projection's output passes through on its way to the attention MatMuls (bias, head split,
#: the query/key scale).
_CHAIN_OPS = frozenset({"Add", "Reshape", "Transpose", "Mul", "Div"})


def prune_to_pooled_row(src: str | Path, dst: str | Path, cases: Mapping[str, Any] = ()) -> dict[str, Any]:
    """Write the copy of backbone ``src`` whose last layer computes only the pooled row to ``dst``.

    Returns the report recorded in ``manifest.reports["export"]["pooled_row"]``: ``applied``
    (False, with ``reason``, when the graph does not pool the first token, its last layer is not
    recognised, or the rewritten graph's features differ from ``src``'s by more than
    :data:`POOLED_ROW_TOLERANCE` over ``cases``; nothing is left at ``dst`` then), the layer input
    tensor that was cut, and ``max_abs_diff_vs_full`` over ``cases`` (token batches as in
    ``validate.validation_cases``).
    """
    import onnx

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    plan = _plan(model.graph)
    if isinstance(plan, str):
        return {"applied": False, "reason": plan}
    _rewrite(model.graph, plan)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    report = {"applied": True, "layer_input": plan["layer_input"],
              "rows_kept": "the pooled token (index 0) in the last layer's query, attention output, "
                           "output projection, residual and feed-forward; keys and values keep every token"}
    report["max_abs_diff_vs_full"] = diff = graph_output_diff(src, dst, cases)
    if not diff <= POOLED_ROW_TOLERANCE:
        # A graph that matched the pattern yet reads other rows of the last layer: keep it whole.
        dst.unlink()
        return {**report, "applied": False,
                "reason": f"the rewritten graph's features differ from the full graph's by {diff:.3g} "
                          f"(tolerance {POOLED_ROW_TOLERANCE:g}); the last layer is left whole"}
    return report


def _plan(graph) -> dict[str, Any] | str:
    """Where to cut, or why not (a string)."""
    consts = _constants(graph)
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    pooled = [n for n in graph.node if n.op_type == "Gather" and _attr(n, "axis", 0) == 1
              and n.input[1] in consts and np.asarray(consts[n.input[1]]).size == 1
              and int(np.asarray(consts[n.input[1]]).reshape(())) == 0]
    if len(pooled) != 1:
        return "the backbone does not pool the first token with one Gather(axis=1, index 0)"
    # Walk back from the pooled Gather through the last layer to its input: the latest tensor
    # consumed by three projections (query, key, value) with constant weights.
    seen, stack, layer_input = set(), [pooled[0].input[0]], None
    while stack:
        t = stack.pop()
        if t in seen or t not in producer:
            continue
        seen.add(t)
        users = consumers.get(t, [])
        projections = [u for u in users if u.op_type == "MatMul" and u.input[0] == t and u.input[1] in consts]
        if len(projections) == 3:
            layer_input = t
            break
        stack.extend(i for i in producer[t].input if i not in consts)
    if layer_input is None:
        return "no attention layer (three projections of one tensor) found before the pooled Gather"
    projections = [u for u in consumers[layer_input] if u.op_type == "MatMul" and u.input[1] in consts]
    # Shape readers only size the head split and merge (the merge is rewritten below).
    others = [u for u in consumers[layer_input] if u not in projections and u.op_type != "Shape"]
    if len(others) != 1 or others[0].op_type != "Add":
        return "the last layer's input feeds more than its projections and one residual Add"
    roles = {}
    for proj in projections:
        end, node = _follow(proj.output[0], consumers)
        if node is None or node.op_type != "MatMul":
            return "a projection of the last layer does not reach an attention MatMul"
        roles[(node.name, list(node.input).index(end))] = proj
    scores = [k for k in roles if k[1] == 0]
    if len(scores) != 1:
        return "the last layer's query projection was not recognised"
    query = roles.pop(scores[0])
    out_node, mask_inputs = _follow_from_node(scores[0][0], graph, consumers, consts)
    if out_node is None:
        return "the last layer's attention output was not recognised"
    return {"layer_input": layer_input, "query": query, "residual": others[0], "reshape": out_node,
            "mask_inputs": mask_inputs}


def _follow(tensor: str, consumers) -> tuple[str, Any]:
    """Follow single-consumer ``_CHAIN_OPS`` from ``tensor``; return the tensor and the node it ends in."""
    for _ in range(8):
        users = [u for u in consumers.get(tensor, []) if u.op_type != "Shape"]
        if len(users) != 1:
            return tensor, None
        node = users[0]
        if node.op_type not in _CHAIN_OPS:
            return tensor, node
        tensor = node.output[0]
    return tensor, None


def _follow_from_node(scores_name: str, graph, consumers, consts) -> tuple[Any, list]:
    """From the scores MatMul through the mask Add / Softmax to the context MatMul, then its
    Transpose to the Reshape that merges the heads. Returns that Reshape and the (node, input
    index) of every non-constant side input on the scores' way (the additive mask, which may hold
    one row per query)."""
    node = next(n for n in graph.node if n.name == scores_name)
    sides, before_context = [], True
    for _ in range(8):
        users = [u for u in consumers.get(node.output[0], []) if u.op_type != "Shape"]
        if len(users) != 1:
            return None, []
        previous, node = node.output[0], users[0]
        if node.op_type == "Reshape":
            return node, sides
        if node.op_type not in ("Add", "Softmax", "MatMul", "Transpose", "Mul", "Div", "Where", "Cast"):
            return None, []
        if node.op_type == "MatMul":
            before_context = False
        elif before_context:
            sides += [(node, k) for k, i in enumerate(node.input) if i != previous and i not in consts]
    return None, []


def _rewrite(graph, plan: Mapping[str, Any]) -> None:
    """Slice the pooled row off the layer input and feed it to the query and the residual;
    the head-merging Reshape keeps the batch and sequence dims it is given (now 1 row)."""
    from onnx import helper, numpy_helper

    row = plan["layer_input"] + "/pooled_row"
    names = {"starts": row + "/starts", "ends": row + "/ends", "axes": row + "/axes", "shape": row + "/merge_shape"}
    graph.initializer.extend([numpy_helper.from_array(np.array([0], np.int64), names["starts"]),
                              numpy_helper.from_array(np.array([1], np.int64), names["ends"]),
                              numpy_helper.from_array(np.array([1], np.int64), names["axes"]),
                              numpy_helper.from_array(np.array([0, 0, -1], np.int64), names["shape"])])
    slice_node = helper.make_node("Slice", [plan["layer_input"], names["starts"], names["ends"], names["axes"]],
                                  [row], name=row)
    for node in (plan["query"], plan["residual"]):
        node.input[list(node.input).index(plan["layer_input"])] = row
    plan["reshape"].input[1] = names["shape"]
    index = next(i for i, n in enumerate(graph.node) if n is plan["query"])
    graph.node.insert(index, slice_node)
    # A mask with one row per query ([batch, 1, query, key]) keeps the pooled query's row; a mask
    # broadcast over queries (query dim 1) is unchanged by the same slice.
    graph.initializer.append(numpy_helper.from_array(np.array([-2], np.int64), names["axes"] + "/query"))
    for k, (node, position) in enumerate(plan["mask_inputs"]):
        cut = f"{row}/mask_{k}"
        graph.node.insert(next(i for i, n in enumerate(graph.node) if n is node), helper.make_node(
            "Slice", [node.input[position], names["starts"], names["ends"], names["axes"] + "/query"], [cut],
            name=cut))
        node.input[position] = cut
    _drop_dead_nodes(graph)


def _drop_dead_nodes(graph) -> None:
    """Remove nodes none of whose outputs is read (the shape arithmetic of the old head merge)."""
    wanted = {o.name for o in graph.output}
    while True:
        read = wanted | {i for n in graph.node for i in n.input}
        dead = [n for n in graph.node if not any(o in read for o in n.output)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def _constants(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    out = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute:
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


def _attr(node, name: str, default):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)

