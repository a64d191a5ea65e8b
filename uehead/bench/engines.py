"""The engines a benchmark compares, by name: the runtime's bundles and the peers (torch-free).

A bundle's engine is named after its backbone precision (``uehead-fp32``, ``uehead-int8``); the
peers' names are :data:`PEERS` (built by :mod:`uehead.bench.peers`, which needs the export
extra). An engine is a callable ``(texts, batch_size) -> probabilities [N, C]``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["BASELINE", "PEERS", "bundle_engine_name", "peer_names", "runtime_engine"]

#: What a user would otherwise pick for the same merged model (see :mod:`uehead.bench.peers`).
PEERS = ("pytorch-fp32", "pytorch-int8", "optimum-fp32", "optimum-int8", "optimum-pipeline-fp32", "optimum-o2-fp32",
         "optimum-o3-fp32", "optimum-o2-int8", "optimum-o3-int8", "optimum-static-int8")
#: The engine every speed-up is relative to (``x_vs_pytorch-fp32``).
BASELINE = "pytorch-fp32"


def peer_names(only: Sequence[str] | None = None) -> list[str]:
    """The peers asked for (``None``: all of :data:`PEERS`); ValueError naming the known ones."""
    wanted = list(only or PEERS)
    unknown = [w for w in wanted if w not in PEERS]
    if unknown:
        raise ValueError(f"unknown peers {unknown}; choose among {list(PEERS)}.")
    return wanted


def bundle_engine_name(bundle: str | os.PathLike) -> str:
    """``uehead-fp32`` / ``uehead-int8`` from the manifest's backbone precision."""
    from uehead.bundle import read_manifest

    return f"uehead-{read_manifest(bundle).backbone.precision}"


def runtime_engine(model) -> Callable[[list[str], int], Any]:
    """A loaded runtime :class:`~uehead.runtime.model.Model` as an engine."""
    return lambda texts, b: model.predict(texts, batch_size=b).probs

