"""TextTokenizer: truncation, special tokens, right padding, huge texts (tokenizers only)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiny_models import make_tokenizer
from uehead.bundle import IncompatibleBundleError, TokenizerSpec
from uehead.runtime.tokenize import CHARS_PER_TOKEN, TextTokenizer

CLS, SEP, PAD = 2, 3, 0


def make(tmp_path, max_length=8, side="right", names=("input_ids", "attention_mask", "token_type_ids")):
    path = tmp_path / "tokenizer.json"
    make_tokenizer("bert").save(str(path))
    return TextTokenizer(path, TokenizerSpec("tokenizer.json", "", max_length=max_length, pad_token_id=PAD,
                                             truncation_side=side, model_input_names=names))


def raw_ids(text):
    return make_tokenizer("bert").encode(text).ids


def test_special_tokens_and_empty_string(tmp_path):
    tok = make(tmp_path)
    assert tok.encode(["", "good film"]) == [[CLS, SEP], raw_ids("good film")]
    assert tok.encode([]) == []


def test_truncation_sides_keep_special_tokens(tmp_path):
    words = "good bad film movie plot actor scene story the a".split()
    text = " ".join(words)
    full = raw_ids(text)[1:-1]
    right = make(tmp_path, 6, "right").encode([text])[0]
    left = make(tmp_path, 6, "left").encode([text])[0]
    assert right == [CLS, *full[:4], SEP]
    assert left == [CLS, *full[-4:], SEP]


def test_pad_right_into_int64_arrays(tmp_path):
    tok = make(tmp_path)
    batch = tok.pad(tok.encode(["good", "", "good bad film"]))
    assert list(batch) == ["input_ids", "attention_mask", "token_type_ids"]
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    assert ids.dtype == mask.dtype == types.dtype == np.int64
    assert ids.shape == (3, 5)
    assert ids[1].tolist() == [CLS, SEP, PAD, PAD, PAD]
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert not types.any()
    only = make(tmp_path, names=("input_ids", "attention_mask"))(["good"])
    assert list(only) == ["input_ids", "attention_mask"]
    assert make(tmp_path).pad([])["input_ids"].shape == (0, 0)
    empty_row = make(tmp_path).pad([[]])  # a tokenizer without special tokens, on ""
    assert empty_row["input_ids"].tolist() == [[PAD]] and empty_row["attention_mask"].tolist() == [[0]]


class CountingTokenizer:
    """A ``tokenizers.Tokenizer`` stand-in that records the length of every text it tokenises."""

    def __init__(self, tok):
        self.tok, self.lengths = tok, []

    def encode(self, text, add_special_tokens=True):
        self.lengths.append(len(text))
        return self.tok.encode(text, add_special_tokens=add_special_tokens)

    def encode_batch_fast(self, texts, add_special_tokens=True):
        self.lengths.extend(len(t) for t in texts)
        return self.tok.encode_batch(texts, add_special_tokens=add_special_tokens)

    encode_batch = encode_batch_fast


def counting(tok: TextTokenizer) -> CountingTokenizer:
    tok._tok = CountingTokenizer(tok._tok)
    return tok._tok


def test_huge_text_is_cut_before_tokenising_and_gives_the_same_ids(tmp_path):
    tok = make(tmp_path, 8)
    seen = counting(tok)
    huge = "good film " * 1_000_000  # 10 MB
    ids = tok.encode([huge])[0]
    assert ids == [CLS] + raw_ids("good film good film good film")[1:-1] + [SEP]
    assert sum(seen.lengths) <= tok.max_chars, "a 10 MB text was not cut before tokenising"
    left = make(tmp_path, 4, "left").encode(["bad " + "good film " * 100_000 + "awful movie"])[0]
    assert left == [CLS, *raw_ids("awful movie")[1:-1], SEP]


@pytest.mark.parametrize("side", ["right", "left"])
def test_cut_never_changes_the_result_of_sparse_texts(tmp_path, side):
    """Mostly-whitespace texts: the cut window would hold too few tokens, so it is widened."""
    tok = make(tmp_path, 8, side)
    window = 8 * CHARS_PER_TOKEN
    text = " " * (3 * window) + "good" + " " * (5 * window) + "bad film"
    expected = make_tokenizer("bert")
    expected.enable_truncation(8, direction=side)
    assert tok.encode([text]) == [expected.encode(text).ids]
    assert tok.encode([text])[0] == [CLS, *raw_ids("good bad film")[1:-1], SEP]


BIG = 10_000_000
#: The slowest shapes of a 10 MB text (whole-text tokenisation takes seconds) and the word tokens
#: the whole text gives, before truncation.
WORST_SHAPES = {
    "whitespace": (" \t\n\u3000\r\xa0" * (BIG // 6), []),
    "whitespace, then words": (" " * BIG + "good film bad", ["good", "film", "bad"]),
    "one word": ("a" * BIG, ["zzzunknown"]),
    "one repeated CJK character": ("\u4e2d" * BIG, ["zzzunknown"]),
    "mixed": ("\u3000\n " * (BIG // 9) + "good " + ("\u4e2d" * 20 + " ") * (BIG // 126) + "x" * (BIG // 3)
              + (" \u4e2d" * 20) * (BIG // 82) + " bad " + "\n" * (BIG // 10),
              ["good"] + ["zzzunknown"] * 10 + ["bad"]),
}


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("shape", list(WORST_SHAPES))
def test_worst_shapes_of_huge_texts_tokenise_a_bounded_window(tmp_path, shape, side):
    """Whitespace runs are collapsed (they make no tokens with this tokenizer) and the window is
    widened a bounded number of times: a 10 MB text of any shape costs a few windows of tokenising."""
    tok = make(tmp_path, 8, side)
    seen = counting(tok)
    text, words = WORST_SHAPES[shape]
    ids = tok.encode([text, "good"])
    assert sum(seen.lengths) <= 16 * tok.max_chars, f"tokenised {sum(seen.lengths)} characters of {shape!r}"
    kept = words[:6] if side == "right" else words[-6:]
    assert ids[0] == [CLS, *raw_ids(" ".join(kept))[1:-1], SEP]
    assert ids[1] == raw_ids("good")


def _byte_level(tmp_path, max_length: int, side: str = "right") -> TextTokenizer:
    """A byte-level tokenizer (every byte a token, spaces included), saved and wrapped like a bundle's."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, **{c: i + 1 for i, c in enumerate(sorted(alphabet))}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    path = tmp_path / "byte_level.json"
    tok.save(str(path))
    return TextTokenizer(path, TokenizerSpec(path.name, "", max_length=max_length, pad_token_id=0,
                                             truncation_side=side, model_input_names=("input_ids",)))


