"""Visual predictive checks (VPC) and prediction-corrected VPCs of a fit.

A VPC compares percentiles of the observations, per bin of ``TIME``, with the same
percentiles computed on datasets simulated from the model with the study's design:

1. replicate the study ``n_draws`` times (:func:`~nlme_bayes.simulation.simulate_replicates`):
   each replicate takes one posterior draw (parameter uncertainty), new subjects' random
   effects ``eta ~ N(0, Omega)`` and residual noise;
2. bin ``TIME`` (per stratum), compute the ``pi`` percentiles (default 5th, 50th, 95th) of
   the observations in each bin and of each replicate's simulated observations in that bin;
3. summarise the replicates' percentiles by their median and a ``ci`` interval (default
   90 %). A model that describes the data has its observed percentiles inside these bands
   at about the nominal rate.

Binning (``bins="auto"``)
    Exact one-dimensional k-means on the distinct sampling times (dynamic programming; the
    least-squares binning of Lavielle & Bleakley 2011), weighted by the number of
    observations at each time, with at least :data:`MIN_BIN_SIZE` observations per bin.
    Times are clustered on the scale ``asinh(TIME / t0)``, ``t0`` the 10th percentile of
    the positive observation times (times are shifted to start at 0 if any is negative):
    linear near the dose and logarithmic after it, so that the dense early samples of a PK
    study are resolved as finely as the sparse late ones. The number of bins is
    :data:`AUTO_MAX_BINS` (10), or fewer when the times form a clear grid of ``K`` groups
    (nominal times with jitter): the largest ``K`` whose ``K``-th bin removes at least 90 %
    of the remaining within-bin sum of squares and leaves at most 1 % of the total. Bin
    edges lie halfway between the last time of one cluster and the first of the next, so a
    nominal time is never split. ``bins=K`` uses the same clustering with ``K`` bins; a
    sequence of edges is used as given (bins ``[e0, e1), ..., [eK-1, eK]``). Automatic
    bins are chosen per stratum.

Prediction correction (Bergstrand et al. 2011)
    ``pcDV = DV * PRED_bin / PRED`` for the observed and every simulated observation, with
    ``PRED`` the posterior median of the population prediction (eta = 0) of that
    observation and ``PRED_bin`` the median ``PRED`` of its bin (within its stratum). For
    log-scale error models (``LogAdditive``) the additive correction on the log scale,
    ``log pcDV = log DV + log PRED_bin - log PRED``, is the same number, so one formula
    serves both. Where ``PRED <= 0`` or ``PRED_bin <= 0`` (e.g. at the time of an oral dose)
    the ratio is undefined and the observation is left uncorrected.

Censoring (BLQ; Bergstrand & Karlsson 2009)
    When the model censors observations (``Model(blq=BLQ(...))``, whatever the method, M1
    included), a censored observation and a simulated value below its observation's LLOQ
    are both *below the LLOQ*: ranked below every quantified value. A percentile that falls
    among them is below the LLOQ and is not drawn (``observed``/``sim_*`` are NaN there;
    ``inside`` still compares them, below-LLOQ against below-LLOQ). The fraction of
    observations below the LLOQ per bin, observed against the median and ``ci`` interval of
    the simulated fractions, is :attr:`VPCResult.censoring` and a second row of panels of
    :func:`plot_vpc`. Simulated values are censored before any prediction correction.

References: Holford (2005) PAGE 14, abstr 738; Bergstrand, Hooker, Wallin, Karlsson (2011)
AAPS J 13:143; Lavielle & Bleakley (2011) J Pharmacokinet Pharmacodyn 38:861.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import SpecificationError

__all__ = ["VPCResult", "vpc", "vpc_statistics", "auto_bin_edges", "plot_vpc"]

#: Target (maximum) number of bins of ``bins="auto"``.
AUTO_MAX_BINS = 10
#: Minimum number of observations in an automatic bin.
MIN_BIN_SIZE = 5
#: The sampling times form a clear grid of K groups when the K-th bin removes at least
#: GRID_DROP of the remaining within-bin sum of squares and leaves at most GRID_RESIDUAL of
#: the total (on the clustering scale).
GRID_DROP = 0.9
GRID_RESIDUAL = 0.01
#: A numeric covariate with at most this many distinct values is stratified as categories.
MAX_CATEGORIES = 4


@dataclass(frozen=True)
class VPCResult:
    """The numbers of a VPC, as tidy DataFrames.

    Attributes
    ----------
    stats : pandas.DataFrame
        One row per stratum, bin and percentile: ``stratum, bin, pi, TIME`` (mean time of
        the bin's observations), ``lower, upper`` (bin edges), ``n_obs``, ``observed`` (the
        observed percentile), ``sim_median, sim_lo, sim_hi`` (median and ``ci`` interval of
        the simulated percentile) and ``inside`` (``sim_lo <= observed <= sim_hi``).
    bins : pandas.DataFrame
        One row per stratum and bin: ``stratum, bin, lower, upper, TIME, n_obs``.
    observations : pandas.DataFrame
        The observations with their ``stratum`` and ``bin``; ``y`` is the plotted value
        (``DV``, or ``pcDV`` when prediction corrected).
    pi : tuple of float
        The percentiles (as probabilities).
    ci : float
        Probability of the interval around each simulated percentile.
    prediction_corrected : bool
    stratify : str or None
        What the strata are (``"DVID"``, a covariate, or None for one stratum ``"all"``).
    n_sim : int
        Number of simulated replicates.
    censoring : pandas.DataFrame or None
        With censored observations: one row per stratum and bin with ``stratum, bin, TIME,
        n_obs, observed`` (fraction of observations below the LLOQ), ``sim_median, sim_lo,
        sim_hi`` (of the simulated fractions), ``inside`` and ``lloq`` (the bin's median
        LLOQ). None without censoring.

    Examples
    --------
    >>> result = nb.vpc.vpc(fit, n_draws=200)  # doctest: +SKIP
    >>> result.stats.head()  # doctest: +SKIP
      stratum  bin    pi      TIME  ...
    0     all    0  0.05  0.000000  ...
    >>> fig = nb.vpc.plot_vpc(result)  # doctest: +SKIP
    """

    stats: pd.DataFrame
    bins: pd.DataFrame
    observations: pd.DataFrame
    pi: tuple[float, ...]
    ci: float
    prediction_corrected: bool
    stratify: str | None
    n_sim: int
    censoring: Any = None

    @property
    def strata(self) -> list[Any]:
        """The strata, in plotting order (``["all"]`` when not stratified).

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(0)
        >>> obs = pd.DataFrame({"TIME": np.tile([1.0, 2.0, 4.0], 20),
        ...                     "ROUTE": np.repeat(["oral", "iv"], 30)})
        >>> obs["DV"] = 10 * np.exp(-0.3 * obs["TIME"]) + rng.normal(0, 1, len(obs))
        >>> sims = 10 * np.exp(-0.3 * obs["TIME"].to_numpy()) + rng.normal(0, 1, (50, len(obs)))
        >>> vpc_statistics(obs, sims, bins=[0, 1.5, 3, 5], stratify="ROUTE").strata
        ['iv', 'oral']
        >>> vpc_statistics(obs, sims, bins=[0, 1.5, 3, 5]).strata
        ['all']
        """
        return list(pd.unique(self.bins["stratum"]))

    def coverage(self) -> float:
        """Fraction of observed percentiles inside their simulated interval.

        Examples
        --------
        >>> nb.vpc.vpc(fit).coverage()  # about 0.9 when the model is right  # doctest: +SKIP
        0...
        """
        return float(self.stats.dropna(subset=["observed"])["inside"].mean())


# ---------------------------------------------------------------------------- checks


def _check_pi_ci(pi: Any, ci: Any) -> tuple[tuple[float, ...], float]:
    try:
        probs = tuple(float(p) for p in np.atleast_1d(np.asarray(pi, dtype=float)))
    except (TypeError, ValueError):
        probs = ()
    if not probs or not all(0.0 < p < 1.0 for p in probs) or list(probs) != sorted(set(probs)):
        raise SpecificationError(
            f"pi={pi!r}: the VPC percentiles must be increasing probabilities strictly between "
            "0 and 1; pass e.g. pi=(0.05, 0.5, 0.95)"
        )
    if isinstance(ci, bool) or not isinstance(ci, (int, float)) or not 0.0 < float(ci) < 1.0:
        raise SpecificationError(
            f"ci={ci!r}: the interval around the simulated percentiles must have a probability "
            "strictly between 0 and 1; pass e.g. ci=0.9"
        )
    return probs, float(ci)


def _check_edges(edges: Any, where: str) -> np.ndarray:
    try:
        e = np.asarray(edges, dtype=float).ravel()
    except (TypeError, ValueError):
        e = np.array([np.nan])
    if e.size < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
        raise SpecificationError(
            f"{where}={edges!r}: bin edges must be at least two finite, strictly increasing "
            "numbers; pass e.g. [0, 1, 4, 12, 24]"
        )
    return e


# ---------------------------------------------------------------------------- binning


def _kmeans_1d(x: np.ndarray, w: np.ndarray, k_max: int, min_size: int) -> tuple:
    """Optimal weighted k-means of sorted 1-D ``x`` for every ``k <= k_max``.

    Dynamic programming over contiguous segments (optimal in 1-D); a segment with fewer than
    ``min_size`` observations (sum of ``w``) is not allowed. Returns the within-cluster sums
    of squares ``W[k]`` (``inf`` where infeasible) and ``starts(k)``: the start indices
    (into ``x``) of clusters 2..k.
    """
    m = len(x)
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cs = np.concatenate([[0.0], np.cumsum(w * x)])
    cq = np.concatenate([[0.0], np.cumsum(w * x * x)])
    cost = np.full((k_max + 1, m + 1), np.inf)
    arg = np.zeros((k_max + 1, m + 1), dtype=int)
    cost[0, 0] = 0.0
    for kk in range(1, k_max + 1):
        for j in range(kk, m + 1):
            i = np.arange(kk - 1, j)
            n = cw[j] - cw[i]
            s = cs[j] - cs[i]
            with np.errstate(divide="ignore", invalid="ignore"):
                within = np.maximum(cq[j] - cq[i] - s * s / n, 0.0)
            c = cost[kk - 1, i] + np.where(n >= min_size, within, np.inf)
            b = int(np.argmin(c))
            cost[kk, j], arg[kk, j] = c[b], i[b]

    def starts(k: int) -> list[int]:
        out, j = [], m
        for kk in range(k, 0, -1):
            j = int(arg[kk, j])
            out.append(j)
        return sorted(out)[1:]

    return cost[:, m], starts


def auto_bin_edges(time: Any, *, n_bins: int | None = None) -> np.ndarray:
    """Bin edges for a VPC: clusters of the sampling times (see the module docstring).

    Parameters
    ----------
    time : array-like
        Observation times.
    n_bins : int, optional
        Number of bins. Default: :data:`AUTO_MAX_BINS`, or fewer when the times form a
        clear grid of ``K`` groups, as nominal sampling times with some jitter do: the
        largest ``K`` whose ``K``-th bin removes at least :data:`GRID_DROP` (90 %) of the
        remaining within-bin sum of squares and leaves at most :data:`GRID_RESIDUAL` (1 %)
        of the total. Never more bins than distinct times, and at least
        :data:`MIN_BIN_SIZE` observations per automatic bin.

    Returns
    -------
    numpy.ndarray
        ``K + 1`` increasing edges from ``min(time)`` to ``max(time)``.

    Examples
    --------
    >>> t = [0.5, 0.5, 0.6, 1, 1.1, 1, 4, 4, 4.2, 24, 23.5, 24]
    >>> auto_bin_edges(t, n_bins=4).tolist()
    [0.5, 0.8, 2.55, 13.85, 24.0]
    >>> auto_bin_edges(t * 2).tolist()  # a clear grid of 4 sampling times
    [0.5, 0.8, 2.55, 13.85, 24.0]
    """
    t = np.asarray(time, dtype=float)
    t = t[np.isfinite(t)]
    if t.size == 0:
        raise SpecificationError("bins: no finite observation times to bin")
    u, w = np.unique(t, return_counts=True)
    if n_bins is None:
        min_size = MIN_BIN_SIZE
        k = max(1, min(AUTO_MAX_BINS, len(u), t.size // min_size))
    else:
        k = max(1, min(int(n_bins), len(u)))
        min_size = max(1, min(MIN_BIN_SIZE, t.size // k))
    if len(u) == 1:
        return np.array([u[0], u[0]])
    d = u - min(u[0], 0.0)
    t_pos = t - min(u[0], 0.0)
    t0 = np.quantile(t_pos[t_pos > 0], 0.1)
    wss, starts = _kmeans_1d(np.arcsinh(d / t0), w.astype(float), k, min_size)
    if n_bins is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            clear = [
                j
                for j in range(2, k + 1)
                if wss[j] <= (1.0 - GRID_DROP) * wss[j - 1] and wss[j] <= GRID_RESIDUAL * wss[1]
            ]
        k = clear[-1] if clear else k
    inner = [(u[s - 1] + u[s]) / 2.0 for s in starts(k)]
    return np.array([u[0], *inner, u[-1]])


def _assign_bins(time: np.ndarray, edges: np.ndarray, stratum: Any) -> np.ndarray:
    outside = (time < edges[0]) | (time > edges[-1])
    if outside.any():
        raise SpecificationError(
            f"bins: edges from {edges[0]:g} to {edges[-1]:g} leave out {int(outside.sum())} "
            f"observation(s) of stratum {stratum!r} (TIME from {time.min():g} to "
            f"{time.max():g}); extend the first and last edge to cover every observation"
        )
    idx = np.searchsorted(edges, time, side="right") - 1
    return np.minimum(idx, len(edges) - 2)


def _edges_for(time: np.ndarray, bins: Any, stratum: Any) -> np.ndarray:
    if isinstance(bins, str):
        if bins != "auto":
            raise SpecificationError(
                f"bins={bins!r} is not an option; expected 'auto', a number of bins, or a "
                "sequence of bin edges"
            )
        return auto_bin_edges(time)
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            raise SpecificationError(
                f"bins={bins!r}: the number of bins must be at least 1; pass e.g. bins=8"
            )
        return auto_bin_edges(time, n_bins=int(bins))
    if isinstance(bins, (Sequence, np.ndarray)):
        return _check_edges(bins, "bins")
    raise SpecificationError(
        f"bins={bins!r} is not an option; expected 'auto', a number of bins, or a sequence "
        "of bin edges"
    )


# ---------------------------------------------------------------------------- statistics


def _bin_percentiles(values: np.ndarray, probs: Sequence[float]) -> np.ndarray:
    """Percentiles of the last axis of ``values``: shape ``(len(probs), *values.shape[:-1])``.

    The one place where the VPC's percentiles are taken. Censored (BLQ) values are ``-inf``:
    ranked below every quantified value; a percentile that touches one is ``-inf`` (below
    the LLOQ).

    Examples
    --------
    >>> _bin_percentiles(np.array([-np.inf, -np.inf, 1.0, 2.0, 3.0]), [0.1, 0.5, 0.9]).tolist()
    [-inf, 1.0, 2.6]
    """
    values = np.asarray(values, dtype=float)
    if not np.isneginf(values).any():
        return np.quantile(values, probs, axis=-1)
    with np.errstate(invalid="ignore"):
        q = np.quantile(values, probs, axis=-1)
    return np.where(np.isnan(q), -np.inf, q)


def _interval(q_sim: np.ndarray, probs: Sequence[float]) -> np.ndarray:
    """Quantiles over replicates (axis 1), for percentiles that may be ``-inf`` (below LLOQ)."""
    if not np.isneginf(q_sim).any():
        return np.quantile(q_sim, probs, axis=1)
    return np.quantile(q_sim, probs, axis=1, method="inverted_cdf")


def _censoring_table(
    bins_df: pd.DataFrame,
    obs: pd.DataFrame,
    below_obs: np.ndarray,
    below_sim: np.ndarray,
    lloq: np.ndarray,
    ci: float,
) -> pd.DataFrame:
    """Observed and simulated fraction below the LLOQ per stratum and bin."""
    lo_q, hi_q = (1.0 - ci) / 2.0, (1.0 + ci) / 2.0
    rows = []
    for r in bins_df.itertuples(index=False):
        sel = ((obs["stratum"] == r.stratum) & (obs["bin"] == r.bin)).to_numpy()
        if not sel.any():
            continue
        frac_sim = below_sim[:, sel].mean(axis=1)
        observed = float(below_obs[sel].mean())
        lo, med, hi = np.quantile(frac_sim, [lo_q, 0.5, hi_q])
        limits = lloq[sel][np.isfinite(lloq[sel])]
        rows.append(
            {
                "stratum": r.stratum,
                "bin": r.bin,
                "TIME": r.TIME,
                "n_obs": r.n_obs,
                "observed": observed,
                "sim_median": float(med),
                "sim_lo": float(lo),
                "sim_hi": float(hi),
                "inside": bool(lo <= observed <= hi),
                "lloq": float(np.median(limits)) if limits.size else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _strata_order(column: pd.Series) -> list[Any]:
    if isinstance(column.dtype, pd.CategoricalDtype):
        present = set(column.dropna().unique())
        return [c for c in column.cat.categories if c in present]
    values = list(pd.unique(column))
    try:
        return sorted(values)
    except TypeError:
        return values


def vpc_statistics(
    observed: pd.DataFrame,
    simulations: Any,
    *,
    bins: str | int | Sequence[float] = "auto",
    stratify: str | None = None,
    prediction_corrected: bool = False,
    pi: Sequence[float] = (0.05, 0.5, 0.95),
    ci: float = 0.9,
    lloq: Any = None,
    censored: Any = None,
) -> VPCResult:
    """The VPC statistics from observations and simulated replicates of them.

    Parameters
    ----------
    observed : pandas.DataFrame
        One row per observation with ``TIME`` and ``DV``; ``PRED`` when
        ``prediction_corrected``; the ``stratify`` column when given.
    simulations : array-like, shape (n_sim, n_obs)
        Simulated observations, columns in the order of the rows of ``observed``.
    bins : "auto", int or sequence of float
        Automatic binning (see :func:`auto_bin_edges`, per stratum), a number of bins, or
        bin edges (the same for every stratum).
    stratify : str, optional
        A column of ``observed``; one stratum per value (categorical columns keep the order
        of their categories, other columns are sorted).
    prediction_corrected : bool
        Use ``DV * PRED_bin / PRED`` (Bergstrand et al. 2011; see the module docstring).
    pi : sequence of float
        Percentiles, as increasing probabilities in (0, 1).
    ci : float
        Probability of the interval around each simulated percentile.
    lloq : array-like, shape (n_obs,), optional
        LLOQ of each observation (NaN where none): simulated values below it are censored.
    censored : array-like of bool, shape (n_obs,), optional
        Observations below their LLOQ (with ``lloq``); see "Censoring" in the module
        docstring.

    Returns
    -------
    VPCResult

    Raises
    ------
    SpecificationError
        Bad ``pi``, ``ci`` or ``bins``, edges that leave observations out, missing columns,
        simulations whose shape does not match the observations, or ``censored`` without
        ``lloq``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> obs = pd.DataFrame({"TIME": np.repeat([1.0, 2.0, 4.0], 20)})
    >>> obs["DV"] = 10 * np.exp(-0.3 * obs["TIME"]) + rng.normal(0, 1, len(obs))
    >>> sims = 10 * np.exp(-0.3 * obs["TIME"].to_numpy()) + rng.normal(0, 1, (200, len(obs)))
    >>> res = vpc_statistics(obs, sims, bins=[0, 1.5, 3, 5])
    >>> print(res.bins[["bin", "lower", "upper", "n_obs"]].to_string(index=False))
     bin  lower  upper  n_obs
       0    0.0    1.5     20
       1    1.5    3.0     20
       2    3.0    5.0     20
    >>> res.coverage() >= 2 / 3
    True
    """
    probs, ci = _check_pi_ci(pi, ci)
    need = ["TIME", "DV"] + (["PRED"] if prediction_corrected else [])
    need += [stratify] if stratify is not None else []
    missing = [c for c in need if c not in observed.columns]
    if missing:
        raise SpecificationError(
            f"observed: missing column(s) {', '.join(missing)}; vpc_statistics needs "
            f"{', '.join(need)}"
        )
    obs = observed.reset_index(drop=True).copy()
    sims = np.asarray(simulations, dtype=float)
    if sims.ndim != 2 or sims.shape[1] != len(obs) or sims.shape[0] < 2:
        raise SpecificationError(
            f"simulations: expected shape (n_sim >= 2, {len(obs)}) (one column per "
            f"observation), got {sims.shape}"
        )
    time = obs["TIME"].to_numpy(dtype=float)
    if stratify is None:
        obs["stratum"] = "all"
    else:
        obs["stratum"] = obs[stratify]
    order = _strata_order(obs["stratum"])
    bin_idx = np.zeros(len(obs), dtype=int)
    bin_rows = []
    for s in order:
        m = (obs["stratum"] == s).to_numpy()
        edges = _edges_for(time[m], bins, s)
        b = _assign_bins(time[m], edges, s)
        bin_idx[m] = b
        for k in range(len(edges) - 1):
            in_k = b == k
            n = int(in_k.sum())
            bin_rows.append(
                {
                    "stratum": s,
                    "bin": k,
                    "lower": edges[k],
                    "upper": edges[k + 1],
                    "TIME": float(time[m][in_k].mean()) if n else (edges[k] + edges[k + 1]) / 2,
                    "n_obs": n,
                }
            )
    obs["bin"] = bin_idx
    bins_df = pd.DataFrame(bin_rows)
    y_obs = obs["DV"].to_numpy(dtype=float)
    y_sim = sims
    below_obs = below_sim = limits = None
    if censored is not None and lloq is None:
        raise SpecificationError(
            "censored is given without lloq; pass the LLOQ of each observation"
        )
    if lloq is not None:
        limits = np.broadcast_to(np.asarray(lloq, dtype=float), (len(obs),)).copy()
        below_obs = (
            np.zeros(len(obs), bool)
            if censored is None
            else np.asarray(censored, dtype=bool).reshape(len(obs))
        )
        with np.errstate(invalid="ignore"):
            below_sim = np.isfinite(limits) & (sims < limits)
    if prediction_corrected:
        factor, obs["PRED_bin"] = _pc_factor(obs)
        y_obs, y_sim = y_obs * factor, sims * factor
    if below_obs is not None:
        obs["BLQ"] = below_obs
        y_obs = np.where(below_obs, np.nan, y_obs)  # not drawn as a point
        y_sim = np.where(below_sim, -np.inf, y_sim)
    obs["y"] = y_obs
    y_rank = y_obs if below_obs is None else np.where(below_obs, -np.inf, y_obs)
    lo_q, hi_q = (1.0 - ci) / 2.0, (1.0 + ci) / 2.0
    rows = []
    for r in bins_df.itertuples(index=False):
        sel = ((obs["stratum"] == r.stratum) & (obs["bin"] == r.bin)).to_numpy()
        if r.n_obs:
            q_obs = _bin_percentiles(y_rank[sel], probs)
            q_sim = _bin_percentiles(y_sim[:, sel], probs)  # (P, n_sim)
            lo, med, hi = _interval(q_sim, [lo_q, 0.5, hi_q])
        else:
            q_obs = med = lo = hi = np.full(len(probs), np.nan)
        for j, p in enumerate(probs):
            rows.append(
                {
                    **r._asdict(),
                    "pi": p,
                    "observed": q_obs[j],
                    "sim_median": med[j],
                    "sim_lo": lo[j],
                    "sim_hi": hi[j],
                    "inside": bool(lo[j] <= q_obs[j] <= hi[j]),
                }
            )
    cols = ["stratum", "bin", "pi", "TIME", "lower", "upper", "n_obs"]
    cols += ["observed", "sim_median", "sim_lo", "sim_hi", "inside"]
    stats = pd.DataFrame(rows)[cols]
    censoring = None
    if below_obs is not None:
        censoring = _censoring_table(bins_df, obs, below_obs, below_sim, limits, ci)
        below = ["observed", "sim_median", "sim_lo", "sim_hi"]
        stats[below] = stats[below].where(np.isfinite(stats[below].to_numpy()))
    return VPCResult(
        stats=stats,
        bins=bins_df,
        observations=obs,
        pi=probs,
        ci=ci,
        prediction_corrected=bool(prediction_corrected),
        stratify=stratify,
        n_sim=int(sims.shape[0]),
        censoring=censoring,
    )


def _pc_factor(obs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``PRED_bin / PRED`` per observation (1 where either is not positive), and PRED_bin."""
    pred = obs["PRED"].to_numpy(dtype=float)
    pred_bin = obs.groupby(["stratum", "bin"], sort=False)["PRED"].transform("median")
    pred_bin = pred_bin.to_numpy(dtype=float)
    ok = (pred > 0) & (pred_bin > 0) & np.isfinite(pred) & np.isfinite(pred_bin)
    return np.where(ok, pred_bin / np.where(ok, pred, 1.0), 1.0), pred_bin


