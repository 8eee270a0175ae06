r"""Individual forecasting for a new patient, from a fitted population model.

Given a patient who was not in the fit -- covariates, dose history and a few measured
levels :math:`y` -- :func:`forecast` returns the posterior of their random effects
:math:`\eta` and individual parameters, propagating the population posterior, and the
predicted concentrations with credible and prediction bands. ``method="map"`` is the fast
classical alternative (MAP Bayes at the posterior medians).

The target (``method="full"``) is the posterior a full refit with the patient as one more
subject would give:

.. math::

    p(\theta, \eta \mid y_{pop}, y) \;\propto\;
    \underbrace{p(\theta \mid y_{pop})}_{\text{the fit's draws}}\;
    \underbrace{p(y \mid \theta)}_{\text{weight}}\;
    \underbrace{p(\eta \mid \theta, y)}_{\text{sampled per draw}},
    \qquad p(y \mid \theta) = \int p(y \mid \theta, \eta)\, N(\eta \mid 0, \Omega)\, d\eta .

How, and why this way
    1. **The patient's random effects are sampled for every population draw**
       :math:`\theta_s`, from their exact conditional posterior :math:`p(\eta \mid \theta_s, y)`.
       In standardised coordinates :math:`\eta = L_s z` we find the mode :math:`\hat z_s` and
       the curvature :math:`A_s` (damped Newton, the machinery of
       :mod:`nlme_bayes.marginal`), then run ``n_steps`` of an independence Metropolis-Hastings
       sampler with a multivariate t(10) proposal centred at :math:`\hat z_s` with scale
       :math:`A_s^{-1/2}`, vectorised over draws and patients. The chain's stationary
       distribution is the exact conditional; the proposal is close to it, so acceptance is
       high and a few steps forget the start. Importance-weighting :math:`\eta` drawn from the
       population :math:`N(0, \Omega)` instead would degenerate as soon as the patient has
       informative data (the many-levels case); sampling the conditional does not.
    2. **Each population draw is weighted** by :math:`p(y \mid \theta_s)` (adaptive
       Gauss-Hermite quadrature for up to 4 random effects, :data:`WEIGHT_NODES`; importance
       sampling beyond), Pareto-smoothed (PSIS), so that the population parameters are
       updated by the new patient exactly as a refit would update them. With a study of
       N subjects the patient moves :math:`\theta` by O(1/N): the weights are nearly uniform,
       their effective sample size high, and Pareto :math:`\hat k` (reported, with a warning
       above 0.7) says when they are not -- an atypical patient in a small study -- and a
       refit (:func:`refit_with_patients`) is the answer. ``update_population=False`` drops
       the weights (the patient's posterior conditioned on the population posterior as it is).

    The cost is that of a few hundred thousand evaluations of one patient's predictions --
    seconds -- against a full NUTS refit of the population (compilation included, tens of
    seconds to minutes); ``benchmarks/bench_forecast.py`` measures both and the agreement.

With no levels the weights are uniform and :math:`\eta_s \sim N(0, \Omega_s)`: the
forecast is the population predictive distribution for the patient's covariates.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from .errors import NLMEWarning, SpecificationError
from .simulation import Predictor, apply_iiv, residual_nu, residual_sd, sample_dv
from .trial_simulation import sigma_for_dvids

__all__ = [
    "Forecast",
    "ForecastWarning",
    "forecast",
    "map_estimate",
    "refit_with_patients",
    "weighted_quantile",
]

METHODS = ("full", "map")
K_THRESHOLD = 0.7
#: AGHQ nodes per random effect for the weights p(y | theta_s), by number of random effects.
#: Weights need relative, not absolute, accuracy: on pheno the log-weight error (vs a 20-node
#: rule) varies across draws with SD 0.0012 at 6 nodes (0.00015 at 12): 0.1 % of a weight.
WEIGHT_NODES = {1: 12, 2: 6, 3: 4, 4: 3}
_T_DF = 10.0  # degrees of freedom of the t proposal


class ForecastWarning(NLMEWarning):
    """The forecast's Monte Carlo diagnostics (Pareto k, acceptance) flag a problem.

    Examples
    --------
    >>> from nlme_bayes.errors import NLMEWarning
    >>> issubclass(ForecastWarning, NLMEWarning)
    True
    """


# =========================================================================== likelihood
def _integrator(model: Any, data: Any) -> Any:
    """:class:`nlme_bayes.marginal._Integrator` on the new patients' records.

    It evaluates ``log p(y_i | theta, eta)`` for many parameter sets per compiled call (the
    schedule tiled) with the fit's own error and censoring model, and finds modes and
    quadratures; a patient without levels gets an untiled schedule (nothing to evaluate).
    """
    from .events import build_schedule
    from .marginal import _Integrator

    schedule, _ = build_schedule(data, model.structure)
    if not (hasattr(schedule, "groups") or hasattr(schedule, "tile")):
        raise SpecificationError(
            f"forecast: {model.structure.describe()} plans a schedule "
            f"({type(schedule).__name__}) that cannot be tiled for vectorised evaluation yet "
            "(it needs a tile(t) method, as the closed-form and algebraic schedules have). "
            "Refit with the patient included (refit_with_patients) instead."
        )
    return _Integrator(model, data, tile_obs=4000 if data.n_observations else 1)


def _mh(
    f: Any, zhat: np.ndarray, bmat: np.ndarray, n_steps: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Independence Metropolis-Hastings with a t(10) proposal at (zhat, B); vectorised."""
    k = zhat.shape[-1]

    def propose() -> tuple[np.ndarray, np.ndarray]:
        u = rng.standard_normal(zhat.shape)
        chi = rng.chisquare(_T_DF, size=zhat.shape[:-1])
        t = u / np.sqrt(chi / _T_DF)[..., None]
        return zhat + np.einsum("...ij,...j->...i", bmat, t), t

    def log_ratio(z: np.ndarray, t: np.ndarray) -> np.ndarray:
        log_q = -0.5 * (_T_DF + k) * np.log1p(np.sum(t**2, axis=-1) / _T_DF)
        with np.errstate(invalid="ignore"):
            out = f(z[None])[0] - log_q
        return np.where(np.isnan(out), -np.inf, out)

    z, t = propose()
    lr = log_ratio(z, t)
    accepted = np.zeros(zhat.shape[:-1])
    for _ in range(n_steps):
        zp, tp = propose()
        lp = log_ratio(zp, tp)
        with np.errstate(invalid="ignore"):
            diff = np.where(np.isneginf(lr), np.inf, lp - lr)
        take = np.log(rng.random(lr.shape)) < diff
        z = np.where(take[..., None], zp, z)
        lr = np.where(take, lp, lr)
        accepted += take
    return z, accepted / max(n_steps, 1)


