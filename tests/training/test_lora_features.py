"""LoRA merge parity (and its loud failure), pooling per architecture, batching invariance."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from uehead.training import LoraSettings
from uehead.training.backbones import ModelSource, load_backbone
from uehead.training.data import collate, encode
from uehead.training.features import PoolingMismatchError, check_pooling, extract
from uehead.training.lora import MergeParityError, finetune, merge_checked

from uehead.datasets import load_dataset

CPU = torch.device("cpu")


def _setup(model_dir, data_dir, n=64):
    ds = load_dataset(data_dir)
    torch.manual_seed(0)
    model, tok, family = load_backbone(ModelSource(str(model_dir), model_dir), ds.label_names, 32)
    train = encode(tok, ds["train"].texts[:n], ds["train"].labels[:n], 32)
    valid = encode(tok, ds["valid"].texts, ds["valid"].labels, 32)
    return model, tok, family, train, valid


def _finetuned(model_dir, data_dir):
    model, tok, family, train, valid = _setup(model_dir, data_dir)
    peft_model = finetune(model, family, train, pad_id=tok.pad_token_id, settings=LoraSettings(lr=5e-3), epochs=1,
                          batch_size=16, seed=0, device=CPU, progress=False)
    return peft_model, tok, family, valid


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_merge_keeps_logits_and_removes_adapters(arch, bert_dir, llama_dir, tiny_data):
    peft_model, tok, _, valid = _finetuned(bert_dir if arch == "bert" else llama_dir, tiny_data)
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.detach().abs().max()) > 0 for p in lora_b), "training moved the LoRA weights"
    probe = collate(valid.ids[:32], tok.pad_token_id)
    merged, diff = merge_checked(peft_model, probe)
    assert diff < 1e-5
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert type(merged).__name__ == ("BertForSequenceClassification" if arch == "bert"
                                     else "LlamaForSequenceClassification")


def test_broken_merge_fails_loudly(bert_dir, tiny_data):
    peft_model, tok, _, valid = _finetuned(bert_dir, tiny_data)
    real_merge = peft_model.merge_and_unload

    def corrupt_merge():
        merged = real_merge()
        with torch.no_grad():
            merged.classifier.bias += 0.5
        return merged

    peft_model.merge_and_unload = corrupt_merge
    with pytest.raises(MergeParityError, match="merge_and_unload changed the logits"):
        merge_checked(peft_model, collate(valid.ids[:32], tok.pad_token_id))


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_features_match_model_and_do_not_depend_on_batching(arch, bert_dir, llama_dir, tiny_data):
    model, tok, family, _, valid = _setup(bert_dir if arch == "bert" else llama_dir, tiny_data)
    model.eval()
    lengths = valid.lengths
    assert lengths.min() < lengths.max(), "rows of different lengths exercise the padding"
    batch = collate(valid.ids[:40], tok.pad_token_id)
    check_pooling(model, family, batch)
    big = extract(model, family, valid, pad_id=tok.pad_token_id, device=CPU, batch_size=128, progress=False)
    small = extract(model, family, valid, pad_id=tok.pad_token_id, device=CPU, batch_size=7, progress=False)
    np.testing.assert_allclose(big.z, small.z, atol=1e-5)
    np.testing.assert_allclose(big.logits, small.logits, atol=1e-5)
    with torch.no_grad():  # row 3 alone, no padding at all
        one = model(**collate(valid.ids[3:4], tok.pad_token_id)).logits.numpy()
    np.testing.assert_allclose(big.logits[3:4], one, atol=1e-5)
    if arch == "llama":  # z = hidden state of the last real token
        with torch.no_grad():
            h = model.model(**collate(valid.ids[3:4], tok.pad_token_id)).last_hidden_state[0, -1].numpy()
        np.testing.assert_allclose(big.z[3], h, atol=1e-5)
        assert model.config.pad_token_id == tok.pad_token_id and tok.padding_side == "right"


def test_wrong_pooling_is_detected(llama_dir, tiny_data):
    model, tok, family, _, valid = _setup(llama_dir, tiny_data)
    from dataclasses import replace

    wrong = replace(family, pooling="first_token")
    with pytest.raises(PoolingMismatchError):
        check_pooling(model, wrong, collate(valid.ids[:16], tok.pad_token_id))


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_head_copy_of_the_classifier_reproduces_the_models_scores(arch, bert_dir, llama_dir, tiny_data):
    from uehead.scores import adue_uncertainty, normalized_entropy
    from uehead.training.backbones import classifier_module
    from uehead.training.heads import classifier_params, forward_numpy, score_numpy

    model, tok, family, _, valid = _setup(bert_dir if arch == "bert" else llama_dir, tiny_data)
    feats = extract(model, family, valid, pad_id=tok.pad_token_id, device=CPU, progress=False)
    params = classifier_params(classifier_module(model, family))
    assert set(params) == ({"weight", "bias"} if arch == "bert" else {"weight"})
    out = forward_numpy(params, feats.z)
    np.testing.assert_allclose(out, feats.logits, atol=1e-5)
    np.testing.assert_allclose(score_numpy("alien", out), normalized_entropy(feats.logits), atol=1e-5)
    np.testing.assert_allclose(score_numpy("adue", out), adue_uncertainty(feats.logits, 100.0), atol=1e-5)
