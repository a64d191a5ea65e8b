"""Post-hoc heads (``train(finetune="none")``): an already fine-tuned classifier, taken as it is.

:func:`load_finetuned` loads a local ``*ForSequenceClassification`` folder of a supported family
(:mod:`uehead.training.backbones`) in float32 without touching its weights, and lines its labels
up with the dataset's, read from ``config.id2label``:

* the same names in the same order: used as they are;
* the same names in another order: the output layer's rows (weight and bias) are permuted so that
  output i is the dataset's label i, and ``id2label`` is rewritten to match. Every probability is
  unchanged, only its column moves;
* transformers' placeholder names (``LABEL_0``, ``LABEL_1``, ...) and as many classes as the
  dataset: accepted by id, and ``id2label`` takes the dataset's names;
* anything else (another count, other names): :class:`~uehead.errors.DataError` naming both lists
  and the fix.

A folder whose classifier (or any other weight) is missing is refused too: transformers would fill
it with random values, and the heads would be fitted to a model nobody trained.
"""
from __future__ import annotations

import re

import torch

from uehead.architectures import CLASSIFIER_OF
from uehead.errors import DataError
from uehead.training.backbones import Family, ModelSource, family_of, prepare

_PLACEHOLDER = re.compile(r"LABEL_(\d+)")
_FIX_NAMES = ("rename the labels so that they agree: the dataset's labels.json (index = label id) or the "
              "model's config.json id2label")


def load_finetuned(source: ModelSource, dataset, max_length: int):
    """``(model, tokenizer, family)`` of the fine-tuned classifier in ``source.folder`` (float32,
    right padding, decoders' pad = eos), its outputs in the order of ``dataset.label_names``.

    Raises:
        DataError: not a fine-tuned classifier folder (a GGUF file, missing weights), or labels
            that cannot be matched to the dataset's (see the module docs).
        ValueError: an unsupported ``model_type``, a slow tokenizer, ``max_length`` too long.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    folder = source.folder
    if source.gguf_file:
        raise DataError(f"{source.gguf_file}: a GGUF file holds no fine-tuned classifier.", path=folder,
                        fix="pass a *ForSequenceClassification folder (save_pretrained) with --finetune none, "
                            "or fine-tune this model with --finetune lora.")
    kw = {"local_files_only": True}  # never reach a hub, whatever HF_HUB_OFFLINE says
    config = AutoConfig.from_pretrained(folder, **kw)
    family = family_of(config)
    model, info = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32,
                                                                     output_loading_info=True, **kw)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise DataError(f"is not a fine-tuned classifier: transformers would initialise {len(missing)} weights at "
                        f"random ({', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''}).", path=folder,
                        fix="pass the folder of a fine-tuned *ForSequenceClassification model, or fine-tune "
                            "this one with --finetune lora.")
    tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, padding_side="right", **kw)
    prepare(model, tokenizer, family, source, max_length)
    align_labels(model, family, tuple(dataset.label_names), where=folder)
    return model.eval(), tokenizer, family


def align_labels(model, family: Family, names: tuple[str, ...], *, where=None) -> None:
    """Make output i of ``model`` the dataset's label ``names[i]`` (see the module docs), in place."""
    id2label = {int(k): str(v) for k, v in (model.config.id2label or {}).items()}
    model_names = tuple(id2label.get(i, f"LABEL_{i}") for i in range(model.config.num_labels))
    if model_names == names:
        return
    if len(model_names) != len(names):
        raise DataError(f"the model has {len(model_names)} labels {list(model_names)} (config.json id2label) but the "
                        f"dataset has {len(names)}: {list(names)}.", path=where,
                        fix="use the dataset the model was fine-tuned on (same classes), or fine-tune on this one "
                            "with --finetune lora.")
    if all(_PLACEHOLDER.fullmatch(n) and int(n[6:]) == i for i, n in enumerate(model_names)):
        _set_names(model, names)  # placeholders: matched by id
        return
    if sorted(model_names) != sorted(names) or len(set(names)) != len(names):
        raise DataError(f"the model's labels {list(model_names)} (config.json id2label) are not the dataset's "
                        f"{list(names)}.", path=where, fix=_FIX_NAMES + ".")
    order = [model_names.index(n) for n in names]  # new output i = old output order[i]
    out = _output_layer(model, family)
    with torch.no_grad():
        out.weight.copy_(out.weight[order])
        if out.bias is not None:
            out.bias.copy_(out.bias[order])
    _set_names(model, names)


def _output_layer(model, family: Family) -> torch.nn.Linear:
    layer = model
    for name in CLASSIFIER_OF[family.name].layers[-1].split("."):
        layer = getattr(layer, name)
    return layer


def _set_names(model, names: tuple[str, ...]) -> None:
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {n: i for i, n in enumerate(names)}
