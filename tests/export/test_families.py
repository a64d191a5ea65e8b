"""Every supported architecture family, post hoc: a tiny random ``*ForSequenceClassification``
(2 layers, hidden 32) saved to a folder -> ``train(finetune="none")`` -> ``export_bundle`` -> the
torch-free runtime, whose probabilities must equal the original Hugging Face model's softmax.
Also: each new family's classifier block as a head graph, and LoRA adapters on the new families."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from tiny_models import make_tiny_dataset, make_tokenizer  # noqa: E402
from uehead.training import HeadGridConfig  # noqa: E402

SMALL_GRID = HeadGridConfig(lrs=(1e-3, 1e-5), epochs=(2, 4), alphas=(0.0, 1.0), betas=(0.01, 1.0))

HIDDEN, POSITIONS, MAX_LENGTH = 32, 64, 32
#: family -> (transformers config class, model class, tokenizer style, architecture uehead records)
FAMILIES = {
    "bert": ("BertConfig", "BertForSequenceClassification", "bert", "bert"),
    "distilbert": ("DistilBertConfig", "DistilBertForSequenceClassification", "bert", "distilbert"),
    "roberta": ("RobertaConfig", "RobertaForSequenceClassification", "bert", "roberta"),
    "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaForSequenceClassification", "bert", "roberta"),
    "electra": ("ElectraConfig", "ElectraForSequenceClassification", "bert", "electra"),
    "deberta-v2": ("DebertaV2Config", "DebertaV2ForSequenceClassification", "bert", "deberta-v2"),
    "llama": ("LlamaConfig", "LlamaForSequenceClassification", "llama", "llama"),
    "qwen2": ("Qwen2Config", "Qwen2ForSequenceClassification", "llama", "llama"),
    "mistral": ("MistralConfig", "MistralForSequenceClassification", "llama", "llama"),
}
#: Families whose backbone's last layer is cut to the pooled first token (uehead.export.pooled_row);
#: DeBERTa-v2's relative attention and the last-token decoders keep every row.
FIRST_TOKEN_CUT = ("bert", "distilbert", "roberta", "xlm-roberta", "electra")
#: The head module each family's classifier maps to (uehead.architectures.CLASSIFIER_OF).
MODULES = {"bert": "linear", "distilbert": "dense_relu_linear", "roberta": "dense_tanh_linear",
           "xlm-roberta": "dense_tanh_linear", "electra": "dense_gelu_linear", "deberta-v2": "dense_gelu_linear",
           "llama": "linear", "qwen2": "linear", "mistral": "linear"}


def _config_kwargs(family: str, vocab_size: int, pad_id: int, tok) -> dict:
    # A wide init: at the usual 0.02 the tiny encoders give every text nearly the same probabilities.
    common = {"vocab_size": vocab_size, "num_labels": 2, "pad_token_id": pad_id, "initializer_range": 0.3}
    if family == "distilbert":
        return {**common, "dim": HIDDEN, "n_layers": 2, "n_heads": 2, "hidden_dim": 2 * HIDDEN,
                "max_position_embeddings": POSITIONS}
    layers = {"hidden_size": HIDDEN, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 2 * HIDDEN}
    if FAMILIES[family][2] == "llama":
        return {**common, **layers, "num_key_value_heads": 1, "max_position_embeddings": POSITIONS,
                "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    if family in ("roberta", "xlm-roberta"):  # positions start after the pad id
        return {**common, **layers, "max_position_embeddings": POSITIONS + pad_id + 2, "type_vocab_size": 1}
    if family == "electra":
        return {**common, **layers, "embedding_size": HIDDEN, "max_position_embeddings": POSITIONS}
    if family == "deberta-v2":  # DeBERTa-v3's settings: relative attention only, no token types
        return {**common, **layers, "max_position_embeddings": POSITIONS, "relative_attention": True,
                "position_buckets": 16, "pos_att_type": ["p2c", "c2p"], "position_biased_input": False,
                "norm_rel_ebd": "layer_norm", "share_att_key": True, "max_relative_positions": -1,
                "type_vocab_size": 0, "pooler_hidden_size": HIDDEN, "pooler_hidden_act": "gelu"}
    return {**common, **layers, "max_position_embeddings": POSITIONS}


def make_family_dir(out: Path, family: str, seed: int = 0, labels=("class_0", "class_1")) -> Path:
    """Save a random 2-layer ``family`` classifier (hidden 32) + a tiny fast tokenizer; return the folder."""
    import transformers
    from transformers import PreTrainedTokenizerFast

    config_name, model_name, style, _ = FAMILIES[family]
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backend = make_tokenizer(style)
    if style == "bert":
        # As their own tokenizers do: DeBERTa-v2's returns token_type_ids its model ignores (type_vocab_size 0),
        # DistilBERT's none (its model refuses them).
        inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if family in ("bert", "electra", "deberta-v2")
                                                    else [])
        tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                      cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                      model_max_length=POSITIONS, model_input_names=inputs)
    else:
        tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                      bos_token="<s>", eos_token="</s>", model_max_length=POSITIONS,
                                      model_input_names=["input_ids", "attention_mask"])
    config = getattr(transformers, config_name)(**_config_kwargs(family, backend.get_vocab_size(),
                                                                 tok.pad_token_id, tok))
    config.id2label = dict(enumerate(labels))
    config.label2id = {n: i for i, n in enumerate(labels)}
    model = getattr(transformers, model_name)(config).eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def hf_probs(folder: Path, texts: list[str]) -> np.ndarray:
    """The saved model's own softmax, one text at a time (no padding), with its own tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    rows = []
    with torch.no_grad():
        for text in texts:
            enc = tok([text], truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            rows.append(torch.softmax(model(**enc).logits, dim=-1)[0].numpy())
    return np.stack(rows)


@pytest.fixture(scope="module")
def tiny_rows(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny", sizes=(60, 80, 30))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_posthoc_heads_export_and_serve_like_the_original_model(family, tiny_rows, tmp_path):
    from uehead import runtime
    from uehead.checkpoint import read_checkpoint
    from uehead.datasets import load_dataset
    from uehead.export import export_bundle
    from uehead.training import train

    folder = make_family_dir(tmp_path / "model", family)
    ckpt = train(str(folder), str(tiny_rows), tmp_path / "ckpt", finetune="none", max_length=MAX_LENGTH,
                 device="cpu", baselines=("md", "rmd"), progress=False, grid=SMALL_GRID)
    read = read_checkpoint(ckpt)
    assert read.architecture == FAMILIES[family][3]
    assert {h.module for h in read.heads.values()} == {MODULES[family]}
    assert read.training["merge_max_abs_diff"] == 0.0
    manifest = export_bundle(ckpt, tmp_path / "bundle", progress=False)
    assert manifest.reports["validation"]["passed"]
    # The first-token poolers compute only that row in their last layer; the rest stay whole.
    pooled = manifest.reports["export"]["pooled_row"]
    assert pooled["applied"] == (family in FIRST_TOKEN_CUT), pooled
    assert pooled["applied"] or pooled["reason"]
    assert ("token_type_ids" in manifest.backbone.input_names) == (family in ("bert", "electra"))
    test_texts = list(load_dataset(tiny_rows, splits=("test",))["test"].texts)
    texts = test_texts + ["", "good", "bad " * 40]
    got = runtime.load(tmp_path / "bundle", threads=1).predict(texts, distances=True)
    want = hf_probs(folder, texts)
    assert np.abs(np.asarray(got.probs) - want).max() < 1e-4
    assert np.ptp(want[:, 0]) > 0.1  # probabilities that move with the text, so a wrong graph shows
    # The served heads are the ones training scored (its numpy forward of the same weights).
    stored = np.load(ckpt / "scores" / "test.npz")
    for kind in ("adue", "alien"):  # (MD on 60 training rows in 32 dims is too ill-conditioned to compare)
        np.testing.assert_allclose(np.asarray(got.scores[kind])[:len(test_texts)], stored[kind], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("module", ["dense_tanh_linear", "dense_relu_linear", "dense_gelu_linear",
                                    "dense_gelu_new_linear", "dense_silu_linear"])
def test_every_dense_head_module_exports_as_training_computes_it(module, tmp_path):
    import onnxruntime as ort

    from uehead.architectures import DENSE_HEAD_ACTIVATIONS
    from uehead.checkpoint import HeadWeights
    from uehead.export import graphs
    from uehead.training.heads import forward_numpy, random_params

    assert module in DENSE_HEAD_ACTIVATIONS
    params = {k: (3.0 * v).astype(np.float32) for k, v in random_params(module, 16, 3, True, seed=2).items()}
    head = HeadWeights("adue", {"module": module}, params)
    graphs.export_head(torch.nn.Linear(16, 3), {"adue": graphs.head_module(head)}, 16, tmp_path / "head.onnx")
    z = np.random.default_rng(0).normal(size=(9, 16)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "head.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["adue_logits"], {"features": z})[0]
    np.testing.assert_allclose(got, forward_numpy(params, z), atol=2e-5, rtol=0)


@pytest.mark.parametrize("family", ["distilbert", "electra", "deberta-v2"])
def test_lora_adapts_the_new_families(family, tiny_rows, tmp_path):
    from uehead.checkpoint import read_checkpoint
    from uehead.training import train
    from uehead.training.backbones import load_backbone, resolve_model
    from uehead.training.config import LoraSettings
    from uehead.training.lora import add_lora

    folder = make_family_dir(tmp_path / "model", family)
    model, _, fam = load_backbone(resolve_model(str(folder)), ("class_0", "class_1"), MAX_LENGTH)
    trainable = [n for n, p in add_lora(model, fam, LoraSettings()).named_parameters() if p.requires_grad]
    for target in fam.lora_targets:  # every target layer of both blocks got an adapter
        assert sum(f".{target}.lora_" in n for n in trainable) == 4, (target, trainable)
    assert any("classifier" in n and "lora_" not in n for n in trainable)
    ckpt = train(str(folder), str(tiny_rows), tmp_path / "ckpt", epochs=1, max_length=MAX_LENGTH, device="cpu",
                 baselines=("md",), progress=False, grid=SMALL_GRID)
    assert {h.module for h in read_checkpoint(ckpt).heads.values()} == {MODULES[family]}
