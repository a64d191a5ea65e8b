"""Import guards for the heavy optional stages (model2vec style)."""
from __future__ import annotations

import importlib


def require_extra(subpackage: str, extra: str, modules: list[str]) -> None:
    """Import each module or raise ImportError naming the ``pip install`` command.

    Called at the top of ``uehead.training`` and ``uehead.export`` so that a runtime-only
    install fails early with a fix instead of a deep ``ModuleNotFoundError``.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(
                f"{subpackage} needs the optional dependency '{name}', which is not installed. "
                f"Install the extra with: pip install 'uehead[{extra}]' "
                f"(pin the tested stack with: -c constraints.txt)"
            ) from exc


def installed_versions(names) -> dict[str, str]:
    """``{distribution: version}`` for each installed distribution in ``names`` (missing ones omitted).
    Recorded by every artifact uehead writes (checkpoints, bundles, evaluation JSON)."""
    from importlib import metadata  # noqa: PLC0415

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
