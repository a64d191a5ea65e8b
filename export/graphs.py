"""The two ONNX graphs of a bundle, as small torch wrapper modules exported with the legacy
(TorchScript) exporter (``dynamo=False``: its graph ran faster in ONNX Runtime than the dynamo one).

* ``backbone.onnx``: the tokenizer's tensors -> ``features`` (z, float32 [batch, hidden]), with z
  computed inside the graph as METHOD.md defines it (``uehead.architectures.POOLING_OF``): BERT-family =
  pooled output; RoBERTa-style, DistilBERT, ELECTRA, DeBERTa-v2 = first-token hidden state;
  LLaMA-family = hidden state of the last non-pad token (right padding, found from
  ``attention_mask``). Batch and sequence axes are dynamic.
  Token classification (:class:`TokenFeatures`): every position's last hidden state,
  float32 [batch, sequence, hidden]; the runtime gathers each word's first sub-token.
* ``head.onnx``: ``features`` -> ``task_logits`` (the merged model's own classifier, so predictions
  never change) plus ``<kind>_logits`` for each trained uncertainty head; when all of them are
  linear layers, one Gemm on the concatenated weights followed by a Split. A two-layer classifier
  (``uehead.architectures.CLASSIFIER_OF``) and its heads are :class:`DenseActLinear` blocks.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from uehead.architectures import (CLASSIFIER_OF, DENSE_HEAD_ACTIVATIONS, HF_ACTIVATIONS, POOLING_OF,
                                  dense_head_prefixes)
from uehead.checkpoint import HeadWeights

#: Tensors a backbone may take, in the order the graph (and the manifest) lists them.
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FEATURES = "features"
TASK_LOGITS = "task_logits"


def head_output_name(kind: str) -> str:
    """Name of the head.onnx output holding the ``kind`` head's logits."""
    return f"{kind}_logits"


#: Each dense head module's activation as a torch function (opset 17 has no Gelu op: exported as Erf / Tanh).
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "gelu": nn.functional.gelu,
               "gelu_new": lambda x: nn.functional.gelu(x, approximate="tanh"), "silu": nn.functional.silu}


class DenseActLinear(nn.Module):
    """A two-layer classifier block on z (already pooled): out_proj(act(dense(z))), ``activation``
    one of ACTIVATIONS (RoBERTa tanh, DistilBERT relu, ELECTRA / DeBERTa-v2 gelu)."""

    def __init__(self, in_features: int, num_classes: int, activation: str = "tanh", hidden: int | None = None):
        super().__init__()
        self.activation = activation
        self.act = ACTIVATIONS[activation]
        self.dense = nn.Linear(in_features, hidden or in_features)
        self.out_proj = nn.Linear(hidden or in_features, num_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.act(self.dense(z)))


