"""Mahalanobis baselines (MD, RMD) in numpy, from a bundle's ``baselines.npz``.

``baselines.npz`` holds (float arrays, loaded with ``allow_pickle=False``):

    class_means       [C, H]  per-class means of the training features z
    precision         [H, H]  inverse of the shared (within-class) covariance
    global_mean       [H]     class-agnostic mean (the "background" of RMD)
    global_precision  [H, H]  inverse of the class-agnostic covariance

The manifest's ``baselines.settings["l2_normalize"]`` says whether z is L2-normalised before
the distances (the statistics were then fitted on normalised z too).

Both scores are **higher = more uncertain** (farther from the training classes).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uehead.bundle import BundleError, IncompatibleBundleError

__all__ = ["Baselines", "load_baselines", "mahalanobis", "l2_normalize"]

_KEYS = ("class_means", "precision", "global_mean", "global_precision")


@dataclass(frozen=True, eq=False)
class Baselines:
    """Mahalanobis statistics (float64). ``l2_normalize``: normalise z before the distances."""

    class_means: np.ndarray
    precision: np.ndarray
    global_mean: np.ndarray
    global_precision: np.ndarray
    l2_normalize: bool = False

    def md(self, z: np.ndarray) -> np.ndarray:
        """MD(z) = min_c (z - mu_c)^T P (z - mu_c), [N]. Higher = more uncertain."""
        return mahalanobis(self._prep(z), self.class_means, self.precision).min(axis=1)

    def rmd(self, z: np.ndarray) -> np.ndarray:
        """RMD(z) = min_c [MD_c(z) - MD_0(z)], [N]. Higher = more uncertain."""
        zz = self._prep(z)
        md_c = mahalanobis(zz, self.class_means, self.precision)
        md_0 = mahalanobis(zz, self.global_mean[None, :], self.global_precision)[:, 0]
        return (md_c - md_0[:, None]).min(axis=1)

    def _prep(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.class_means.shape[1]:
            raise ValueError(f"features z must have shape [N, {self.class_means.shape[1]}], got {z.shape}.")
        return l2_normalize(z) if self.l2_normalize else z


def l2_normalize(z: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """z / max(||z||_2, eps), row-wise."""
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.maximum(norm, eps)


def mahalanobis(z: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distances [N, K]: (z_n - m_k)^T P (z_n - m_k), computed per mean on the
    differences (no expansion, so no cancellation)."""
    out = np.empty((z.shape[0], means.shape[0]), dtype=np.float64)
    for k, m in enumerate(means):
        d = z - m
        out[:, k] = np.einsum("nh,nh->n", d @ precision, d)
    return out


def load_baselines(path: str | os.PathLike, *, num_classes: int, feature_size: int,
                   l2_normalize: bool = False) -> Baselines:
    """Read and check ``baselines.npz`` (never unpickles). Raises BundleError naming the file."""
    path = Path(path)
    fix = "re-export the bundle with `uehead export`."
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _KEYS if k not in data.files]
            if missing:
                raise IncompatibleBundleError(f"lacks arrays {missing} (has {sorted(data.files)}).", path=path, fix=fix)
            arrays = {k: np.asarray(data[k], dtype=np.float64) for k in _KEYS}
    except BundleError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise BundleError(f"cannot be read as a numpy .npz without pickles ({exc}).", path=path, fix=fix) from exc
    c, h = num_classes, feature_size
    expected = {"class_means": (c, h), "precision": (h, h), "global_mean": (h,), "global_precision": (h, h)}
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise IncompatibleBundleError(f"'{key}' has shape {arrays[key].shape}, expected {shape} "
                                          f"(num_classes={c}, feature_size={h}).", path=path, fix=fix)
        if not np.isfinite(arrays[key]).all():
            raise IncompatibleBundleError(f"'{key}' contains NaN or inf.", path=path, fix=fix)
    return Baselines(**arrays, l2_normalize=bool(l2_normalize))
