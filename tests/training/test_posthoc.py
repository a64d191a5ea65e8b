"""``train(finetune="none")``'s loading (:mod:`uehead.training.posthoc`): labels lined up with the
dataset's or refused, folders that are not fine-tuned classifiers refused, and the dense head
modules' forwards (numpy reference and stacked torch) agreeing with the model's own classifier."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training_settings import SMALL_GRID
from uehead.architectures import DENSE_HEAD_ACTIVATIONS, HEAD_MODULE_KEYS
from uehead.checkpoint import read_checkpoint
from uehead.datasets import DataError, load_dataset
from uehead.training import train
from uehead.training.backbones import ModelSource, resolve_model
from uehead.training.heads import forward_numpy, forward_stacked, random_params
from uehead.training.posthoc import load_finetuned

KW = {"max_length": 32, "progress": False, "grid": SMALL_GRID, "baselines": ("md",), "device": "cpu"}


def _relabel(src, dst, id2label: dict[int, str]):
    """A copy of the model folder ``src`` whose config.json names its outputs ``id2label``."""
    import shutil

    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config["id2label"] = {str(i): n for i, n in id2label.items()}
    config["label2id"] = {n: i for i, n in id2label.items()}
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def _logits(folder_or_model, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = folder_or_model
    if not hasattr(model, "forward"):
        model = AutoModelForSequenceClassification.from_pretrained(folder_or_model).eval()
    tok = AutoTokenizer.from_pretrained(model.name_or_path)
    with torch.no_grad():
        return np.concatenate([model(**tok([t], return_tensors="pt")).logits.numpy() for t in texts])


def test_labels_in_the_dataset_order_load_unchanged(bert_dir, tiny_data):
    model, tok, family = load_finetuned(resolve_model(str(bert_dir)), load_dataset(tiny_data), 32)
    assert family.name == "bert" and tok.padding_side == "right" and not model.training
    assert model.config.id2label == {0: "class_0", 1: "class_1"}
    texts = ["good film", "a dull plot"]
    np.testing.assert_array_equal(_logits(model, texts), _logits(bert_dir, texts))


def test_labels_in_another_order_are_reordered_through_to_the_checkpoint(bert_dir, tiny_data, tmp_path):
    swapped = _relabel(bert_dir, tmp_path / "swapped", {0: "class_1", 1: "class_0"})
    ckpt = train(str(swapped), str(tiny_data), tmp_path / "ckpt", finetune="none", **KW)
    assert read_checkpoint(ckpt).label_names == ("class_0", "class_1")
    texts = ["good film", "a dull plot", "the story"]
    # Output i of the written model is the dataset's label i: the swapped model's columns, reversed.
    np.testing.assert_allclose(_logits(ckpt / "model", texts), _logits(swapped, texts)[:, ::-1], atol=1e-6)
    config = json.loads((ckpt / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "class_0", "1": "class_1"}


def test_placeholder_label_names_are_matched_by_id(llama_dir, tiny_data, tmp_path):
    generic = _relabel(llama_dir, tmp_path / "generic", {0: "LABEL_0", 1: "LABEL_1"})
    model, tok, family = load_finetuned(resolve_model(str(generic)), load_dataset(tiny_data), 32)
    assert family.name == "llama" and tok.pad_token_id == model.config.pad_token_id is not None
    assert model.config.id2label == {0: "class_0", 1: "class_1"}
    np.testing.assert_array_equal(_logits(model, ["good"]), _logits(generic, ["good"]))


@pytest.mark.parametrize("id2label, words", [
    ({0: "neg", 1: "neutral", 2: "pos"}, ["3 labels", "['neg', 'neutral', 'pos']", "['class_0', 'class_1']"]),
    ({0: "neg", 1: "pos"}, ["['neg', 'pos']", "['class_0', 'class_1']", "Fix: rename the labels"]),
    ({0: "LABEL_1", 1: "LABEL_0"}, ["['LABEL_1', 'LABEL_0']", "Fix:"]),
])
def test_labels_that_cannot_be_matched_are_refused_naming_both_lists(bert_dir, tiny_data, tmp_path, id2label, words):
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path / "other"
    if len(id2label) != 2:
        model = AutoModelForSequenceClassification.from_pretrained(bert_dir, num_labels=len(id2label),
                                                                   ignore_mismatched_sizes=True)
        model.save_pretrained(folder)
        (folder / "tokenizer.json").write_bytes((bert_dir / "tokenizer.json").read_bytes())
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if (bert_dir / name).exists():
                (folder / name).write_bytes((bert_dir / name).read_bytes())
        _relabel(folder, tmp_path / "relabelled", id2label)
        folder = tmp_path / "relabelled"
    else:
        _relabel(bert_dir, folder, id2label)
    with pytest.raises(DataError) as err:
        load_finetuned(resolve_model(str(folder)), load_dataset(tiny_data), 32)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_a_folder_without_a_trained_classifier_is_refused(bert_dir, tiny_data, tmp_path):
    from transformers import AutoModel

    AutoModel.from_pretrained(bert_dir).save_pretrained(tmp_path / "base")  # the encoder alone
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (bert_dir / name).exists():
            (tmp_path / "base" / name).write_bytes((bert_dir / name).read_bytes())
    with pytest.raises(DataError, match=r"not a fine-tuned classifier.*classifier\.weight.*--finetune lora"):
        load_finetuned(resolve_model(str(tmp_path / "base")), load_dataset(tiny_data), 32)
    with pytest.raises(DataError, match="GGUF"):
        load_finetuned(ModelSource("x.gguf", tmp_path, "x.gguf"), load_dataset(tiny_data), 32)


def test_max_length_beyond_the_positions_is_refused(bert_dir, tiny_data):
    with pytest.raises(ValueError, match="max_position_embeddings=64"):
        load_finetuned(resolve_model(str(bert_dir)), load_dataset(tiny_data), 65)


@pytest.mark.parametrize("module", sorted(DENSE_HEAD_ACTIVATIONS))
def test_dense_head_forwards_agree(module):
    params = random_params(module, 8, 3, True, seed=0)
    assert set(params) == set(HEAD_MODULE_KEYS[module])
    params = {k: 4.0 * v for k, v in params.items()}  # pre-activations well past +-1, where activations differ
    z = np.random.default_rng(0).normal(size=(11, 8))
    stacked = {k: torch.as_tensor(np.stack([v, 0.5 * v])) for k, v in params.items()}
    out = forward_stacked(stacked, torch.as_tensor(z)).numpy()
    np.testing.assert_allclose(out[0], forward_numpy(params, z), atol=1e-10)
    np.testing.assert_allclose(out[1], forward_numpy({k: 0.5 * v for k, v in params.items()}, z), atol=1e-10)


def test_the_activations_differ_from_each_other():
    """A head keyed for one activation must not silently compute another."""
    z = np.random.default_rng(1).normal(size=(5, 8))
    base = random_params("dense_relu_linear", 8, 3, True, seed=3)
    outs = {}
    for module in DENSE_HEAD_ACTIVATIONS:
        keys = HEAD_MODULE_KEYS[module]
        outs[module] = forward_numpy(dict(zip(keys, (4.0 * base[k] for k in HEAD_MODULE_KEYS["dense_relu_linear"]))), z)
    values = list(outs.values())
    assert all(np.abs(a - b).max() > 1e-3 for i, a in enumerate(values) for b in values[i + 1:])
