"""PNG plots of uncertainty quality: reliability diagrams and risk-coverage curves.

matplotlib is imported lazily, only when a plot is drawn, and always through its Agg canvas
(``matplotlib.figure.Figure`` + ``FigureCanvasAgg``), so plotting never touches pyplot or the
user's global backend. Install it with ``pip install 'uehead[eval]'``.

Scores follow the package convention: **higher = more uncertain**.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from uehead.evaluation import metrics

__all__ = ["require_matplotlib", "reliability_diagram", "risk_coverage_plot"]


def require_matplotlib() -> None:
    """Raise ImportError with the install command when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError as exc:
        raise ImportError("plots need matplotlib, which is not installed: pip install 'uehead[eval]' "
                          "(or pass --no-plots / plots=False)") from exc


def _figure(width: float, height: float):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def reliability_diagram(scores: Mapping[str, np.ndarray], errors, path: str | os.PathLike, *,
                        n_bins: int = metrics.N_BINS, title: str | None = None) -> Path:
    """One panel per probability-like score: observed error rate against the predicted error
    probability clip(u, 0, 1) in ``n_bins`` equal-width bins, the share of rows per bin (gray), the
    diagonal of perfect calibration, and the ECE / Brier in the panel title. Writes a PNG; returns its path.
    """
    if not scores:
        raise ValueError("reliability_diagram needs at least one score")
    k = len(scores)
    fig = _figure(4.0 * k, 4.2)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for i, (name, u) in enumerate(scores.items()):
        ax = fig.add_subplot(1, k, i + 1)
        mean_p, rate, count = metrics.calibration_bins(u, errors, n_bins)
        full = count > 0
        ax.bar(edges[:-1], count / count.sum(), width=1.0 / n_bins, align="edge", color="gray", alpha=0.25,
               label="share of rows")
        ax.bar(edges[:-1][full], rate[full], width=1.0 / n_bins, align="edge", color="tab:blue", alpha=0.7,
               edgecolor="black", linewidth=0.5, label="observed error rate")
        ax.plot(mean_p[full], rate[full], "o", color="tab:orange", markersize=3, label="bin mean prediction")
        ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted error probability")
        if i == 0:
            ax.set_ylabel("observed error rate / share of rows")
            ax.legend(loc="upper left", fontsize=7)
        ax.set_title(f"{name}: ECE {metrics.ece(u, errors, n_bins):.3f}, Brier {metrics.brier(u, errors):.3f}",
                     fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def risk_coverage_plot(scores: Mapping[str, np.ndarray], errors, path: str | os.PathLike, *,
                       title: str | None = None, marks=()) -> Path:
    """Risk (error rate of the kept rows) against coverage (fraction kept, least uncertain first)
    for every score, with the oracle and random references; AURC in the legend (lower is better).
    ``marks``: (score, coverage, risk, target) points to mark, e.g. a calibrated bundle's accepted
    fraction and error rate among accepted rows at each certified threshold, with its target risk
    drawn as a dotted line. Writes a PNG; returns its path.
    """
    if not scores:
        raise ValueError("risk_coverage_plot needs at least one score")
    fig = _figure(6.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    e = np.asarray(errors, dtype=np.float64)
    for name, u in scores.items():
        cov, risk = metrics.risk_coverage_curve(u, e)
        ax.plot(cov, risk, linewidth=1.5, label=f"{name} (AURC {risk.mean():.4f})")
    cov, risk = metrics.risk_coverage_curve(e, e)
    ax.plot(cov, risk, ":", color="black", linewidth=1, label=f"oracle (AURC {risk.mean():.4f})")
    ax.axhline(e.mean(), linestyle="--", color="gray", linewidth=1, label=f"random (AURC {e.mean():.4f})")
    for score, coverage, risk, target in marks:
        ax.plot([coverage], [risk], "o", markersize=6, markerfacecolor="none", markeredgewidth=1.5,
                label=f"{score} calibrated threshold, target risk {target:g}")
        ax.axhline(target, linestyle=":", linewidth=0.8, color="red")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("coverage (fraction of rows kept, least uncertain first)")
    ax.set_ylabel("risk (error rate of kept rows)")
    ax.legend(fontsize=8)
    ax.set_title(title or "risk-coverage", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
