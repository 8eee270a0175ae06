"""Simulation-based residuals of a fit: NPDE and posterior-predictive residuals.

Both compare each observation with replicates of the study simulated from the posterior
(:func:`~nlme_bayes.simulation.simulate_replicates`), so they need no linearisation and
are defined for any structural and error model.

:func:`npde`: normalised prediction distribution errors (Brendel et al. 2006; Comets,
Brendel & Mentré 2008). Population-level: replicates with *new* subjects' random effects
and parameter uncertainty (one posterior draw each), so an observation is compared with
what the model predicts for a new subject with the same design. Per subject ``i``, with
``K`` simulated vectors ``y_ik`` of its ``n_i`` observations:

1. ``E_i`` (``EPRED``) and ``V_i`` are the empirical mean and covariance (divisor
   ``K - 1``) of the ``y_ik``; ``V_i = L_i L_i'`` (Cholesky, observations in time order);
2. decorrelation: ``y*_i = L_i^{-1} (y_i - E_i)`` and ``y*_ik = L_i^{-1} (y_ik - E_i)``;
3. ``pde_ij`` is the fraction of the ``K`` values ``y*_ikj`` below ``y*_ij``, set to
   ``1/(2K)`` when it is 0 and to ``1 - 1/(2K)`` when it is 1, and
   ``npde_ij = Phi^{-1}(pde_ij)``.

Under the model the npde are N(0, 1) (and independent within a subject when the
observations are jointly normal). Choices: observations of a log-scale error model
(``LogAdditive``) are decorrelated on the log scale, where they are closer to normal;
an observation whose simulated values do not vary (e.g. a proportional error at a zero
prediction) has no pde (NaN) and is left out of its subject's decorrelation; the
covariance needs ``K > n_i`` (more replicates than observations per subject).

:func:`pp_residuals`: posterior-predictive standardised residuals conditional on the
subject, ``(DV - E[DV_rep]) / SD[DV_rep]``, with replicates that keep the fitted random
effects (``new_subjects=False``): the Bayesian counterpart of a conditional weighted
residual. Log-scale error models use ``log DV``. The data were used to fit, so these
residuals are slightly under-dispersed (SD a little below 1) for a correct model.

Censored observations (``Model(blq=...)``): for the npde, a censored observation's pde is
drawn uniformly between 0 and the fraction of its simulated values below its LLOQ, and its
value for the decorrelation is the simulated quantile at that pde (Nguyen, Comets & Mentré
2012, J Pharmacokinet Pharmacodyn 39:499); such npde are marked ``BLQ``. A censored
observation has no posterior-predictive residual (NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .errors import SpecificationError

__all__ = ["npde", "npde_statistics", "pp_residuals"]


def _cholesky(cov: np.ndarray) -> np.ndarray:
    """Cholesky factor, with a growing ridge if ``cov`` is numerically singular."""
    scale = float(np.mean(np.diag(cov)))
    for eps in (0.0, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4):
        try:
            return np.linalg.cholesky(cov + eps * scale * np.eye(len(cov)))
        except np.linalg.LinAlgError:
            continue
    raise SpecificationError(
        "npde: the covariance of the simulated observations of a subject is singular; "
        "increase n_draws"
    )


def npde_statistics(observed: Any, simulations: Any, subject: Any) -> pd.DataFrame:
    """pde and npde of observations given simulated replicates (the NumPy core of :func:`npde`).

    Parameters
    ----------
    observed : array-like, shape (n_obs,)
        Observations, each subject's in time order.
    simulations : array-like, shape (K, n_obs)
        ``K`` simulated replicates of the observations.
    subject : array-like, shape (n_obs,)
        Subject of each observation.

    Returns
    -------
    pandas.DataFrame
        ``EPRED`` (mean of the simulations), ``pde`` and ``npde``, one row per observation.

    Raises
    ------
    SpecificationError
        Mismatched shapes, or ``K`` not larger than the number of observations of a subject.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    >>> sims = rng.multivariate_normal([0, 0], cov, size=(1000, 200)).reshape(1000, 400)
    >>> obs = rng.multivariate_normal([0, 0], cov, size=200).ravel()
    >>> res = npde_statistics(obs, sims, np.repeat(np.arange(200), 2))
    >>> bool(abs(res["npde"].mean()) < 0.2 and abs(res["npde"].std() - 1) < 0.15)
    True
    """
    y = np.asarray(observed, dtype=float).ravel()
    sims = np.asarray(simulations, dtype=float)
    groups = np.asarray(subject).ravel()
    if sims.ndim != 2 or sims.shape[1] != y.size or groups.size != y.size:
        raise SpecificationError(
            f"npde: expected simulations of shape (K, {y.size}) and {y.size} subject labels, "
            f"got {sims.shape} and {groups.size}"
        )
    from scipy.linalg import solve_triangular
    from scipy.stats import norm

    k = sims.shape[0]
    pde = np.full(y.size, np.nan)
    for g in pd.unique(groups):
        idx = np.flatnonzero(groups == g)
        centred = sims[:, idx] - sims[:, idx].mean(axis=0)
        sd = centred.std(axis=0, ddof=1)
        e = sims[:, idx].mean(axis=0)
        ok = np.isfinite(y[idx]) & (sd > 1e-10 * np.maximum(np.abs(e), 1e-300))
        if not ok.any():
            continue
        if k <= ok.sum():
            raise SpecificationError(
                f"npde: subject {g} has {int(ok.sum())} observations but only {k} simulated "
                "replicates; the covariance needs more replicates than observations per "
                f"subject (increase n_draws above {int(ok.sum())}, e.g. 500)"
            )
        c = centred[:, ok]
        chol = _cholesky(c.T @ c / (k - 1))
        z_sim = solve_triangular(chol, c.T, lower=True)  # (n_ok, K)
        z_obs = solve_triangular(chol, y[idx][ok] - e[ok], lower=True)
        pde[idx[ok]] = (z_sim < z_obs[:, None]).mean(axis=1)
    pde = np.clip(pde, 1.0 / (2 * k), 1.0 - 1.0 / (2 * k))
    return pd.DataFrame({"EPRED": sims.mean(axis=0), "pde": pde, "npde": norm.ppf(pde)})


def _check_n_draws(n_draws: Any) -> int:
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 2:
        raise SpecificationError(
            f"n_draws={n_draws!r}: the number of simulated replicates must be an integer "
            ">= 2; pass e.g. n_draws=500"
        )
    return int(n_draws)


def _residual_scale(fit: Any, obs: pd.DataFrame, dv: np.ndarray, sims: np.ndarray) -> tuple:
    """Observations and simulations on the residual scale (log for log-scale error models)."""
    from .simulation import error_models_by_dvid
    from .spec import LogAdditive

    dvid = obs["DVID"].to_numpy().astype(int)
    is_log = np.zeros(len(obs), dtype=bool)
    for k, (err, _) in error_models_by_dvid(fit.model, dvid).items():
        if isinstance(err, LogAdditive):
            is_log[dvid == k] = True
    if not is_log.any():
        return dv, sims
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(is_log, np.log(np.where(dv > 0, dv, np.nan)), dv)
        s = np.where(is_log, np.log(np.where(sims > 0, sims, np.nan)), sims)
    return y, s


def npde(fit: Any, *, n_draws: int = 500, random_seed: int = 0) -> pd.DataFrame:
    """Normalised prediction distribution errors of every observation of a fit.

    See the module docstring for the method (Comets et al. 2008, Cholesky decorrelation).

    Parameters
    ----------
    fit : Fit
    n_draws : int
        Number of simulated replicates ``K`` (new subjects, one posterior draw each; past
        the number of posterior draws, the draws are reused with new random effects).
        Must exceed the largest number of observations of a subject.
    random_seed : int

    Returns
    -------
    pandas.DataFrame
        ``ID, TIME, DVID, DV, PRED, EPRED, pde, npde``: ``PRED`` is the posterior mean of the
        population prediction (eta = 0), ``EPRED`` the mean of the simulated observations.

    Raises
    ------
    SpecificationError
        ``n_draws`` too small.

    Examples
    --------
    >>> from nlme_bayes.residuals import npde
    >>> table = npde(fit, n_draws=500)  # doctest: +SKIP
    >>> table["npde"].describe()  # doctest: +SKIP
    count    132.000000
    mean     ...
    Name: npde, dtype: float64
    """
    from .simulation import observation_table
    from .vpc import _replicates

    n = _check_n_draws(n_draws)
    obs = observation_table(fit)
    most = int(obs.groupby("ID", sort=False).size().max())
    if n <= most:
        raise SpecificationError(
            f"n_draws={n}: NPDE decorrelate each subject's observations with the covariance "
            f"of its simulated ones, which needs more replicates than the largest number of "
            f"observations of a subject ({most}); pass e.g. n_draws=500"
        )
    rep = _replicates(fit, n_sim=n, new_subjects=True, random_seed=random_seed)
    dv = obs["DV"].to_numpy(dtype=float)
    info = _censoring(fit, obs)
    if info is not None:
        dv = _impute_censored(dv, rep["DV_sim"], info, random_seed)
    y, sims = _residual_scale(fit, obs, dv, rep["DV_sim"])
    st = npde_statistics(y, sims, obs["ID"].to_numpy())
    out = obs[["ID", "TIME", "DVID", "DV"]].copy()
    if info is not None:
        out["BLQ"] = info.censored
    out["PRED"] = rep["PRED"].mean(axis=0)
    out["EPRED"] = rep["DV_sim"].mean(axis=0)
    out["pde"] = st["pde"].to_numpy()
    out["npde"] = st["npde"].to_numpy()
    return out


def pp_residuals(fit: Any, *, n_draws: int = 500, random_seed: int = 0) -> pd.DataFrame:
    """Posterior-predictive standardised residuals, conditional on each subject.

    ``ppres = (DV - E[DV_rep]) / SD[DV_rep]`` over replicates that keep each draw's fitted
    random effects (``new_subjects=False``), i.e. the posterior predictive distribution of
    each observation given its subject; ``log DV`` for log-scale error models.

    Parameters
    ----------
    fit : Fit
    n_draws : int
        Number of replicates (one posterior draw each, reused past the number of draws).
    random_seed : int

    Returns
    -------
    pandas.DataFrame
        ``ID, TIME, DVID, DV, PRED, IPRED`` (posterior means over the replicates' draws),
        ``DV_rep_mean, DV_rep_sd`` (on the residual scale) and ``ppres``.

    Raises
    ------
    SpecificationError
        ``n_draws`` below 2.

    Examples
    --------
    >>> from nlme_bayes.residuals import pp_residuals
    >>> pp_residuals(fit)[["TIME", "ppres"]].head(3)  # doctest: +SKIP
       TIME     ppres
    0  0.00  ...
    1  0.25  ...
    2  0.57  ...
    """
    from .simulation import observation_table
    from .vpc import _replicates

    n = _check_n_draws(n_draws)
    obs = observation_table(fit)
    rep = _replicates(fit, n_sim=n, new_subjects=False, random_seed=random_seed)
    dv = obs["DV"].to_numpy(dtype=float)
    y, sims = _residual_scale(fit, obs, dv, rep["DV_sim"])
    mean = np.nanmean(sims, axis=0)
    sd = np.nanstd(sims, axis=0, ddof=1)
    out = obs[["ID", "TIME", "DVID", "DV"]].copy()
    out["PRED"] = rep["PRED"].mean(axis=0)
    out["IPRED"] = rep["IPRED_sim"].mean(axis=0)
    out["DV_rep_mean"] = mean
    out["DV_rep_sd"] = sd
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ppres"] = np.where(sd > 0, (y - mean) / sd, np.nan)
    info = _censoring(fit, obs)
    if info is not None:
        out["BLQ"] = info.censored
        out.loc[info.censored, "ppres"] = np.nan
    return out


def _censoring(fit: Any, obs: pd.DataFrame) -> Any:
    from .censoring import fit_censoring

    return fit_censoring(fit, obs)


def _impute_censored(dv: np.ndarray, sims: np.ndarray, info: Any, seed: int) -> np.ndarray:
    """Censored DV replaced by a draw below the LLOQ from its simulated distribution.

    pde ~ U(0, P(sim < LLOQ)) and the value is the simulated quantile at that pde (Nguyen
    et al. 2012); an observation whose simulations never fall below its LLOQ gets the
    smallest simulated value.
    """
    rng = np.random.default_rng(seed + 7919)
    out = dv.copy()
    idx = np.flatnonzero(info.censored)
    for j in idx:
        col = np.sort(sims[:, j])
        p_below = float(np.mean(col < info.lloq[j]))
        u = rng.uniform(0.0, p_below) if p_below > 0 else 0.0
        out[j] = np.quantile(col, u)
    return out
