"""Mahalanobis baselines (MD, RMD) in numpy: fitted by training, served by the runtime.

This is the one implementation of both scores: ``uehead train`` fits the statistics with
:func:`fit_mahalanobis` and reports its scores through :class:`Baselines`; the checkpoint's
``baselines/md.npz`` becomes the bundle's ``baselines.npz`` unchanged, which the runtime reads
back with :func:`load_baselines` into the same class. The saved arrays (float64, keys
:data:`uehead.bundle.BASELINE_KEYS`, loaded with ``allow_pickle=False``):

    class_means       [C, H]  per-class means of the training features z
    precision         [H, H]  pseudo-inverse of the shared (within-class) covariance
    global_mean       [H]     class-agnostic mean (the "background" of RMD)
    global_precision  [H, H]  pseudo-inverse of the class-agnostic covariance

* MD  (Lee et al. 2018): min_c (z - mu_c)^T P (z - mu_c).
* RMD (Ren et al. 2021): min_c MD_c(z) - MD_0(z), MD_0 with the class-agnostic mean and precision.

Both scores are **higher = more uncertain** (farther from the training classes). The manifest's
``baselines.settings["l2_normalize"]`` says whether z is L2-normalised first (the statistics were
then fitted on normalised z too).

Scores depend on the saved arrays only: a factor A with A A^T = P (from the eigendecomposition of
P) projects z and the means, and each distance is the squared norm of a projected difference, so
there is no cancellation of expanded squares and a distance costs O(rank) per class.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uehead.bundle import BASELINE_KEYS, BundleError, IncompatibleBundleError

__all__ = ["Baselines", "fit_mahalanobis", "load_baselines", "l2_normalize", "pseudo_inverse"]

#: Covariance eigenvalues at or below this fraction of the largest are dropped by the pseudo-inverse,
#: so fewer training rows than feature dimensions still give finite distances.
COVARIANCE_RTOL = 1e-10
#: Precision eigenvalues at or below this fraction of the largest are rounding noise of the
#: directions the pseudo-inverse dropped (their true value is 0).
PRECISION_RTOL = 1e-12


def l2_normalize(z: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """z / max(||z||_2, eps), row-wise, float64."""
    z = np.asarray(z, dtype=np.float64)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), eps)


def _eigen_factor(matrix: np.ndarray, rtol: float, *, inverse: bool) -> np.ndarray:
    """A with A A^T = matrix (``inverse``: = its pseudo-inverse) over the eigenpairs of the symmetric
    ``matrix`` with eigenvalue > rtol * the largest."""
    w, v = np.linalg.eigh(matrix)
    keep = w > max(w.max(), 0.0) * rtol
    return v[:, keep] / np.sqrt(w[keep]) if inverse else v[:, keep] * np.sqrt(w[keep])


def pseudo_inverse(cov: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of a covariance matrix (eigenvalues <= COVARIANCE_RTOL * the largest dropped)."""
    factor = _eigen_factor(cov, COVARIANCE_RTOL, inverse=True)
    return factor @ factor.T


def _as_features(z: np.ndarray, normalize: bool) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return l2_normalize(z) if normalize else z


