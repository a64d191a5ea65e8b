"""BIO (IOB2) tags: checking tag names, repairing tag sequences, and decoding them into entity spans.

Tag names are ``O`` and ``B-X`` / ``I-X`` per entity type X (``O`` need not come first, but every
``I-X`` needs its ``B-X``). One rule serves training data and predictions alike, the rule of the
standard entity-level scorer (``seqeval``'s default, the conlleval script's): an ``I-X`` that
follows ``O``, the sentence start, or a tag of another type begins a new entity, i.e. it is read
as ``B-X``. :meth:`BioTags.repair` rewrites such tags (training counts them in its report);
:meth:`BioTags.spans` decodes entities after that repair. Torch-free, numpy only.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BioTags", "Span"]

OUTSIDE = "O"


@dataclass(frozen=True)
class Span:
    """One entity: words ``[start, end)`` of a sentence, of type ``label``."""

    start: int
    end: int
    label: str


class BioTags:
    """A BIO tag set (``names[i]`` = tag id i). Raises ValueError for names that are not BIO tags.

    Attributes: ``names``, ``types`` (entity types in order of their ``B-`` tag), ``outside_id``.
    """

    def __init__(self, names: Sequence[str]):
        self.names = tuple(str(n) for n in names)
        if OUTSIDE not in self.names:
            raise ValueError(f"no {OUTSIDE!r} tag among {list(self.names)}")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"tag names repeat: {list(self.names)}")
        self.outside_id = self.names.index(OUTSIDE)
        begin: dict[str, int] = {}
        kind = np.zeros(len(self.names), np.int8)        # 0 = O, 1 = B, 2 = I
        type_of = np.full(len(self.names), -1, np.int64)  # index into types
        for i, name in enumerate(self.names):
            if name == OUTSIDE:
                continue
            prefix, sep, label = name.partition("-")
            if sep != "-" or prefix not in ("B", "I") or not label:
                raise ValueError(f"tag {name!r} is neither 'O' nor 'B-<type>' / 'I-<type>'")
            if prefix == "B":
                begin[label] = i
            kind[i] = 1 if prefix == "B" else 2
        self.types = tuple(begin)
        for i, name in enumerate(self.names):
            if kind[i]:
                label = name[2:]
                if label not in begin:
                    raise ValueError(f"tag {name!r} has no matching 'B-{label}'")
                type_of[i] = self.types.index(label)
        self._kind, self._type_of = kind, type_of
        self._begin_of_type = np.asarray([begin[t] for t in self.types], np.int64)

    def __len__(self) -> int:
        return len(self.names)

    def _broken(self, ids: np.ndarray) -> np.ndarray:
        """Positions holding an I-X that starts an entity (after O, the start, or another type)."""
        kind, typ = self._kind[ids], self._type_of[ids]
        prev_kind = np.concatenate([[0], kind[:-1]])
        prev_type = np.concatenate([[-1], typ[:-1]])
        return (kind == 2) & ((prev_kind == 0) | (prev_type != typ))

    def repair(self, tag_ids) -> tuple[np.ndarray, int]:
        """(tag ids with each entity-starting ``I-X`` rewritten as ``B-X``, how many were rewritten)."""
        ids = np.asarray(tag_ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.names)):
            raise ValueError(f"tag ids must lie in [0, {len(self.names)}), got {int(ids.min())}..{int(ids.max())}")
        broken = self._broken(ids)
        if not broken.any():
            return ids, 0
        fixed = ids.copy()
        fixed[broken] = self._begin_of_type[self._type_of[ids[broken]]]
        return fixed, int(broken.sum())

    def spans(self, tag_ids) -> list[Span]:
        """The entities of one sentence's tags (after :meth:`repair`), in order."""
        ids, _ = self.repair(tag_ids)
        out: list[Span] = []
        start = None
        for i, t in enumerate(ids.tolist()):
            k = self._kind[t]
            if start is not None and k != 2:  # O or B closes the open entity
                out.append(Span(start, i, self.types[self._type_of[ids[start]]]))
                start = None
            if k == 1:
                start = i
        if start is not None:
            out.append(Span(start, len(ids), self.types[self._type_of[ids[start]]]))
        return out

    def tag_names(self, tag_ids) -> list[str]:
        return [self.names[i] for i in np.asarray(tag_ids, dtype=np.int64).tolist()]
