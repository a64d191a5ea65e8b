"""Distance baselines on z (numpy / scikit-learn; no torch): MD, RMD, RDE, each +- L2 normalisation.

All scores are **higher = more uncertain**. Fitted on the LoRA training rows' features.

* MD  (Lee et al. 2018): min_c (z - mu_c)^T Sigma^-1 (z - mu_c), Sigma shared across classes.
* RMD (Ren et al. 2021): min_c MD_c(z) - MD_0(z), MD_0 with the class-agnostic mean and covariance.
* RDE (Yoo et al. 2022): RBF kernel PCA, then per class a MinCovDet; min_c robust Mahalanobis
  distance. Fitted on at most ``max_rows`` stratified rows (kernel PCA is O(n^2)).

Covariances are inverted with a pseudo-inverse (eigenvalues below 1e-10 * the largest dropped), so
fewer rows than dimensions still work. Scoring uses a factor A with A A^T = precision, so a
distance costs O(H) per class after one [N, H] @ [H, r] product.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


def l2_normalize(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def _precision_factor(cov: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    keep = w > max(w.max(), 0.0) * 1e-10
    return v[:, keep] / np.sqrt(w[keep])


class MahalanobisBaseline:
    """MD and RMD statistics (scikit-learn style: ``fit`` learns attributes ending in ``_``).

    Learned: ``class_means_`` [C, H], ``precision_`` [H, H] (shared, pseudo-inverse),
    ``global_mean_`` [H], ``global_precision_`` [H, H] (all float64).
    """

    def __init__(self, l2: bool = False):
        self.l2 = l2

    def _prep(self, z):
        return l2_normalize(z) if self.l2 else np.asarray(z, dtype=np.float64)

    def fit(self, z: np.ndarray, labels: np.ndarray, num_classes: int) -> MahalanobisBaseline:
        z = self._prep(z)
        labels = np.asarray(labels)
        missing = [c for c in range(num_classes) if not (labels == c).any()]
        if missing:
            raise ValueError(f"MD needs training rows of every class; classes {missing} have none")
        self.class_means_ = np.stack([z[labels == c].mean(axis=0) for c in range(num_classes)])
        centred = z - self.class_means_[labels]
        factor = _precision_factor(centred.T @ centred / len(z))
        self.global_mean_ = z.mean(axis=0)
        g = z - self.global_mean_
        gfactor = _precision_factor(g.T @ g / len(z))
        self.precision_, self.global_precision_ = factor @ factor.T, gfactor @ gfactor.T
        self._factor, self._gfactor = factor, gfactor
        return self

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], l2: bool) -> MahalanobisBaseline:
        """Rebuild from saved statistics (e.g. ``np.load(md.npz)``)."""
        self = cls(l2)
        for name in ("class_means", "precision", "global_mean", "global_precision"):
            setattr(self, name + "_", np.asarray(arrays[name], dtype=np.float64))
        self._factor = _precision_factor_from_precision(self.precision_)
        self._gfactor = _precision_factor_from_precision(self.global_precision_)
        return self

    def arrays(self) -> dict[str, np.ndarray]:
        return {"class_means": self.class_means_, "precision": self.precision_,
                "global_mean": self.global_mean_, "global_precision": self.global_precision_}

    def class_distances(self, z: np.ndarray) -> np.ndarray:
        """MD_c(z) for every class, [N, C]."""
        y = self._prep(z) @ self._factor
        mu = self.class_means_ @ self._factor
        return (y ** 2).sum(1)[:, None] - 2 * y @ mu.T + (mu ** 2).sum(1)[None, :]

    def md(self, z: np.ndarray) -> np.ndarray:
        """min_c MD_c(z). Higher = more uncertain."""
        return self.class_distances(z).min(axis=1)

    def rmd(self, z: np.ndarray) -> np.ndarray:
        """min_c MD_c(z) - MD_0(z). Higher = more uncertain."""
        y0 = (self._prep(z) - self.global_mean_) @ self._gfactor
        return self.md(z) - (y0 ** 2).sum(1)


def _precision_factor_from_precision(precision: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(precision)
    keep = w > max(w.max(), 0.0) * 1e-12
    return v[:, keep] * np.sqrt(w[keep])


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

    md: dict[bool, MahalanobisBaseline]
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
        md = {l2: MahalanobisBaseline(l2).fit(z, labels, num_classes) for l2 in (False, True)}
    rde = {}
    if "rde" in kinds:
        rde = {l2: RobustDensityBaseline(l2, rde_components, rde_max_rows, seed).fit(z, labels, num_classes)
               for l2 in (False, True)}
    return FittedBaselines(md, rde, tuple(kinds))
