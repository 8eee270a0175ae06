r"""Model comparison: leave-one-out by observation or by subject, WAIC, and compare().

Two questions, two levels:

- ``by="observation"``: how well does the model predict a *new observation of a subject it has
  seen* (its random effects known up to their posterior)? PSIS-LOO on the pointwise
  log-likelihood, as :func:`arviz_stats.loo`.
- ``by="subject"``: how well does it predict a *new subject*? This is what a population model
  is for, and what separates models that differ in their random effects or structure. The
  held-out subject's random effects are unknown, so its predictive density integrates them out
  under the population distribution:

  .. math::

      p(y_i \mid y_{-i}) = \int p(y_i \mid \theta)\, p(\theta \mid y_{-i})\, d\theta, \qquad
      p(y_i \mid \theta) = \int p(y_i \mid \theta, \eta)\, N(\eta \mid 0, \Omega)\, d\eta .

  ``method="psis"`` sums each subject's pointwise log-likelihood (conditional on its fitted
  eta) and applies PSIS: the subject's eta posterior is dominated by its own data, so leaving
  the subject out changes the posterior a lot and Pareto k is usually high.
  ``method="integrated"`` first integrates eta out for every posterior draw
  (:mod:`nlme_bayes.marginal`: adaptive Gauss-Hermite quadrature, or importance sampling for
  more than 4 random effects), then applies PSIS over the draws of :math:`\theta` only: far
  more stable. ``method="kfold"`` refits the model without the held-out subjects (exact),
  ``method="auto"`` uses integrated PSIS and refits only the subjects with k > 0.7 (as
  ``reloo``) when ``refit=True``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from arviz_stats.utils import ELPDData, ELPDDataLOO, ELPDDataLOOKFold
from scipy.special import logsumexp

from .errors import NLMEWarning, SpecificationError
from .marginal import (
    _chol,
    _cov_table,
    _Integrator,
    _method,
    _pop_from_posterior,
    _typical_values,
)

__all__ = [
    "loo",
    "waic",
    "compare",
    "NLMELOO",
    "NLMEKFold",
    "WAIC",
    "PSISWarning",
    "WAICWarning",
]

BY = ("observation", "subject")
METHODS = ("auto", "integrated", "kfold", "psis")
K_THRESHOLD = 0.7
WAIC_VAR_THRESHOLD = 0.4


class PSISWarning(NLMEWarning):
    """Pareto k above the threshold: PSIS-LOO is unreliable for the named points.

    Examples
    --------
    >>> from nlme_bayes.comparison import PSISWarning
    >>> from nlme_bayes.errors import NLMEWarning
    >>> issubclass(PSISWarning, NLMEWarning)
    True
    >>> import warnings
    >>> with warnings.catch_warnings():  # make unreliable LOO an error in a batch job
    ...     warnings.simplefilter("error", PSISWarning)
    """


class WAICWarning(NLMEWarning):
    """The posterior variance of a pointwise log-likelihood exceeds 0.4: WAIC is unreliable.

    Examples
    --------
    >>> from nlme_bayes.comparison import WAICWarning
    >>> from nlme_bayes.errors import NLMEWarning
    >>> issubclass(WAICWarning, NLMEWarning)
    True
    """


# =========================================================================== result classes
@dataclass(kw_only=True, repr=False)
class NLMELOO(ELPDDataLOO):
    """PSIS-LOO results (an :class:`arviz_stats.utils.ELPDDataLOO`) with the NLME context.

    Attributes
    ----------
    by : {"observation", "subject"}
    method : {"psis", "integrated", "auto"}
    k_threshold : float
        Pareto k above which a point is reported as unreliable.
    mcse_i : DataArray
        Monte Carlo SE of each ``elpd_i`` (delta method on the smoothed weights; the refit's
        for refitted subjects). It does not cover the bias of PSIS when k is high.
    integration_error : DataArray, optional
        Per subject, the largest error of the log integral over the posterior draws
        (``method="integrated"``/``"auto"``; see :mod:`nlme_bayes.marginal`).
    refitted : tuple
        Subjects whose elpd comes from an exact refit (``method="auto"``, ``refit=True``).

    Examples
    --------
    >>> res = nb.comparison.loo(fit, by="subject")  # doctest: +SKIP
    >>> res.method, res.high_k  # high_k: subjects with Pareto k above k_threshold  # doctest: +SKIP
    ('auto', (...))
    >>> res.elpd_i.to_series().head()  # doctest: +SKIP
    subject
    1   -...
    2   -...
    3   -...
    4   -...
    5   -...
    Name: DV, dtype: float64
    """

    by: str = "observation"
    method: str = "psis"
    k_threshold: float = K_THRESHOLD
    mcse_i: xr.DataArray | None = None
    integration_error: xr.DataArray | None = None
    refitted: tuple = ()

    @property
    def high_k(self) -> tuple:
        """Labels (subject IDs, or (ID, TIME) of observations) with k > ``k_threshold``.

        Examples
        --------
        >>> res = loo(fit)  # by observation  # doctest: +SKIP
        >>> res.high_k  # (ID, TIME) of each observation with Pareto k > 0.7  # doctest: +SKIP
        (...)
        >>> all(len(label) == 2 for label in res.high_k)  # doctest: +SKIP
        True
        """
        if self.pareto_k is None:
            return ()
        bad = np.asarray(self.pareto_k.values) > self.k_threshold
        return tuple(_labels(self.pareto_k)[i] for i in np.flatnonzero(bad))

    def _header(self) -> str:
        what = {
            "psis": "PSIS",
            "integrated": "PSIS on the likelihood with eta integrated out",
            "auto": "integrated PSIS, exact refits for high k",
        }[self.method]
        extra = f"; refitted: {', '.join(map(str, self.refitted))}" if self.refitted else ""
        return super()._header() + f"\nLeave-one-{self.by}-out ({what}{extra})."


@dataclass(kw_only=True, repr=False)
class NLMEKFold(ELPDDataLOOKFold):
    """Exact K-fold (or leave-one-subject-out) cross-validation by subject.

    Attributes
    ----------
    by : str
        Always ``"subject"``.
    method : str
        ``"kfold"``.
    mcse_i : DataArray
        Monte Carlo SE of each subject's elpd from the refit's draws (independent draws assumed).
    integration_error : DataArray
        Largest error of the log integral over the refit's draws, per subject.
    folds : tuple of tuples
        The subject IDs held out together.

    Examples
    --------
    Two folds of the Theophylline fit (``fit``; each refit with 100 draws):

    >>> res = nb.comparison.loo(fit, by="subject", method="kfold", K=2, draws=100,
    ...                         tune=100)  # doctest: +SKIP
    >>> res.n_folds, sorted(len(f) for f in res.folds)  # subjects held out  # doctest: +SKIP
    (2, [6, 6])
    >>> res.elpd_i.sizes["subject"], bool(res.mcse_i.max() < 1)  # doctest: +SKIP
    (12, True)
    """

    by: str = "subject"
    method: str = "kfold"
    mcse_i: xr.DataArray | None = None
    integration_error: xr.DataArray | None = None
    folds: tuple = ()


@dataclass(kw_only=True, repr=False)
class WAIC(ELPDData):
    """WAIC (an :class:`arviz_stats.utils.ELPDData` of kind ``"waic"``).

    ``elpd = lppd - p_waic`` with ``lppd = sum log mean_s exp(ll)``, ``p_waic = sum var_s(ll)``.

    Examples
    --------
    >>> w = nb.comparison.waic(fit)  # doctest: +SKIP
    >>> w.elpd, w.p  # doctest: +SKIP
    (-..., ...)
    """

    _kind = "waic"
    by: str = "observation"
    p_waic_i: xr.DataArray | None = None


def _labels(da: xr.DataArray) -> list:
    if "subject" in da.dims:
        return da["subject"].values.tolist()
    if "ID" in da.coords and "TIME" in da.coords:
        return list(zip(da["ID"].values.tolist(), da["TIME"].values.tolist(), strict=True))
    return da[da.dims[0]].values.tolist()


def _describe(labels: list, by: str, values: np.ndarray | None = None) -> str:
    shown = labels[:10]
    if by == "subject":
        items = [str(s) for s in shown]
        if values is not None:
            items = [f"{s} (k={v:.2f})" for s, v in zip(shown, values[:10], strict=False)]
        text = "subject" + ("s " if len(labels) > 1 else " ") + ", ".join(items)
    else:
        text = f"{len(labels)} observation(s): " + ", ".join(f"ID {i} TIME {t:g}" for i, t in shown)
    return text + (f" and {len(labels) - 10} more" if len(labels) > 10 else "")


# =========================================================================== helpers
def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecificationError(
            f"{name}={value!r} is not valid; choose one of {', '.join(sorted(choices))}."
        )


def _loglik_flat(fit: Any) -> xr.DataArray:
    tree = fit.results
    if "log_likelihood" not in tree.children or "DV" not in tree["log_likelihood"].dataset:
        raise SpecificationError(
            "This fit has no log_likelihood group (DV); refit it with nlme_bayes' Model.fit()."
        )
    return tree["log_likelihood"].dataset["DV"].transpose("chain", "draw", "obs")


def _by_subject_ll(fit: Any) -> xr.DataArray:
    """Pointwise log-likelihood summed per subject: (chain, draw, subject)."""
    ll = _loglik_flat(fit)
    ids = list(fit.data.subject_ids)
    pos = pd.Index(ids).get_indexer(ll["ID"].values)
    vals = ll.values
    out = np.stack([vals[..., pos == j].sum(-1) for j in range(len(ids))], axis=-1)
    return xr.DataArray(
        out,
        dims=("chain", "draw", "subject"),
        coords={"chain": ll["chain"].values, "draw": ll["draw"].values, "subject": ids},
    )


def _psis(ll: xr.DataArray, posterior: xr.Dataset) -> tuple[ELPDDataLOO, xr.DataArray]:
    """az.loo on ``ll`` (chain, draw, point), and the Monte Carlo SE of each elpd_i.

    The MCSE is that of the self-normalised PSIS estimate by the delta method (as R's
    ``loo::mcse_elpd`` before its gamma approximation):
    ``sqrt(sum_s w_s^2 (p_s - p)^2 / r_eff) / p`` with ``p = sum_s w_s p_s``,
    ``p_s = exp(ll_s)`` and ``w`` the normalised smoothed weights.
    """
    n = ll.sizes["chain"] * ll.sizes["draw"]
    if ll.sizes["chain"] > 1:
        ess = az.ess(posterior, method="mean")
        reff = float(np.nanmean(np.hstack([ess[v].values.ravel() for v in ess.data_vars])) / n)
    else:
        reff = 1.0
    tree = xr.DataTree.from_dict({"posterior": posterior, "log_likelihood": xr.Dataset({"DV": ll})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = az.loo(tree, pointwise=True, var_name="DV", reff=reff)
    dim = ll.dims[-1]
    lw = res.log_weights.transpose("chain", "draw", dim).values.reshape(n, -1)
    lw = lw - logsumexp(lw, axis=0)
    vals = ll.transpose("chain", "draw", dim).values.reshape(n, -1)
    p = np.exp(vals - vals.max(axis=0))
    w = np.exp(lw)
    mean = np.sum(w * p, axis=0)
    mcse = np.sqrt(np.sum(w**2 * (p - mean) ** 2, axis=0) / reff) / mean
    return res, xr.DataArray(mcse, dims=dim, coords=res.elpd_i.coords)


def _as(cls: type, res: ELPDData, **extra: Any) -> Any:
    from dataclasses import fields

    base = {f.name: getattr(res, f.name) for f in fields(res) if f.init}
    base.update(extra)
    return cls(**base)


def _warn_k(res: NLMELOO, advice: str) -> None:
    bad = res.high_k
    if not bad:
        return
    ks = np.asarray(res.pareto_k.values)
    ks = ks[ks > res.k_threshold]
    warnings.warn(
        f"Pareto k > {res.k_threshold} for {_describe(list(bad), res.by, ks)}: PSIS-LOO is "
        f"unreliable there. {advice}",
        PSISWarning,
        stacklevel=3,
    )


def _summary(elpd_i: np.ndarray) -> tuple[float, float]:
    n = len(elpd_i)
    return float(np.sum(elpd_i)), float(np.sqrt(n * np.var(elpd_i, ddof=1))) if n > 1 else 0.0


# =========================================================================== integrated
@dataclass(frozen=True)
class _Integrated:
    ll: xr.DataArray  # (chain, draw, subject): log p(y_i | theta_s), eta integrated out
    error: xr.DataArray  # (chain, draw, subject)
    posterior: xr.Dataset  # the posterior draws used
    method: str


def _integrated(
    fit: Any,
    *,
    n_draws: int | None,
    integration: str,
    n_nodes: int | None,
    n_samples: int,
    random_seed: int,
) -> _Integrated:
    from .simulation import posterior_draws

    post = fit.posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    if n_draws is None or n_draws >= n_chain * n_draw:
        sel = np.arange(n_draw)
    else:
        per = max(1, int(n_draws) // n_chain)
        sel = np.unique(np.linspace(0, n_draw - 1, per).round().astype(int))
    flat = (np.arange(n_chain)[:, None] * n_draw + sel[None]).ravel()
    d = posterior_draws(fit)
    integ = _Integrator(fit.model, fit.data)
    meth = _method(integration, integ.k)
    logi, err, _ = integ.integrate(
        {n: v[flat] for n, v in d.typical.items()},
        _chol(d.omega_cov[flat]),
        {n: v[flat] for n, v in d.sigma.items()},
        method=meth,
        n_nodes=n_nodes,
        n_samples=n_samples,
        random_seed=random_seed,
    )
    sub = post.isel(draw=sel)
    coords = {"chain": sub["chain"].values, "draw": sub["draw"].values}
    coords["subject"] = list(integ.subject_ids)
    shape = (n_chain, len(sel), integ.n_sub)
    dims = ("chain", "draw", "subject")
    return _Integrated(
        xr.DataArray(logi.reshape(shape), dims=dims, coords=coords),
        xr.DataArray(err.reshape(shape), dims=dims, coords=coords),
        sub,
        meth,
    )


def _refit_kwargs(fit: Any, draws: int | None, tune: int | None, fit_kwargs: Mapping | None):
    info = fit.info
    attrs = fit.results.attrs
    kw: dict[str, Any] = {
        "draws": int(draws if draws is not None else info["draws"]),
        "tune": int(tune if tune is not None else info["tune"]),
        "chains": int(info["chains"]),
        "random_seed": info["random_seed"],
        "sampler": info["sampler"] or "auto",
        "progressbar": False,
        "check": False,
        "store_predictions": False,
    }
    if "target_accept" in attrs:
        kw["target_accept"] = float(attrs["target_accept"])
    if "mass_matrix" in attrs:
        kw["mass_matrix"] = str(attrs["mass_matrix"])
    kw.update(dict(fit_kwargs or {}))
    return kw


def _heldout(
    fit: Any,
    groups: list[list[Any]],
    *,
    kwargs: dict[str, Any],
    integration: str,
    n_nodes: int | None,
    n_samples: int,
    random_seed: int,
) -> tuple[dict, dict, dict, int]:
    """Refit without each group; elpd, MCSE and integration error of each held-out subject."""
    from .data import read_nonmem

    df = fit.data.to_dataframe()
    elpd, mcse, ierr = {}, {}, {}
    n_s = 0
    for group in groups:
        held = df["ID"].isin(group)
        train = read_nonmem(df[~held].reset_index(drop=True))
        test = read_nonmem(df[held].reset_index(drop=True))
        refit = fit.model.fit(train, **kwargs)
        pop = _pop_from_posterior(refit)
        integ = _Integrator(fit.model, test)
        typical, valid = _typical_values(fit.model, _cov_table(fit.model, test), pop)
        logi, err, _ = integ.integrate(
            typical,
            pop.chol(),
            pop.sigma,
            method=_method(integration, integ.k),
            n_nodes=n_nodes,
            n_samples=n_samples,
            random_seed=random_seed,
        )
        logi[~valid] = -np.inf
        n_s = logi.shape[0]
        lse = logsumexp(logi, axis=0) - math.log(n_s)
        w = np.exp(logi - logi.max(axis=0))
        se = w.std(axis=0, ddof=1) / (w.mean(axis=0) * math.sqrt(n_s))
        for j, sid in enumerate(integ.subject_ids):
            elpd[sid], mcse[sid], ierr[sid] = float(lse[j]), float(se[j]), float(err[:, j].max())
    return elpd, mcse, ierr, n_s


# =========================================================================== loo
def loo(
    fit: Any,
    *,
    by: Literal["observation", "subject"] = "observation",
    method: Literal["psis", "integrated", "kfold", "auto"] | None = None,
    refit: bool = False,
    K: int | None = None,
    n_draws: int | None = None,
    integration: Literal["auto", "aghq", "is"] = "auto",
    n_nodes: int | None = None,
    n_samples: int = 1000,
    draws: int | None = None,
    tune: int | None = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    k_threshold: float = K_THRESHOLD,
    random_seed: int = 0,
) -> NLMELOO | NLMEKFold:
    """Leave-one-out cross-validation of a fit, by observation or by subject.

    Parameters
    ----------
    fit : Fit
    by : {"observation", "subject"}
        Leave out one observation (predict a seen subject) or one subject (predict a new one).
    method : {"psis", "integrated", "kfold", "auto"}, optional
        Default ``"psis"`` by observation (the only choice there) and ``"auto"`` by subject.
        By subject: ``"psis"`` on the per-subject sums of the log-likelihood;
        ``"integrated"``: PSIS on ``log p(y_i | theta_s)`` with eta integrated out;
        ``"kfold"``: exact, by refitting; ``"auto"``: integrated, then exact refits for the
        subjects with Pareto k > ``k_threshold`` if ``refit=True`` (else a warning).
    refit : bool
        Allow ``"auto"`` to refit the model (one refit per high-k subject).
    K : int, optional
        Folds for ``"kfold"`` (subjects assigned at random with ``random_seed``); ``None``:
        leave-one-subject-out, one refit per subject.
    n_draws : int, optional
        Thin the posterior (evenly, per chain) to about this many draws for the integrated
        likelihood (default: all).
    integration : {"auto", "aghq", "is"}
        How eta is integrated out (see :mod:`nlme_bayes.marginal`).
    n_nodes, n_samples : int
        AGHQ nodes per random effect / importance samples.
    draws, tune : int, optional
        Refits: override the original fit's draws / warm-up (the seed, chains, sampler,
        target_accept and mass matrix are the original fit's).
    fit_kwargs : mapping, optional
        Any other :meth:`Model.fit` option for the refits (e.g. ``{"sampler": "pymc"}``).
    k_threshold : float
        Pareto k threshold for warnings and refits.
    random_seed : int
        Importance sampling and fold assignment.

    Returns
    -------
    NLMELOO or NLMEKFold
        ArviZ ELPD objects (``elpd``, ``se``, ``p``, pointwise ``elpd_i`` and ``pareto_k`` with
        a ``subject`` or ``obs`` dimension), usable in :func:`compare` and
        :func:`arviz_stats.compare`.

    Warns
    -----
    PSISWarning
        Naming the subjects (observations) with Pareto k > ``k_threshold``.

    Examples
    --------
    >>> loo(fit)  # doctest: +SKIP
    Computed from ... posterior samples and 132 observations log-likelihood matrix.
    ...
    elpd_loo ...
    >>> res = loo(fit, by="subject", method="integrated")  # doctest: +SKIP
    >>> res.pareto_k.to_series()  # doctest: +SKIP
    subject
    1     ...
    12    ...
    Name: DV, dtype: float64
    >>> loo(fit, by="subject", method="auto", refit=True, draws=500)  # doctest: +SKIP
    """
    _check_choice("by", by, BY)
    if method is None:
        method = "psis" if by == "observation" else "auto"
    _check_choice("method", method, METHODS)
    _check_choice("integration", integration, ("auto", "aghq", "is"))
    n_sub = fit.data.n_subjects
    if K is not None and (not isinstance(K, (int, np.integer)) or not 2 <= K <= n_sub):
        raise SpecificationError(
            f"K={K!r} folds: need an int between 2 and the number of subjects ({n_sub}), "
            "or None for leave-one-subject-out."
        )
    if by == "observation":
        if method != "psis":
            raise SpecificationError(
                f"method={method!r} leaves out whole subjects and needs by='subject'; "
                "by='observation' supports method='psis'."
            )
        res = _loo_result(_loglik_flat(fit), fit.posterior, "observation", "psis", k_threshold)
        _warn_k(res, "Consider by='subject' with method='integrated'.")
        return res
    if method == "psis":
        res = _loo_result(_by_subject_ll(fit), fit.posterior, "subject", "psis", k_threshold)
        _warn_k(res, "Use method='integrated' (eta integrated out) or 'auto' with refit=True.")
        return res
    opts = dict(integration=integration, n_nodes=n_nodes, n_samples=n_samples)
    integ = _integrated(fit, n_draws=n_draws, random_seed=random_seed, **opts)
    n_s = integ.ll.sizes["chain"] * integ.ll.sizes["draw"]
    lpd = logsumexp(integ.ll.values, axis=(0, 1)) - math.log(n_s)
    if method == "kfold":
        return _kfold(
            fit,
            lpd,
            K=K,
            draws=draws,
            tune=tune,
            fit_kwargs=fit_kwargs,
            random_seed=random_seed,
            **opts,
        )
    res = _loo_result(
        integ.ll,
        integ.posterior,
        "subject",
        method,
        k_threshold,
        integration_error=integ.error.max(("chain", "draw")),
    )
    bad = list(res.high_k)
    if method == "auto" and bad and refit:
        kw = _refit_kwargs(fit, draws, tune, fit_kwargs)
        groups = [[s] for s in bad]
        elpd, mcse, ierr, _ = _heldout(fit, groups, kwargs=kw, random_seed=random_seed, **opts)
        new = {
            "elpd_i": res.elpd_i.copy(),
            "pareto_k": res.pareto_k.copy(),
            "mcse_i": res.mcse_i.copy(),
            "integration_error": res.integration_error.copy(),
        }
        for s in bad:
            at = {"subject": s}
            new["elpd_i"].loc[at] = elpd[s]
            new["pareto_k"].loc[at] = 0.0  # as arviz's reloo
            new["mcse_i"].loc[at] = mcse[s]
            new["integration_error"].loc[at] = ierr[s]
        p_i = xr.DataArray(lpd, dims="subject", coords={"subject": res.elpd_i["subject"]})
        p_i = p_i - new["elpd_i"]
        total, se = _summary(new["elpd_i"].values)
        res = replace(
            res,
            elpd=total,
            se=se,
            p=float(p_i.sum()),
            p_loo_i=p_i,
            refitted=tuple(bad),
            warning=bool(np.any(new["pareto_k"].values > res.good_k)),
            **new,
        )
    elif method == "auto" and bad:
        _warn_k(res, "Pass refit=True to refit the model without each of them (exact).")
    else:
        _warn_k(res, "Use method='auto' with refit=True to refit for them (exact).")
    return res


def _loo_result(
    ll: xr.DataArray, posterior: xr.Dataset, by: str, method: str, k_threshold: float, **extra
) -> NLMELOO:
    res, mcse = _psis(ll, posterior)
    out = _as(NLMELOO, res, by=by, method=method, k_threshold=k_threshold, mcse_i=mcse, **extra)
    n_s = ll.sizes["chain"] * ll.sizes["draw"]
    lpd = logsumexp(ll.transpose("chain", "draw", ll.dims[-1]).values.reshape(n_s, -1), axis=0)
    out.p_loo_i = xr.DataArray(lpd - math.log(n_s), dims=ll.dims[-1], coords=out.elpd_i.coords)
    out.p_loo_i = out.p_loo_i - out.elpd_i
    return out


def _kfold(
    fit: Any,
    lpd: np.ndarray,
    *,
    K: int | None,
    draws: int | None,
    tune: int | None,
    fit_kwargs: Mapping | None,
    random_seed: int,
    **opts: Any,
) -> NLMEKFold:
    ids = list(fit.data.subject_ids)
    if K is None:
        groups = [[s] for s in ids]
    else:
        perm = np.random.default_rng(random_seed).permutation(len(ids))
        groups = [[ids[i] for i in sorted(part)] for part in np.array_split(perm, int(K))]
    kw = _refit_kwargs(fit, draws, tune, fit_kwargs)
    elpd, mcse, ierr, n_s = _heldout(fit, groups, kwargs=kw, random_seed=random_seed, **opts)
    coords = {"subject": ids}
    elpd_i = xr.DataArray([elpd[s] for s in ids], dims="subject", coords=coords)
    p_i = xr.DataArray(lpd, dims="subject", coords=coords) - elpd_i
    total, se = _summary(elpd_i.values)
    return NLMEKFold(
        elpd=total,
        se=se,
        p=float(p_i.sum()),
        n_samples=n_s,
        n_data_points=len(ids),
        scale="log",
        warning=False,
        good_k=None,
        elpd_i=elpd_i,
        pareto_k=None,
        n_folds=len(groups),
        p_kfold_i=p_i,
        mcse_i=xr.DataArray([mcse[s] for s in ids], dims="subject", coords=coords),
        integration_error=xr.DataArray([ierr[s] for s in ids], dims="subject", coords=coords),
        folds=tuple(tuple(g) for g in groups),
    )


# =========================================================================== waic
def waic(fit: Any, *, by: Literal["observation", "subject"] = "observation") -> WAIC:
    """Widely applicable information criterion from the pointwise log-likelihood.

    ``lppd_i = log mean_s exp(ll_si)``, ``p_i = var_s(ll_si)`` (ddof = 1, as Vehtari et al.
    2017 and R's ``loo::waic``), ``elpd_i = lppd_i - p_i``; ``se = sqrt(n var(elpd_i))``.
    ``by="subject"`` uses the per-subject sums of the log-likelihood (conditional on each
    subject's eta). ArviZ 1.x dropped ``waic``; prefer :func:`loo`, whose diagnostics are better.

    Warns
    -----
    WAICWarning
        When ``p_i > 0.4`` for some point.

    Examples
    --------
    >>> waic(fit).elpd  # doctest: +SKIP
    -...
    """
    _check_choice("by", by, BY)
    ll = _loglik_flat(fit) if by == "observation" else _by_subject_ll(fit)
    dim = "obs" if by == "observation" else "subject"
    vals = ll.values.reshape(-1, ll.shape[-1])
    s = vals.shape[0]
    lppd_i = logsumexp(vals, axis=0) - math.log(s)
    p_i = np.var(vals, axis=0, ddof=1)
    elpd_i = lppd_i - p_i
    coords = {c: v for c, v in ll.coords.items() if dim in v.dims}
    elpd_da = xr.DataArray(elpd_i, dims=dim, coords=coords)
    p_da = xr.DataArray(p_i, dims=dim, coords=coords)
    total, se = _summary(elpd_i)
    bad = p_i > WAIC_VAR_THRESHOLD
    if bad.any():
        labels = [_labels(p_da)[i] for i in np.flatnonzero(bad)]
        warnings.warn(
            f"WAIC: posterior variance of the log-likelihood > {WAIC_VAR_THRESHOLD} for "
            f"{_describe(labels, by)}; WAIC is unreliable, use loo().",
            WAICWarning,
            stacklevel=2,
        )
    return WAIC(
        elpd=total,
        se=se,
        p=float(p_i.sum()),
        n_samples=s,
        n_data_points=len(elpd_i),
        scale="log",
        warning=bool(bad.any()),
        good_k=None,
        elpd_i=elpd_da,
        pareto_k=None,
        by=by,
        p_waic_i=p_da,
    )


# =========================================================================== compare
def _observations(fit: Any) -> pd.DataFrame:
    from .simulation import observation_table

    return observation_table(fit)[["ID", "TIME", "DVID", "DV"]]


def _check_same_observations(fits: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """SpecificationError if the fits' observations differ; else each fit's sort order."""
    tables = {name: _observations(f) for name, f in fits.items()}
    orders, sorted_tables = {}, {}
    for name, t in tables.items():
        s = t.sort_values(["ID", "TIME", "DVID", "DV"], kind="stable")
        orders[name] = s.index.to_numpy()
        sorted_tables[name] = s.reset_index(drop=True)
    first = next(iter(tables))
    a = sorted_tables[first]
    for name, b in sorted_tables.items():
        if name == first:
            continue
        ids_a, ids_b = set(a["ID"].tolist()), set(b["ID"].tolist())
        if len(a) != len(b) or ids_a != ids_b:
            only_a = sorted(ids_a - ids_b, key=str)
            only_b = sorted(ids_b - ids_a, key=str)
            raise SpecificationError(
                f"compare: fits {first!r} and {name!r} were fitted to different observations: "
                f"{len(a)} vs {len(b)} observations; IDs only in {first!r}: {only_a or 'none'}, "
                f"only in {name!r}: {only_b or 'none'}. Compare models fitted to the same data."
            )
        same = (
            (a["ID"].to_numpy() == b["ID"].to_numpy())
            & np.isclose(a["TIME"].to_numpy(float), b["TIME"].to_numpy(float), rtol=1e-12)
            & np.isclose(a["DV"].to_numpy(float), b["DV"].to_numpy(float), rtol=1e-12)
            & (a["DVID"].to_numpy() == b["DVID"].to_numpy())
        )
        if not same.all():
            bad = np.flatnonzero(~same)
            i = bad[0]
            raise SpecificationError(
                f"compare: fits {first!r} and {name!r} were fitted to different observations "
                f"({len(bad)} differ); first: ID {a['ID'][i]} TIME {a['TIME'][i]:g} DV "
                f"{a['DV'][i]:g} in {first!r} vs ID {b['ID'][i]} TIME {b['TIME'][i]:g} DV "
                f"{b['DV'][i]:g} in {name!r}. Compare models fitted to the same data."
            )
    return orders


def _aligned(res: ELPDData, order: np.ndarray, ids: list) -> ELPDData:
    """Pointwise values in a common order (observations sorted; subjects by ID)."""

    def fix(da: xr.DataArray | None) -> xr.DataArray | None:
        if da is None:
            return None
        if "subject" in da.dims:
            return da.sel(subject=ids)
        return da.isel({da.dims[0]: order})

    return replace(res, elpd_i=fix(res.elpd_i), pareto_k=fix(res.pareto_k))


def _warning_text(res: ELPDData) -> str:
    parts = []
    if isinstance(res, NLMELOO) and res.high_k:
        bad = list(res.high_k)
        what = _describe(bad, "subject") if res.by == "subject" else f"{len(bad)} observations"
        parts.append(f"k > {res.k_threshold}: {what}")
    if isinstance(res, WAIC) and res.warning:
        parts.append(f"p_waic_i > {WAIC_VAR_THRESHOLD}")
    err = getattr(res, "integration_error", None)
    if err is not None and float(err.max()) > 0.1:
        parts.append(f"integration error up to {float(err.max()):.2g}")
    return "; ".join(parts)


def compare(
    fits: Mapping[str, Any],
    *,
    by: Literal["observation", "subject"] = "observation",
    method: Literal["psis", "integrated", "kfold", "auto", "waic"] | None = None,
    weights: Literal["stacking", "bb-pseudo-bma", "pseudo-bma"] = "stacking",
    **loo_options: Any,
) -> pd.DataFrame:
    """Rank fits by expected log predictive density (LOO or WAIC), by observation or subject.

    Parameters
    ----------
    fits : mapping name -> Fit
        At least two fits of the same observations (same ID, TIME, DVID, DV).
    by : {"observation", "subject"}
        See :func:`loo`; ``"subject"`` asks which model predicts new subjects best.
    method : {"psis", "integrated", "kfold", "auto", "waic"}, optional
        As in :func:`loo` (default ``"psis"`` by observation, ``"auto"`` by subject), or
        ``"waic"``.
    weights : {"stacking", "bb-pseudo-bma", "pseudo-bma"}
        Model weights, by :func:`arviz_stats.compare`.
    **loo_options
        Passed to :func:`loo` (e.g. ``refit=True``, ``n_draws=``).

    Returns
    -------
    pandas.DataFrame
        One row per fit, best first: ``rank`` (0 = best), ``elpd``, ``se``, ``p``,
        ``elpd_diff`` (vs the best), ``dse`` (SE of the difference from the pointwise
        differences, matched by observation or by subject ID), ``weight`` (summing to 1),
        ``warnings``. ``df.attrs["elpd"]`` holds the ELPD objects.

    Raises
    ------
    SpecificationError
        Fewer than two fits, fits of different observations, or an unknown ``by``/``method``.

    Examples
    --------
    ``fit1`` is the Theophylline model, ``fit2`` the same without a random effect on ka:

    >>> compare({"IIV on ka": fit1, "none on ka": fit2},
    ...         by="subject", method="integrated")  # doctest: +SKIP
                rank  elpd ...
    IIV on ka      0 ...
    none on ka     1 ...
    """
    if not isinstance(fits, Mapping) or len(fits) < 2:
        raise SpecificationError("compare: give a mapping of at least two name -> Fit.")
    _check_choice("by", by, BY)
    if method is not None:
        _check_choice("method", method, (*METHODS, "waic"))
    orders = _check_same_observations(fits)
    first = next(iter(fits.values()))
    ids = sorted(first.data.subject_ids, key=lambda s: (str(type(s)), s))
    results = {}
    for name, f in fits.items():
        if method == "waic":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", WAICWarning)
                res = waic(f, by=by)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PSISWarning)
                res = loo(f, by=by, method=method, **loo_options)
        results[name] = _aligned(res, orders[name], ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare(results, method=weights, round_to="none")
    out = pd.DataFrame(
        {
            "rank": table["rank"].astype(int),
            "elpd": table["elpd"].astype(float),
            "se": table["se"].astype(float),
            "p": table["p"].astype(float),
            "elpd_diff": table["elpd_diff"].astype(float),
            "dse": table["dse"].astype(float),
            "weight": table["weight"].astype(float),
            "warnings": [_warning_text(results[n]) for n in table.index],
        },
        index=table.index,
    )
    out.attrs["by"], out.attrs["method"] = by, method or ("psis" if by == "observation" else "auto")
    out.attrs["elpd"] = results
    return out