class DenseTanhLinear(DenseActLinear):
    """RoBERTa-style classifier block on z (already the first-token state): out_proj(tanh(dense(z)))."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__(in_features, num_classes, "tanh")


class BackboneFeatures(nn.Module):
    """Token tensors -> z. Wraps the base model of a ``*ForSequenceClassification``."""

    def __init__(self, model: nn.Module, architecture: str, input_names: tuple[str, ...]):
        super().__init__()
        self.base = getattr(model, model.base_model_prefix)
        self.architecture = architecture
        self.input_names = input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        inputs = dict(zip(self.input_names, tensors))
        pooling = POOLING_OF[self.architecture]
        if pooling == "pooler":
            return self.base(**inputs).pooler_output
        if pooling == "first_token":
            return self.base(**inputs).last_hidden_state[:, 0]
        # LLaMA-family, right padding. Causal attention means pad positions (all after the last real
        # token) cannot change the last real token's state, and HF position ids are 0..T-1 either
        # way, so the base model runs with the causal mask alone (cheaper, and an all-pad row of an
        # empty text stays finite) and z is gathered at the last position whose attention_mask is 1
        # (position 0 for an empty row, as transformers' own pooling does).
        hidden = self.base(input_ids=inputs["input_ids"], use_cache=False).last_hidden_state
        last = (inputs["attention_mask"].sum(dim=1) - 1).clamp(min=0)
        index = last.view(-1, 1, 1).expand(-1, 1, hidden.size(-1))
        return torch.gather(hidden, 1, index)[:, 0]


class TokenFeatures(BackboneFeatures):
    """Token tensors -> every position's last hidden state [B, T, H]. Wraps the base model of a
    ``*ForTokenClassification`` (its classifier runs in head.onnx on the gathered positions)."""

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        inputs = dict(zip(self.input_names, tensors))
        if POOLING_OF[self.architecture] == "last_token":  # decoders
            # Right padding + causal attention: real positions never see pads (see BackboneFeatures).
            # Zeroing the pad positions keeps attention_mask an input of the graph (it is otherwise unused).
            hidden = self.base(input_ids=inputs["input_ids"], use_cache=False).last_hidden_state
            return hidden * inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return self.base(**inputs).last_hidden_state


class HeadLogits(nn.Module):
    """z -> (task logits, one logits tensor per uncertainty head)."""

    def __init__(self, task: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        self.task = task
        self.kinds = tuple(heads)
        self.heads = nn.ModuleList(heads.values())

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.task(features), *(h(features) for h in self.heads))


class FusedLinearHeads(nn.Module):
    """Several ``nn.Linear`` on the same z as ONE matmul: z @ [W_1; ...; W_k]^T + [b_1; ...; b_k], then
    split by columns. Same outputs as the separate layers (each column is the same dot product),
    one Gemm reading z once instead of k (the head graph runs on blocks of up to 1,024 rows)."""

    def __init__(self, linears: list[nn.Linear]):
        super().__init__()
        self.sizes = [int(lin.out_features) for lin in linears]
        self.weight = nn.Parameter(torch.cat([lin.weight.detach() for lin in linears], 0), requires_grad=False)
        if all(lin.bias is None for lin in linears):  # LLaMA's score layer: no bias anywhere
            self.bias = None
        else:  # a layer without bias adds zeros
            self.bias = nn.Parameter(torch.cat([lin.bias.detach() if lin.bias is not None
                                                else torch.zeros(lin.out_features) for lin in linears]),
                                     requires_grad=False)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.nn.functional.linear(features, self.weight, self.bias).split(self.sizes, dim=1))


def head_graph_module(task: nn.Module, heads: dict[str, nn.Module]) -> nn.Module:
    """What head.onnx is exported from: :class:`FusedLinearHeads` when the task classifier and every
    head are plain ``nn.Linear`` layers (BERT-family and LLaMA classifiers), else :class:`HeadLogits`."""
    modules = [task, *heads.values()]
    if all(type(mod) is nn.Linear for mod in modules):
        return FusedLinearHeads(modules).eval()
    return HeadLogits(task, heads).eval()


def _layer(model: nn.Module, path: str) -> nn.Module:
    for name in path.split("."):
        model = getattr(model, name)
    return model


def _dense_block(activation: str, dense: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> DenseActLinear:
    """A :class:`DenseActLinear` holding copies of two layers' ``weight`` / ``bias``."""
    hidden, in_f = dense["weight"].shape
    block = DenseActLinear(in_f, out["weight"].shape[0], activation, hidden=hidden)
    block.load_state_dict({**{f"dense.{k}": v for k, v in dense.items()},
                           **{f"out_proj.{k}": v for k, v in out.items()}}, strict=True)
    return block.eval()


def task_classifier(model: nn.Module, architecture: str) -> nn.Module:
    """The merged model's classifier as a module on z (dropout is a no-op in eval and is left out):
    its Linear, or a :class:`DenseActLinear` copy of its two layers (``uehead.architectures.CLASSIFIER_OF``)."""
    if architecture not in CLASSIFIER_OF:
        raise ValueError(f"unknown architecture {architecture!r}")
    layout = CLASSIFIER_OF[architecture]
    layers = [_layer(model, path) for path in layout.layers]
    if len(layers) == 1:
        return layers[0]
    activation = layout.activation_of(model.config.to_dict())
    if activation not in HF_ACTIVATIONS:
        raise ValueError(f"{architecture}: classifier activation {activation!r} is not one of {sorted(HF_ACTIVATIONS)}")
    return _dense_block(HF_ACTIVATIONS[activation], *(layer.state_dict() for layer in layers))


def head_module(head: HeadWeights) -> nn.Module:
    """Build an uncertainty head (``linear`` or a dense module) from its checkpoint weights."""
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in head.state_dict.items()}
    if head.module == "linear":
        out_f, in_f = sd["weight"].shape
        module = nn.Linear(in_f, out_f, bias="bias" in sd)
        module.load_state_dict(sd, strict=True)
        return module.eval()
    hidden, out = dense_head_prefixes(head.module)
    return _dense_block(DENSE_HEAD_ACTIVATIONS[head.module], {k: sd[hidden + k] for k in ("weight", "bias")},
                        {k: sd[out + k] for k in ("weight", "bias")})


