"""Tiny random models and data built in-process, offline, in well under a second.

* :func:`make_tokenizer` - a word-level ``tokenizers`` tokenizer over a small vocabulary
  (BERT style: ``[CLS] text [SEP]``; LLaMA style: ``<s> text``).
* :func:`make_tiny_model_dir` - a 2-layer random ``BertForSequenceClassification`` or
  ``LlamaForSequenceClassification`` saved as a standard Hugging Face folder with its tokenizer.
* :func:`make_tiny_dataset` - a dataset folder (``{train,valid,test}.jsonl`` + ``labels.json``)
  whose labels depend on the words, with label noise so a model makes some errors.

Needs torch + transformers (the ``[train]``/``[export]`` extras) except :func:`make_tokenizer`
and :func:`make_tiny_dataset`, which need only ``tokenizers``.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

POSITIVE = ["good", "great", "fine", "lovely", "superb", "fun", "charming", "moving"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "weak", "messy", "flat"]
NEUTRAL = ["the", "a", "film", "movie", "plot", "actor", "scene", "story", "is", "was", "very", "and",
           "but", "not", "quite", "really", "it", "this", "that", "of"]
WORDS = POSITIVE + NEGATIVE + NEUTRAL


def make_tokenizer(style: str = "bert"):
    """A word-level tokenizer over WORDS. style 'bert' adds [CLS]/[SEP]; 'llama' prepends <s>."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    if style == "bert":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        unk = "[UNK]"
    elif style == "llama":
        specials = ["<pad>", "<unk>", "<s>", "</s>"]
        unk = "<unk>"
    else:
        raise ValueError(f"style must be 'bert' or 'llama', got {style!r}")
    vocab = {tok: i for i, tok in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if style == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])])
    return tok


def make_tiny_model_dir(out: Path, arch: str = "bert", num_labels: int = 2, seed: int = 0,
                        hidden_size: int = 32, max_positions: int = 64) -> Path:
    """Save a random 2-layer classifier + tokenizer as a Hugging Face folder; return its path."""
    import torch
    from transformers import (BertConfig, BertForSequenceClassification, LlamaConfig,
                              LlamaForSequenceClassification, PreTrainedTokenizerFast)

    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer("bert" if arch == "bert" else "llama")
    vocab_size = tok.get_vocab_size()
    if arch == "bert":
        hf_tok = PreTrainedTokenizerFast(
            tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
            sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_positions)
        config = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=2 * hidden_size,
                            max_position_embeddings=max_positions, num_labels=num_labels,
                            pad_token_id=hf_tok.pad_token_id)
        model = BertForSequenceClassification(config)
    elif arch == "llama":
        hf_tok = PreTrainedTokenizerFast(
            tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
            model_max_length=max_positions, model_input_names=["input_ids", "attention_mask"])
        config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                             num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                             max_position_embeddings=max_positions, num_labels=num_labels,
                             pad_token_id=hf_tok.pad_token_id, bos_token_id=hf_tok.bos_token_id,
                             eos_token_id=hf_tok.eos_token_id)
        model = LlamaForSequenceClassification(config)
    else:
        raise ValueError(f"arch must be 'bert' or 'llama', got {arch!r}")
    model.config.id2label = {i: f"class_{i}" for i in range(num_labels)}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.eval()
    model.save_pretrained(out)
    hf_tok.save_pretrained(out)
    return out


def make_sentence(rng: random.Random, label: int, num_classes: int, noise: float) -> tuple[str, int]:
    """A short sentence whose sentiment words signal ``label``; with probability ``noise`` the
    label is flipped (so even a perfect model errs there)."""
    cue = POSITIVE if label % 2 else NEGATIVE
    words = [rng.choice(NEUTRAL) for _ in range(rng.randint(2, 8))]
    for _ in range(rng.randint(1, 2)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(cue))
    if rng.random() < 0.3:  # ambiguous: add a contrary cue
        words.insert(rng.randrange(len(words) + 1), rng.choice(NEGATIVE if label % 2 else POSITIVE))
    if rng.random() < noise:
        label = rng.choice([c for c in range(num_classes) if c != label])
    return " ".join(words), label


def make_tiny_dataset(out: Path, num_classes: int = 2, sizes=(200, 120, 80), noise: float = 0.1,
                      seed: int = 0, gzip_files: bool = False) -> Path:
    """Write train/valid/test JSONL files and labels.json; return the folder."""
    import gzip

    rng = random.Random(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "labels.json").write_text(json.dumps([f"class_{c}" for c in range(num_classes)]), encoding="utf-8")
    for split, n in zip(("train", "valid", "test"), sizes):
        rows = []
        for i in range(n):
            text, label = make_sentence(rng, i % num_classes, num_classes, noise)
            rows.append(json.dumps({"text": text, "label": label}))
        data = ("\n".join(rows) + "\n").encode("utf-8")
        if gzip_files:
            (out / f"{split}.jsonl.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (out / f"{split}.jsonl").write_bytes(data)
    return out
