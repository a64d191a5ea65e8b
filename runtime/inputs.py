"""What the runtime accepts as texts, checked before any work: :meth:`Model.predict`, ``iter_predict``,
``predict_stages`` and the batch jobs' error rows (:func:`uehead.runtime.batch_schema.text_errors`).

A text is a ``str`` that can be encoded as UTF-8. Python strings can hold *lone surrogates*
(code points U+D800-U+DFFF outside a pair), which JSON escapes such as ``"\\ud800"`` decode to and
which no tokenizer accepts; such a text is refused naming its index (``Model.predict`` raises,
a batch job writes an error row). A table (a pandas DataFrame, a pyarrow Table) is refused too:
iterating it gives its column names, not its texts.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

__all__ = ["reject_unordered", "check_items", "as_text_list", "check_batch_size", "lone_surrogate",
           "surrogate_message", "replace_surrogates"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str) -> int | None:
    """The character index of the first lone surrogate in ``text``, None when there is none."""
    if text.isascii():  # constant time for CPython's compact ASCII strings, the common case
        return None
    found = _SURROGATE.search(text)
    return None if found is None else found.start()


def surrogate_message(text: str, at: int) -> str:
    """Why ``text`` (with a lone surrogate at index ``at``) cannot be tokenised, and the fix."""
    return (f"holds a lone surrogate U+{ord(text[at]):04X} at character {at}, which is not valid Unicode "
            "(often a broken JSON escape such as \\ud800); replace it, e.g. "
            "text.encode('utf-8', 'replace').decode('utf-8')")


def _is_table(texts) -> bool:
    shape = getattr(texts, "shape", None)
    return (isinstance(shape, tuple) and len(shape) == 2
            and (hasattr(texts, "columns") or hasattr(texts, "column_names")))


def reject_unordered(texts) -> None:
    """TypeError unless ``texts`` is an ordered iterable (a sequence, an iterator, a 1-D array).

    Unordered containers (set, dict) would scramble the output order; bytes iterate as ints; a
    table iterates as its column names.
    """
    if _is_table(texts):
        columns = getattr(texts, "columns", None)
        columns = list(columns if columns is not None else texts.column_names)
        name = columns[0] if columns else "text"
        raise TypeError(f"texts is a {type(texts).__name__} (a table): iterating it gives its column names. "
                        f"Pass its text column instead, e.g. frame[{name!r}].")
    if isinstance(texts, (bytes, bytearray, dict, set, frozenset)):
        raise TypeError(f"texts must be a str or an ordered sequence of str, got {type(texts).__name__}.")
    if not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}.")


def check_items(items: list, offset: int = 0) -> None:
    """Every item is a str that can be tokenised; the error names ``texts[offset + i]``.

    Raises:
        TypeError: an item is not a str.
        ValueError: an item holds a lone surrogate (see the module docstring).
    """
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"texts[{offset + i}] is {type(item).__name__} ({item!r:.60}), expected str; "
                            "convert or drop non-text items first.")
        at = lone_surrogate(item)
        if at is not None:
            raise ValueError(f"texts[{offset + i}] {surrogate_message(item, at)}.")


def as_text_list(texts) -> list[str]:
    """``texts`` (one str or an ordered iterable of str) as a checked list."""
    if isinstance(texts, str):
        texts = [texts]
    reject_unordered(texts)
    items = list(texts)
    check_items(items)
    return items


def check_batch_size(batch_size) -> None:
    """ValueError unless ``batch_size`` is a positive int."""
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}; pass a positive int.")


def replace_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (the replacement character)."""
    return text if lone_surrogate(text) is None else _SURROGATE.sub("\ufffd", text)
