"""Tiny token-classification models and NER data, built in-process in well under a second.

* :func:`make_wordpiece_tokenizer` - a BERT-style WordPiece tokenizer whose vocabulary holds a few
  whole words, single letters and ``##`` letter pieces, so most words split into several
  sub-tokens (the case word alignment is about).
* :func:`make_tiny_token_model_dir` - a random 2-layer ``BertForTokenClassification`` (or
  ``LlamaForTokenClassification`` with the same tokenizer) saved as a Hugging Face folder.
* :func:`make_tiny_ner_dataset` - ``{train,valid,test}.jsonl`` of ``{"tokens", "tags"}`` rows plus
  BIO ``labels.json``, with tag noise (so a model errs) and, in train, BIO breaks (I-X after O).
"""
from __future__ import annotations

import json
import random
import string
from pathlib import Path

TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
PEOPLE = [["alice"], ["bob", "stone"], ["carol", "smith"], ["dave"], ["eve", "ray"]]
PLACES = [["paris"], ["new", "york"], ["rome"], ["cape", "town"], ["lima"]]
FILLER = ["the", "a", "went", "to", "from", "and", "met", "in", "saw", "visit", "today", "later", "with", "we"]
WHOLE_WORDS = ["the", "a", "to", "and", "in", "we", "paris", "rome", "alice"]


def make_wordpiece_tokenizer():
    """WordPiece over whole words + letters + ``##`` letters; [CLS] text [SEP]."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = WHOLE_WORDS + list(string.ascii_lowercase) + [f"##{c}" for c in string.ascii_lowercase]
    vocab = {tok: i for i, tok in enumerate(specials + list(dict.fromkeys(pieces)))}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return tok


def make_tiny_token_model_dir(out: Path, arch: str = "bert", seed: int = 0, hidden_size: int = 32,
                              max_positions: int = 64, tags=TAGS) -> Path:
    """Save a random 2-layer token classifier + the WordPiece tokenizer; return the folder."""
    import torch
    from transformers import (BertConfig, BertForTokenClassification, LlamaConfig, LlamaForTokenClassification,
                              PreTrainedTokenizerFast)

    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_wordpiece_tokenizer()
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                     sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_positions)
    common = dict(vocab_size=tok.get_vocab_size(), hidden_size=hidden_size, num_hidden_layers=2,
                  num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=max_positions,
                  num_labels=len(tags), pad_token_id=hf_tok.pad_token_id)
    if arch == "bert":
        model = BertForTokenClassification(BertConfig(**common))
    elif arch == "llama":
        hf_tok.model_input_names = ["input_ids", "attention_mask"]
        model = LlamaForTokenClassification(LlamaConfig(**common, num_key_value_heads=1))
    else:
        raise ValueError(f"arch must be 'bert' or 'llama', got {arch!r}")
    model.config.id2label = dict(enumerate(tags))
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.eval().save_pretrained(out)
    hf_tok.save_pretrained(out)
    return out


def make_sentence(rng: random.Random, noise: float) -> tuple[list[str], list[int]]:
    """Filler words with a person and/or a place; each tag is replaced by a random one with ``noise``."""
    words, tags = [], []
    for _ in range(rng.randint(1, 3)):
        words += [rng.choice(FILLER) for _ in range(rng.randint(1, 3))]
        tags += [0] * (len(words) - len(tags))
        kind = rng.random()
        if kind < 0.4:
            name, b = rng.choice(PEOPLE), 3
        elif kind < 0.8:
            name, b = rng.choice(PLACES), 1
        else:
            continue
        words += name
        tags += [b] + [b + 1] * (len(name) - 1)
    tags = [rng.randrange(len(TAGS)) if rng.random() < noise else t for t in tags]
    return words, tags


def make_tiny_ner_dataset(out: Path, sizes=(120, 60, 40), noise: float = 0.08, seed: int = 0,
                          bio_breaks: int = 3) -> Path:
    """Write the splits and labels.json; the first ``bio_breaks`` train rows get an ``I-PER`` after ``O``."""
    rng = random.Random(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "labels.json").write_text(json.dumps(TAGS), encoding="utf-8")
    for split, n in zip(("train", "valid", "test"), sizes):
        rows = []
        for i in range(n):
            words, tags = make_sentence(rng, noise)
            if split == "train" and i < bio_breaks:
                words, tags = ["we", "eve"] + words, [0, 4] + tags
            rows.append(json.dumps({"tokens": words, "tags": tags}))
        (out / f"{split}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out


#: Small training settings: 2 epochs, windows of 16 tokens (so the tiny sentences need several),
#: a 2-point head grid.
TRAIN_KW = {"task": "token-classification", "epochs": 2, "max_length": 16, "batch_size": 16, "progress": False}


def small_grid():
    from uehead.training import HeadGridConfig

    return HeadGridConfig(lrs=(1e-3,), epochs=(2,), alphas=(0.0, 1.0), betas=(0.01,))
