"""What ``Model.predict_tokens`` and ``Model.predict_entities`` return: one record per sentence.

Every uncertainty score is **higher = more uncertain**; every per-word array is aligned one-to-one
with the input words.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from uehead.bio import BioTags

__all__ = ["TokenPrediction", "Entity", "EntityPrediction"]


@dataclass(frozen=True)
class Entity:
    """One predicted entity.

    Attributes:
        text: the entity's characters (``predict_entities``), or its words joined by single spaces.
        label: the entity type (``PER``, ``LOC``, ... : the tag names without ``B-`` / ``I-``).
        start, end: character offsets ``[start, end)`` in the input text (``predict_entities``), or
            in the words joined by single spaces (``TokenPrediction.entities``).
        uncertainty: the max of the default score over the entity's words (higher = more uncertain).
        word_start, word_end: its words ``[word_start, word_end)`` in the sentence.
    """

    text: str
    label: str
    start: int
    end: int
    uncertainty: float
    word_start: int
    word_end: int

    def to_dict(self) -> dict:
        return {"text": self.text, "label": self.label, "start": self.start, "end": self.end,
                "uncertainty": self.uncertainty, "word_start": self.word_start, "word_end": self.word_end}


@dataclass(frozen=True, eq=False, repr=False)
class TokenPrediction:
    """Tags and scores of one sentence, one entry per input word.

    Attributes:
        words: the input words.
        tags: predicted tag names, list of n str.
        tag_ids: int64 [n].
        probs: float32 [n, C], softmax of each word's tag logits.
        uncertainty: float32 [n], the bundle's default score (named by ``uncertainty_kind``).
        uncertainty_kind: a head kind ("adue", "alien") or "sr".
        scores: every score, name -> float32 [n]: "sr", "entropy", each head kind, and "md", "rmd"
            when asked for and the bundle has baselines.
        scored: bool [n]; False for a word that made no token (empty, whitespace, or only
            characters the normaliser removes): it is tagged "O" with probability 1 and every score 0.
        windows: how many windows of the bundle's max_length the sentence took (1 unless it is long).
        scheme: the bundle's BIO tags (decodes ``entities``).
    """

    words: list[str]
    tags: list[str]
    tag_ids: np.ndarray
    probs: np.ndarray
    uncertainty: np.ndarray
    uncertainty_kind: str
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    scored: np.ndarray | None = None
    windows: int = 1
    scheme: BioTags | None = None

    def __len__(self) -> int:
        return len(self.words)

    @property
    def sentence_uncertainty(self) -> float:
        """The max of ``uncertainty`` over the words (0.0 for an empty sentence)."""
        return self.sentence_score()

    @property
    def sentence_uncertainty_mean(self) -> float:
        """The mean of ``uncertainty`` over the words (0.0 for an empty sentence)."""
        return self.sentence_score(how="mean")

    def sentence_score(self, name: str | None = None, how: str = "max") -> float:
        """One score for the sentence: the max (``how="max"``) or mean of score ``name`` (default:
        the uncertainty) over its words; 0.0 for an empty sentence. Higher = more uncertain."""
        u = self.uncertainty if name is None else self.scores[name]
        if how not in ("max", "mean"):
            raise ValueError(f"how={how!r}: choose 'max' or 'mean'")
        if not len(u):
            return 0.0
        return float(u.max() if how == "max" else u.mean())

    @property
    def entities(self) -> list[Entity]:
        """The BIO-decoded entities (an ``I-X`` after ``O`` or another type starts one), offsets in
        the words joined by single spaces."""
        starts = np.cumsum([0] + [len(w) + 1 for w in self.words])
        return self.entities_at(starts[:-1], starts[:-1] + np.asarray([len(w) for w in self.words], np.int64))

    def entities_at(self, starts, ends, text: str | None = None) -> list[Entity]:
        """Entities with word ``i`` at characters ``[starts[i], ends[i])`` of ``text`` (default:
        the words joined by single spaces)."""
        if self.scheme is None:
            return []
        text = " ".join(self.words) if text is None else text
        out = []
        for span in self.scheme.spans(self.tag_ids):
            a, b = int(starts[span.start]), int(ends[span.end - 1])
            out.append(Entity(text[a:b], span.label, a, b, float(self.uncertainty[span.start:span.end].max()),
                              span.start, span.end))
        return out

    def to_dict(self) -> dict:
        """JSON-ready per-word fields (lists) and the sentence uncertainty."""
        return {"words": list(self.words), "tags": list(self.tags), "tag_ids": self.tag_ids.tolist(),
                "uncertainty": self.uncertainty.tolist(), "uncertainty_kind": self.uncertainty_kind,
                "scores": {k: v.tolist() for k, v in self.scores.items()},
                "sentence_uncertainty": self.sentence_uncertainty,
                "entities": [e.to_dict() for e in self.entities]}

    def __repr__(self) -> str:
        return (f"TokenPrediction(words={len(self.words)}, tags={self.tags[:8]}{'...' if len(self) > 8 else ''}, "
                f"sentence_uncertainty={self.sentence_uncertainty:.4f}, uncertainty_kind={self.uncertainty_kind!r})")


@dataclass(frozen=True, eq=False)
class EntityPrediction:
    """Entities of one raw text, and the per-word view they were decoded from.

    Attributes:
        text: the input text.
        entities: the entities, in order (character offsets into ``text``).
        tokens: the :class:`TokenPrediction` of the text's words.
        offsets: int64 [n, 2], each word's ``[start, end)`` in ``text``.
    """

    text: str
    entities: list[Entity]
    tokens: TokenPrediction
    offsets: np.ndarray

    @property
    def sentence_uncertainty(self) -> float:
        return self.tokens.sentence_uncertainty

    def to_dict(self) -> dict:
        return {"text": self.text, "entities": [e.to_dict() for e in self.entities],
                "offsets": self.offsets.tolist(), **{k: v for k, v in self.tokens.to_dict().items()
                                                       if k != "entities"}}