@pytest.mark.parametrize("side", ["right", "left"])
def test_whitespace_is_not_collapsed_where_it_makes_tokens(tmp_path, side):
    tok = _byte_level(tmp_path, 8, side)
    seen = counting(tok)
    whole = seen.tok
    whole.enable_truncation(8, direction=side)
    for text in (" " * BIG, "ab" + " \n" * (BIG // 2) + "cd", "\u4e2d" * BIG):
        seen.lengths.clear()
        got = tok.encode([text])[0]
        assert sum(seen.lengths) <= 16 * tok.max_chars
        part = text[:10_000] if side == "right" else text[-10_000:]  # holds the kept bytes, tokenises fast
        assert got == whole.encode(part).ids


def test_bad_specs_raise_bundle_errors(tmp_path):
    with pytest.raises(IncompatibleBundleError, match="max_length"):
        make(tmp_path, max_length=1)
    with pytest.raises(IncompatibleBundleError, match="truncation_side"):
        make(tmp_path, side="middle")
    with pytest.raises(IncompatibleBundleError, match="model_input_names"):
        make(tmp_path, names=("input_ids", "pixel_values"))
    (tmp_path / "bad.json").write_text("{not a tokenizer", encoding="utf-8")
    with pytest.raises(IncompatibleBundleError, match="bad.json"):
        TextTokenizer(tmp_path / "bad.json", TokenizerSpec("bad.json", "", 8, 0))


_CACHE: dict = {}
#: Words, punctuation, control and CJK characters, runs of every kind of whitespace, random Unicode.
_pieces = st.one_of(st.sampled_from(["good", "bad", "film", "zzzunknown", ",", "!", "\u4e2d", "\x00", "\x1c"]),
                    st.integers(1, 700).map(lambda n: " " * n),
                    st.tuples(st.sampled_from(["\n", "\t", "\u3000", "\xa0", "\r\n", " \u2028 "]),
                              st.integers(1, 3000)).map(lambda p: p[0] * p[1]),
                    st.text(alphabet="abcdefghij", min_size=1, max_size=20),
                    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Zs", "Zl", "Zp")),
                            min_size=1, max_size=12))


@settings(max_examples=100, deadline=None)
@given(pieces=st.lists(_pieces, max_size=200), max_length=st.integers(2, 10),
       side=st.sampled_from(["right", "left"]))
def test_cutting_equals_tokenising_the_whole_text(tmp_path_factory, pieces, max_length, side):
    text = " ".join(pieces)
    key = (max_length, side)
    if key not in _CACHE:
        whole = make_tokenizer("bert")
        whole.enable_truncation(max_length, direction=side)
        _CACHE[key] = make(tmp_path_factory.mktemp("tok"), max_length, side), whole
    tok, whole = _CACHE[key]
    assert tok.encode([text, ""]) == [whole.encode(text).ids, [CLS, SEP]]
