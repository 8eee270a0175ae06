"""Pharmacometric plots of a fit: goodness of fit and individual fits (matplotlib figures)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

__all__ = ["plot_gof", "plot_individual"]


def _figure(nrows: int, ncols: int, size: tuple[float, float]) -> tuple[Any, Any]:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg",) and not os.environ.get("DISPLAY"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    return fig, axes


def _save(fig: Any, path: str | os.PathLike | None) -> Any:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=110, bbox_inches="tight")
    return fig


def plot_gof(fit: Any, path: str | os.PathLike | None = None) -> Any:
    """Four goodness-of-fit panels: DV vs PRED, DV vs IPRED, IWRES vs TIME, IWRES vs IPRED.

    Predictions are posterior means; points are coloured by subject.
    """
    df = fit.predictions()
    fig, ax = _figure(2, 2, (10, 8.5))
    codes = df["ID"].astype("category").cat.codes
    kw = dict(c=codes, cmap="tab20", s=18, alpha=0.8, edgecolors="none")
    for a, x, label in (
        (ax[0, 0], "PRED", "PRED (population, eta = 0)"),
        (ax[0, 1], "IPRED", "IPRED (individual)"),
    ):
        a.scatter(df[x], df["DV"], **kw)
        lim = [0, float(np.nanmax([df[x].max(), df["DV"].max()])) * 1.05]
        a.plot(lim, lim, "k-", lw=1)
        a.set_xlabel(label)
        a.set_ylabel("DV (observed)")
        a.set_title(f"DV vs {x}")
    for a, x in ((ax[1, 0], "TIME"), (ax[1, 1], "IPRED")):
        a.scatter(df[x], df["IWRES"], **kw)
        a.axhline(0, color="k", lw=1)
        for h in (-2, 2):
            a.axhline(h, color="grey", lw=0.8, ls="--")
        a.set_xlabel(x)
        a.set_ylabel("IWRES")
        a.set_title(f"IWRES vs {x}")
    fig.suptitle(f"{fit.model.name}: goodness of fit (posterior means)")
    fig.tight_layout()
    return _save(fig, path)


def plot_individual(
    fit: Any,
    path: str | os.PathLike | None = None,
    *,
    n_points: int = 100,
    n_draws: int = 200,
    ci_prob: float = 0.9,
    max_subjects: int = 36,
) -> Any:
    """Observed DV per subject with the IPRED median and credible band, and PRED (dashed)."""
    from .predictions import individual_curves

    curves = individual_curves(fit, n_points=n_points, n_draws=n_draws, ci_prob=ci_prob)
    obs = fit.predictions()
    ids = list(fit.data.subject_ids)[:max_subjects]
    ncols = min(4, len(ids))
    nrows = math.ceil(len(ids) / ncols)
    fig, ax = _figure(nrows, ncols, (3.2 * ncols, 2.6 * nrows))
    for k, sid in enumerate(ids):
        a = ax[k // ncols, k % ncols]
        c = curves[curves["ID"] == sid]
        o = obs[obs["ID"] == sid]
        a.fill_between(c["TIME"], c["IPRED_lo"], c["IPRED_hi"], color="C0", alpha=0.25, lw=0)
        a.plot(c["TIME"], c["IPRED"], color="C0", lw=1.5, label="IPRED")
        a.plot(c["TIME"], c["PRED"], color="C3", lw=1.2, ls="--", label="PRED")
        a.plot(o["TIME"], o["DV"], "ko", ms=3.5, label="DV")
        a.set_title(f"ID {sid}", fontsize=9)
        a.tick_params(labelsize=8)
    for k in range(len(ids), nrows * ncols):
        ax[k // ncols, k % ncols].set_visible(False)
    ax[0, 0].legend(fontsize=7)
    fig.suptitle(f"{fit.model.name}: individual fits (band: {ci_prob:.0%} credible interval)")
    fig.supxlabel("TIME")
    fig.supylabel("concentration")
    fig.tight_layout()
    return _save(fig, path)
