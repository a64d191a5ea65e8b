"""Distance baselines on z (numpy / scikit-learn; no torch): MD, RMD, RDE, each +- L2 normalisation.

All scores are **higher = more uncertain**. Fitted on the LoRA training rows' features.

* MD, RMD: :mod:`uehead.runtime.distances` (the same code serves them from a bundle, so the scores
  reported at training time are the scores served).
* RDE (Yoo et al. 2022): RBF kernel PCA, then per class a MinCovDet; min_c robust Mahalanobis
  distance. Fitted on at most ``max_rows`` stratified rows (kernel PCA is O(n^2)).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from uehead.runtime.distances import Baselines, fit_mahalanobis, l2_normalize


class RobustDensityBaseline:
    """RDE: RBF kernel PCA + per-class MinCovDet. Learned: ``kpca_``, ``mcds_``, ``n_fit_``."""

    def __init__(self, l2: bool = False, n_components: int = 20, max_rows: int = 2000, seed: int = 0):
        self.l2, self.n_components, self.max_rows, self.seed = l2, n_components, max_rows, seed

    def _prep(self, z):
        return l2_normalize(z) if self.l2 else np.asarray(z, dtype=np.float64)

    def fit(self, z: np.ndarray, labels: np.ndarray, num_classes: int) -> RobustDensityBaseline:
        from sklearn.covariance import MinCovDet
        from sklearn.decomposition import KernelPCA
        from uehead.training.data import stratified_subsample

        labels = np.asarray(labels)
        idx = stratified_subsample(labels, self.max_rows, seed=self.seed)
        z, labels = self._prep(z)[idx], labels[idx]
        counts = np.bincount(labels, minlength=num_classes)
        if counts.min() < 4:
            raise ValueError(f"RDE needs at least 4 training rows per class, got counts {counts.tolist()}")
        k = int(min(self.n_components, counts.min() // 2, len(z) - 1))
        self.kpca_ = KernelPCA(n_components=k, kernel="rbf", random_state=self.seed,
                               eigen_solver="randomized" if len(z) > 500 else "dense")
        t = self.kpca_.fit_transform(z)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "covariance matrix ... not full rank" on tiny classes
            self.mcds_ = [MinCovDet(random_state=self.seed).fit(t[labels == c]) for c in range(num_classes)]
        self.n_fit_ = len(z)
        return self

    def score(self, z: np.ndarray) -> np.ndarray:
        """min_c robust Mahalanobis distance in kernel-PCA space. Higher = more uncertain."""
        t = self.kpca_.transform(self._prep(z))
        return np.min(np.stack([m.mahalanobis(t) for m in self.mcds_], axis=1), axis=1)


@dataclass
class FittedBaselines:
    """The fitted baselines and the score names they produce."""

    md: dict[bool, Baselines]
    rde: dict[bool, RobustDensityBaseline]
    kinds: tuple[str, ...]

    def scores(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """``md``, ``md_l2``, ``rmd``, ``rmd_l2``, ``rde``, ``rde_l2`` (those requested), float64."""
        out = {}
        for l2, sfx in ((False, ""), (True, "_l2")):
            if "md" in self.kinds:
                out["md" + sfx] = self.md[l2].md(z)
            if "rmd" in self.kinds:
                out["rmd" + sfx] = self.md[l2].rmd(z)
            if "rde" in self.kinds:
                out["rde" + sfx] = self.rde[l2].score(z)
        return out


def fit_baselines(z: np.ndarray, labels: np.ndarray, num_classes: int, kinds: tuple[str, ...], *,
                  rde_max_rows: int = 2000, rde_components: int = 20, seed: int = 0) -> FittedBaselines:
    """Fit the requested baselines (each raw and L2-normalised) on training features."""
    md = {}
    if "md" in kinds or "rmd" in kinds:
        md = {l2: fit_mahalanobis(z, labels, num_classes, l2_normalize=l2) for l2 in (False, True)}
    rde = {}
    if "rde" in kinds:
        rde = {l2: RobustDensityBaseline(l2, rde_components, rde_max_rows, seed).fit(z, labels, num_classes)
               for l2 in (False, True)}
    return FittedBaselines(md, rde, tuple(kinds))
