"""Property tests of the runtime's text inputs: lone surrogates, control characters, every Unicode
plane, huge texts of the worst shapes. ``predict`` either predicts every text or refuses naming
the first bad one, and the batch job's error rows and ``predict``'s refusals agree. (That cutting
a huge text never changes the tokens kept is ``test_tokenize.py``'s property test.)"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uehead.runtime.batch_schema import text_errors
from uehead.runtime.inputs import check_items, lone_surrogate

SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
CONTROLS = st.sampled_from([chr(c) for c in (*range(0, 32), 0x7F, *range(0x80, 0xA0))])
_chars = st.one_of(st.characters(codec="utf-8"), SURROGATES, CONTROLS, st.sampled_from(["\u3000", "\u2028", "\ufeff"]))
_text = st.text(alphabet=_chars, max_size=30)
#: A huge text: a shape repeated, around a few real words.
_huge = st.tuples(st.sampled_from([" ", "\t\n", "\u3000", "a", "\u4e2d", "\x00", "good ", "\x1c"]),
                  st.integers(10_000, 400_000), st.sampled_from(["", "good film", "\ud800"])).map(
    lambda p: p[0] * p[1] + " " + p[2])


def _first_surrogate(texts) -> int | None:
    return next((i for i, t in enumerate(texts) if lone_surrogate(t) is not None), None)


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.one_of(_text, _huge), max_size=6))
def test_predict_predicts_every_text_or_names_the_first_bad_one(tiny_model, texts):
    bad = _first_surrogate(texts)
    if bad is not None:
        with pytest.raises(ValueError, match=rf"texts\[{bad}\].*lone surrogate"):
            tiny_model.predict(texts)
        return
    preds = tiny_model.predict(texts, batch_size=4)
    assert len(preds) == len(texts)
    assert np.isfinite(preds.probs).all() and np.allclose(preds.probs.sum(axis=1), 1, atol=1e-5)
    assert all(np.isfinite(s).all() for s in preds.scores.values())


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(_text, st.none(), st.integers(), st.floats()), max_size=8))
def test_error_rows_are_exactly_the_texts_predict_refuses(values):
    errors = text_errors(values)
    for i, (v, e) in enumerate(zip(values, errors)):
        try:
            check_items([v])
            refused = False
        except (TypeError, ValueError):
            refused = True
        assert refused == (e is not None), (i, v, e)