@dataclass(frozen=True, eq=False)
class Baselines:
    """Mahalanobis statistics (float64 arrays, see the module docs) and the MD / RMD scores.

    ``l2_normalize``: normalise z before the distances. Build with :func:`fit_mahalanobis`,
    :meth:`from_arrays` or :func:`load_baselines`.
    """

    class_means: np.ndarray
    precision: np.ndarray
    global_mean: np.ndarray
    global_precision: np.ndarray
    l2_normalize: bool = False
    _factor: np.ndarray = field(init=False, repr=False)          # A A^T = precision
    _global_factor: np.ndarray = field(init=False, repr=False)   # A A^T = global_precision

    def __post_init__(self):
        for key in BASELINE_KEYS:
            object.__setattr__(self, key, np.asarray(getattr(self, key), dtype=np.float64))
        # eigh reads one triangle; the symmetric part keeps the quadratic form of the full matrix
        for name, p in (("_factor", self.precision), ("_global_factor", self.global_precision)):
            object.__setattr__(self, name, _eigen_factor((p + p.T) / 2.0, PRECISION_RTOL, inverse=False))

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], l2_normalize: bool = False) -> Baselines:
        """From saved statistics keyed by BASELINE_KEYS (e.g. ``np.load("md.npz")``)."""
        return cls(**{k: arrays[k] for k in BASELINE_KEYS}, l2_normalize=bool(l2_normalize))

    def arrays(self) -> dict[str, np.ndarray]:
        """The statistics keyed by BASELINE_KEYS, as written to ``md.npz`` / ``baselines.npz``."""
        return {k: getattr(self, k) for k in BASELINE_KEYS}

    def class_distances(self, z: np.ndarray) -> np.ndarray:
        """MD_c(z) for every class, [N, C] float64. Higher = more uncertain."""
        return self._class_distances(self._prep(z))

    def md(self, z: np.ndarray) -> np.ndarray:
        """MD(z) = min_c (z - mu_c)^T P (z - mu_c), [N]. Higher = more uncertain."""
        return self.class_distances(z).min(axis=1)

    def rmd(self, z: np.ndarray) -> np.ndarray:
        """RMD(z) = min_c MD_c(z) - MD_0(z), [N]. Higher = more uncertain."""
        zz = self._prep(z)
        md_0 = _squared_distances(zz @ self._global_factor, self.global_mean[None, :] @ self._global_factor)[:, 0]
        return self._class_distances(zz).min(axis=1) - md_0

    def _class_distances(self, zz: np.ndarray) -> np.ndarray:
        return _squared_distances(zz @ self._factor, self.class_means @ self._factor)

    def _prep(self, z: np.ndarray) -> np.ndarray:
        h = self.class_means.shape[1]
        if np.ndim(z) != 2 or np.shape(z)[1] != h:
            raise ValueError(f"features z must have shape [N, {h}], got {np.shape(z)}.")
        return _as_features(z, self.l2_normalize)


def _squared_distances(y: np.ndarray, means: np.ndarray) -> np.ndarray:
    """||y_n - m_k||^2, [N, K], one difference per mean (projected rows y [N, r], means [K, r])."""
    out = np.empty((y.shape[0], means.shape[0]), dtype=np.float64)
    for k, m in enumerate(means):
        d = y - m
        out[:, k] = np.einsum("nr,nr->n", d, d)
    return out


def fit_mahalanobis(z: np.ndarray, labels: np.ndarray, num_classes: int, *,
                    l2_normalize: bool = False) -> Baselines:
    """Fit MD / RMD statistics on training features z [N, H] with class labels [N].

    The shared covariance is the mean outer product of z minus its class mean; the global one
    that of z minus the overall mean; both are inverted with :func:`pseudo_inverse`.
    Raises ValueError when a class has no rows.
    """
    z = _as_features(z, l2_normalize)
    labels = np.asarray(labels)
    missing = [c for c in range(num_classes) if not (labels == c).any()]
    if missing:
        raise ValueError(f"MD needs training rows of every class; classes {missing} have none")
    class_means = np.stack([z[labels == c].mean(axis=0) for c in range(num_classes)])
    centred = z - class_means[labels]
    global_mean = z.mean(axis=0)
    background = z - global_mean
    return Baselines(class_means, pseudo_inverse(centred.T @ centred / len(z)), global_mean,
                     pseudo_inverse(background.T @ background / len(z)), l2_normalize=l2_normalize)


def load_baselines(path: str | os.PathLike, *, num_classes: int, feature_size: int,
                   l2_normalize: bool = False) -> Baselines:
    """Read and check ``baselines.npz`` (never unpickles). Raises BundleError naming the file."""
    path = Path(path)
    fix = "re-export the bundle with `uehead export`."
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in BASELINE_KEYS if k not in data.files]
            if missing:
                raise IncompatibleBundleError(f"lacks arrays {missing} (has {sorted(data.files)}).", path=path, fix=fix)
            arrays = {k: np.asarray(data[k], dtype=np.float64) for k in BASELINE_KEYS}
    except BundleError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise BundleError(f"cannot be read as a numpy .npz without pickles ({exc}).", path=path, fix=fix) from exc
    c, h = num_classes, feature_size
    expected = {"class_means": (c, h), "precision": (h, h), "global_mean": (h,), "global_precision": (h, h)}
    for key, array in arrays.items():
        if array.shape != expected[key]:
            raise IncompatibleBundleError(f"'{key}' has shape {array.shape}, expected {expected[key]} "
                                          f"(num_classes={c}, feature_size={h}).", path=path, fix=fix)
        if not np.isfinite(array).all():
            raise IncompatibleBundleError(f"'{key}' contains NaN or inf.", path=path, fix=fix)
    return Baselines.from_arrays(arrays, l2_normalize=l2_normalize)
