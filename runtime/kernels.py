"""Score kernels: fused, numerically stable numba kernels for the task and uncertainty-head logits.

API (definitions in :mod:`uehead.scores`, which these match to 1e-6 for float32 input; every
uncertainty score is **higher = more uncertain**):
    task_outputs(logits) -> (probs [N,C], softmax_response [N], entropy [N], normalized_entropy [N])
    adue_uncertainty(logits, lam=100.0) -> [N]      1 - SmoothMax_lam(softmax(logits))
    alien_uncertainty(logits) -> [N]                normalised entropy of softmax(logits)
    linear_head_kernel() -> callable                the fused linear head + scores kernel (float32 z)
    warmup() -> None                                load (or build) the kernels, run them once
    backend_info() -> dict                          which implementation runs, and why
    build_aot(cache_dir=None, force=False) -> str   compile the AOT module now
Outputs are float32. ``logits`` is any real array of shape [N, C] (N >= 0, C >= 2; float32 and
float64 run as is, other dtypes are converted to float64, non-contiguous input is copied).
NaN or +-inf anywhere raises ``NonFiniteLogitsError`` (a ValueError) naming the first bad row.
All functions are thread-safe (no shared mutable state; scratch memory is per call).

Two implementations of the same numba source (``_kernels_impl.py``), chosen on first use:
- ``aot``: an extension module compiled ahead of time by ``numba.pycc`` into the per-user cache
  (``_kernels_aot.py``). Loading it imports neither numba nor llvmlite, which is what makes a
  cold start cheap (see ``benchmarks/bench_coldstart_kernels.py``). It is built once
  per machine (and per kernel source / numba / Python version) by
  ``python -m uehead.runtime.kernels --build``, or automatically, in a child process, the first
  time the kernels are used (once per machine).
- ``jit``: ``numba.njit(cache=True)``, used when the AOT module cannot be built (no C compiler,
  no Python headers, no setuptools), with the reason logged as a warning.
The environment variable ``UEHEAD_KERNELS`` picks: ``auto`` (default: aot, else jit), ``aot``
(fail if unavailable), ``jit``. ``UEHEAD_CACHE_DIR`` moves the cache (default
``~/.cache/uehead``); the JIT path keeps numba's cache there too unless ``NUMBA_CACHE_DIR`` is set.
"""
from __future__ import annotations

import importlib
import logging
import os
import threading

import numpy as np

from uehead.runtime import _kernels_aot
from uehead.errors import NonFiniteLogitsError

__all__ = ["task_outputs", "adue_uncertainty", "alien_uncertainty", "linear_head_kernel", "warmup", "backend_info",
           "build_aot", "NonFiniteLogitsError"]

log = logging.getLogger(__name__)

_MODES = ("auto", "aot", "jit")
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


class _AotBackend:
    name = "aot"

    def __init__(self, module, path, built_now):
        self.path, self.reason = str(path), ("built now" if built_now else "loaded from cache")
        m = module
        self.task = {_F32: m.task_f4, _F64: m.task_f8}
        self.adue = {_F32: m.adue_f4, _F64: m.adue_f8}
        self.alien = {_F32: m.alien_f4, _F64: m.alien_f8}
        self.linear_head = {_F32: m.linear_head_f4, _F64: m.linear_head_f8}

    @staticmethod
    def prepare(x):
        return x


class _JitBackend:
    name = "jit"

    def __init__(self, reason: str, cache_dir=None):
        from numba.core import config

        self.reason, self.path = reason, None
        old = config.CACHE_DIR
        if not old:  # keep numba's cache files for these kernels in uehead's cache folder
            config.CACHE_DIR = str(_kernels_aot.cache_root(cache_dir) / "numba")
        try:  # the cache locator is chosen when the decorators run, i.e. here
            impl = importlib.import_module("uehead.runtime._kernels_impl")
            jitted = impl.jit_entry_points()
        finally:
            config.CACHE_DIR = old
        self.task = {_F32: jitted["task"], _F64: jitted["task"]}
        self.adue = {_F32: jitted["adue"], _F64: jitted["adue"]}
        self.alien = {_F32: jitted["alien"], _F64: jitted["alien"]}
        self.linear_head = {_F32: jitted["linear_head"], _F64: jitted["linear_head"]}

    @staticmethod
    def prepare(x):
        # A read-only array is a different numba type (one more compilation); copy it instead.
        return x if x.flags.writeable else x.copy()


_backend = None
_lock = threading.Lock()


def _mode() -> str:
    mode = os.environ.get("UEHEAD_KERNELS", "auto").strip().lower() or "auto"
    if mode not in _MODES:
        raise ValueError(f"UEHEAD_KERNELS must be one of {_MODES}, got {mode!r}")
    return mode


def _load_backend(mode: str, cache_dir=None):
    reason = "UEHEAD_KERNELS=jit"
    if mode in ("auto", "aot"):
        try:
            if mode == "auto" and not _kernels_aot.module_path(cache_dir).exists():
                log.info("uehead kernels: compiling the numba kernels ahead of time into %s "
                         "(once per machine)", _kernels_aot.cache_root(cache_dir))
            return _AotBackend(*_kernels_aot.ensure(cache_dir))
        except Exception as exc:  # AotUnavailable, or an unloadable module (ImportError, OSError)
            if mode == "aot":
                raise RuntimeError(f"UEHEAD_KERNELS=aot but the AOT kernels are unavailable: {exc}") from exc
            reason = f"AOT kernels unavailable ({exc})"
            log.warning("uehead kernels: %s; using numba JIT (cache=True) instead", reason)
    return _JitBackend(reason, cache_dir)