# ---------------------------------------------------------------------------- from a fit


def _replicates(fit: Any, *, n_sim: int, new_subjects: bool, random_seed: int) -> dict:
    """``n_sim`` replicates as NumPy arrays (DV_sim, IPRED_sim, PRED: (n_sim, n_obs)).

    One replicate per posterior draw; past the number of draws, further blocks reuse the
    draws with fresh random effects and noise (seeds ``random_seed + 1, + 2, ...``).
    """
    from .simulation import simulate_replicates

    post = fit.posterior
    n_total = post.sizes["chain"] * post.sizes["draw"]
    blocks, left, k = [], int(n_sim), 0
    while left > 0:
        ds = simulate_replicates(
            fit,
            n_draws=min(left, n_total),
            new_subjects=new_subjects,
            random_seed=random_seed + k,
        )
        blocks.append(ds)
        left -= ds.sizes["draw"]
        k += 1
    out = {v: np.concatenate([b[v].values for b in blocks]) for v in ("DV_sim", "IPRED_sim")}
    out["PRED"] = np.concatenate([b["PRED"].values for b in blocks])
    out["DV"] = blocks[0]["DV"].values
    return out


def _stratum_labels(fit: Any, obs: pd.DataFrame, stratify: str, edges: Any) -> pd.Series:
    """One label per observation: the DVID/covariate value, or its interval."""
    covariates = tuple(fit.data.covariates)
    if stratify == "DVID":
        values = obs["DVID"]
    elif stratify in covariates:
        rec = fit.data.records.set_index("ROW")[stratify]
        values = pd.Series(rec.loc[obs["ROW"].to_numpy()].to_numpy(), index=obs.index)
    else:
        choices = ", ".join(["'DVID'", *(repr(c) for c in sorted(covariates))])
        raise SpecificationError(
            f"stratify={stratify!r} is not a column of the data; expected None or one of {choices}"
        )
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if edges is None and (not numeric or values.nunique() <= MAX_CATEGORIES):
        cats = _strata_order(values)
        labels = values.map(lambda v: f"{stratify} = {v}")
        return pd.Series(
            pd.Categorical(labels, categories=[f"{stratify} = {c}" for c in cats], ordered=True),
            index=obs.index,
        )
    if not numeric:
        raise SpecificationError(
            f"stratify_bins: {stratify!r} is not numeric, so it is stratified by its "
            "categories; leave stratify_bins=None"
        )
    x = values.to_numpy(dtype=float)
    if edges is None:
        med = float(np.median(x))
        names = [f"{stratify} ≤ {med:.4g}", f"{stratify} > {med:.4g}"]
        codes = (x > med).astype(int)
    else:
        e = _check_edges(edges, "stratify_bins")
        codes = _assign_bins(x, e, stratify)
        names = [
            f"{e[k]:.4g} ≤ {stratify} {'≤' if k == len(e) - 2 else '<'} {e[k + 1]:.4g}"
            for k in range(len(e) - 1)
        ]
    return pd.Series(pd.Categorical.from_codes(codes, categories=names), index=obs.index)


