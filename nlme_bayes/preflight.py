"""Checks of a model against its data before anything is built or compiled.

:func:`check_specification` is the first thing :func:`nlme_bayes.builder.build` does.  It
turns what would otherwise surface as a PyTensor shape error, a PyMC name clash, a NumPy
conversion error -- or worse, a silently wrong model -- into one
:class:`~nlme_bayes.errors.SpecificationError` that names the parameter and says how to fix
it:

- a prior with vector parameters where one value is needed;
- a prior whose support does not fit the parameter (a ``Normal`` prior on a log-normal
  ``CL`` puts mass on ``CL < 0``, where ``log(CL)`` is NaN), or a ``typical=`` value
  outside the prior's support (the sampler would start at zero density);
- a continuous covariate effect (``Power``, ``Exponential``, ``Linear``) on a text column;
- the same covariate twice on one parameter (the effect would be applied twice);
- a covariate whose name is taken by a model variable (``eta``, ``CL_pop``, ``IPRED``, ...);
- error models keyed by something other than an integer ``DVID``.

Covariates that are not in the data are reported by the builder itself.

Example
-------
>>> import nlme_bayes as nb
>>> model = nb.Model(structure=nb.OneCompartment(route="oral"), parameters=[
...     nb.Parameter("CL", 0.04, prior=nb.Prior("Normal", mu=0.04, sigma=1.0)),
...     nb.Parameter("V", 0.5), nb.Parameter("ka", 1.5)])
>>> check_specification(model, nb.datasets.theophylline())
Traceback (most recent call last):
...
nlme_bayes.errors.SpecificationError: Parameter CL: its prior ... puts mass on CL < 0, ...
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .errors import SpecificationError
from .priors import Prior

__all__ = ["check_specification", "reserved_names"]

_CONTINUOUS = ("Power", "Exponential", "Linear")
#: Names the builder gives to model variables and data (a covariate may not take them).
_FIXED_NAMES = frozenset({"eta", "omega", "omega_corr", "IPRED", "PRED", "DV", "TIME",
                          "subject_index", "kappa", "omega_iov"})  # fmt: skip
_PREFIXES = ("sigma_", "z_eta_", "eta_", "phi_", "chol_omega_", "omega_", "z_kappa_")


def reserved_names(model: Any) -> set[str]:
    """Names of the variables the builder creates for ``model`` (besides the prefixes).

    Examples
    --------
    >>> from nlme_bayes.examples import theophylline_model
    >>> sorted(n for n in reserved_names(theophylline_model()) if n.startswith("CL"))
    ['CL', 'CL_occ', 'CL_pop']
    """
    names = set(_FIXED_NAMES)
    for p in model.parameters:
        names |= {p.name, f"{p.name}_pop", f"{p.name}_occ"}
    return names


def check_specification(model: Any, data: Any) -> None:
    """Raise one :class:`SpecificationError` for the first problem found; see the module.

    Parameters
    ----------
    model : nlme_bayes.Model
    data : nlme_bayes.NonmemDataset

    Raises
    ------
    SpecificationError
        What is wrong, with which parameter or covariate, and how to fix it.

    Examples
    --------
    A consistent model passes silently (the module docstring shows a failing one):

    >>> import nlme_bayes as nb
    >>> from nlme_bayes.examples import theophylline_model
    >>> check_specification(theophylline_model(), nb.datasets.theophylline())
    """
    _check_error_keys(model.error)
    for p in model.parameters:
        where = f"Parameter {p.name}"
        if not p.fixed:
            _check_prior(p.effective_prior, f"{where}: prior")
            _check_support(p, where)
        if p.omega_prior is not None:
            _check_prior(p.omega_prior, f"{where}: omega_prior")
        _check_covariates(p, data, model)
    _check_prior(model.omega.sd_prior, "Omega: sd_prior")
    errors = model.error.values() if isinstance(model.error, Mapping) else [model.error]
    for err in errors:
        for name in ("sigma", "additive", "proportional"):
            prior = getattr(err, name, None)
            if isinstance(prior, Prior):
                _check_prior(prior, f"{type(err).__name__}.{name}")


def _check_error_keys(error: Any) -> None:
    if not isinstance(error, Mapping):
        return
    bad = [k for k in error if not _is_int_like(k)]
    if bad:
        raise SpecificationError(
            f"Model: error={{...}} is keyed by DVID, an integer; got {', '.join(map(repr, bad))}. "
            "Write e.g. error={1: nb.Proportional(), 2: nb.Additive()}."
        )


def _is_int_like(key: Any) -> bool:
    try:
        return float(key) == int(float(key)) and not isinstance(key, bool)
    except (TypeError, ValueError):
        return False


def _check_prior(prior: Prior, where: str) -> None:
    """One value per parameter of the distribution (a vector would broadcast over subjects)."""
    vectors = [k for k, v in prior.params if np.ndim(v) > 0]
    if vectors:
        raise SpecificationError(
            f"{where} {prior!r} has vector parameter(s) {', '.join(vectors)}; each prior "
            "describes one scalar quantity: give one number per parameter."
        )


@functools.lru_cache(maxsize=256)
def _logps(prior: Prior, values: tuple[float, ...]) -> np.ndarray:
    """The prior's log density at each value (one small compiled graph, cached per prior)."""
    import pymc as pm

    with np.errstate(all="ignore"):
        try:
            out = pm.logp(prior.dist_pymc(), np.asarray(values, dtype=float)).eval()
        except Exception:  # noqa: BLE001 - a value PyMC cannot evaluate is outside
            return np.full(len(values), -np.inf)
    return np.broadcast_to(np.asarray(out, dtype=float), (len(values),))


