"""The types and ranges of ``manifest.json``'s fields, checked before any of them is used.

:func:`check_fields` runs on the parsed JSON (after the format name and version are known to be
readable, see :func:`newer_format_error`) and raises a :class:`~uehead.errors.BundleError` naming
the field by its dotted path (``head.heads[0].lam``) and the file, instead of the ``TypeError`` or
silent misreading a wrong-typed value would cause later (``"128"`` as a length, ``"ab"`` read as
the labels ``a``, ``b``). A value out of its range raises
:class:`~uehead.errors.IncompatibleBundleError`. Absent fields are left to the manifest reader (it
fills defaults and names missing required ones); unknown fields are ignored.

The cross-field checks (labels vs ``num_classes``, head kinds, file names) stay in
:mod:`uehead.bundle`; this module adds one: ``tokenizer.max_length`` must fit the backbone's
``max_positions`` when the bundle records it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from uehead.errors import BundleError, BundleVersionError, IncompatibleBundleError

__all__ = ["check_fields", "newer_format_error"]

_FIX = "re-export the bundle with `uehead export` (or restore the manifest)."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_text(v: Any) -> bool:
    """A str that UTF-8 can encode (a JSON escape such as \\ud800 decodes to one it cannot)."""
    if not isinstance(v, str):
        return False
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: kind -> (description, test)
_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "str": ("a string (valid Unicode)", _is_text),
    "int": ("an integer", _is_int),
    "count": ("an integer", _is_int),
    "number": ("a finite number", lambda v: (_is_int(v) or isinstance(v, float)) and math.isfinite(v)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "object": ("an object", lambda v: isinstance(v, dict)),
    "list": ("a list", lambda v: isinstance(v, list)),
    "strs": ("a list of strings (valid Unicode)", lambda v: isinstance(v, list) and all(_is_text(x) for x in v)),
    "object?": ("an object or null", lambda v: v is None or isinstance(v, dict)),
}

#: Integers beyond this are no length, id or size a runtime can use (they do not fit int32).
_INT_MAX = 2**31 - 1
#: section -> field -> (kind, minimum or None); integers are also at most _INT_MAX (counts: int64)
_SECTIONS: dict[str, dict[str, tuple[str, int | None]]] = {
    "tokenizer": {"file": ("str", None), "sha256": ("str", None), "max_length": ("int", 1),
                  "pad_token_id": ("int", 0), "truncation_side": ("str", None), "model_input_names": ("strs", None)},
    "backbone": {"file": ("str", None), "sha256": ("str", None), "input_names": ("strs", None),
                 "output_name": ("str", None), "feature_size": ("int", 1), "architecture": ("str", None),
                 "pooling": ("str", None), "precision": ("str", None), "num_parameters": ("count", 0),
                 "max_positions": ("int", 0)},
    "head": {"file": ("str", None), "sha256": ("str", None), "input_name": ("str", None),
             "task_logits_name": ("str", None), "num_classes": ("int", 1), "heads": ("list", None),
             "default_kind": ("str", None), "num_parameters": ("count", 0)},
    "head.heads[]": {"kind": ("str", None), "output_name": ("str", None), "lam": ("number", None),
                     "hyperparameters": ("object", None), "validation": ("object", None)},
    "file": {"file": ("str", None), "sha256": ("str", None), "settings": ("object", None)},
}
_TOP = {"labels": ("strs", None), "writer": ("object?", None), "reports": ("object?", None),
        "tokenizer": ("object", None), "backbone": ("object", None), "head": ("object", None)}
_SETTINGS = {"baselines": {"l2_normalize": ("bool", None)}}


def _check(data: dict, fields: dict[str, tuple[str, int | None]], where: str, path: Path) -> None:
    for name, (kind, minimum) in fields.items():
        if name not in data:
            continue
        value, (desc, test) = data[name], _KINDS[kind]
        field = f"{where}.{name}" if where else name
        if not test(value):
            raise BundleError(f"'{field}' must be {desc}, got {type(value).__name__} {value!r:.60}.", path=path,
                              fix=_FIX)
        maximum = {"int": _INT_MAX, "count": 2**63 - 1}.get(kind)
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            bounds = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
            raise IncompatibleBundleError(f"'{field}' is {value}; it must be {bounds}.", path=path, fix=_FIX)


def check_fields(data: dict[str, Any], path: Path, *, optional_files: tuple[str, ...] = ()) -> None:
    """Check every present field of a manifest dict against its type and range (module docstring);
    ``optional_files`` names the optional file entries (each null or a file object)."""
    _check(data, _TOP, "", path)
    for section in ("tokenizer", "backbone", "head"):
        if isinstance(data.get(section), dict):
            _check(data[section], _SECTIONS[section], section, path)
    head = data.get("head")
    heads = head.get("heads") if isinstance(head, dict) else None
    for i, h in enumerate(heads if isinstance(heads, list) else []):
        if isinstance(h, dict):
            _check(h, _SECTIONS["head.heads[]"], f"head.heads[{i}]", path)
    for name in optional_files:
        spec = data.get(name)
        if spec is not None and not isinstance(spec, dict):
            raise BundleError(f"'{name}' must be an object or null, got {type(spec).__name__}.", path=path, fix=_FIX)
        if spec is not None:
            _check(spec, _SECTIONS["file"], name, path)
            if isinstance(spec.get("settings"), dict) and name in _SETTINGS:
                _check(spec["settings"], _SETTINGS[name], f"{name}.settings", path)
    _check_position_limit(data, path)


def _check_position_limit(data: dict, path: Path) -> None:
    tok, backbone = data.get("tokenizer"), data.get("backbone")
    if not (isinstance(tok, dict) and isinstance(backbone, dict)):
        return
    limit, length = backbone.get("max_positions", 0), tok.get("max_length")
    if limit and _is_int(length) and length > limit:
        raise IncompatibleBundleError(
            f"tokenizer.max_length {length} exceeds backbone.max_positions {limit}: the backbone has no "
            "position embeddings past that many tokens.", path=path,
            fix=f"set tokenizer.max_length to at most {limit} (train and export with --max-length {limit}).")


def newer_format_error(data: dict[str, Any], version: int, reader_version: int, path: Path) -> BundleVersionError:
    """The error for a manifest of a ``format_version`` newer than this reader's: it names the writer
    when the manifest records one (whatever the rest of the manifest looks like)."""
    writer = data.get("writer")
    writer = writer.get("uehead") if isinstance(writer, dict) else None
    if isinstance(writer, str) and writer:
        written, fix = f"it was written by uehead {writer}", f"pip install -U 'uehead>={writer}'"
    else:
        written, fix = "it was written by a newer uehead", "pip install -U uehead"
    return BundleVersionError(f"format_version {version} is newer than this runtime reads ({reader_version}); "
                              f"{written}.", path=path,
                              fix=f"upgrade the runtime ({fix}) or re-export with this version.")
