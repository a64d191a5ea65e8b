"""Every error type uehead raises on purpose, in one place.

All of them carry the offending ``path`` (when there is one) and a ``fix`` that says what to do;
the command line prints them as one line and exits with status 2.

    UeheadError
    +-- BundleError                    a bundle cannot be used
    |   +-- MissingFileError           a file the manifest names (or the manifest) is absent
    |   +-- ChecksumError              a file's sha256 differs from the manifest's
    |   +-- BundleVersionError         written by a newer format than this reader knows
    |   +-- IncompatibleBundleError    the pieces do not fit together (shapes, names, kinds)
    |   +-- TaskMismatchError          the call does not fit the bundle's task (predict vs predict_tokens)
    +-- CheckpointError                a training checkpoint is missing a file or is malformed
    +-- DataError (also ValueError)    a dataset / input file or an option is malformed
    +-- UnknownScoreError (ValueError) a score or head kind name nobody registered

``NonFiniteLogitsError`` (a ValueError) is raised by the score functions when a model emits NaN
or inf logits.
"""
from __future__ import annotations

import os


class UeheadError(Exception):
    """Base of uehead's errors. ``path`` is the offending file; ``fix`` says what to do."""

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, fix: str | None = None):
        self.path = None if path is None else str(path)
        self.fix = fix
        text = message
        if self.path:
            text = f"{self.path}: {text}"
        if fix:
            text = f"{text} Fix: {fix}"
        super().__init__(text)


class BundleError(UeheadError):
    """A bundle cannot be used. ``path`` is the offending file; ``fix`` says what to do."""


class MissingFileError(BundleError):
    """A file the manifest names (or the manifest itself) is absent."""


class ChecksumError(BundleError):
    """A file's sha256 differs from the manifest's: the file was altered or truncated."""


class BundleVersionError(BundleError):
    """The manifest was written by a newer format than this runtime reads."""


class IncompatibleBundleError(BundleError):
    """The pieces of a bundle do not fit together (shapes, names, head kinds)."""


class TaskMismatchError(BundleError):
    """A call made for another task: ``predict(texts)`` on a token-classification bundle, or
    ``predict_tokens`` on a sequence-classification one. The message names the right call."""


class CheckpointError(UeheadError):
    """A checkpoint file is missing or malformed; the message names it and the fix."""


class DataError(UeheadError, ValueError):
    """A dataset file, an input file or an option is missing or malformed. The message names the
    file (and line, or row) and the fix."""


class UnknownScoreError(UeheadError, ValueError):
    """A score or head-kind name that is not registered; the message lists the known ones."""


class NonFiniteLogitsError(ValueError):
    """Logits contain NaN or +-inf: the model output is broken, scores would be garbage."""