def vpc(
    fit: Any,
    *,
    n_draws: int = 200,
    bins: str | int | Sequence[float] = "auto",
    stratify: str | None = None,
    stratify_bins: Sequence[float] | None = None,
    prediction_corrected: bool = False,
    pi: Sequence[float] = (0.05, 0.5, 0.95),
    ci: float = 0.9,
    random_seed: int = 0,
) -> VPCResult:
    """Visual predictive check of a fit (statistics; draw them with :func:`plot_vpc`).

    Parameters
    ----------
    fit : Fit
    n_draws : int
        Number of simulated replicates of the study. Each uses one posterior draw
        (parameter uncertainty) and new subjects' random effects ``eta ~ N(0, Omega)``.
    bins : "auto", int or sequence of float
        ``"auto"``: clusters of the sampling times (module docstring); an int: that many
        bins by the same rule; a sequence: bin edges covering every observation time.
    stratify : str, optional
        ``"DVID"`` or a covariate. Categorical covariates (and numeric ones with at most
        :data:`MAX_CATEGORIES` values) give one stratum per value; other numeric covariates
        are split at their median (``<=`` / ``>``) unless ``stratify_bins`` is given.
    stratify_bins : sequence of float, optional
        Edges for a numeric ``stratify`` covariate.
    prediction_corrected : bool
        Prediction-corrected VPC (Bergstrand et al. 2011): ``DV * PRED_bin / PRED``.
    pi : sequence of float
        Percentiles as probabilities, default 5th, 50th and 95th.
    ci : float
        Probability of the band around each simulated percentile (default 90 %).
    random_seed : int

    Returns
    -------
    VPCResult

    Raises
    ------
    SpecificationError
        Unknown ``stratify`` column, bad ``bins``/``stratify_bins``, ``pi`` or ``ci`` out
        of range.

    Examples
    --------
    >>> from nlme_bayes.vpc import vpc, plot_vpc
    >>> res = vpc(fit, n_draws=200, prediction_corrected=True)  # doctest: +SKIP
    >>> res.stats.head()  # doctest: +SKIP
      stratum  bin    pi      TIME  ...
    0     all    0  0.05  0.000000  ...
    >>> fig = plot_vpc(res, path="vpc.png")  # doctest: +SKIP
    """
    from .simulation import observation_table

    _check_pi_ci(pi, ci)
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 2:
        raise SpecificationError(
            f"n_draws={n_draws!r}: a VPC needs at least 2 simulated replicates; "
            "pass e.g. n_draws=200"
        )
    obs = observation_table(fit)[["ID", "TIME", "DVID", "DV", "ROW"]].copy()
    column = None
    if stratify is not None:
        obs["STRATUM"] = _stratum_labels(fit, obs, stratify, stratify_bins)
        column = "STRATUM"
    elif stratify_bins is not None:
        raise SpecificationError("stratify_bins is given without stratify; name a covariate")
    rep = _replicates(fit, n_sim=int(n_draws), new_subjects=True, random_seed=random_seed)
    obs["PRED"] = np.median(rep["PRED"], axis=0)
    from .censoring import fit_censoring

    info = fit_censoring(fit, observation_table(fit))
    res = vpc_statistics(
        obs,
        rep["DV_sim"],
        bins=bins,
        stratify=column,
        prediction_corrected=prediction_corrected,
        pi=pi,
        ci=ci,
        lloq=None if info is None else info.lloq,
        censored=None if info is None else info.censored,
    )
    obs_out = res.observations.drop(columns=["STRATUM"], errors="ignore")
    return VPCResult(
        stats=res.stats,
        bins=res.bins,
        observations=obs_out,
        pi=res.pi,
        ci=res.ci,
        prediction_corrected=res.prediction_corrected,
        stratify=stratify,
        n_sim=res.n_sim,
        censoring=res.censoring,
    )


