"""Parsing helpers of reproduce_paper.py's options (per-dataset caps, positive ints, output names)."""
from __future__ import annotations

import os
from pathlib import Path

from paper.config import ReproError

__all__ = ["max_train_cap", "per_dataset", "positive_int", "slug"]


def per_dataset(value: str | None, names, default, cast, flag: str) -> dict:
    """``"N"`` (every dataset) or ``"name=N,name=N"`` (others keep ``default(name)``)."""
    out = {n: default(n) for n in names}
    if value is None:
        return out
    value = value.strip()
    if "=" not in value:
        return {n: cast(value, flag) for n in names}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, _, v = part.partition("=")
        if name.strip() not in out:
            raise ReproError(f"{flag} {value!r}: {name.strip()!r} is not one of --names ({', '.join(names)})")
        out[name.strip()] = cast(v.strip(), flag)
    return out


def positive_int(v: str, flag: str) -> int:
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise ReproError(f"{flag} {v!r}: expected a positive integer")
    return n


def max_train_cap(v: str, flag: str) -> int | None:
    return None if v.lower() in ("all", "none") else positive_int(v, flag)


def slug(model: str) -> str:
    """A file-name-safe name of the ``--model`` argument (a local path by its folder name)."""
    name = Path(model).name if os.sep in model or Path(model).exists() else model
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"
