"""Typed errors of the export stage.

They extend :class:`uehead.bundle.BundleError` (``path`` + ``fix`` in the message) so that the
``uehead export`` command reports them as one-line errors with exit status 2. A checkpoint that
cannot be read raises :class:`uehead.checkpoint.CheckpointError` (re-exported by ``uehead.export``).
"""
from __future__ import annotations

from typing import Any

from uehead.bundle import BundleError


class ExportError(BundleError):
    """The export stage cannot produce a bundle."""


class ExportValidationError(ExportError):
    """ONNX Runtime's outputs differ from PyTorch's beyond tolerance.

    ``report`` holds every compared output's max abs diff, per case (see ``validate.py``).
    """

    def __init__(self, message: str, *, report: dict[str, Any] | None = None, **kwargs: Any):
        self.report = report or {}
        super().__init__(message, **kwargs)
