"""Backbone architectures and the classifier heads on z: one home for the tables that training,
export and the checkpoint reader share (numpy-free, torch-free).

* ``ARCHITECTURE_OF_MODEL_TYPE``: Hugging Face ``model_type`` -> architecture family;
* ``POOLING_OF``: family -> how z is taken from the hidden states (METHOD.md);
* ``CLASSIFIER_OF``: family -> where its classifier layers live and which head module copies it;
* ``HEAD_MODULE_KEYS`` / ``DENSE_HEAD_ACTIVATIONS``: head modules, their weight names, activations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Head modules of the form out(act(dense(z))) -> the activation between the two layers: the
#: classifier blocks on z of RoBERTa (tanh), DistilBERT (relu), ELECTRA and DeBERTa-v2 (gelu). The one
#: list of them; the numpy and torch forwards in training and export are keyed by these activations.
#: (``gelu`` is the exact erf GELU; ``gelu_new`` its tanh approximation.)
DENSE_HEAD_ACTIVATIONS = {"dense_tanh_linear": "tanh", "dense_relu_linear": "relu", "dense_gelu_linear": "gelu",
                          "dense_gelu_new_linear": "gelu_new", "dense_silu_linear": "silu"}
#: transformers activation names (``ACT2FN`` keys, e.g. ``config.pooler_hidden_act``) a head module covers.
HF_ACTIVATIONS = {"tanh": "tanh", "relu": "relu", "gelu": "gelu", "gelu_new": "gelu_new",
                  "gelu_pytorch_tanh": "gelu_new", "gelu_fast": "gelu_new", "silu": "silu", "swish": "silu"}


def dense_head_prefixes(module: str) -> tuple[str, str]:
    """(hidden layer, output layer) state-dict key prefixes of a dense head module.

    A head's weights are all that training's forward passes see, so the keys name the activation:
    ``dense_<act>.`` + the plain ``weight`` / ``bias`` of the output layer (as in ``linear``), except
    ``dense_tanh_linear``, which keeps RoBERTa's own ``dense.`` / ``out_proj.`` (version-1 checkpoints)."""
    act = DENSE_HEAD_ACTIVATIONS[module]
    return ("dense.", "out_proj.") if act == "tanh" else (f"dense_{act}.", "")


def dense_head_module(activation: str) -> str:
    """The head module for a transformers activation name (ValueError when no module covers it)."""
    act = HF_ACTIVATIONS.get(str(activation))
    if act is None:
        raise ValueError(f"activation {activation!r} has no head module; supported: {', '.join(sorted(HF_ACTIVATIONS))}")
    return next(m for m, a in DENSE_HEAD_ACTIVATIONS.items() if a == act)


#: Module kinds a head json may name, and the state-dict keys each one holds ("linear" may add "bias").
HEAD_MODULE_KEYS = {
    "linear": ("weight",),
    **{m: (h + "weight", h + "bias", o + "weight", o + "bias")
       for m, (h, o) in ((m, dense_head_prefixes(m)) for m in DENSE_HEAD_ACTIVATIONS)},
}


def head_module_of_keys(keys) -> str:
    """The head module whose weights have exactly these state-dict keys (ValueError for none)."""
    keys = set(keys)
    for module, expected in HEAD_MODULE_KEYS.items():
        if keys == set(expected) or (module == "linear" and keys == {"weight", "bias"}):
            return module
    raise ValueError(f"head weights with keys {sorted(keys)} match no head module ({sorted(HEAD_MODULE_KEYS)})")


#: Architecture -> the pooling that defines z (METHOD.md).
POOLING_OF = {"bert": "pooler", "roberta": "first_token", "llama": "last_token",
              "distilbert": "first_token", "electra": "first_token", "deberta-v2": "first_token"}
#: Hugging Face model_type -> architecture family: what training accepts, and what export assumes
#: for a checkpoint whose training.json does not say.
ARCHITECTURE_OF_MODEL_TYPE = {
    "bert": "bert",
    "roberta": "roberta", "xlm-roberta": "roberta", "camembert": "roberta",
    "llama": "llama", "mistral": "llama", "qwen2": "llama", "qwen3": "llama",
    "distilbert": "distilbert", "electra": "electra", "deberta-v2": "deberta-v2",  # DeBERTa v2 and v3
}


@dataclass(frozen=True)
class ClassifierLayout:
    """Where an architecture's task classifier on z lives in its ``*ForSequenceClassification``."""

    layers: tuple[str, ...]             # dotted paths of its nn.Linear layers: (output,) | (hidden, output)
    activation: str | None = None       # transformers' name of the activation between them
    activation_key: str | None = None   # the config key that overrides it (DeBERTa's pooler_hidden_act)

    def activation_of(self, config: dict[str, Any]) -> str | None:
        if self.activation_key is not None and config.get(self.activation_key) is not None:
            return str(config[self.activation_key])
        return self.activation


#: Architecture -> its classifier on z (dropout, a no-op in eval, left out).
CLASSIFIER_OF = {
    "bert": ClassifierLayout(("classifier",)),
    "llama": ClassifierLayout(("score",)),
    "roberta": ClassifierLayout(("classifier.dense", "classifier.out_proj"), "tanh"),
    "distilbert": ClassifierLayout(("pre_classifier", "classifier"), "relu"),
    # ElectraClassificationHead applies get_activation("gelu") whatever config.hidden_act says.
    "electra": ClassifierLayout(("classifier.dense", "classifier.out_proj"), "gelu"),
    # ContextPooler (first token -> dense -> pooler_hidden_act), then the `classifier` Linear.
    "deberta-v2": ClassifierLayout(("pooler.dense", "classifier"), "gelu", "pooler_hidden_act"),
}


def classifier_head_module(architecture: str, config: dict[str, Any]) -> str:
    """The head module of ``architecture``'s classifier for a model config (a dict): ``linear`` or
    a dense module (ValueError for an activation no head module covers)."""
    layout = CLASSIFIER_OF[architecture]
    if len(layout.layers) == 1:
        return "linear"
    return dense_head_module(layout.activation_of(config))


def hidden_size_of(config: dict[str, Any]) -> int:
    """Width of z from a config.json dict (DistilBERT calls it ``dim``); 0 when absent."""
    for key in ("hidden_size", "dim"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return 0