@functools.lru_cache(maxsize=256)
def _validate(prior: Prior, where: str) -> None:
    prior.validate(where)  # raises; only valid priors are cached


def _check_support(p: Any, where: str) -> None:
    """The prior of the typical value must live where the parameter does."""
    prior = p.effective_prior
    _validate(prior, f"prior of {p.name}")  # invalid arguments first, in the builder's words
    scale = p.iiv if p.iiv in ("normal", "logit") else "lognormal"
    outside, domain, fix = [], "", ""
    if scale == "lognormal":
        outside, domain = [-1.0, -1e-3], f"{p.name} < 0"
        fix = (
            "a log-normal parameter needs a prior on (0, inf) such as LogNormal, HalfNormal "
            "or Gamma; or use iiv='normal' for a parameter that may be <= 0"
        )
    elif scale == "logit":
        outside, domain = [-0.5, -1e-3, 1.001, 1.5], f"{p.name} outside [0, 1]"
        fix = "a logit-normal parameter needs a prior on (0, 1) such as LogitNormal or Beta"
    typical = [] if p.typical is None else [p.typical]
    logps = _logps(prior, tuple(outside + typical))
    if np.isfinite(logps[: len(outside)]).any():
        raise SpecificationError(f"{where}: its prior {prior!r} puts mass on {domain}, {fix}.")
    if typical and not np.isfinite(logps[-1]):
        raise SpecificationError(
            f"{where}: typical={p.typical:g} is outside the support of its prior {prior!r}, "
            "so the sampler would start at zero density; give a typical value the prior allows."
        )


def _check_covariates(p: Any, data: Any, model: Any) -> None:
    seen: set[str] = set()
    taken = reserved_names(model)
    for effect in p.covariates:
        cov = effect.covariate
        if cov in seen:
            raise SpecificationError(
                f"Parameter {p.name}: covariate {cov!r} is given twice; its effect would apply "
                "twice. Give one effect per covariate (combine them into one)."
            )
        seen.add(cov)
        if cov in taken or cov.startswith(_PREFIXES):
            raise SpecificationError(
                f"Parameter {p.name}: covariate {cov!r} has the name of a model variable; "
                "rename the column (read_nonmem(..., column_map=...) or DataFrame.rename)."
            )
        if cov not in getattr(data, "covariates", ()):
            continue  # the builder names missing covariates, with the available ones
        column = data.records[cov]
        if type(effect).__name__ in _CONTINUOUS and not pd.api.types.is_numeric_dtype(column):
            levels = sorted(map(str, pd.unique(column.dropna())))[:5]
            raise SpecificationError(
                f"Parameter {p.name}: {type(effect).__name__}({cov!r}) needs numbers, but "
                f"{cov} holds text (values {', '.join(map(repr, levels))}); use "
                f"Categorical({cov!r}, reference=...) for a categorical covariate."
            )
