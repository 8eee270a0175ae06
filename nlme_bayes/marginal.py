r"""Marginal likelihood (random effects integrated out) and maximum likelihood on it.

For subject :math:`i` with observations :math:`y_i` and population parameters
:math:`\theta` (typical values, covariate coefficients, Omega, sigma)

.. math::

    p(y_i \mid \theta) = \int p(y_i \mid \theta, \eta)\, N(\eta \mid 0, \Omega)\, d\eta .

We integrate in standardised coordinates :math:`\eta = L z` (:math:`L L^T = \Omega`), so that
a near-singular Omega (a correlation at 0.99, as at the Theophylline MLE) is harmless:
:math:`g(z) = p(y_i \mid \theta, L z)\, N(z \mid 0, I)`. Both methods first find, for every
subject (and every parameter set at once), the mode :math:`\hat z` of :math:`\log g` and
:math:`A = -\nabla^2 \log g(\hat z)` by a damped Newton iteration on finite differences
(the structural model is evaluated with :class:`~nlme_bayes.simulation.Predictor`, tiled so
that one compiled call covers many subjects x parameter sets):

- ``"aghq"``: adaptive Gauss-Hermite quadrature (Liu & Pierce 1994; Pinheiro & Bates 1995),
  ``n`` nodes per random effect on :math:`z = \hat z + \sqrt 2 B x`, :math:`B B^T = A^{-1}`:
  :math:`\log p \approx \tfrac k2 \log 2 + \log|B| + \log \sum_j w_j e^{x_j^T x_j} g(z_j)`.
  One node is the Laplace approximation; the rule is exact when :math:`g` is a Gaussian times a
  polynomial of degree < 2n, so the error falls fast with ``n``. We use it for k <= 4 random
  effects (``n**k`` nodes: 20, 144, 343, 625) and report ``|AGHQ(n) - AGHQ(n - 2)|``, the
  error of the coarser rule, as a conservative bound on the error.
- ``"is"``: adaptive importance sampling (as NONMEM's IMP or saemix): a multivariate t(10)
  proposal centred at :math:`\hat z` with scale :math:`B`, mixed with 5 % draws from the prior
  :math:`N(0, I)` (defensive importance sampling, Hesterberg 1995), which bounds the weights
  by :math:`\max p(y_i \mid \eta) / 0.05` so that their variance, and the MCSE, exist. The
  estimate of :math:`p(y_i \mid \theta)` is unbiased; its log has Monte Carlo SE
  :math:`\mathrm{sd}(w)/(\bar w \sqrt M)` (delta method) and a bias of about
  :math:`-\mathrm{MCSE}^2/2`. Any number of random effects. (On Theophylline, t(10) gave half
  the variance of t(4), and an inflated scale more.)

The NumPy likelihood is the PyMC model's (same :func:`~nlme_bayes.simulation.residual_sd` and
:func:`~nlme_bayes.simulation.obs_logpdf`), and typical values mirror the builder's covariate
formulas (:class:`~nlme_bayes.spec.Power`, ``Exponential``, ``Linear``, ``Categorical``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import gammaln, logsumexp

from .censoring import logpdf_numpy
from .errors import SpecificationError
from .events_types import DosePairs, EventSchedule
from .priors import Prior
from .simulation import (
    Predictor,
    apply_iiv,
    error_models_by_dvid,
    is_residual_parameter,
    obs_logpdf,
    residual_nu,
    residual_sd,
)
from .spec import Categorical, Exponential, Linear, Power

__all__ = [
    "MarginalLogLik",
    "population_parameters",
    "marginal_loglik",
]

#: AGHQ nodes per random effect by number of random effects (n**k nodes per subject).
AGHQ_NODES = {1: 20, 2: 12, 3: 7, 4: 5}
_FD_STEP = 1e-3  # finite-difference step, in units of the current posterior SD of z
_T_DF = 10.0  # degrees of freedom of the t proposal
_DEFENSIVE = 0.05  # share of the importance samples drawn from the prior N(0, I)
_EVAL_BUDGET = 2_000_000  # values per chunk (memory)


# =========================================================================== parameters
@dataclass(frozen=True)
class _Pop:
    """``S`` sets of population parameters (arrays with a leading dimension S)."""

    typical: dict[str, np.ndarray]  # estimated typical values, natural scale: (S,)
    coef: dict[str, Any]  # "CL_WT" -> (S,), Categorical: {level: (S,)}
    omega_sd: np.ndarray  # (S, k)
    omega_corr: np.ndarray  # (S, k, k)
    sigma: dict[str, np.ndarray]  # (S,)

    @property
    def n(self) -> int:
        return int(self.omega_sd.shape[0])

    def chol(self) -> np.ndarray:
        """Cholesky factor of Omega, (S, k, k)."""
        return self.omega_sd[:, :, None] * _chol(self.omega_corr)


def _chol(cov: np.ndarray) -> np.ndarray:
    """Batched Cholesky factor, with a jitter / eigenvalue-clipping fallback."""
    cov = np.asarray(cov, dtype=float)
    k = cov.shape[-1]
    if k == 0:
        return cov.copy()
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        w, q = np.linalg.eigh(cov)
        scale = np.maximum(w.max(axis=-1, keepdims=True), 1e-300)
        w = np.maximum(w, 1e-12 * scale)
        return np.linalg.cholesky((q * w[..., None, :]) @ np.swapaxes(q, -1, -2))


def _sigma_names(model: Any, dvid: np.ndarray) -> list[str]:
    names = []
    for err, sfx in error_models_by_dvid(model, dvid).values():
        kind = type(err).__name__
        parts = {"Additive": ["add"], "Proportional": ["prop"], "LogAdditive": ["log"]}
        for part in parts.get(kind, ["add", "prop"]):
            names.append(f"sigma_{part}{sfx}")
        if isinstance(err.nu, Prior):  # estimated Student-t degrees of freedom
            names.append(f"nu{sfx}")
    return names


def _effects(model: Any) -> list[tuple[Any, Any, str]]:
    """(parameter, effect, coefficient name) for every covariate effect; checks support."""
    out = []
    for p in model.parameters:
        for eff in p.covariates:
            if not isinstance(eff, (Power, Exponential, Linear, Categorical)):
                raise SpecificationError(
                    f"Parameter {p.name}: covariate effect {eff!r} cannot be evaluated outside "
                    "PyMC; supported are Categorical, Exponential, Linear, Power."
                )
            out.append((p, eff, f"{p.name}_{eff.covariate}"))
    return out


def _typical_values(
    model: Any, cov_table: pd.DataFrame, pop: _Pop
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Typical values per subject (eta = 0, covariates included), (S, n_subjects) each.

    Mirrors :func:`nlme_bayes.builder._covariate_factor` and ``build``. Also returns a (S,)
    mask that is False where a Linear factor is <= 0 (zero density in the PyMC model).
    """
    n_sub = len(cov_table)
    s = pop.n
    valid = np.ones(s, bool)
    out = {}
    for p in model.parameters:
        value_pop = np.full(s, float(p.typical)) if p.fixed else np.asarray(pop.typical[p.name])
        log_scale = p.iiv in ("lognormal", "logit", None)
        with np.errstate(divide="ignore", invalid="ignore"):
            if p.iiv == "logit":
                base = np.log(value_pop) - np.log1p(-value_pop)
            elif p.iiv == "normal":
                base = value_pop
            else:
                base = np.log(value_pop)
        value = base[:, None] * np.ones(n_sub)
        for eff in p.covariates:
            cname = f"{p.name}_{eff.covariate}"
            x = cov_table[eff.covariate]
            if isinstance(eff, Categorical):
                levels = pop.coef.get(cname, {})
                cols = []
                for v in x:
                    if v == eff.reference:
                        cols.append(np.zeros(s))
                    elif str(v) in levels:
                        cols.append(np.asarray(levels[str(v)], dtype=float))
                    else:
                        raise SpecificationError(
                            f"Categorical({eff.covariate!r}) on {p.name}: level {v!r} has no "
                            f"coefficient (known levels: {sorted(levels)}); was it absent from "
                            "the data the parameters were estimated on?"
                        )
                log_f = np.stack(cols, axis=1)
            else:
                theta = (
                    np.asarray(pop.coef[cname], dtype=float)
                    if eff.estimated
                    else np.full(s, float(eff.coefficient))
                )
                xv = x.to_numpy(dtype=float)
                if isinstance(eff, Power):
                    log_f = theta[:, None] * np.log(xv / eff.reference)
                elif isinstance(eff, Exponential):
                    log_f = theta[:, None] * (xv - eff.reference)
                else:  # Linear
                    factor = 1.0 + theta[:, None] * (xv - eff.reference)
                    valid &= np.all(factor > 0, axis=1)
                    log_f = np.log(np.maximum(factor, 1e-300))
            value = value + log_f if log_scale else value * np.exp(log_f)
        if p.iiv == "normal":
            out[p.name] = value
        elif p.iiv == "logit":
            out[p.name] = 1.0 / (1.0 + np.exp(-value))
        else:
            out[p.name] = np.exp(value)
    return out, valid


