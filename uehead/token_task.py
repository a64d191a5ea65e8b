"""Token classification (named-entity recognition) in the shared core: the task names, the
word-alignment rule, and the manifest's ``token`` entry.

A model is trained and served for one task:

* ``sequence-classification`` - one label per text (``Model.predict(texts)``); what every bundle
  and checkpoint without a ``task`` field is;
* ``token-classification`` - one BIO tag per word (``Model.predict_tokens(words)``,
  ``Model.predict_entities(texts)``).

Word alignment (the only rule, :data:`FIRST_SUBTOKEN`): a word's tag is predicted from the
features of its first sub-token; its other sub-tokens give context only (training ignores them in
the loss). A word that the tokenizer turns into no token at all (an empty string, whitespace, or
only characters the normaliser deletes) has no first sub-token: it is tagged "O" with
probability 1 and every score 0 (it cannot be part of an entity), and ``scored`` is False for it.

Long sentences are never truncated: their sub-tokens are cut into overlapping windows of the
bundle's ``max_length`` (``window_overlap`` sub-tokens shared by consecutive windows), and each
word is predicted in the window where its first sub-token has the most context on both sides
(:mod:`uehead.runtime.word_tokenize`).

Only the standard library and :mod:`uehead.bio` (numpy) are used here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uehead.bio import BioTags
from uehead.errors import BundleError, IncompatibleBundleError, TaskMismatchError

__all__ = ["SEQUENCE_CLASSIFICATION", "TOKEN_CLASSIFICATION", "TASKS", "FIRST_SUBTOKEN", "ALIGNMENTS",
           "TOKEN_POOLING", "TAG_SCHEMES", "TokenTaskSpec", "token_spec_from_dict", "check_task", "require_task",
           "is_token_task"]

SEQUENCE_CLASSIFICATION = "sequence-classification"
TOKEN_CLASSIFICATION = "token-classification"
TASKS = (SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION)
#: Word-alignment rules: the first sub-token of a word carries its tag.
FIRST_SUBTOKEN = "first_subtoken"
ALIGNMENTS = (FIRST_SUBTOKEN,)
#: The backbone's "pooling" for token classification: none, every position's hidden state is a feature.
TOKEN_POOLING = "per_token"
TAG_SCHEMES = ("BIO",)
#: What each task's bundle is called with, for the error naming the right call.
_CALLS = {SEQUENCE_CLASSIFICATION: "Model.predict(texts) (or iter_predict / predict_file)",
          TOKEN_CLASSIFICATION: "Model.predict_tokens(words) for lists of words, or "
                                "Model.predict_entities(texts) for raw strings"}
_FIX = "re-export the bundle with `uehead export`."


@dataclass(frozen=True)
class TokenTaskSpec:
    """The manifest's ``token`` entry (present exactly when ``task`` is token-classification).

    Attributes:
        alignment: the word-alignment rule (:data:`FIRST_SUBTOKEN`).
        tag_scheme: how the labels encode entities ("BIO": ``O``, ``B-X``, ``I-X``).
        window_overlap: sub-tokens shared by consecutive windows of a sentence longer than
            ``tokenizer.max_length`` (see the module docstring).
    """

    alignment: str = FIRST_SUBTOKEN
    tag_scheme: str = "BIO"
    window_overlap: int = 0


def token_spec_from_dict(data: Any, path: Path) -> TokenTaskSpec | None:
    """The manifest's ``token`` entry as a :class:`TokenTaskSpec` (None when absent or null)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise BundleError(f"'token' must be an object or null, got {type(data).__name__}.", path=path, fix=_FIX)
    names = {f.name for f in dataclasses.fields(TokenTaskSpec)}
    spec = TokenTaskSpec(**{k: v for k, v in data.items() if k in names})
    if not isinstance(spec.window_overlap, int) or isinstance(spec.window_overlap, bool) or spec.window_overlap < 0:
        raise BundleError(f"'token.window_overlap' must be an integer >= 0, got {spec.window_overlap!r}.",
                          path=path, fix=_FIX)
    return spec


def check_task(task: Any, token: TokenTaskSpec | None, labels: tuple[str, ...], path: Path) -> None:
    """The manifest's task, its ``token`` entry and (for token classification) its BIO tag names agree."""
    if task not in TASKS:
        raise IncompatibleBundleError(f"task {task!r} is not one of {list(TASKS)}.", path=path, fix=_FIX)
    if task == SEQUENCE_CLASSIFICATION:
        if token is not None:
            raise IncompatibleBundleError("has a 'token' entry but task is sequence-classification.",
                                          path=path, fix=_FIX)
        return
    if token is None:
        raise IncompatibleBundleError("task is token-classification but the 'token' entry is missing.",
                                      path=path, fix=_FIX)
    if token.alignment not in ALIGNMENTS:
        raise IncompatibleBundleError(f"token.alignment {token.alignment!r} is not one of {list(ALIGNMENTS)}.",
                                      path=path, fix="upgrade uehead, or re-export the bundle with this version.")
    if token.tag_scheme not in TAG_SCHEMES:
        raise IncompatibleBundleError(f"token.tag_scheme {token.tag_scheme!r} is not one of {list(TAG_SCHEMES)}.",
                                      path=path, fix=_FIX)
    try:
        BioTags(labels)
    except ValueError as exc:
        raise IncompatibleBundleError(f"labels are not BIO tags: {exc}", path=path, fix=_FIX) from None


def is_token_task(manifest_or_task: Any) -> bool:
    """Whether a manifest (or checkpoint, or task name) is for token classification."""
    task = getattr(manifest_or_task, "task", manifest_or_task)
    return task == TOKEN_CLASSIFICATION


def require_task(manifest: Any, expected: str, call: str, path: str | Path | None = None) -> None:
    """Raise :class:`TaskMismatchError` naming the right call unless ``manifest.task == expected``."""
    task = getattr(manifest, "task", SEQUENCE_CLASSIFICATION)
    if task != expected:
        raise TaskMismatchError(f"{call} is for {expected} bundles, but this bundle is for {task}.", path=path,
                                fix=f"call {_CALLS[task]}.")