# ---------------------------------------------------------------------------- plot


def _ordinal(p: float) -> str:
    v = p * 100
    s = f"{v:g}"
    if v != int(v):
        return f"{s}th"
    n = int(v)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _clip_to_lloq(stats: pd.DataFrame, cens: pd.DataFrame) -> pd.DataFrame:
    """Simulated bands whose lower end is below the LLOQ are drawn down to the LLOQ."""
    limit = stats["bin"].map(cens.set_index("bin")["lloq"])
    out = stats.copy()
    for c in ("sim_lo", "sim_median"):
        out[c] = out[c].where(out[c].notna() | out["sim_hi"].isna(), limit)
    return out


def _plot_fraction_blq(a: Any, cens: pd.DataFrame, res: VPCResult) -> None:
    """Observed fraction below the LLOQ per bin against the simulated median and interval."""
    x = cens["TIME"].to_numpy()
    a.fill_between(
        x, cens["sim_lo"], cens["sim_hi"], color="#1f77b4", alpha=0.25, lw=0, label="simulated"
    )
    a.plot(x, cens["sim_median"], color="#1f77b4", lw=1.2, ls="--")
    a.plot(x, cens["observed"], color="#b2182b", lw=1.8, marker="o", ms=3, label="observed")
    a.set_ylim(-0.02, max(0.1, float(np.nanmax(cens[["observed", "sim_hi"]].to_numpy())) * 1.15))
    a.set_xlabel("TIME")
    a.set_ylabel("fraction < LLOQ")
    a.legend(fontsize=7, loc="best", title=f"{res.ci:.0%} CI", title_fontsize=7)