def _get_backend():
    global _backend
    backend = _backend
    if backend is None:
        with _lock:
            if _backend is None:
                _backend = _load_backend(_mode())
            backend = _backend
    return backend


def _reset_backend(mode: str | None = None, cache_dir=None):
    """Drop the loaded implementation and load ``mode`` (or the environment's) again. For tests and
    benchmarks; returns the new backend."""
    global _backend
    with _lock:
        _backend = None
        _backend = _load_backend(mode or _mode(), cache_dir)
        return _backend


def _as_logits(logits, name: str = "logits") -> np.ndarray:
    x = np.asarray(logits)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"{name} must have shape [N, C] with C >= 2, got {x.shape}")
    if x.dtype != _F32 and x.dtype != _F64:
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a real-valued array, got dtype {x.dtype}")
        x = x.astype(np.float64)
    if not (x.flags.c_contiguous and x.flags.aligned):  # the compiled kernels assume both
        x = np.array(x, order="C", copy=True)
    return x


def _raise_nonfinite(x: np.ndarray, row: int, name: str = "logits"):
    col = int(np.flatnonzero(~np.isfinite(x[row]))[0])
    raise NonFiniteLogitsError(
        f"{name} contain NaN or inf (first at row {row}, class {col}); "
        "check the model/bundle (re-run `uehead verify`).")


def task_outputs(logits):
    """(probs [N,C], softmax_response [N], entropy [N], normalized_entropy [N]) for task logits.

    One fused pass per block of rows. softmax_response = 1 - max p (in [0, 1 - 1/C]), entropy in
    nats (in [0, log C]), normalized_entropy = entropy / log C (in [0, 1]): all higher = more
    uncertain. Raises NonFiniteLogitsError on NaN/inf.
    """
    x = _as_logits(logits)
    b = _get_backend()
    x = b.prepare(x)
    n, c = x.shape
    probs = np.empty((n, c), np.float32)
    sr = np.empty(n, np.float32)
    h = np.empty(n, np.float32)
    hn = np.empty(n, np.float32)
    bad = b.task[x.dtype](x, probs, sr, h, hn)
    if bad >= 0:
        _raise_nonfinite(x, bad)
    return probs, sr, h, hn


def adue_uncertainty(logits, lam: float = 100.0):
    """U_AdUE = 1 - SmoothMax_lam(softmax(logits)) [N] float32. Higher = more uncertain.

    May be slightly negative (down to -log(C)/lam) since SmoothMax can exceed max p. ``lam`` must
    be a finite number > 0. Raises NonFiniteLogitsError on NaN/inf.
    """
    lam = float(lam)
    if not (lam > 0 and np.isfinite(lam)):
        raise ValueError(f"lambda must be a finite number > 0, got {lam}")
    x = _as_logits(logits)
    b = _get_backend()
    x = b.prepare(x)
    u = np.empty(x.shape[0], np.float32)
    bad = b.adue[x.dtype](x, lam, u)
    if bad >= 0:
        _raise_nonfinite(x, bad)
    return u


def alien_uncertainty(logits):
    """U_ALIEN = H(softmax(logits)) / log C [N] float32, in [0, 1]. Higher = more uncertain.

    Raises NonFiniteLogitsError on NaN/inf.
    """
    x = _as_logits(logits)
    b = _get_backend()
    x = b.prepare(x)
    u = np.empty(x.shape[0], np.float32)
    bad = b.alien[x.dtype](x, u)
    if bad >= 0:
        _raise_nonfinite(x, bad)
    return u


def linear_head_kernel():
    """The fused kernel of :mod:`uehead.runtime.linear_head` for float32 features:
    ``fn(z, w, b, rows, c, kinds, lams, probs, ids, scores) -> int`` (see ``_kernels_impl``).
    Returned bare so a caller can bind it once: it checks nothing, every array must be
    C-contiguous, writeable and of the documented dtype."""
    return _get_backend().linear_head[_F32]


def warmup() -> None:
    """Load the kernels (building the AOT module on first use ever) and run each once (float32,
    both the two-class and the general code path), so the first real call pays nothing extra."""
    for c in (2, 3):
        x = np.zeros((1, c), np.float32)
        task_outputs(x)
        adue_uncertainty(x)
        alien_uncertainty(x)


def backend_info() -> dict:
    """{'backend': 'aot' | 'jit', 'reason': why, 'path': the AOT module or None}; loads the kernels."""
    b = _get_backend()
    return {"backend": b.name, "reason": b.reason, "path": b.path}


def build_aot(cache_dir=None, force: bool = False) -> str:
    """Compile the AOT kernels into the cache now (in a child process, keeping numba out of this
    one) and return the module path. ``force`` rebuilds (also after a recorded failed build)."""
    if force:
        path = _kernels_aot.module_path(cache_dir)
        (path.parent / _kernels_aot.FAILED_MARKER).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
    return str(_kernels_aot.ensure(cache_dir)[1])


if __name__ == "__main__":
    import sys

    sys.exit(_kernels_aot.main())
