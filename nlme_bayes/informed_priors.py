"""Priors informed by earlier results: a previous fit's posterior, applied to a model by name.

:func:`priors_from_fit` summarises a fit's posterior as one :class:`~nlme_bayes.Prior` per
quantity, in the family the quantity lives in: ``LogNormal`` for positive quantities
(typical values of log-normal parameters, omegas, residual SDs; fitted to the mean and SD of
the log draws), ``LogitNormal`` for logit-normal parameters, ``Normal`` otherwise (normal
parameters, covariate coefficients). ``inflate`` widens every SD -- a posterior from another
study is usually worth less than its nominal precision. The correlations of Omega (LKJ) and
categorical covariate coefficients are not carried over.

:func:`apply_priors` sets priors on a model by the names the posterior uses (``CL_pop``,
``CL_WT``, ``omega_CL``, ``omega_iov_CL``, ``sigma_prop``, ``sigma_add_DVID2``, ...);
:meth:`Model.with_priors <nlme_bayes.Model.with_priors>` is the same. Priors from literature
values in pharmacometric terms are :meth:`Prior.typical <nlme_bayes.Prior.typical>` (typical
value and CV %), :meth:`Prior.omega <nlme_bayes.Prior.omega>` (IIV in CV %) and
:meth:`Prior.interval <nlme_bayes.Prior.interval>`.

Examples
--------
>>> import nlme_bayes as nb
>>> from nlme_bayes.examples import pheno_model
>>> model = apply_priors(pheno_model(), {"CL_pop": nb.Prior.typical(0.0047, cv=20),
...                                      "omega_CL": nb.Prior.omega(25)})
>>> model.parameter("CL").prior
Prior('LogNormal', mu=-5.36019, sigma=0.198042)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import SpecificationError
from .priors import Prior
from .spec import Additive, Categorical, Combined, LogAdditive, Proportional

__all__ = ["priors_from_fit", "apply_priors", "prior_names"]

_SIGMA_FIELDS = {
    Additive: {"add": "sigma"},
    Proportional: {"prop": "sigma"},
    Combined: {"add": "additive", "prop": "proportional"},
    LogAdditive: {"log": "sigma"},
}


def _errors(model: Any) -> dict[str, tuple[Any, Any, str]]:
    """``sigma name -> (DVID or None, error model, field)`` as the builder names them."""
    errs = model.error
    items = list(errs.items()) if isinstance(errs, Mapping) else [(None, errs)]
    out = {}
    for k, err in items:
        suffix = "" if (k is None or len(items) == 1) else f"_DVID{k}"
        for part, fld in _SIGMA_FIELDS[type(err)].items():
            out[f"sigma_{part}{suffix}"] = (k, err, fld)
    return out


def prior_names(model: Any) -> tuple[str, ...]:
    """The names :func:`apply_priors` accepts for ``model``, sorted.

    Examples
    --------
    >>> from nlme_bayes.examples import pheno_model
    >>> prior_names(pheno_model())
    ('CL_pop', 'V_APGAR_LT5', 'V_pop', 'omega_CL', 'omega_V', 'sigma_prop')
    """
    names = []
    for p in model.parameters:
        if not p.fixed:
            names.append(f"{p.name}_pop")
        for eff in p.covariates:
            if not isinstance(eff, Categorical) and eff.estimated:
                names.append(f"{p.name}_{eff.covariate}")
        if p.iiv is not None:
            names.append(f"omega_{p.name}")
        if p.iov:
            names.append(f"omega_iov_{p.name}")
    names += list(_errors(model))
    return tuple(sorted(names))


def apply_priors(model: Any, priors: Mapping[str, Prior]) -> Any:
    """A copy of ``model`` with priors set by posterior name.

    Parameters
    ----------
    model : Model
    priors : mapping of str to Prior
        ``<P>_pop`` (typical value), ``<P>_<COV>`` (an estimated covariate coefficient or
        exponent), ``omega_<P>``, ``omega_iov_<P>``, ``sigma_*``.

    Returns
    -------
    Model

    Raises
    ------
    SpecificationError
        A name the model does not have (the message lists the valid ones), or a value that
        is not a Prior.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.examples import theophylline_model
    >>> informed = {"CL_pop": nb.Prior("LogNormal", mu=-3.2, sigma=0.2)}
    >>> model = apply_priors(theophylline_model(), informed)
    >>> model.parameter("CL").prior
    Prior('LogNormal', mu=-3.2, sigma=0.2)
    """
    valid = prior_names(model)
    unknown = sorted(set(priors) - set(valid))
    if unknown:
        raise SpecificationError(
            f"apply_priors: {', '.join(map(repr, unknown))} not in the model; valid names: "
            f"{', '.join(valid)}."
        )
    for name, prior in priors.items():
        if not isinstance(prior, Prior):
            raise SpecificationError(f"apply_priors: {name} must be a Prior, got {prior!r}.")
    params = []
    for p in model.parameters:
        changes: dict[str, Any] = {}
        if f"{p.name}_pop" in priors:
            changes["prior"] = priors[f"{p.name}_pop"]
        if f"omega_{p.name}" in priors:
            changes["omega_prior"] = priors[f"omega_{p.name}"]
        if f"omega_iov_{p.name}" in priors:
            changes["iov_prior"] = priors[f"omega_iov_{p.name}"]
        effects = []
        for eff in p.covariates:
            key = f"{p.name}_{eff.covariate}"
            if key in priors:
                field = "exponent" if hasattr(eff, "exponent") else "coefficient"
                eff = dataclasses.replace(eff, **{field: priors[key]})
            effects.append(eff)
        changes["covariates"] = tuple(effects)
        params.append(dataclasses.replace(p, **changes))
    error = model.error
    by_name = _errors(model)
    for name, prior in priors.items():
        if name not in by_name:
            continue
        k, _, fld = by_name[name]
        if k is None:
            error = dataclasses.replace(error, **{fld: prior})
        else:
            error = dict(error)
            error[k] = dataclasses.replace(error[k], **{fld: prior})
    return model.replace(parameters=tuple(params), error=error)


def _log_normal(x: np.ndarray, inflate: float) -> Prior:
    lx = np.log(x)
    return Prior("LogNormal", mu=_r(lx.mean()), sigma=_r(lx.std(ddof=1) * inflate))


def _r(x: float) -> float:
    return float(f"{float(x):.6g}")


def priors_from_fit(fit: Any, *, inflate: float = 1.0) -> dict[str, Prior]:
    """One prior per population quantity of ``fit``, summarising its posterior.

    Parameters
    ----------
    fit : Fit
    inflate : float
        Multiplies every prior SD (>= 1 to discount the earlier study; 1 keeps the
        posterior's precision).

    Returns
    -------
    dict of str to Prior
        Keyed as :func:`apply_priors` expects.

    Raises
    ------
    SpecificationError
        ``inflate`` not a positive number.

    Examples
    --------
    >>> priors = priors_from_fit(fit, inflate=2.0)  # doctest: +SKIP
    >>> new_model = model.with_priors(priors)  # doctest: +SKIP
    """
    if isinstance(inflate, bool) or not isinstance(inflate, (int, float)) or not inflate > 0:
        raise SpecificationError(f"priors_from_fit: inflate must be > 0, got {inflate!r}.")
    post = fit.posterior
    model = fit.model

    def draws(name: str, **sel: Any) -> np.ndarray:
        da = post[name].sel(sel) if sel else post[name]
        return np.asarray(da.values, dtype=float).ravel()

    out: dict[str, Prior] = {}
    for p in model.parameters:
        if not p.fixed:
            x = draws(f"{p.name}_pop")
            if p.iiv == "normal":
                out[f"{p.name}_pop"] = Prior(
                    "Normal", mu=_r(x.mean()), sigma=_r(x.std(ddof=1) * inflate)
                )
            elif p.iiv == "logit":
                lx = np.log(x) - np.log1p(-x)
                out[f"{p.name}_pop"] = Prior(
                    "LogitNormal", mu=_r(lx.mean()), sigma=_r(lx.std(ddof=1) * inflate)
                )
            else:
                out[f"{p.name}_pop"] = _log_normal(x, inflate)
        for eff in p.covariates:
            name = f"{p.name}_{eff.covariate}"
            if isinstance(eff, Categorical) or not eff.estimated or name not in post:
                continue
            x = draws(name)
            out[name] = Prior("Normal", mu=_r(x.mean()), sigma=_r(x.std(ddof=1) * inflate))
        if p.iiv is not None:
            out[f"omega_{p.name}"] = _log_normal(draws("omega", param=p.name), inflate)
        if p.iov:
            x = draws("omega_iov", param_iov=p.name)
            out[f"omega_iov_{p.name}"] = _log_normal(x, inflate)
    for name in _errors(model):
        if name in post:
            out[name] = _log_normal(draws(name), inflate)
    return out