def backbone_input_names(model: nn.Module, tokenizer, architecture: str) -> tuple[str, ...]:
    """The tokenizer's tensors the backbone takes, in TOKEN_INPUTS order."""
    names = set(tokenizer.model_input_names)
    # Decoders, and encoders without token type embeddings (DistilBERT, DeBERTa-v3), take none.
    if POOLING_OF.get(architecture) == "last_token" or getattr(model.config, "type_vocab_size", 0) in (0, None):
        names.discard("token_type_ids")
    names.add("input_ids")
    names.add("attention_mask")
    return tuple(n for n in TOKEN_INPUTS if n in names)


@dataclass(frozen=True)
class GraphInfo:
    path: Path
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    num_parameters: int


@contextlib.contextmanager
def traceable_masks():
    """Swap transformers' vmap-built attention masks for optimum's vmap-free ones while tracing.

    transformers >= 4.53 builds 4D masks with ``torch.vmap`` and detects packed sequences with
    ``torch.diff``; neither traces with the TorchScript exporter. optimum's ONNX model patcher
    registers broadcast-only replacements; this applies the same patch and restores it after.
    """
    import transformers.masking_utils as mu

    try:
        from optimum.exporters.onnx import model_patcher as mp
    except ImportError as exc:
        raise ImportError("uehead.export needs optimum-onnx to trace transformers' attention masks. Install the "
                          "extra with: pip install 'uehead[export]' (pin with: -c constraints.txt)") from exc

    registry = mu.ALL_MASK_ATTENTION_FUNCTIONS
    saved = {k: registry[k] for k in ("sdpa", "eager")}
    saved_packed = mu.find_packed_sequence_indices
    registry.register("sdpa", mp.sdpa_mask_without_vmap)
    registry.register("eager", mp.eager_mask_without_vmap)
    mu.find_packed_sequence_indices = mp.find_packed_sequence_indices_patched
    try:
        yield
    finally:
        for k, fn in saved.items():
            registry.register(k, fn)
        mu.find_packed_sequence_indices = saved_packed


def _export(module: nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_axes, opset: int):
    with warnings.catch_warnings(), torch.no_grad(), traceable_masks():
        warnings.simplefilter("ignore")  # TracerWarnings about Python bools in HF code
        torch.onnx.export(module, args, str(path), input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False)


def _set_output_shape(path: Path, name: str, dims: tuple) -> None:
    """Write a known output shape into the graph (the tracer leaves the gathered LLaMA z's width symbolic)."""
    import onnx

    model = onnx.load(str(path))
    out = next(o for o in model.graph.output if o.name == name)
    shape = out.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        else:
            dim.dim_param = d
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_backbone(model: nn.Module, architecture: str, input_names: tuple[str, ...], path: str | Path,
                    *, opset: int = 17, per_token: bool = False) -> GraphInfo:
    """Write backbone.onnx: ``input_names`` (int64 [batch, sequence]) -> ``features`` ([batch, hidden],
    or [batch, sequence, hidden] with ``per_token``: :class:`TokenFeatures`)."""
    path = Path(path)
    wrapper = (TokenFeatures if per_token else BackboneFeatures)(model, architecture, input_names).eval()
    ids = torch.full((2, 5), 5, dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.long)
    example = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    args = tuple(example[n] for n in input_names)
    axes = {n: {0: "batch", 1: "sequence"} for n in input_names}
    axes[FEATURES] = {0: "batch", 1: "sequence"} if per_token else {0: "batch"}
    _export(wrapper, args, path, input_names, (FEATURES,), axes, opset)
    dims = ("batch", "sequence") if per_token else ("batch",)
    _set_output_shape(path, FEATURES, (*dims, int(model.config.hidden_size)))
    return GraphInfo(path, tuple(input_names), (FEATURES,), sum(p.numel() for p in wrapper.parameters()))


def export_head(task: nn.Module, heads: dict[str, nn.Module], in_features: int, path: str | Path,
                *, opset: int = 17) -> GraphInfo:
    """Write head.onnx: ``features`` -> ``task_logits`` + ``<kind>_logits`` per head (in ``heads`` order)."""
    path = Path(path)
    wrapper = head_graph_module(task, heads)
    outputs = (TASK_LOGITS, *(head_output_name(k) for k in heads))
    axes = {FEATURES: {0: "batch"}, **{o: {0: "batch"} for o in outputs}}
    _export(wrapper, (torch.zeros(2, in_features),), path, (FEATURES,), outputs, axes, opset)
    n_params = sum(p.numel() for mod in (task, *heads.values()) for p in mod.parameters())  # as trained
    return GraphInfo(path, (FEATURES,), outputs, n_params)
