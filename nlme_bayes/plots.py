"""Pharmacometric plots of a fit: goodness of fit and individual fits (matplotlib figures).

VPC plots are in :mod:`nlme_bayes.vpc` (:func:`~nlme_bayes.vpc.plot_vpc`).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from .errors import SpecificationError

__all__ = ["plot_gof", "plot_individual"]


def _figure(nrows: int, ncols: int, size: tuple[float, float]) -> tuple[Any, Any]:
    # No backend forcing: matplotlib falls back to Agg without a display, and Jupyter's inline
    # backend must stay in charge inside notebooks.
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    return fig, axes


def _save(fig: Any, path: str | os.PathLike | None) -> Any:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=110, bbox_inches="tight")
    return fig


def _trend(a: Any, x: Any, y: Any, *, n_bins: int = 8) -> None:
    """A median trend line: medians of y in quantile bins of x (drawn in red)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    k = min(n_bins, x.size // 8)
    if k < 2:
        return
    edges = np.unique(np.quantile(x, np.linspace(0, 1, k + 1)))
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    pts = [(np.median(x[idx == b]), np.median(y[idx == b])) for b in np.unique(idx)]
    xs, ys = zip(*pts, strict=True)
    a.plot(xs, ys, color="C3", lw=1.6, label="median trend")


def plot_gof(
    fit: Any,
    path: str | os.PathLike | None = None,
    *,
    n_draws: int = 300,
    random_seed: int = 0,
) -> Any:
    """Six goodness-of-fit panels (2 x 3), points coloured by subject.

    Column 1: DV vs PRED and DV vs IPRED (posterior means) with the identity line.
    Column 2: posterior-predictive residuals conditional on the subject
    (:func:`~nlme_bayes.residuals.pp_residuals`) vs TIME and vs PRED.
    Column 3: NPDE (:func:`~nlme_bayes.residuals.npde`) vs TIME and vs PRED.
    Residual panels show 0 and +-1.96 and a median trend line (red). With censoring
    (``Model(blq=...)``) observations below the LLOQ are red triangles, drawn at the LLOQ;
    their conditional residual is not defined and their NPDE is imputed (open triangles).

    Parameters
    ----------
    fit : Fit
    path : path-like, optional
        Write a PNG there.
    n_draws : int
        Simulated replicates for the residuals (more than the largest number of
        observations of a subject, for the NPDE).
    random_seed : int

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_gof(fit, "gof.png")  # doctest: +SKIP
    """
    from .residuals import npde, pp_residuals

    df = fit.predictions()
    pp = pp_residuals(fit, n_draws=n_draws, random_seed=random_seed)
    nd = npde(fit, n_draws=max(n_draws, 2), random_seed=random_seed)
    fig, ax = _figure(2, 3, (14.5, 8.5))
    codes = df["ID"].astype("category").cat.codes
    kw = dict(c=codes, cmap="tab20", s=16, alpha=0.8, edgecolors="none")
    for a, x, label in (
        (ax[0, 0], "PRED", "PRED (population, eta = 0)"),
        (ax[1, 0], "IPRED", "IPRED (individual)"),
    ):
        a.scatter(df[x], df["DV"], **kw)
        if "BLQ" in df:  # censored: drawn at their LLOQ
            c = df["BLQ"].to_numpy(bool)
            a.scatter(df[x][c], df["DV"][c], marker="v", s=22, color="C3", label="below LLOQ")
            a.legend(fontsize=7, loc="upper left")
        lim = [0, float(np.nanmax([df[x].max(), df["DV"].max()])) * 1.05]
        a.plot(lim, lim, "k-", lw=1)
        a.set_xlabel(label)
        a.set_ylabel("DV (observed)")
        a.set_title(f"DV vs {x}")
    panels = (
        (ax[0, 1], pp, "TIME", "ppres", "conditional residual (PP)"),
        (ax[1, 1], pp, "PRED", "ppres", "conditional residual (PP)"),
        (ax[0, 2], nd, "TIME", "npde", "NPDE"),
        (ax[1, 2], nd, "PRED", "npde", "NPDE"),
    )
    for a, table, x, y, name in panels:
        a.scatter(table[x], table[y], **kw)
        if "BLQ" in table and table[y][table["BLQ"]].notna().any():  # imputed (NPDE of BLQ)
            c = table["BLQ"].to_numpy(bool)
            a.scatter(table[x][c], table[y][c], marker="v", s=22, facecolors="none",
                      edgecolors="C3", label="below LLOQ (imputed)")  # fmt: skip
            a.legend(fontsize=7, loc="lower right")
        a.axhline(0, color="k", lw=1)
        for h in (-1.96, 1.96):
            a.axhline(h, color="grey", lw=0.8, ls="--")
        _trend(a, table[x], table[y])
        a.set_xlabel(x)
        a.set_ylabel(name)
        a.set_title(f"{name} vs {x}")
    ax[0, 1].legend(fontsize=7, loc="upper right")
    fig.suptitle(
        f"{fit.model.name}: goodness of fit (posterior means; residuals from {n_draws} "
        "simulated replicates)"
    )
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
    dvid: int | None = None,
) -> Any:
    """Observed DV per subject with the IPRED median and credible band, and PRED (dashed).

    With several outputs (``DVID``: e.g. concentration and response of a PK/PD model), each
    subject gets one panel per output, side by side; ``dvid=2`` shows only that output.

    Examples
    --------
    >>> fig = plot_individual(fit, "individual.png", max_subjects=12)  # doctest: +SKIP
    """
    from .predictions import individual_curves

    curves = individual_curves(fit, n_points=n_points, n_draws=n_draws, ci_prob=ci_prob)
    obs = fit.predictions()
    ids = list(fit.data.subject_ids)[:max_subjects]
    dvids: list[Any] = [None]
    if "DVID" in curves:
        dvids = sorted(curves["DVID"].unique())
        if dvid is not None:
            if dvid not in dvids:
                raise SpecificationError(
                    f"dvid={dvid!r}: the observed outputs are DVID {[int(d) for d in dvids]}."
                )
            dvids = [dvid]
    panels = [(sid, d) for sid in ids for d in dvids]
    per_row = max(1, 4 // len(dvids)) * len(dvids)
    ncols = min(per_row, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, ax = _figure(nrows, ncols, (3.2 * ncols, 2.6 * nrows))
    for k, (sid, d) in enumerate(panels):
        a = ax[k // ncols, k % ncols]
        c = curves[curves["ID"] == sid]
        o = obs[obs["ID"] == sid]
        if d is not None:
            c, o = c[c["DVID"] == d], o[o["DVID"] == d]
        a.fill_between(c["TIME"], c["IPRED_lo"], c["IPRED_hi"], color="C0", alpha=0.25, lw=0)
        a.plot(c["TIME"], c["IPRED"], color="C0", lw=1.5, label="IPRED")
        a.plot(c["TIME"], c["PRED"], color="C3", lw=1.2, ls="--", label="PRED")
        a.plot(o["TIME"], o["DV"], "ko", ms=3.5, label="DV")
        a.set_title(f"ID {sid}" + ("" if d is None or len(dvids) == 1 else f" · DVID {d}"),
                    fontsize=9)  # fmt: skip
        a.tick_params(labelsize=8)
    for k in range(len(panels), nrows * ncols):
        ax[k // ncols, k % ncols].set_visible(False)
    ax[0, 0].legend(fontsize=7)
    which = "" if dvids == [None] or len(dvids) > 1 else f", DVID {dvids[0]}"
    band = f"band: {ci_prob:.0%} credible interval"
    fig.suptitle(f"{fit.model.name}: individual fits{which} ({band})")
    fig.supxlabel("TIME")
    fig.supylabel("concentration" if dvids == [None] else "DV")
    fig.tight_layout()
    return _save(fig, path)
