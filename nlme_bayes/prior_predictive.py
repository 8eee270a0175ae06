"""Prior predictive checks: what the priors say about the data, before fitting.

:func:`prior_predictive` draws population parameters from their priors, new random effects
for every subject of the data (their doses, sampling times and covariates), the structural
predictions and the residual error -- exactly the PyMC model that :meth:`Model.fit
<nlme_bayes.Model.fit>` samples, with the likelihood's distribution drawn instead of
conditioned on. It also evaluates each simulated subject on a fine time grid (the curves).

:func:`plot_prior_predictive` draws two panels: simulated concentration-time curves of
individual subjects against the observations, and the 5-95 % / 25-75 % intervals and median
of the simulated observations per time bin against the observations. Priors that are
sensible in pharmacometric terms put the data well inside the simulated range without
spreading over many orders of magnitude beyond it; :meth:`PriorPredictive.coverage` and
:meth:`PriorPredictive.summary` say so in numbers.

Examples
--------
>>> import nlme_bayes as nb
>>> from nlme_bayes.examples import pheno_model
>>> pp = prior_predictive(pheno_model(), nb.datasets.phenobarbital(), n_draws=50)
>>> pp.draws["DV"].shape
(50, 155)
>>> 0.5 < pp.coverage(0.9) <= 1.0
True
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .errors import SpecificationError

__all__ = ["PriorPredictive", "prior_predictive", "plot_prior_predictive"]


@dataclass(frozen=True)
class PriorPredictive:
    """Simulations from the prior on a dataset's design.

    Attributes
    ----------
    draws : xarray.Dataset
        Prior draws: population parameters ``(draw)``, individual parameters
        ``(draw, subject)``, ``IPRED``, ``PRED`` and ``DV`` ``(draw, obs)`` (``DV``
        censored at the LLOQ when the model censors).
    curves : xarray.Dataset
        ``IPRED (draw, grid)`` with ``grid`` coordinates ``ID`` and ``TIME``: each simulated
        subject on a time grid from its first to its last record.
    observations : pandas.DataFrame
        ``ID, TIME, DVID, DV, ROW`` of the data, in the order of the draws' ``obs`` axis
        (``ROW``: the record's row in the dataset), and ``BLQ`` with censoring.

    Examples
    --------
    >>> pp = prior_predictive(model, data)  # or model.prior_predictive(data)  # doctest: +SKIP
    >>> pp.summary().columns.tolist()  # doctest: +SKIP
    ['median', 'q5%', 'q95%']
    """

    draws: xr.Dataset
    curves: xr.Dataset
    observations: pd.DataFrame

    def coverage(self, prob: float = 0.9) -> float:
        """Fraction of observations inside the central ``prob`` prior predictive interval.

        Examples
        --------
        >>> pp.coverage(0.9)  # near 1: the priors are wide enough for these data  # doctest: +SKIP
        1.0
        """
        if not 0 < prob < 1:
            raise SpecificationError(f"coverage: prob must be in (0, 1), got {prob!r}.")
        sims = self.draws["DV"].values
        lo, hi = np.quantile(sims, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        dv = self.observations["DV"].to_numpy(dtype=float)
        return float(np.mean((dv >= lo) & (dv <= hi)))

    def summary(self, prob: float = 0.9) -> pd.DataFrame:
        """Prior median and central ``prob`` interval of every population parameter.

        Examples
        --------
        >>> pp.summary(0.9).loc["CL_pop"]  # doctest: +SKIP
        median    0...
        q5%       0...
        q95%      0...
        Name: CL_pop, dtype: float64
        """
        rows = []
        lo_p, hi_p = (1 - prob) / 2, (1 + prob) / 2
        for name, da in self.draws.data_vars.items():
            if da.dims != ("draw",):
                continue
            x = da.values.astype(float)
            rows.append(
                {
                    "parameter": name,
                    "median": float(np.median(x)),
                    f"q{lo_p * 100:g}%": float(np.quantile(x, lo_p)),
                    f"q{hi_p * 100:g}%": float(np.quantile(x, hi_p)),
                }
            )
        return pd.DataFrame(rows).set_index("parameter")


def _grid_curves(model: Any, data: Any, individual: dict, n_points: int) -> xr.Dataset:
    """IPRED of each simulated subject on a time grid (doses kept, observations replaced)."""
    from .events import build_schedule
    from .predictions import _grid_dataset
    from .simulation import Predictor

    grid = _grid_dataset(SimpleNamespace(data=data), n_points)
    schedule, obs = build_schedule(grid, model.structure)
    ipred = Predictor(model.structure, schedule)(individual)
    return xr.Dataset(
        {"IPRED": (("draw", "grid"), ipred)},
        coords={
            "grid": np.arange(len(obs)),
            "ID": ("grid", obs["ID"].to_numpy()),
            "TIME": ("grid", obs["TIME"].to_numpy(dtype=float)),
        },
    )


def prior_predictive(
    model: Any,
    data: Any,
    *,
    n_draws: int = 200,
    n_points: int = 60,
    random_seed: int = 0,
) -> PriorPredictive:
    """Simulate the study from the priors (a prior predictive check).

    Parameters
    ----------
    model : Model
    data : NonmemDataset
        The design (doses, sampling times, covariates) and the observations to compare.
    n_draws : int
        Number of prior draws (each: population parameters, new random effects for every
        subject, residual error).
    n_points : int
        Points of each subject's time grid for the curves.
    random_seed : int

    Returns
    -------
    PriorPredictive

    Raises
    ------
    SpecificationError
        ``n_draws`` or ``n_points`` not a positive integer (and what building the model
        raises).

    Notes
    -----
    Constraints written as potentials -- a ``Linear`` covariate factor must stay positive --
    do not act on prior draws (PyMC samples the priors forward); give such coefficients a
    prior that respects the constraint (e.g. ``TruncatedNormal(lower=-0.9)``).

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.examples import theophylline_model
    >>> pp = prior_predictive(theophylline_model(), nb.datasets.theophylline(), n_draws=50,
    ...                       random_seed=1)
    >>> list(pp.summary().columns)
    ['median', 'q5%', 'q95%']
    >>> 0.0 <= pp.coverage(0.9) <= 1.0
    True
    """
    import pymc as pm

    from .builder import build

    for name, value in (("n_draws", n_draws), ("n_points", n_points)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
            raise SpecificationError(f"{name} must be an integer >= 2, got {value!r}.")
    built = build(model, data)
    model, data = built.model, built.data
    with warnings.catch_warnings():
        # Potentials (a Linear covariate factor's positivity) do not act on prior draws; said
        # in the docstring, not at every call.
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        idata = pm.sample_prior_predictive(
            draws=int(n_draws), model=built.pm_model, random_seed=random_seed
        )
    prior = idata["prior"].dataset.squeeze("chain", drop=True)
    pred = idata["prior_predictive"].dataset.squeeze("chain", drop=True)
    keep = [v for v in prior.data_vars if not str(v).startswith(("z_", "chol_"))]
    draws = prior[keep].merge(pred[["DV"]])
    individual = {n: prior[n].transpose("draw", "subject").values for n in model.parameter_names}
    curves = _grid_curves(model, data, individual, int(n_points))
    obs = built.observations[["ID", "TIME", "DVID", "DV", "ROW"]].copy()
    if built.censoring is not None:
        obs["BLQ"] = built.censoring.censored
        obs["DV"] = built.censoring.dv
    return PriorPredictive(draws=draws, curves=curves, observations=obs)


def plot_prior_predictive(
    pp: PriorPredictive,
    path: str | os.PathLike | None = None,
    *,
    n_curves: int = 40,
    log_y: bool = True,
    random_seed: int = 0,
) -> Any:
    """Simulated curves and prior predictive intervals against the observations.

    Parameters
    ----------
    pp : PriorPredictive
    path : path-like, optional
        Write a PNG there.
    n_curves : int
        Number of simulated subjects' curves in the left panel (one per prior draw).
    log_y : bool
        Logarithmic concentration axis (non-positive values are not drawn), spanning two
        decades below and above the observations.
    random_seed : int
        Which draws and subjects are shown.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.examples import pheno_model
    >>> pp = prior_predictive(pheno_model(), nb.datasets.phenobarbital())  # doctest: +SKIP
    >>> fig = plot_prior_predictive(pp, "prior_predictive.png")  # doctest: +SKIP
    """
    from .plots import _figure, _save
    from .vpc import auto_bin_edges

    rng = np.random.default_rng(random_seed)
    fig, axes = _figure(1, 2, (12.0, 4.6))
    a, b = axes[0, 0], axes[0, 1]
    obs = pp.observations
    ids = pd.unique(pp.curves["ID"].values)
    n_draw = pp.curves.sizes["draw"]
    curve_id = pp.curves["ID"].values
    time = pp.curves["TIME"].values
    for d in rng.choice(n_draw, size=min(n_curves, n_draw), replace=False):
        sid = ids[rng.integers(len(ids))]
        m = curve_id == sid
        a.plot(time[m], pp.curves["IPRED"].values[d, m], color="#1f77b4", alpha=0.35, lw=0.8)
    dv = obs["DV"].to_numpy(dtype=float)
    for ax in (a, b):
        ax.scatter(obs["TIME"], dv, s=8, color="k", zorder=3, label="observations")
        if "BLQ" in obs:
            c = obs["BLQ"].to_numpy(bool)
            ax.scatter(obs["TIME"][c], dv[c], s=14, marker="v", color="#d62728", zorder=4,
                       label="below LLOQ (at LLOQ)")  # fmt: skip
        ax.set_xlabel("TIME")
        ax.set_ylabel("DV")
        if log_y:
            ax.set_yscale("log", nonpositive="mask")
    a.set_title(f"{min(n_curves, n_draw)} subjects simulated from the priors (IPRED)")
    sims = pp.draws["DV"].values
    t = obs["TIME"].to_numpy(dtype=float)
    edges = auto_bin_edges(t)
    k = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for j in range(len(edges) - 1):
        sel = k == j
        if sel.any():
            qs = np.quantile(sims[:, sel], [0.05, 0.25, 0.5, 0.75, 0.95])
            rows.append((float(t[sel].mean()), *qs))
    q = np.array(rows)
    if log_y:
        floor = 0.5 * np.min(dv[dv > 0]) if np.any(dv > 0) else 1e-3
        q[:, 1:] = np.maximum(q[:, 1:], floor * 1e-3)
    b.fill_between(q[:, 0], q[:, 1], q[:, 5], color="#1f77b4", alpha=0.2, lw=0, label="5-95 %")
    b.fill_between(q[:, 0], q[:, 2], q[:, 4], color="#1f77b4", alpha=0.35, lw=0, label="25-75 %")
    b.plot(q[:, 0], q[:, 3], color="#1f77b4", lw=1.5, label="median")
    b.set_title(
        f"prior predictive DV ({n_draw} draws); {pp.coverage(0.9):.0%} of data in the 90 % interval"
    )
    b.legend(fontsize=7.5, loc="best")
    if log_y and np.any(dv > 0):  # two decades either side of the data: the scale of interest
        lim = (np.min(dv[dv > 0]) / 100.0, np.max(dv) * 100.0)
        for ax in (a, b):
            ax.set_ylim(*lim)
    fig.tight_layout()
    return _save(fig, path)