def _pop_from_posterior(fit: Any, index: np.ndarray | None = None) -> _Pop:
    """Population parameters of each posterior draw (flat chain*draw order)."""
    from .simulation import _flat

    post = fit.posterior
    model = fit.model
    n_total = post.sizes["chain"] * post.sizes["draw"]
    idx = np.arange(n_total) if index is None else np.asarray(index)
    typical = {p.name: _flat(post[f"{p.name}_pop"])[idx] for p in model.parameters if not p.fixed}
    coef: dict[str, Any] = {}
    for _, eff, cname in _effects(model):
        if not eff.estimated:
            continue
        if isinstance(eff, Categorical):
            dim = f"{eff.covariate}_level"
            da = post[cname]
            flat = _flat(da, dim)[idx]
            coef[cname] = {str(lv): flat[:, j] for j, lv in enumerate(da[dim].values)}
        else:
            coef[cname] = _flat(post[cname])[idx]
    names = list(model.iiv_names)
    k = len(names)
    if k:
        sd = _flat(post["omega"].sel(param=names), "param")[idx]
        corr = _flat(post["omega_corr"].sel(param=names, param_bis=names), "param", "param_bis")
        corr = corr[idx]
    else:
        sd, corr = np.zeros((len(idx), 0)), np.zeros((len(idx), 0, 0))
    sigma = {str(v): _flat(post[v])[idx] for v in post.data_vars if is_residual_parameter(v)}
    return _Pop(typical, coef, sd, corr, sigma)