def plot_vpc(
    result_or_fit: Any,
    *,
    path: str | os.PathLike | None = None,
    log_y: bool = False,
    show_points: bool = True,
    ncols: int | None = None,
    title: str | None = None,
    **vpc_options: Any,
) -> Any:
    """Draw a VPC: observations, observed percentiles and bands of simulated percentiles.

    The standard look: observed data as grey points; the observed median (solid) and outer
    percentiles (dashed) as red lines; the ``ci`` interval of the simulated median as a red
    band and of the simulated outer percentiles as blue bands; bin edges as ticks on the
    time axis. One panel per stratum.

    Parameters
    ----------
    result_or_fit : VPCResult or Fit
        A fit is passed to :func:`vpc` with ``vpc_options`` first.
    path : path-like, optional
        Write a PNG there.
    log_y : bool
        Logarithmic concentration axis (non-positive values are not drawn).
    show_points : bool
        Draw the observations.
    ncols : int, optional
        Panels per row (default: up to 3).
    title : str, optional
    **vpc_options
        Options of :func:`vpc` (only with a fit).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_vpc(fit, path="vpc.png", stratify="DVID")  # doctest: +SKIP
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from .plots import _figure, _save

    if isinstance(result_or_fit, VPCResult):
        if vpc_options:
            raise SpecificationError(
                f"plot_vpc: options {sorted(vpc_options)} apply when computing a VPC from a "
                "fit; a VPCResult is drawn as it is (pass the fit instead)"
            )
        res = result_or_fit
    else:
        res = vpc(result_or_fit, **vpc_options)
    strata = res.strata
    ncols = min(ncols or 3, len(strata))
    nrows = math.ceil(len(strata) / ncols)
    size = (6.4, 4.8) if len(strata) == 1 else (5.4 * ncols, 4.3 * nrows)
    cens = res.censoring
    if cens is None:
        fig, axes = _figure(nrows, ncols, size)
    else:  # a panel of the fraction below the LLOQ under each VPC panel
        import matplotlib.pyplot as plt

        fig, grid = plt.subplots(
            2 * nrows,
            ncols,
            figsize=(size[0], size[1] * 1.4),
            squeeze=False,
            gridspec_kw={"height_ratios": [3.0, 1.3] * nrows},
        )
        axes, frac_axes = grid[0::2], grid[1::2]
    mid = int(np.argmin([abs(p - 0.5) for p in res.pi]))
    band = {True: ("#d62728", 0.28), False: ("#1f77b4", 0.22)}
    for n, s in enumerate(strata):
        a = axes[n // ncols, n % ncols]
        st = res.stats[res.stats["stratum"] == s]
        if cens is not None:
            st = _clip_to_lloq(st, cens[cens["stratum"] == s])
            _plot_fraction_blq(frac_axes[n // ncols, n % ncols], cens[cens["stratum"] == s], res)
        o = res.observations[res.observations["stratum"] == s]
        y = o["y"].to_numpy()
        floor = -np.inf
        if log_y:  # bands reaching <= 0 are drawn down to the bottom of the axis
            vals = np.r_[y, st[["observed", "sim_lo", "sim_hi"]].to_numpy().ravel()]
            vals = vals[np.isfinite(vals) & (vals > 0)]
            floor = 0.5 * vals.min() if vals.size else 1e-3
        if show_points:
            a.scatter(o["TIME"], y, s=9, color="0.45", alpha=0.55, lw=0, zorder=2)
        if cens is not None:
            limits = cens.loc[cens["stratum"] == s, "lloq"].dropna().unique()
            for limit in limits[:1] if len(limits) == 1 else ():
                a.axhline(limit, color="k", lw=0.9, ls=":", zorder=2)
        for j, p in enumerate(res.pi):
            q = st[st["pi"] == p].dropna(subset=["observed" if cens is None else "sim_hi"])
            if q.empty:
                continue
            x = q["TIME"].to_numpy()
            lo, hi, ob = q["sim_lo"].to_numpy(), q["sim_hi"].to_numpy(), q["observed"].to_numpy()
            if len(x) == 1:  # a single bin: span its edges
                x = np.r_[q["lower"].to_numpy(), q["upper"].to_numpy()]
                lo, hi, ob = np.repeat(lo, 2), np.repeat(hi, 2), np.repeat(ob, 2)
            color, alpha = band[j == mid and abs(p - 0.5) < 1e-9]
            lo, hi = np.maximum(lo, floor), np.maximum(hi, floor)
            a.fill_between(x, lo, hi, color=color, alpha=alpha, lw=0, zorder=1)
            a.plot(x, ob, color="#b2182b", lw=1.8, ls="-" if j == mid else "--", zorder=3)
            # observed percentiles below the LLOQ are NaN: the line has a gap there
        edges = np.unique(res.bins.loc[res.bins["stratum"] == s, ["lower", "upper"]].values)
        for e in edges:
            a.axvline(e, ymin=0, ymax=0.025, color="k", lw=0.8)
        if log_y:
            a.set_yscale("log", nonpositive="mask")
            a.set_ylim(bottom=floor)
        if len(strata) > 1 or res.stratify is not None:
            a.set_title(str(s), fontsize=10)
        a.set_xlabel("TIME")
        a.set_ylabel("prediction-corrected DV" if res.prediction_corrected else "DV")
    for k in range(len(strata), nrows * ncols):
        axes[k // ncols, k % ncols].set_visible(False)
        if cens is not None:
            frac_axes[k // ncols, k % ncols].set_visible(False)
    outer = [_ordinal(p) for j, p in enumerate(res.pi) if j != mid]
    handles = [
        Line2D([], [], color="0.45", marker="o", ls="", ms=4, label="observations"),
        Line2D([], [], color="#b2182b", lw=1.8, label=f"observed {_ordinal(res.pi[mid])} pctl"),
    ]
    mid_name = "median" if abs(res.pi[mid] - 0.5) < 1e-9 else f"{_ordinal(res.pi[mid])} pctl"
    mid_color = band[mid_name == "median"][0]
    outer_name = f"{'/'.join(outer)} pctl"
    if outer:
        handles.append(
            Line2D([], [], color="#b2182b", lw=1.8, ls="--", label=f"observed {outer_name}")
        )
    handles.append(
        Patch(color=mid_color, alpha=0.4, label=f"{res.ci:.0%} CI, simulated {mid_name}")
    )
    if outer:
        handles.append(
            Patch(
                color=band[False][0], alpha=0.35, label=f"{res.ci:.0%} CI, simulated {outer_name}"
            )
        )
    axes[0, 0].legend(handles=handles, fontsize=7.5, loc="best")
    kind = "prediction-corrected VPC" if res.prediction_corrected else "VPC"
    fig.suptitle(
        title or f"{kind}: {res.n_sim} simulated replicates (new subjects, posterior draws)"
    )
    fig.tight_layout()
    return _save(fig, path)
