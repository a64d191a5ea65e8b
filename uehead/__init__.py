"""uehead: uncertainty heads (AdUE, ALIEN) for fine-tuned transformer classifiers.

Every uncertainty score in this package follows one convention: **higher = more uncertain**.

The default install is the torch-free runtime (``uehead.runtime``); the training and export
stages need the ``[train]`` and ``[export]`` extras. ``import uehead`` imports nothing heavy:
``uehead.runtime`` is loaded on first attribute access.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["__version__", "runtime"]


def __getattr__(name: str):
    if name == "runtime":
        return importlib.import_module("uehead.runtime")
    raise AttributeError(f"module 'uehead' has no attribute {name!r}")