def population_parameters(fit: Any, *, point: Literal["median", "mean"] = "median") -> dict:
    """Posterior point estimates of the population parameters, as :func:`marginal_loglik` takes.

    Keys are the posterior's names: ``"CL_pop"`` ... (typical values, natural scale; not for
    ``fixed`` parameters), covariate coefficients (``"CL_WT"``; a ``{level: value}`` dict for
    :class:`~nlme_bayes.Categorical`), ``"omega"`` (``{name: SD}``), ``"omega_corr"`` (k x k
    array in ``model.iiv_names`` order), ``"sigma_*"`` and an estimated ``"nu"``. Elementwise
    medians of a correlation matrix are made positive definite if needed.

    Examples
    --------
    >>> population_parameters(fit)["omega"]  # doctest: +SKIP
    {'CL': 0..., 'V': 0..., 'ka': 0...}
    """
    if point not in ("median", "mean"):
        raise SpecificationError(f"point={point!r} is not valid; choose 'mean' or 'median'.")
    agg = np.median if point == "median" else np.mean
    pop = _pop_from_posterior(fit)

    def red(a: np.ndarray) -> np.ndarray:
        return agg(a, axis=0)[None]

    corr = red(pop.omega_corr)
    w = np.linalg.eigvalsh(corr)
    if corr.shape[-1] and w.min() < 1e-6:  # shrink towards the identity until PD
        for lam in np.linspace(0.05, 1.0, 20):
            c = (1 - lam) * corr + lam * np.eye(corr.shape[-1])
            if np.linalg.eigvalsh(c).min() > 1e-6:
                corr = c
                break
    point_pop = _Pop(
        {n: red(v) for n, v in pop.typical.items()},
        {
            n: ({lv: red(a) for lv, a in v.items()} if isinstance(v, dict) else red(v))
            for n, v in pop.coef.items()
        },
        red(pop.omega_sd),
        corr,
        {n: red(v) for n, v in pop.sigma.items()},
    )
    return _pop_to_mapping(fit.model, point_pop)


