"""Torch-free runtime: ONNX Runtime + numba kernels + tokenizers. Never imports torch.

Public API (imported lazily so that ``import uehead.runtime`` stays light):
    load(bundle, **session_options) -> Model      Model.predict(texts) -> Predictions
    verify(bundle) -> dict                        make_session(path, ...) -> onnxruntime.InferenceSession
"""
from __future__ import annotations

import importlib

_LAZY = {
    "load": "uehead.runtime.loading",
    "Model": "uehead.runtime.model",
    "Predictions": "uehead.runtime.predictions",
    "verify": "uehead.runtime.verification",
    "make_session": "uehead.runtime.session",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # cache
        return value
    raise AttributeError(f"module 'uehead.runtime' has no attribute {name!r}")
