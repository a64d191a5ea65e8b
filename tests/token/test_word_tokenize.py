"""Word alignment and windows of the runtime's WordTokenizer (torch-free): the first sub-token of
each word, words that make no token, inner spaces, huge words, sentences past max_length."""
from __future__ import annotations

import numpy as np
import pytest

from tiny_token import make_wordpiece_tokenizer
from uehead.bundle import TokenizerSpec
from uehead.runtime.word_tokenize import UNSCORED, WordTokenizer


def _tok(tmp_path, max_length=16, overlap=None) -> WordTokenizer:
    path = tmp_path / "tokenizer.json"
    make_wordpiece_tokenizer().save(str(path))
    spec = TokenizerSpec(file="tokenizer.json", sha256="", max_length=max_length, pad_token_id=0,
                         model_input_names=("input_ids", "attention_mask", "token_type_ids"))
    return WordTokenizer(path, spec, overlap)


def test_first_subtoken_positions_and_unscored_words(tmp_path):
    tok = _tok(tmp_path, max_length=32)
    w = tok.encode_words([["the", "bob", "", "a b", "\u200b", "to"], []])
    # "" and a zero-width space make no token; "a b" is one word of two pieces
    vocab = make_wordpiece_tokenizer()
    assert [vocab.id_to_token(i) for i in w.ids[0]] == ["[CLS]", "the", "b", "##o", "##b", "a", "b", "to", "[SEP]"]
    assert w.word_window.tolist() == [0, 0, UNSCORED, 0, UNSCORED, 0]
    assert w.word_position.tolist() == [1, 2, 0, 5, 0, 7]
    assert w.scored.tolist() == [True, True, False, True, False, True]
    assert w.words_per_sentence.tolist() == [6, 0] and w.window_sentence.tolist() == [0]
    assert [x.tolist() for x in w.window_words()] == [[0, 1, 3, 5]]


def test_long_sentence_windows_cover_every_word_once(tmp_path):
    tok = _tok(tmp_path, max_length=16)                 # 14 content tokens, overlap 3
    words = ["bob"] * 40                                # 3 sub-tokens each: 120 tokens
    w = tok.encode_words([words])
    assert len(w.ids) > 1 and all(len(x) <= 16 for x in w.ids)
    assert w.scored.all() and np.all(w.window_sentence == 0)
    for i in range(40):                                 # each word is read at its own first sub-token
        assert w.ids[w.word_window[i]][w.word_position[i]] == w.ids[0][1]
    # each word sits away from the window edges when it can: interior words are never at position 1
    interior = [i for i in range(40) if 0 < w.word_window[i] < len(w.ids) - 1]
    assert all(w.word_position[i] > 1 for i in interior)
    assert sorted(np.concatenate(w.window_words()).tolist()) == list(range(40))


def test_thousands_of_words_and_huge_words(tmp_path):
    tok = _tok(tmp_path, max_length=16)
    many = ["a"] * 5000
    w = tok.encode_words([many, ["x" * 100_000, "the"]])
    assert w.n_words == 5002 and w.scored.all()
    assert max(len(x) for x in w.ids) <= 16
    huge = w.word_window[5000]
    assert len(w.ids[huge]) <= 16 and tok.max_word_tokens == 7   # a huge word keeps half a window at most


def test_split_words_offsets(tmp_path):
    tok = _tok(tmp_path)
    text = "  Hello,  New-York\tcafé "
    words = tok.split_words(text)
    assert [w for w, _, _ in words] == ["Hello", ",", "New", "-", "York", "café"]
    assert all(text[a:b] == w for w, a, b in words)
    assert tok.split_words("") == [] and tok.split_words("   ") == []


def test_bad_overlap(tmp_path):
    with pytest.raises(ValueError, match="window_overlap"):
        _tok(tmp_path, max_length=16, overlap=14)