def _pop_to_mapping(model: Any, pop: _Pop, i: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {f"{n}_pop": float(v[i]) for n, v in pop.typical.items()}
    for n, v in pop.coef.items():
        out[n] = {lv: float(a[i]) for lv, a in v.items()} if isinstance(v, dict) else float(v[i])
    names = list(model.iiv_names)
    if names:
        out["omega"] = {n: float(pop.omega_sd[i, j]) for j, n in enumerate(names)}
        out["omega_corr"] = pop.omega_corr[i].copy()
    out.update({n: float(v[i]) for n, v in pop.sigma.items()})
    return out


def _matrix(value: Any, names: list[str], what: str) -> np.ndarray:
    k = len(names)
    if isinstance(value, pd.DataFrame):
        missing = [n for n in names if n not in value.index or n not in value.columns]
        if missing:
            raise SpecificationError(f"params[{what!r}]: rows/columns {missing} are missing.")
        return value.loc[names, names].to_numpy(dtype=float)
    if isinstance(value, Mapping):  # {(a, b): value}
        m = np.eye(k) if what == "omega_corr" else np.zeros((k, k))
        for key, v in value.items():
            if not (isinstance(key, tuple) and len(key) == 2 and set(key) <= set(names)):
                raise SpecificationError(
                    f"params[{what!r}]: key {key!r} is not a pair of random-effect names "
                    f"({', '.join(names)})."
                )
            a, b = names.index(key[0]), names.index(key[1])
            m[a, b] = m[b, a] = float(v)
        return m
    m = np.asarray(value, dtype=float)
    if m.shape != (k, k):
        raise SpecificationError(
            f"params[{what!r}] must be {k} x {k} (order {', '.join(names)}), got shape {m.shape}."
        )
    return m


def _pop_from_mapping(model: Any, params: Mapping[str, Any], sigma_names: list[str]) -> _Pop:
    """Validate user parameters (posterior names, see :func:`population_parameters`)."""
    if not isinstance(params, Mapping):
        raise SpecificationError(
            f"params must be a mapping such as population_parameters(fit), got {type(params)}."
        )
    names = list(model.iiv_names)
    expected = [f"{p.name}_pop" for p in model.parameters if not p.fixed]
    expected += [c for _, eff, c in _effects(model) if eff.estimated]
    expected += sigma_names
    allowed = set(expected) | {"omega", "omega_corr", "omega_cov"}
    missing = [k for k in expected if k not in params]
    if names and "omega" not in params and "omega_cov" not in params:
        missing.append("omega")
    unknown = sorted(set(params) - allowed)
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown {', '.join(unknown)}")
        raise SpecificationError(
            f"params: {'; '.join(parts)}. Expected keys: {', '.join(expected)}"
            + (", omega (SDs by name) [+ omega_corr] or omega_cov." if names else ".")
        )
    typical = {
        p.name: np.array([float(params[f"{p.name}_pop"])]) for p in model.parameters if not p.fixed
    }
    coef: dict[str, Any] = {}
    for _, eff, cname in _effects(model):
        if not eff.estimated:
            continue
        v = params[cname]
        if isinstance(eff, Categorical):
            if not isinstance(v, Mapping):
                raise SpecificationError(
                    f"params[{cname!r}] must be a mapping level -> coefficient, got {v!r}."
                )
            coef[cname] = {str(lv): np.array([float(a)]) for lv, a in v.items()}
        else:
            coef[cname] = np.array([float(v)])
    k = len(names)
    if "omega_cov" in params:
        if "omega" in params or "omega_corr" in params:
            raise SpecificationError(
                "params: give either omega_cov (covariance) or omega (SDs) [+ omega_corr], "
                "not both."
            )
        cov = _matrix(params["omega_cov"], names, "omega_cov")
        sd = np.sqrt(np.diag(cov))
        corr = cov / np.outer(sd, sd)
    elif k:
        om = params["omega"]
        if not isinstance(om, Mapping) or set(om) != set(names):
            raise SpecificationError(
                f"params['omega'] must map each random effect ({', '.join(names)}) to its SD, "
                f"got {om!r}."
            )
        sd = np.array([float(om[n]) for n in names])
        corr = _matrix(params.get("omega_corr", np.eye(k)), names, "omega_corr")
    else:
        sd, corr = np.zeros(0), np.zeros((0, 0))
    if np.any(sd <= 0) or (k and np.linalg.eigvalsh(corr).min() <= -1e-12):
        raise SpecificationError(
            "params: Omega must have positive SDs and a positive semi-definite correlation "
            f"matrix; got SDs {sd.tolist()}."
        )
    sigma = {n: np.array([float(params[n])]) for n in sigma_names}
    if any(v[0] <= 0 for v in sigma.values()):
        raise SpecificationError(f"params: sigma values must be > 0, got {params}.")
    return _Pop(typical, coef, sd[None], corr[None], sigma)


# =========================================================================== integration
def _tile(s: EventSchedule, t: int) -> EventSchedule:
    """``t`` independent copies of a schedule (copy r has subjects r*n .. r*n + n - 1)."""
    if hasattr(s, "tile"):  # schedules of other structure kinds (algebraic) tile themselves
        return s.tile(t)
    reps = np.arange(t)[:, None]

    def pairs(p: DosePairs) -> DosePairs:
        return DosePairs(
            obs=(p.obs[None] + reps * s.n_obs).ravel(),
            subject=(p.subject[None] + reps * s.n_subjects).ravel(),
            dt=np.tile(p.dt, t),
            amt=np.tile(p.amt, t),
            duration=np.tile(p.duration, t),
        )

    return EventSchedule(
        n_subjects=s.n_subjects * t,
        n_obs=s.n_obs * t,
        obs_subject=(s.obs_subject[None] + reps * s.n_subjects).ravel(),
        obs_time=np.tile(s.obs_time, t),
        **{name: pairs(p) for name, p in s.groups().items()},
    )


def _stencil(k: int) -> np.ndarray:
    """Central-difference points: 0, +-e_i, and +-e_i +-e_j (i < j)."""
    pts = [np.zeros(k)]
    eye = np.eye(k)
    for i in range(k):
        pts += [eye[i], -eye[i]]
    for i in range(k):
        for j in range(i + 1, k):
            pts += [eye[i] + eye[j], eye[i] - eye[j], -eye[i] + eye[j], -eye[i] - eye[j]]
    return np.array(pts)


def _fd(vals: np.ndarray, k: int, h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value, gradient and Hessian from the stencil values (npts, ...)."""
    f0 = vals[0]
    g = np.empty(f0.shape + (k,))
    hess = np.empty(f0.shape + (k, k))
    for i in range(k):
        fp, fm = vals[1 + 2 * i], vals[2 + 2 * i]
        g[..., i] = (fp - fm) / (2 * h)
        hess[..., i, i] = (fp - 2 * f0 + fm) / h**2
    pos = 1 + 2 * k
    for i in range(k):
        for j in range(i + 1, k):
            pp, pm, mp, mm = vals[pos : pos + 4]
            hess[..., i, j] = hess[..., j, i] = (pp - pm - mp + mm) / (4 * h**2)
            pos += 4
    return f0, g, hess


class _Integrator:
    """Per-subject log-likelihoods and marginal log-likelihoods on one dataset."""

    def __init__(self, model: Any, data: Any, *, tile_obs: int = 20_000) -> None:
        from .censoring import censoring_info
        from .events import build_schedule

        self.model = model
        if getattr(model, "occasions", None) is not None:
            raise SpecificationError(
                "The marginal likelihood (ML estimation, integrated leave-one-subject-out) "
                "does not integrate inter-occasion random effects (kappa) yet; compare "
                "IOV models with PSIS-LOO over observations (nlme_bayes.comparison.loo)."
            )
        schedule, obs = build_schedule(data, model.structure)
        self.subject_ids = tuple(data.subject_ids)
        self.n_sub = schedule.n_subjects
        self.n_obs = schedule.n_obs
        self.censoring = censoring_info(data, getattr(model, "blq", None), obs)
        self.dv = obs["DV"].to_numpy(dtype=float)
        if self.censoring is not None:  # M3/M4/M1 likelihood, as in the PyMC model
            self.dv = self.censoring.dv
        self.dvid = obs["DVID"].to_numpy().astype(int)
        self.sigma_names = _sigma_names(model, self.dvid)
        self.t = max(1, tile_obs // max(self.n_obs, 1))
        self.predictor = Predictor(model.structure, _tile(schedule, self.t))
        subj = schedule.obs_subject
        self._order = np.argsort(subj, kind="stable")
        counts = np.bincount(subj, minlength=self.n_sub)
        self._has = counts > 0
        self._starts = (np.cumsum(counts) - counts)[self._has]
        self.k = len(model.iiv_names)

    def _by_subject(self, lp: np.ndarray) -> np.ndarray:
        out = np.zeros(lp.shape[:-1] + (self.n_sub,))
        if self._has.any():
            out[..., self._has] = np.add.reduceat(lp[..., self._order], self._starts, axis=-1)
        return out

    def loglik(self, params: dict[str, np.ndarray], sigma: dict[str, np.ndarray]) -> np.ndarray:
        """log p(y_i | individual params) for P parameter sets: (P, n_sub) -> (P, n_sub)."""
        names = self.predictor.names
        n_set = next(iter(params.values())).shape[0]
        per_call = self.t
        calls_per_group = max(1, _EVAL_BUDGET // (per_call * max(self.n_obs, 1)))
        out = np.empty((n_set, self.n_sub))
        step = per_call * calls_per_group
        for a in range(0, n_set, step):
            b = min(a + step, n_set)
            n_calls = -(-(b - a) // per_call)
            pad = n_calls * per_call - (b - a)
            arrs = {}
            for n in names:
                v = np.asarray(params[n][a:b], dtype=float)
                if pad:
                    v = np.concatenate([v, np.repeat(v[-1:], pad, axis=0)])
                arrs[n] = v.reshape(n_calls, per_call * self.n_sub)
            with np.errstate(all="ignore"):
                ipred = self.predictor(arrs).reshape(n_calls * per_call, self.n_obs)[: b - a]
                sig = {n: np.asarray(sigma[n][a:b], dtype=float) for n in self.sigma_names}
                sd, is_log = residual_sd(self.model, ipred, self.dvid, sig)
                nu = residual_nu(self.model, self.dvid, sig, ipred.ndim)
                if self.censoring is None:
                    lp = obs_logpdf(self.dv, ipred, sd, is_log, nu)
                else:
                    lp = logpdf_numpy(self.dv, ipred, sd, is_log, self.censoring, nu)
            out[a:b] = self._by_subject(lp)
        return np.where(np.isnan(out), -np.inf, out)

    def _logjoint(self, z: np.ndarray, typ: dict, chol: np.ndarray, sigma: dict) -> np.ndarray:
        """log p(y|L z) + log N(z|0,I) for z (B, R, n_sub, k) -> (B, R, n_sub)."""
        b, r = z.shape[:2]
        eta = np.einsum("rij,brsj->brsi", chol, z)
        typical = {n: np.broadcast_to(v[None], (b, r, self.n_sub)) for n, v in typ.items()}
        ind = apply_iiv(self.model, typical, eta)
        flat = {n: np.asarray(v).reshape(b * r, self.n_sub) for n, v in ind.items()}
        sig = {n: np.broadcast_to(v[None], (b, r)).reshape(-1) for n, v in sigma.items()}
        ll = self.loglik(flat, sig).reshape(b, r, self.n_sub)
        return ll - 0.5 * np.sum(z**2, axis=-1) - 0.5 * self.k * math.log(2 * math.pi)

    def _mode(self, f: Any, z0: np.ndarray, tol: float, max_iter: int) -> tuple:
        """Damped Newton on f (vectorised over units), FD in the current posterior-SD scale."""
        k = self.k
        st = _stencil(k)
        z = z0.copy()
        scale = np.broadcast_to(np.eye(k), z.shape + (k,)).copy()  # C: z = z_c + C u
        lam = np.zeros(z.shape[:-1])
        for it in range(max_iter + 1):
            pts = z[None] + _FD_STEP * np.einsum("...ij,pj->p...i", scale, st)
            vals = f(pts)
            f0, g_u, h_u = _fd(vals, k, _FD_STEP)
            bad = ~np.all(np.isfinite(vals), axis=0)
            g_u[bad] = 0.0
            h_u[bad] = -np.eye(k)
            # back to z: g_z = C^-T g_u, H_z = C^-T H_u C^-1
            cinv = np.linalg.inv(scale)
            g = np.einsum("...ji,...j->...i", cinv, g_u)
            a = -np.einsum("...ji,...jl,...lm->...im", cinv, h_u, cinv)
            a = 0.5 * (a + np.swapaxes(a, -1, -2))
            w, q = np.linalg.eigh(a)
            w = np.maximum(np.abs(w), 1e-8 * np.maximum(np.abs(w).max(-1, keepdims=True), 1.0))
            a_reg = (q * w[..., None, :]) @ np.swapaxes(q, -1, -2)
            done = np.max(np.abs(g_u), axis=-1) < tol
            if done.all() or it == max_iter:
                break
            wl = w + lam[..., None]
            d = np.einsum("...ij,...j->...i", (q / wl[..., None, :]) @ np.swapaxes(q, -1, -2), g)
            # no step longer than 3 (z units) at once
            norm = np.linalg.norm(d, axis=-1, keepdims=True)
            d = d * np.minimum(1.0, 3.0 / np.maximum(norm, 1e-300))
            d[done] = 0.0
            f_new = f((z + d)[None])[0]
            ok = np.isfinite(f_new) & (f_new >= f0) & ~done
            z = np.where(ok[..., None], z + d, z)
            lam = np.where(ok, lam * 0.1, np.maximum(lam * 10.0, 1e-2))
            inv = np.linalg.inv(a_reg)
            scale = np.where(ok[..., None, None], _chol(inv), scale)
        return z, a_reg

    def integrate(
        self,
        typical: dict[str, np.ndarray],
        chol: np.ndarray,
        sigma: dict[str, np.ndarray],
        *,
        method: str = "aghq",
        n_nodes: int | None = None,
        n_samples: int = 1000,
        random_seed: int = 0,
        error: bool = True,
        z0: np.ndarray | None = None,
        tol: float = 1e-6,
        max_iter: int = 60,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """log p(y_i | theta_r) for R parameter sets: typical (R, n_sub), chol (R, k, k).

        Returns (log integral, error, mode z), shapes (R, n_sub), (R, n_sub), (R, n_sub, k).
        ``error`` is |AGHQ(n) - AGHQ(n-2)| for ``"aghq"`` and the MCSE for ``"is"``.
        """
        k = self.k
        r_total = chol.shape[0]
        sig = {n: np.asarray(sigma[n], dtype=float) for n in self.sigma_names}
        if k == 0:
            ll = self.loglik(typical, sig)
            return ll, np.zeros_like(ll), np.zeros(ll.shape + (0,))
        if method == "aghq":
            n = n_nodes or AGHQ_NODES.get(k, 3)
            block_pts = max(len(_stencil(k)), min(n**k, 64))
        else:
            block_pts = max(len(_stencil(k)), 64)
        r_blk = max(1, _EVAL_BUDGET // (block_pts * self.n_sub * 4))
        rng = np.random.default_rng(random_seed)
        logi = np.empty((r_total, self.n_sub))
        err = np.zeros((r_total, self.n_sub))
        modes = np.empty((r_total, self.n_sub, k))
        for a in range(0, r_total, r_blk):
            sl = slice(a, min(a + r_blk, r_total))
            typ = {nm: np.asarray(v[sl], dtype=float) for nm, v in typical.items()}
            c = chol[sl]
            sg = {nm: v[sl] for nm, v in sig.items()}

            def f(z: np.ndarray, typ: dict = typ, c: np.ndarray = c, sg: dict = sg) -> np.ndarray:
                return self._logjoint(z, typ, c, sg)

            start = np.zeros((c.shape[0], self.n_sub, k)) if z0 is None else z0[sl]
            zhat, amat = self._mode(f, start, tol, max_iter)
            bmat = _chol(np.linalg.inv(amat))
            modes[sl] = zhat
            if method == "aghq":
                logi[sl] = self._aghq(f, zhat, bmat, n)
                if error:
                    coarse = self._aghq(f, zhat, bmat, max(1, n - 2))
                    err[sl] = np.abs(logi[sl] - coarse)
            else:
                logi[sl], err[sl] = self._is(f, zhat, bmat, n_samples, rng)
        return logi, err, modes

    def _aghq(self, f: Any, zhat: np.ndarray, bmat: np.ndarray, n: int) -> np.ndarray:
        k = self.k
        x1, w1 = np.polynomial.hermite.hermgauss(n)
        grid = np.stack(np.meshgrid(*([x1] * k), indexing="ij"), -1).reshape(-1, k)
        lw = np.sum(np.log(np.stack(np.meshgrid(*([w1] * k), indexing="ij"), -1)), -1).ravel()
        lw = lw + np.sum(grid**2, axis=-1)
        chunk = max(1, 64)
        acc = np.full(zhat.shape[:-1], -np.inf)
        for a in range(0, len(grid), chunk):
            x = grid[a : a + chunk]
            pts = zhat[None] + math.sqrt(2.0) * np.einsum("...ij,pj->p...i", bmat, x)
            vals = f(pts) + lw[a : a + chunk, None, None]
            acc = np.logaddexp(acc, logsumexp(vals, axis=0))
        logdet = np.sum(np.log(np.diagonal(bmat, axis1=-2, axis2=-1)), axis=-1)
        return acc + 0.5 * k * math.log(2.0) + logdet

    def _is(
        self, f: Any, zhat: np.ndarray, bmat: np.ndarray, m: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Defensive importance sampling: (1 - a) t_nu(zhat, B) + a N(0, I), a = _DEFENSIVE."""
        k, nu, alpha = self.k, _T_DF, _DEFENSIVE
        logdet = np.sum(np.log(np.diagonal(bmat, axis1=-2, axis2=-1)), axis=-1)
        const = gammaln((nu + k) / 2) - gammaln(nu / 2) - 0.5 * k * math.log(nu * math.pi)
        binv = np.linalg.inv(bmat)
        s1 = np.full(zhat.shape[:-1], -np.inf)
        s2 = np.full(zhat.shape[:-1], -np.inf)
        chunk = 64
        for a in range(0, m, chunk):
            b = min(chunk, m - a)
            u = rng.standard_normal((b,) + zhat.shape)
            chi = rng.chisquare(nu, size=(b,) + zhat.shape[:-1])
            t = u / np.sqrt(chi / nu)[..., None]
            pts = zhat[None] + np.einsum("...ij,p...j->p...i", bmat, t)
            from_prior = rng.random((b,) + zhat.shape[:-1]) < alpha
            prior_pts = rng.standard_normal((b,) + zhat.shape)
            pts = np.where(from_prior[..., None], prior_pts, pts)
            tt = np.einsum("...ij,p...j->p...i", binv, pts - zhat[None])
            log_t = const - logdet - 0.5 * (nu + k) * np.log1p(np.sum(tt**2, axis=-1) / nu)
            log_n = -0.5 * np.sum(pts**2, axis=-1) - 0.5 * k * math.log(2 * math.pi)
            logq = np.logaddexp(math.log1p(-alpha) + log_t, math.log(alpha) + log_n)
            lw = f(pts) - logq
            s1 = np.logaddexp(s1, logsumexp(lw, axis=0))
            s2 = np.logaddexp(s2, logsumexp(2 * lw, axis=0))
        log_mean = s1 - math.log(m)
        with np.errstate(invalid="ignore", over="ignore"):
            rel_var = np.expm1(s2 - math.log(m) - 2 * log_mean)
            mcse = np.sqrt(np.maximum(rel_var, 0.0) / m)
        return log_mean, np.where(np.isfinite(mcse), mcse, np.inf)


# =========================================================================== marginal_loglik
@dataclass(frozen=True)
class MarginalLogLik:
    """The marginal log-likelihood at given population parameters.

    Attributes
    ----------
    loglik : float
        ``sum_i log p(y_i | theta)``, with the full normal constant (as NONMEM's OFV / -2).
    error : float
        ``"is"``: its Monte Carlo SE (subjects independent: root sum of squares);
        ``"aghq"``: sum over subjects of ``|AGHQ(n) - AGHQ(n - 2)|`` (conservative).
    per_subject : pandas.Series
        ``log p(y_i | theta)`` by ID.
    per_subject_error : pandas.Series
    method : str
        ``"aghq"``, ``"is"``, or ``"exact"`` (a model without random effects).
    n_nodes : int or None
        AGHQ nodes per random effect.
    n_samples : int or None
        Importance samples per subject.

    Examples
    --------
    >>> import numpy as np
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.examples import theophylline_model
    >>> params = {"CL_pop": 0.04, "V_pop": 0.46, "ka_pop": 1.6,
    ...           "omega": {"CL": 0.25, "V": 0.12, "ka": 0.64}, "sigma_add": 0.68}
    >>> res = marginal_loglik(theophylline_model(), nb.datasets.theophylline(), params)
    >>> res.method, len(res.per_subject), bool(np.isclose(res.per_subject.sum(), res.loglik))
    ('aghq', 12, True)
    """

    loglik: float
    error: float
    per_subject: pd.Series
    per_subject_error: pd.Series
    method: str
    n_nodes: int | None = None
    n_samples: int | None = None

    def __str__(self) -> str:
        how = {
            "aghq": f"AGHQ, {self.n_nodes} nodes/dim",
            "is": f"IS, {self.n_samples} samples/subject",
        }.get(self.method, "no random effects")
        return f"logLik {self.loglik:.4f} (+- {self.error:.2g}; {how}), -2LL {-2 * self.loglik:.3f}"


def _resolve(model_or_fit: Any, data: Any) -> tuple[Any, Any, Any]:
    if hasattr(model_or_fit, "posterior") and hasattr(model_or_fit, "model"):
        return model_or_fit.model, (data if data is not None else model_or_fit.data), model_or_fit
    if data is None:
        raise SpecificationError("data is required when a Model (not a Fit) is given.")
    return model_or_fit, data, None


def _method(method: str, k: int) -> str:
    if method not in ("auto", "aghq", "is"):
        raise SpecificationError(f"method={method!r} is not valid; choose 'aghq', 'auto', 'is'.")
    if method == "auto":
        return "aghq" if k <= max(AGHQ_NODES) else "is"
    if method == "aghq" and k > max(AGHQ_NODES):
        raise SpecificationError(
            f"method='aghq' with {k} random effects needs n_nodes**{k} points per subject; "
            "use method='is'."
        )
    return method


def _cov_table(model: Any, data: Any) -> pd.DataFrame:
    if model.covariate_names:
        return data.covariate_table(
            list(model.covariate_names), time_varying=model.time_varying_covariates
        )
    return pd.DataFrame(index=pd.Index(data.subject_ids, name="ID"))


def marginal_loglik(
    model_or_fit: Any,
    data: Any = None,
    params: Mapping[str, Any] | None = None,
    *,
    method: Literal["auto", "aghq", "is"] = "auto",
    n_nodes: int | None = None,
    n_samples: int = 2000,
    random_seed: int = 0,
) -> MarginalLogLik:
    """Marginal log-likelihood ``sum_i log ∫ p(y_i | theta, eta) N(eta | 0, Omega) d eta``.

    The likelihood NONMEM, nlme and saemix maximise, at the population parameters
    ``params``; see the module docstring for the two methods.

    Parameters
    ----------
    model_or_fit : Model or Fit
    data : NonmemDataset, optional
        Default: the fit's data.
    params : mapping, optional
        Keys as the posterior names them (see :func:`population_parameters`): ``"CL_pop"``...,
        covariate coefficients, ``"omega"`` (SDs by name) with optional ``"omega_corr"``, or
        ``"omega_cov"`` (a covariance matrix in ``model.iiv_names`` order, or a labelled
        DataFrame), and ``"sigma_*"``. Default (with a fit): the posterior medians.
    method : {"auto", "aghq", "is"}
        ``"auto"``: adaptive Gauss-Hermite for up to 4 random effects, else importance sampling.
    n_nodes : int, optional
        AGHQ nodes per random effect (default 20, 12, 7, 5 for k = 1..4).
    n_samples : int
        Importance samples per subject (``"is"``).
    random_seed : int

    Returns
    -------
    MarginalLogLik

    Examples
    --------
    >>> import numpy as np
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.examples import theophylline_model
    >>> params = {"CL_pop": np.exp(-3.214), "V_pop": np.exp(-0.782), "ka_pop": np.exp(0.451),
    ...           "omega": {"CL": 0.25, "V": 0.12, "ka": 0.64}, "sigma_add": 0.68}
    >>> res = marginal_loglik(theophylline_model(), nb.datasets.theophylline(), params)
    >>> round(res.loglik, 1)
    -180.1
    """
    model, data, fit = _resolve(model_or_fit, data)
    if params is None:
        if fit is None:
            raise SpecificationError("params is required when a Model (not a Fit) is given.")
        params = population_parameters(fit)
    integ = _Integrator(model, data)
    pop = _pop_from_mapping(model, params, integ.sigma_names)
    meth = _method(method, integ.k) if integ.k else "exact"  # no random effects: no integral
    typical, valid = _typical_values(model, _cov_table(model, data), pop)
    if not valid.all():
        raise SpecificationError("params: a Linear covariate factor is <= 0 for some subject.")
    logi, err, _ = integ.integrate(
        typical,
        pop.chol(),
        pop.sigma,
        method=meth,
        n_nodes=n_nodes,
        n_samples=n_samples,
        random_seed=random_seed,
    )
    idx = pd.Index(integ.subject_ids, name="ID")
    total_err = float(np.sqrt(np.sum(err[0] ** 2))) if meth == "is" else float(np.sum(err[0]))
    return MarginalLogLik(
        loglik=float(np.sum(logi[0])),
        error=total_err,
        per_subject=pd.Series(logi[0], index=idx, name="loglik"),
        per_subject_error=pd.Series(err[0], index=idx, name="error"),
        method=meth,
        n_nodes=(n_nodes or AGHQ_NODES.get(integ.k, 3)) if meth == "aghq" else None,
        n_samples=n_samples if meth == "is" else None,
    )