def _conditional(
    integ: Any,
    typical: dict[str, np.ndarray],
    chol: np.ndarray,
    sigma: dict[str, np.ndarray],
    *,
    n_steps: int,
    rng: np.random.Generator,
    marginal: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per population draw: modes, curvature, log p(y|theta) and conditional eta samples.

    Returns ``z`` (S, P, k), ``log_marginal`` (S, P), ``acceptance`` (S, P), ``zhat`` and
    ``A`` (S, P, k[, k]).
    """
    from .marginal import _EVAL_BUDGET, _chol

    k, n_sub = integ.k, integ.n_sub
    s_total = chol.shape[0]
    if k == 0:  # no random effects: nothing to sample, p(y | theta) is the likelihood
        logm = integ.loglik(typical, sigma) if marginal else np.zeros((s_total, n_sub))
        empty = np.zeros((s_total, n_sub, 0))
        return empty, logm, np.ones((s_total, n_sub)), empty, np.zeros((s_total, n_sub, 0, 0))
    r_blk = max(1, _EVAL_BUDGET // (64 * n_sub * 4))
    z_all = np.empty((s_total, n_sub, k))
    zhat_all = np.empty((s_total, n_sub, k))
    a_all = np.empty((s_total, n_sub, k, k))
    logm = np.zeros((s_total, n_sub))
    acc = np.empty((s_total, n_sub))
    for a in range(0, s_total, r_blk):
        sl = slice(a, min(a + r_blk, s_total))
        typ = {n: v[sl] for n, v in typical.items()}
        c = chol[sl]
        sg = {n: v[sl] for n, v in sigma.items()}

        def f(z: np.ndarray, typ: dict = typ, c: np.ndarray = c, sg: dict = sg) -> np.ndarray:
            return integ._logjoint(z, typ, c, sg)

        zhat, amat = integ._mode(f, np.zeros((c.shape[0], n_sub, k)), 1e-6, 60)
        bmat = _chol(np.linalg.inv(amat))
        if marginal:
            if k <= max(WEIGHT_NODES):
                logm[sl] = integ._aghq(f, zhat, bmat, WEIGHT_NODES[k])
            else:
                logm[sl], _ = integ._is(f, zhat, bmat, 1000, rng)
        z_all[sl], acc[sl] = _mh(f, zhat, bmat, n_steps, rng)
        zhat_all[sl], a_all[sl] = zhat, amat
    return z_all, logm, acc, zhat_all, a_all


# =========================================================================== the result
def weighted_quantile(values: np.ndarray, weights: np.ndarray, probs: Any) -> np.ndarray:
    """Quantiles of each column of ``values`` (S, n) under ``weights`` (S,) or (S, n).

    The weighted empirical distribution with mid-point interpolation (uniform weights give
    the Hazen quantiles, ``(i - 0.5) / S``); non-finite values are dropped.

    Returns
    -------
    numpy.ndarray
        ``(len(probs), n)``.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.arange(1.0, 5.0)[:, None]
    >>> weighted_quantile(v, np.ones(4), [0.5]).ravel().tolist()
    [2.5]
    >>> weighted_quantile(v, np.array([0.0, 0.0, 1.0, 1.0]), [0.5]).ravel().tolist()
    [3.5]
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    w = np.broadcast_to(np.asarray(weights, dtype=float).reshape(len(values), -1), values.shape)
    probs = np.atleast_1d(np.asarray(probs, dtype=float))
    out = np.full((probs.size, values.shape[1]), np.nan)
    for j in range(values.shape[1]):
        ok = np.isfinite(values[:, j]) & (w[:, j] > 0)
        if not ok.any():
            continue
        order = np.argsort(values[ok, j], kind="stable")
        v, ww = values[ok, j][order], w[ok, j][order]
        cw = (np.cumsum(ww) - 0.5 * ww) / ww.sum()
        out[:, j] = np.interp(probs, cw, v)
    return out


@dataclass(eq=False)
class Forecast:
    """Posterior draws of new patients' individual parameters (see :func:`forecast`).

    Draws are patient-major: arrays ``(P, S)`` for ``P`` patients and ``S`` draws, with
    normalised log weights ``log_weights`` (all equal for ``update_population=False`` and
    ``method="map"``).

    Attributes
    ----------
    model, data
        The population model and the patients' records.
    method : {"full", "map"}
    patient_ids : tuple
    index : (S,) flat posterior index of each draw (-1: a point estimate, method "map").
    chains : int
        Chains the draws are arranged in (for effective sample sizes).
    eta : (P, S, k); individual, typical : dict name -> (P, S)
    sigma : dict name -> (S,), named as in the fit.
    log_weights, log_marginal : (P, S)
        Normalised (smoothed) log weights, and ``log p(y_i | theta_s)``.
    pareto_k, acceptance : (P,)
    omega_chol : (S, k, k)
    map : DataFrame
        MAP estimates at the posterior medians (individual parameters and etas).
    timings : dict

    Examples
    --------
    >>> fc = forecast(pheno_fit, patient_data)  # doctest: +SKIP
    >>> fc.diagnostics()  # doctest: +SKIP
         n_levels  ess_weights  pareto_k  acceptance
    ID
    101         2  ...
    >>> fig = fc.plot()  # doctest: +SKIP
    """

    model: Any
    data: Any
    method: str
    patient_ids: tuple
    index: np.ndarray
    chains: int
    eta: np.ndarray
    individual: dict[str, np.ndarray]
    typical: dict[str, np.ndarray]
    sigma: dict[str, np.ndarray]
    log_weights: np.ndarray
    log_marginal: np.ndarray
    pareto_k: np.ndarray
    acceptance: np.ndarray
    omega_chol: np.ndarray
    fit_dvids: tuple[int, ...]
    map: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)

    # ------------------------------------------------------------------ basics
    @property
    def n_draws(self) -> int:
        """Number of draws ``S`` per patient.

        Examples
        --------
        With ``fc = forecast(pheno_fit, patient_data, n_draws=500)``, one patient:

        >>> fc.n_draws, fc.individual["CL"].shape  # doctest: +SKIP
        (500, (1, 500))
        """
        return int(self.log_weights.shape[1])

    @property
    def weights(self) -> np.ndarray:
        """Normalised weights ``(P, S)``: each patient's sum to 1.

        Examples
        --------
        With ``fc = forecast(pheno_fit, patient_data, n_draws=500)``, one patient:

        >>> fc.weights.shape, fc.weights.sum(axis=1).round(6).tolist()  # doctest: +SKIP
        ((1, 500), [1.0])
        """
        return np.exp(self.log_weights)

    @property
    def ess(self) -> np.ndarray:
        """Kish effective sample size of the weights, per patient: ``1 / sum(w^2)``.

        Equal weights give ``S``; the more the patient's levels reweight the population
        draws, the lower it is.

        Examples
        --------
        With ``fc = forecast(pheno_fit, patient_data, n_draws=500)``, one patient:

        >>> bool(0 < fc.ess[0] <= fc.n_draws)  # doctest: +SKIP
        True
        """
        w = self.weights
        return 1.0 / np.sum(w**2, axis=1)

    def _row(self, patient: Any) -> int:
        if patient not in self.patient_ids:
            raise SpecificationError(
                f"patient {patient!r} is not in this forecast; patients: "
                f"{', '.join(map(str, self.patient_ids))}."
            )
        return self.patient_ids.index(patient)

    def _ess_of(self, q: np.ndarray) -> float:
        """ESS of a quantity q (S,): the draws' autocorrelation times the weights' efficiency."""
        from arviz_stats.base import array_stats

        s = q.shape[0]
        if self.chains >= 1 and s % self.chains == 0 and s >= 4 * self.chains and np.ptp(q) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                e = float(array_stats.ess(q.reshape(self.chains, -1)))
            r_eff = min(1.0, e / s) if np.isfinite(e) else 1.0
        else:
            r_eff = 1.0
        return r_eff

    # ------------------------------------------------------------------ tables
    def draws(self) -> xr.Dataset:
        """The draws as an xarray Dataset with dims ``(ID, sample[, param])``.

        Examples
        --------
        >>> fc.draws()["CL"].dims  # doctest: +SKIP
        ('ID', 'sample')
        """
        ids = list(self.patient_ids)
        data = {n: (("ID", "sample"), v) for n, v in self.individual.items()}
        data.update({f"{n}_TV": (("ID", "sample"), v) for n, v in self.typical.items()})
        data["eta"] = (("ID", "sample", "param"), self.eta)
        data["weight"] = (("ID", "sample"), self.weights)
        data["log_marginal"] = (("ID", "sample"), self.log_marginal)
        return xr.Dataset(
            data,
            coords={
                "ID": ids,
                "sample": np.arange(self.n_draws),
                "posterior_index": ("sample", self.index),
                "param": list(self.model.iiv_names),
            },
            attrs={"method": self.method},
        )

    def summary(self, *, ci_prob: float = 0.9) -> pd.DataFrame:
        """Posterior summary of each patient's individual parameters and etas.

        Columns: ``mean, sd, median``, the equal-tailed ``ci_prob`` interval ``lo, hi``,
        ``mcse`` of the mean (from the effective sample size: the draws' autocorrelation and
        the weights), ``ess``, the ``typical`` value for the patient's covariates (median
        over draws) and the ``map`` estimate. Rows ``(ID, parameter)``.

        Examples
        --------
        >>> fc.summary().round(4)  # doctest: +SKIP
                         mean      sd  median  ...
        ID  parameter ...
        101 CL         0.00...
            V          1...
            eta_CL    ...
            eta_V     ...
        """
        if not 0 < ci_prob < 1:
            raise SpecificationError(f"ci_prob must lie in (0, 1), got {ci_prob!r}.")
        lo, hi = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
        rows = []
        names = list(self.model.parameter_names)
        iiv = list(self.model.iiv_names)
        for p, pid in enumerate(self.patient_ids):
            w = self.weights[p]
            kish = 1.0 / np.sum(w**2)
            series = {n: self.individual[n][p] for n in names}
            series.update({f"eta_{n}": self.eta[p, :, j] for j, n in enumerate(iiv)})
            for name, q in series.items():
                mean = float(np.sum(w * q))
                sd = float(np.sqrt(max(np.sum(w * (q - mean) ** 2), 0.0)))
                med, a, b = weighted_quantile(q, w, [0.5, lo, hi])[:, 0]
                ess = kish * self._ess_of(q)
                is_eta = name.startswith("eta_")
                typical = 0.0 if is_eta else float(np.median(self.typical[name][p]))
                rows.append(
                    {
                        "ID": pid,
                        "parameter": name,
                        "mean": mean,
                        "sd": sd,
                        "median": med,
                        "lo": a,
                        "hi": b,
                        "mcse": sd / math.sqrt(max(ess, 1.0)),
                        "ess": ess,
                        "typical": typical,
                        "map": float(self.map.loc[pid, name]),
                    }
                )
        out = pd.DataFrame(rows).set_index(["ID", "parameter"])
        out.attrs["ci_prob"] = ci_prob
        return out

    def diagnostics(self) -> pd.DataFrame:
        """Per patient: levels used, Kish ESS of the weights, Pareto k, MH acceptance rate.

        Examples
        --------
        >>> fc.diagnostics()  # levels, Kish ESS, Pareto k, acceptance per patient  # doctest: +SKIP
             n_levels  ess_weights  pareto_k  acceptance
        ID
        101         2  ...
        """
        from .events import build_schedule

        _, obs = build_schedule(self.data, self.model.structure)
        n_obs = obs.groupby("ID").size().reindex(list(self.patient_ids), fill_value=0)
        return pd.DataFrame(
            {
                "n_levels": n_obs.to_numpy(),
                "ess_weights": self.ess,
                "pareto_k": self.pareto_k,
                "acceptance": self.acceptance,
            },
            index=pd.Index(self.patient_ids, name="ID"),
        )

    # ------------------------------------------------------------------ predictions
    def concentration_draws(
        self,
        times: Any,
        *,
        regimen: Any = None,
        before_dose: Any = False,
        dvid: int = 1,
        population: bool = False,
        random_seed: int = 0,
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """Predicted concentrations (IPRED) per draw at ``times`` for every patient.

        Parameters
        ----------
        times : array or mapping ID -> array
        regimen : Regimen, list of Regimen, or mapping ID -> those, optional
            Future doses added to each patient's history.
        before_dose : bool or array like ``times``
            A time equal to a dose time is just before (True) or after (False) that dose.
        dvid : int
        population : bool
            Instead of the patient's posterior, the population predictive for their
            covariates (``eta ~ N(0, Omega)`` per draw, no levels used).
        random_seed : int

        Returns
        -------
        rows : DataFrame
            ``ID, TIME, before_dose`` per predicted time, in schedule order.
        ipred : numpy.ndarray
            ``(S, n_rows)``; weight of draw s for row j: ``weights[patient of row j, s]``.

        Examples
        --------
        >>> import numpy as np
        >>> conc = fc.concentration_draws(np.linspace(0, 48, 97))  # doctest: +SKIP
        """
        from .events import build_schedule
        from .regimen import prediction_dataset

        extra = _extra_doses(regimen, self.patient_ids, self.model.structure)
        ds, rows = prediction_dataset(
            self.data, times, before_dose=before_dose, dvid=dvid, extra_doses=extra
        )
        schedule, obs = build_schedule(ds, self.model.structure)
        rows = rows.assign(patient=obs["subject"].to_numpy())
        params = self._parameters(population, random_seed)
        ipred = Predictor(self.model.structure, schedule)(params)
        return rows, ipred

    def _parameters(self, population: bool, random_seed: int) -> dict[str, np.ndarray]:
        """Individual parameters (S, P): the posterior, or the population predictive."""
        if not population:
            return {n: v.T for n, v in self.individual.items()}
        rng = np.random.default_rng(random_seed)
        n_pat, k = len(self.patient_ids), len(self.model.iiv_names)
        z = rng.standard_normal((self.n_draws, n_pat, k))
        eta = np.einsum("sij,spj->spi", self.omega_chol, z)
        typical = {n: v.T for n, v in self.typical.items()}
        return apply_iiv(self.model, typical, eta)

    def predict(
        self,
        times: Any = None,
        *,
        regimen: Any = None,
        n_points: int = 200,
        ci_prob: float = 0.9,
        before_dose: Any = False,
        dvid: int = 1,
        population: bool = True,
        random_seed: int = 0,
    ) -> pd.DataFrame:
        """Each patient's predicted concentration curve with credible and prediction bands.

        Parameters
        ----------
        times : array or mapping ID -> array, optional
            Default: ``n_points`` times from 0 to the later of the last record and the end
            of ``regimen``, plus every dose time (just before and just after it).
        regimen : Regimen, list of Regimen, or mapping ID -> those, optional
            Future doses (see :func:`nlme_bayes.regimen.Regimen`).
        ci_prob : float
            Width of the bands.
        before_dose, dvid, random_seed
            See :meth:`concentration_draws`.
        population : bool
            Add the population predictive band for the patient's covariates (what is
            expected before any level is measured): ``POP``, ``POP_lo``, ``POP_hi``.

        Returns
        -------
        pandas.DataFrame
            ``ID, TIME, before_dose``; ``IPRED`` (posterior median), ``IPRED_lo``,
            ``IPRED_hi`` (credible band of the concentration); ``DV_lo``, ``DV_hi``
            (prediction interval of a measured level: residual error added).

        Examples
        --------
        >>> pred = fc.predict(regimen=Regimen(5.0, interval=12.0, n_doses=6))  # doctest: +SKIP
        >>> pred.columns.tolist()  # doctest: +SKIP
        ['ID', 'TIME', 'before_dose', 'IPRED', 'IPRED_lo', 'IPRED_hi', 'DV_lo', 'DV_hi',
         'POP', 'POP_lo', 'POP_hi']
        """
        if not 0 < ci_prob < 1:
            raise SpecificationError(f"ci_prob must lie in (0, 1), got {ci_prob!r}.")
        if times is None:
            times, before_dose = self._default_times(regimen, n_points)
        rows, ipred = self.concentration_draws(
            times, regimen=regimen, before_dose=before_dose, dvid=dvid, random_seed=random_seed
        )
        lo, hi = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
        w = self.weights[rows["patient"].to_numpy()].T  # (S, n_rows)
        out = rows[["ID", "TIME", "before_dose"]].copy()
        q = weighted_quantile(ipred, w, [0.5, lo, hi])
        out["IPRED"], out["IPRED_lo"], out["IPRED_hi"] = q
        dvids = np.full(len(rows), dvid)
        sigma = sigma_for_dvids(self.model, self.fit_dvids, dvids, self.sigma)
        sd, is_log = residual_sd(self.model, ipred, dvids, sigma)
        nu = residual_nu(self.model, dvids, sigma, ipred.ndim)
        dv = sample_dv(ipred, sd, is_log, np.random.default_rng(random_seed + 1), nu)
        q = weighted_quantile(dv, w, [lo, hi])
        out["DV_lo"], out["DV_hi"] = q
        if population:
            _, pop = self.concentration_draws(
                times,
                regimen=regimen,
                before_dose=before_dose,
                dvid=dvid,
                population=True,
                random_seed=random_seed + 2,
            )
            q = np.quantile(pop, [0.5, lo, hi], axis=0)
            out["POP"], out["POP_lo"], out["POP_hi"] = q
        out.attrs["ci_prob"] = ci_prob
        return out.reset_index(drop=True)

    def _default_times(self, regimen: Any, n_points: int) -> tuple[dict, dict]:
        from .regimen import _as_regimens

        extra = _extra_doses(regimen, self.patient_ids, self.model.structure) or {}
        times, before = {}, {}
        rec = self.data.events()
        for pid in self.patient_ids:
            r = rec[rec["ID"] == pid]
            d = r[r["EVID"].isin((1, 4))]
            rate = d["RATE"].to_numpy(float)
            ends = (d["TIME"] + d["AMT"] / np.where(rate > 0, rate, 1.0))[rate > 0]
            doses = np.concatenate([d["TIME"].to_numpy(float), ends.to_numpy(float)])
            end = float(r["TIME"].max()) if len(r) else 0.0
            if pid in extra:
                x = extra[pid]
                rate = x["RATE"].to_numpy(float)
                ends = (x["TIME"] + x["AMT"] / np.where(rate > 0, rate, 1.0))[rate > 0]
                doses = np.concatenate([doses, x["TIME"].to_numpy(float), ends.to_numpy(float)])
                regs = _as_regimens(_regimen_for(regimen, pid))
                end = max(end, max(g.end for g in regs))
            end = end if end > 0 else 24.0
            grid = np.linspace(0.0, end, int(n_points))
            t = np.concatenate([grid, doses, doses])
            b = np.concatenate([np.zeros(len(grid), bool), np.ones(len(doses), bool),
                                np.zeros(len(doses), bool)])  # fmt: skip
            order = np.lexsort((~b, t))
            times[pid], before[pid] = t[order], b[order]
        return times, before

    def plot(
        self,
        *,
        regimen: Any = None,
        ci_prob: float = 0.9,
        population: bool = True,
        path: Any = None,
        dvid: int = 1,
    ) -> Any:
        """Levels, the individual prediction with its credible band (and the population band).

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> fig = fc.plot()  # levels, median, credible and prediction bands  # doctest: +SKIP
        """
        import matplotlib.pyplot as plt

        pred = self.predict(regimen=regimen, ci_prob=ci_prob, population=population, dvid=dvid)
        n = len(self.patient_ids)
        ncol = min(n, 3)
        nrow = -(-n // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.6 * nrow), squeeze=False)
        obs = self.data.observations()
        pct = f"{100 * ci_prob:g} %"
        for ax, pid in zip(axes.ravel(), self.patient_ids, strict=False):
            p = pred[pred["ID"] == pid]
            if population:
                ax.fill_between(p["TIME"], p["POP_lo"], p["POP_hi"], color="0.85",
                                label=f"population {pct}")  # fmt: skip
            ax.fill_between(p["TIME"], p["DV_lo"], p["DV_hi"], color="C0", alpha=0.15,
                            label=f"level {pct} PI")  # fmt: skip
            ax.fill_between(p["TIME"], p["IPRED_lo"], p["IPRED_hi"], color="C0", alpha=0.35,
                            label=f"IPRED {pct} CrI")  # fmt: skip
            ax.plot(p["TIME"], p["IPRED"], color="C0", lw=1.5, label="IPRED median")
            o = obs[(obs["ID"] == pid) & (obs["DVID"] == dvid)]
            ax.plot(o["TIME"], o["DV"], "o", color="C3", label="measured")
            ax.set_title(f"ID {pid}")
            ax.set_xlabel("TIME")
            ax.set_ylabel("concentration")
        for ax in axes.ravel()[n:]:
            ax.set_visible(False)
        axes.ravel()[0].legend(fontsize=7)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig

    def __repr__(self) -> str:
        return (
            f"<Forecast ({self.method}): {len(self.patient_ids)} patient(s), "
            f"{self.n_draws} draws; min ESS of weights {self.ess.min():.0f}>"
        )


def _regimen_for(regimen: Any, pid: Any) -> Any:
    return regimen.get(pid) if isinstance(regimen, dict) else regimen


def _extra_doses(regimen: Any, ids: tuple, structure: Any) -> dict | None:
    from .regimen import dose_records

    if regimen is None:
        return None
    if isinstance(regimen, dict):
        unknown = [k for k in regimen if k not in ids]
        if unknown:
            raise SpecificationError(f"regimen: unknown patient ID(s) {unknown}.")
    out = {}
    for pid in ids:
        r = _regimen_for(regimen, pid)
        if r is not None:
            out[pid] = dose_records(r, structure=structure, id=pid)
    return out


# =========================================================================== entry points
def _as_patients(fit: Any, data: Any) -> Any:
    from .data import NonmemDataset, read_nonmem

    if isinstance(data, pd.DataFrame):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*no observation record.*")
            data = read_nonmem(data)
    if not isinstance(data, NonmemDataset):
        raise SpecificationError(
            "data must be the new patients' NONMEM-style records (a DataFrame or a "
            f"NonmemDataset), got {type(data).__name__}."
        )
    missing = [c for c in fit.model.covariate_names if c not in data.covariates]
    if missing:
        raise SpecificationError(
            f"The model needs covariate(s) {', '.join(missing)} for the new patient(s); add "
            "them as columns of the records (e.g. patient_records(..., covariates={...}))."
        )
    return data


def _select_draws(fit: Any, n_draws: int | None) -> tuple[np.ndarray, int]:
    """Flat indices of evenly thinned draws, chain by chain (keeps the chain structure)."""
    post = fit.posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    if n_draws is None or n_draws >= n_chain * n_draw:
        sel = np.arange(n_draw)
    else:
        if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
            raise SpecificationError(f"n_draws must be a positive int or None, got {n_draws!r}.")
        per = max(2, -(-int(n_draws) // n_chain))
        sel = np.unique(np.linspace(0, n_draw - 1, min(per, n_draw)).round().astype(int))
    return (np.arange(n_chain)[:, None] * n_draw + sel[None]).ravel(), n_chain


def _smooth(logm: np.ndarray, valid: np.ndarray, chains: int) -> tuple[np.ndarray, np.ndarray]:
    """PSIS-smoothed normalised log weights (P, S) and Pareto k (P,) from log p(y|theta)."""
    from arviz_stats.base import array_stats
    from scipy.special import logsumexp

    n_pat, s = logm.shape
    lw = np.where(valid[None], logm, -np.inf)
    out = np.empty_like(lw)
    khat = np.full(n_pat, np.nan)
    for p in range(n_pat):
        ok = np.isfinite(lw[p])
        if not ok.any():
            raise SpecificationError(
                "The patient's levels have zero likelihood under every population draw; check "
                "units (DV vs AMT), times and DVID."
            )
        x = lw[p, ok]
        if np.ptp(x) < 1e-12:
            out[p] = np.where(ok, -math.log(ok.sum()), -np.inf)
            continue
        r_eff = 1.0
        if ok.all() and s % chains == 0 and s >= 4 * chains:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                e = float(array_stats.ess(x.reshape(chains, -1), method="mean"))
            r_eff = min(1.0, e / s) if np.isfinite(e) and e > 0 else 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            smoothed, k = array_stats.psislw(-x, r_eff=r_eff)
        row = np.full(s, -np.inf)
        row[ok] = smoothed
        out[p] = row - logsumexp(row)
        khat[p] = float(k)
    return out, khat


def _map_table(model: Any, ids: tuple, typical: dict, chol: np.ndarray, zhat: np.ndarray) -> Any:
    """MAP individual parameters and etas (one population point: S = 1)."""
    eta = np.einsum("ij,pj->pi", chol[0], zhat[0])
    ind = apply_iiv(model, {n: v[0] for n, v in typical.items()}, eta)
    cols = {n: np.asarray(ind[n], dtype=float) for n in model.parameter_names}
    cols.update({f"eta_{n}": eta[:, j] for j, n in enumerate(model.iiv_names)})
    return pd.DataFrame(cols, index=pd.Index(ids, name="ID"))


def forecast(
    fit: Any,
    data: Any,
    *,
    method: Literal["full", "map"] = "full",
    n_draws: int | None = None,
    update_population: bool = True,
    n_steps: int = 20,
    random_seed: int = 0,
) -> Forecast:
    """Posterior of new patients' parameters from their levels, given a fitted population.

    Parameters
    ----------
    fit : Fit
        The population fit (the patients are not in it).
    data : DataFrame or NonmemDataset
        The new patients' records: doses, measured levels (EVID 0, MDV 0; possibly none),
        and the model's covariates. Several patients are forecast independently of each
        other, in one vectorised pass.
    method : {"full", "map"}
        ``"full"``: the fully Bayesian posterior (see the module docstring).
        ``"map"``: MAP Bayes at the posterior medians of the population parameters, with
        ``n_draws`` (default 1000) draws from the Laplace approximation around the mode:
        fast, but blind to population uncertainty and to a non-Gaussian posterior.
    n_draws : int, optional
        Population draws used (default all, thinned evenly per chain).
    update_population : bool
        Weight the population draws by ``p(y | theta)`` so that the result is what a refit
        including the patients would give (default); False conditions on the population
        posterior as it is.
    n_steps : int
        Metropolis-Hastings steps per draw for the conditional of eta.
    random_seed : int

    Returns
    -------
    Forecast

    Raises
    ------
    SpecificationError
        Unknown method, covariates missing from the records, a DVID the fit did not have,
        levels impossible under every draw.

    Warns
    -----
    ForecastWarning
        Pareto k > 0.7 (the patient pulls the population posterior far: refit with
        :func:`refit_with_patients`) or a low Metropolis-Hastings acceptance rate.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.regimen import Regimen, patient_records
    >>> rec = patient_records([Regimen(20.0), Regimen(2.5, interval=12.0, n_doses=8, start=12.0)],
    ...                       observations={2.0: 17.0, 95.5: 24.0},
    ...                       covariates={"WT": 1.2, "APGAR_LT5": 0}, id=101)
    >>> fc = forecast(pheno_fit, rec)  # doctest: +SKIP
    >>> fc.summary().loc[101, ["mean", "lo", "hi"]]  # doctest: +SKIP
                   mean        lo        hi
    parameter
    CL         0.00...
    V          1...
    eta_CL    ...
    eta_V     ...
    """
    from .marginal import _chol, _cov_table, _pop_from_mapping, _sigma_names, _typical_values
    from .marginal import population_parameters as point_of
    from .trial_simulation import _fit_dvids, _is_fit, _model_of, _pop_take, _population

    if method not in METHODS:
        raise SpecificationError(
            f"method={method!r} is not valid; choose one of {', '.join(sorted(METHODS))}."
        )
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise SpecificationError(f"n_steps must be a positive int, got {n_steps!r}.")
    t0 = time.perf_counter()
    rng = np.random.default_rng(random_seed)
    if not _is_fit(fit):
        raise SpecificationError(
            f"forecast needs a Fit (the population posterior), got {type(fit).__name__}; fit "
            "the model first, or load a results file with nlme_bayes.load."
        )
    model = _model_of(fit)
    data = _as_patients(fit, data)
    ids = tuple(data.subject_ids)
    integ = _integrator(model, data)
    fit_dvids = _fit_dvids(fit)
    pat_dvids = integ.dvid if integ.n_obs else np.array(fit_dvids[:1])
    table = _cov_table(model, data)
    k = integ.k
    t_setup = time.perf_counter() - t0

    # MAP at the posterior medians (also the "map" column of every summary)
    point = _pop_from_mapping(model, point_of(fit), _sigma_names(model, np.asarray(fit_dvids)))
    typ_point, valid_point = _typical_values(model, table, point)
    if not valid_point.all():
        raise SpecificationError(
            "A Linear covariate factor is <= 0 for the patient's covariates at the posterior "
            "medians: check the covariate values against the fitted data."
        )
    chol_point = point.chol()
    sig_point = sigma_for_dvids(model, fit_dvids, pat_dvids, point.sigma)
    if method == "map":
        n = 1000 if n_draws is None else n_draws
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise SpecificationError(f"n_draws must be a positive int or None, got {n!r}.")
        z_map, _, _, zhat, amat = _conditional(
            integ, typ_point, chol_point, sig_point, n_steps=1, rng=rng, marginal=False
        )
        del z_map
        bmat = _chol(np.linalg.inv(amat))[0]  # (P, k, k)
        u = rng.standard_normal((int(n),) + zhat.shape[1:])
        z = zhat[0][None] + np.einsum("pij,spj->spi", bmat, u)
        pop = _pop_take(point, np.zeros(int(n), int))
        typical = {nm: np.repeat(v, int(n), axis=0) for nm, v in typ_point.items()}
        chol = pop.chol()
        log_w = np.full((len(ids), int(n)), -math.log(int(n)))
        logm = np.zeros((len(ids), int(n)))
        khat = np.full(len(ids), np.nan)
        acc = np.full(len(ids), np.nan)
        index, chains, sigma = np.full(int(n), -1), 1, pop.sigma
        map_tab = _map_table(model, ids, typ_point, chol_point, zhat)
    else:
        index, chains = _select_draws(fit, n_draws)
        popn = _population(fit, uncertainty=True, n_draws=len(index), random_seed=0, index=index)
        typical, valid = _typical_values(model, table, popn.pop)
        chol = popn.pop.chol()
        sig = sigma_for_dvids(model, fit_dvids, pat_dvids, popn.pop.sigma)
        z, logm_sp, acc_sp, _, _ = _conditional(
            integ, typical, chol, sig, n_steps=n_steps, rng=rng, marginal=update_population
        )
        logm = logm_sp.T
        if update_population:
            log_w, khat = _smooth(logm, valid, chains)
        else:
            if not valid.any():
                raise SpecificationError("No population draw is valid for these covariates.")
            log_w = np.where(valid[None], -math.log(valid.sum()), -np.inf)
            log_w = np.broadcast_to(log_w, logm.shape).copy()
            khat = np.full(len(ids), np.nan)
        acc = acc_sp.mean(axis=0)
        sigma = popn.pop.sigma
        _, _, _, zhat, _ = _conditional(
            integ, typ_point, chol_point, sig_point, n_steps=1, rng=rng, marginal=False
        )
        map_tab = _map_table(model, ids, typ_point, chol_point, zhat)
    eta = np.einsum("sij,spj->spi", chol, z) if k else np.zeros(z.shape[:2] + (0,))
    individual = apply_iiv(model, typical, eta)
    s_total = eta.shape[0]
    fc = Forecast(
        model=model,
        data=data,
        method=method,
        patient_ids=ids,
        index=np.asarray(index),
        chains=int(chains),
        eta=np.transpose(eta, (1, 0, 2)),
        individual={
            n: np.broadcast_to(v, (s_total, len(ids))).T.copy() for n, v in individual.items()
        },
        typical={n: np.asarray(v).T.copy() for n, v in typical.items()},
        sigma={n: np.asarray(v) for n, v in sigma.items()},
        log_weights=log_w,
        log_marginal=logm,
        pareto_k=khat,
        acceptance=acc,
        omega_chol=chol,
        fit_dvids=fit_dvids,
        map=map_tab,
        timings={"setup_s": t_setup, "total_s": time.perf_counter() - t0},
    )
    _warn(fc)
    return fc


def _warn(fc: Forecast) -> None:
    bad_k = [pid for pid, k in zip(fc.patient_ids, fc.pareto_k, strict=True) if k > K_THRESHOLD]
    if bad_k:
        warnings.warn(
            f"Pareto k > {K_THRESHOLD} for patient(s) {', '.join(map(str, bad_k))}: their levels "
            "pull the population parameters further than reweighting the fit's draws can "
            "follow. Refit with the patient(s) included (refit_with_patients) for this one.",
            ForecastWarning,
            stacklevel=3,
        )
    low = [pid for pid, a in zip(fc.patient_ids, fc.acceptance, strict=True) if a < 0.2]
    if low:
        warnings.warn(
            f"Low Metropolis-Hastings acceptance for patient(s) {', '.join(map(str, low))}: "
            "the conditional posterior of eta is far from Gaussian; increase n_steps.",
            ForecastWarning,
            stacklevel=3,
        )


def map_estimate(fit: Any, data: Any) -> pd.DataFrame:
    """MAP Bayes estimates for new patients at the posterior medians (the classic TDM answer).

    Maximises ``log p(y | eta, theta_hat) + log N(eta | 0, Omega_hat)`` per patient, with
    ``theta_hat`` the posterior medians of the population parameters.

    Returns
    -------
    pandas.DataFrame
        Per patient (``ID``): individual parameters and etas at the mode.

    Examples
    --------
    >>> map_estimate(pheno_fit, rec)  # doctest: +SKIP
              CL         V    eta_CL     eta_V
    ID
    101  0.00...
    """
    return forecast(fit, data, method="map", n_draws=1).map


def refit_with_patients(fit: Any, data: Any, **fit_kwargs: Any) -> Any:
    """Refit the model with the new patients added as further subjects (the exact answer).

    ``fit_kwargs`` default to the fit's own settings (draws, tune, chains, seed, sampler).

    Raises
    ------
    SpecificationError
        A patient ID that is already a subject of the fit.

    Examples
    --------
    The new neonate (``rec``, ID 101) added to the phenobarbital fit (short chains here):

    >>> refit = refit_with_patients(pheno_fit, rec, draws=100, tune=100, chains=1,
    ...                             progressbar=False)  # doctest: +SKIP
    >>> refit.posterior.sizes["subject"] - pheno_fit.posterior.sizes["subject"]  # doctest: +SKIP
    1
    >>> refit.ebe().loc[101, ["CL", "V"]].gt(0).all()  # its EBEs too  # doctest: +SKIP
    np.True_
    """
    from .data import NonmemDataset

    data = _as_patients(fit, data)
    clash = sorted(set(map(str, data.subject_ids)) & set(map(str, fit.data.subject_ids)), key=str)
    if clash:
        raise SpecificationError(
            f"patient ID(s) {', '.join(clash)} are already subjects of the fit; give the new "
            "patients other IDs."
        )
    rec = pd.concat(
        [fit.data.records.drop(columns="ROW"), data.records.drop(columns="ROW")],
        ignore_index=True,
    )
    covs = [c for c in fit.data.covariates if c in rec.columns]
    combined = NonmemDataset.from_records(rec, covariates=covs, source="<fit data + patients>")
    info = fit.info
    kwargs = {
        "draws": info["draws"],
        "tune": info["tune"],
        "chains": info["chains"],
        "random_seed": info["random_seed"],
        "sampler": info["sampler"] or "auto",
    }
    kwargs.update(fit_kwargs)
    return fit.model.fit(combined, **kwargs)
