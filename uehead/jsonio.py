"""JSON in and out for every file uehead writes (manifest, golden.json, training.json, reports).

One conversion rule everywhere: numpy scalars and arrays become plain numbers and lists, paths
become strings, objects with ``to_dict()`` become that dict, and NaN/inf become null (so every
file is strict JSON).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from uehead.errors import UeheadError

__all__ = ["to_jsonable", "read_json_object", "write_json_atomic"]


def to_jsonable(obj: Any) -> Any:
    """``obj`` with every value JSON can hold (see the module docstring)."""
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def read_json_object(path: str | os.PathLike, error: type[UeheadError], fix: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``error`` (naming the file and ``fix``) when it is missing, not
    UTF-8 JSON, or not an object."""
    path = Path(path)
    if not path.is_file():
        raise error("is missing.", path=path, fix=fix)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"is not valid UTF-8 JSON ({exc}).", path=path, fix=fix) from exc
    if not isinstance(data, dict):
        raise error("must hold a JSON object.", path=path, fix=fix)
    return data


def write_json_atomic(path: str | os.PathLike, data: Any, *, indent: int | None = 2) -> Path:
    """Write ``to_jsonable(data)`` to ``path`` through a temporary sibling and a rename, so a reader
    never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(data), indent=indent, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
