"""Maximum likelihood for NONMEM users: ML estimates, -2LL, AIC and BIC.

The marginal likelihood (each subject's random effects integrated out, see
:mod:`nlme_bayes.marginal`) is maximised over the population parameters with BFGS in an
unconstrained parameterisation (log typical values, log SDs, atanh of the canonical partial
correlations of each Omega block, log sigma), starting from the posterior medians.
BIC uses n = number of subjects by default (the pharmacometric convention, as saemix);
``n="observations"`` gives nlme's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from .errors import SpecificationError
from .marginal import (
    _cov_table,
    _Integrator,
    _method,
    _Pop,
    _pop_from_mapping,
    _pop_to_mapping,
    _resolve,
    _typical_values,
    population_parameters,
)

__all__ = ["InformationCriteria", "information_criteria"]


# =========================================================================== maximum likelihood
class _Packer:
    """Population parameters <-> an unconstrained vector (what the optimiser moves)."""

    def __init__(self, model: Any, template: _Pop) -> None:
        self.model = model
        self.template = template
        names = list(model.iiv_names)
        self.blocks = [[names.index(n) for n in b] for b in model.omega.resolve(tuple(names))]
        self.labels: list[str] = []
        for p in model.parameters:
            if not p.fixed:
                tr = {"normal": "", "logit": "logit "}.get(p.iiv, "log ")
                self.labels.append(f"{tr}{p.name}_pop")
        for n, v in template.coef.items():
            if isinstance(v, dict):
                self.labels += [f"{n}[{lv}]" for lv in v]
            else:
                self.labels.append(n)
        self.labels += [f"log omega_{n}" for n in names]
        for b in self.blocks:
            for i in range(1, len(b)):
                for j in range(i):
                    self.labels.append(f"atanh cpc({names[b[i]]},{names[b[j]]})")
        self.labels += [f"log {n}" for n in template.sigma]

    @property
    def n_parameters(self) -> int:
        return len(self.labels)

    def pack(self, pop: _Pop) -> np.ndarray:
        x: list[float] = []
        for p in self.model.parameters:
            if p.fixed:
                continue
            v = float(pop.typical[p.name][0])
            x.append(
                v
                if p.iiv == "normal"
                else math.log(v / (1 - v))
                if p.iiv == "logit"
                else math.log(v)
            )
        for v in pop.coef.values():
            x += [float(a[0]) for a in v.values()] if isinstance(v, dict) else [float(v[0])]
        x += np.log(pop.omega_sd[0]).tolist()
        for b in self.blocks:
            if len(b) < 2:
                continue
            w = np.linalg.cholesky(pop.omega_corr[0][np.ix_(b, b)])
            for i in range(1, len(b)):
                rest = 1.0
                for j in range(i):
                    z = w[i, j] / math.sqrt(max(rest, 1e-300))
                    x.append(math.atanh(min(max(z, -1 + 1e-12), 1 - 1e-12)))
                    rest -= w[i, j] ** 2
        x += [math.log(float(v[0])) for v in pop.sigma.values()]
        return np.array(x)

    def unpack(self, x: np.ndarray) -> _Pop:
        it = iter(np.asarray(x, dtype=float))
        typical = {}
        for p in self.model.parameters:
            if p.fixed:
                continue
            u = next(it)
            v = u if p.iiv == "normal" else 1 / (1 + math.exp(-u)) if p.iiv == "logit" else None
            typical[p.name] = np.array([math.exp(u) if v is None else v])
        coef: dict[str, Any] = {}
        for n, v in self.template.coef.items():
            if isinstance(v, dict):
                coef[n] = {lv: np.array([next(it)]) for lv in v}
            else:
                coef[n] = np.array([next(it)])
        k = self.template.omega_sd.shape[1]
        sd = np.exp([next(it) for _ in range(k)])
        corr = np.eye(k)
        for b in self.blocks:
            if len(b) < 2:
                continue
            m = len(b)
            w = np.zeros((m, m))
            w[0, 0] = 1.0
            for i in range(1, m):
                rest = 1.0
                for j in range(i):
                    w[i, j] = math.tanh(next(it)) * math.sqrt(max(rest, 0.0))
                    rest -= w[i, j] ** 2
                w[i, i] = math.sqrt(max(rest, 0.0))
            corr[np.ix_(b, b)] = w @ w.T
        sigma = {n: np.array([math.exp(next(it))]) for n in self.template.sigma}
        return _Pop(typical, coef, sd[None], corr[None], sigma)


@dataclass(frozen=True)
class InformationCriteria:
    """Maximum likelihood (random effects integrated out) and the information criteria.

    Attributes
    ----------
    loglik : float
        Maximised marginal log-likelihood (full normal constant included).
    minus2ll : float
        ``-2 loglik``: NONMEM's OFV with the constant ``n_obs log(2 pi)`` included.
    n_parameters : int
        Estimated population parameters (typical values, coefficients, omegas, correlations,
        sigmas; fixed ones excluded).
    n : int
        Sample size used by BIC, ``n_kind`` says which.
    n_kind : str
        ``"subjects"`` (pharmacometric convention, saemix) or ``"observations"`` (nlme).
    aic, bic : float
        ``-2LL + 2p`` and ``-2LL + p log n``.
    estimates : dict
        The maximum-likelihood estimates, in :func:`population_parameters`' format.
    loglik_error : float
        Integration error of ``loglik`` (see :class:`MarginalLogLik`).
    converged : bool
    message : str
        The optimiser's message.
    n_evaluations : int
        Marginal-likelihood evaluations used.
    parameter_names : tuple of str
        The estimated parameters as the optimiser saw them (``"log CL_pop"``,
        ``"atanh cpc(V,CL)"``...): what ``n_parameters`` counts.

    Examples
    --------
    Returned by :func:`information_criteria`; the criteria follow from the log-likelihood:

    >>> ic = InformationCriteria(loglik=-86.9, minus2ll=173.8, n_parameters=10, n=12,
    ...                          n_kind="subjects", aic=193.8, bic=198.65, estimates={})
    >>> print(ic)
    logLik -86.9000  -2LL 173.800  p 10  AIC 193.800  BIC 198.650 (n = 12 subjects)
    """

    loglik: float
    minus2ll: float
    n_parameters: int
    n: int
    n_kind: str
    aic: float
    bic: float
    estimates: dict[str, Any] = field(repr=False)
    loglik_error: float = 0.0
    converged: bool = True
    message: str = ""
    n_evaluations: int = 0
    parameter_names: tuple[str, ...] = ()

    def to_series(self) -> pd.Series:
        """logLik, -2LL, p, n, AIC, BIC as a pandas Series.

        Examples
        --------
        >>> ic = InformationCriteria(loglik=-86.9, minus2ll=173.8, n_parameters=10, n=12,
        ...                          n_kind="subjects", aic=193.8, bic=198.65, estimates={})
        >>> float(ic.to_series()["AIC"])
        193.8
        """
        return pd.Series(
            {
                "logLik": self.loglik,
                "-2LL": self.minus2ll,
                "n_parameters": self.n_parameters,
                f"n ({self.n_kind})": self.n,
                "AIC": self.aic,
                "BIC": self.bic,
            }
        )

    def __str__(self) -> str:
        return (
            f"logLik {self.loglik:.4f}  -2LL {self.minus2ll:.3f}  p {self.n_parameters}  "
            f"AIC {self.aic:.3f}  BIC {self.bic:.3f} (n = {self.n} {self.n_kind})"
            + ("" if self.converged else f"  [not converged: {self.message}]")
        )


GRADIENT_NOISE = 1e-3
"""Max |gradient| of -log L accepted at a BFGS "precision loss" stop (see the code)."""


def information_criteria(
    fit_or_model: Any,
    data: Any = None,
    *,
    start: Mapping[str, Any] | None = None,
    n: Literal["subjects", "observations"] = "subjects",
    method: Literal["auto", "aghq", "is"] = "auto",
    n_nodes: int | None = None,
    maxiter: int = 300,
) -> InformationCriteria:
    """Maximum-likelihood fit of the population parameters, and logLik, -2LL, AIC, BIC.

    Maximises :func:`marginal_loglik` (AGHQ for up to 4 random effects) over the population
    parameters with BFGS in an unconstrained parameterisation: log typical values (identity
    for ``iiv="normal"``, logit for ``"logit"``), covariate coefficients as they are, log
    omega SDs, the correlations of each Omega block through atanh of their canonical partial
    correlations (a Cholesky factor of the correlation matrix, as in the LKJ construction),
    log sigmas. Starts from the posterior medians (or ``start``). Random-effect modes are
    warm-started from the previous evaluation; gradients are central differences.

    Parameters
    ----------
    fit_or_model : Fit or Model
    data : NonmemDataset, optional
        Default: the fit's data (required with a Model).
    start : mapping, optional
        Starting values in :func:`population_parameters`' format (default: posterior medians;
        required with a Model).
    n : {"subjects", "observations"}
        Sample size in BIC: the number of subjects (pharmacometric convention, as saemix and
        Monolix; the default) or of observations (as R's nlme).
    method : {"auto", "aghq", "is"}
        Integration method; importance sampling makes the objective noisy, so ``"aghq"`` is
        used whenever possible.
    n_nodes : int, optional
        AGHQ nodes per random effect.
    maxiter : int
        Maximum BFGS iterations.

    Returns
    -------
    InformationCriteria

    Examples
    --------
    >>> ic = information_criteria(fit)  # doctest: +SKIP
    >>> ic.to_series()  # doctest: +SKIP
    logLik         -...
    -2LL            ...
    n_parameters    10.0...
    n (subjects)    12.0...
    AIC             ...
    BIC             ...
    dtype: float64
    """
    from scipy.optimize import minimize

    if n not in ("subjects", "observations"):
        raise SpecificationError(f"n={n!r} is not valid; choose 'observations' or 'subjects'.")
    model, data, fit = _resolve(fit_or_model, data)
    if start is None:
        if fit is None:
            raise SpecificationError("start is required when a Model (not a Fit) is given.")
        start = population_parameters(fit)
    integ = _Integrator(model, data)
    meth = _method(method, integ.k)
    if meth == "is":
        raise SpecificationError(
            f"information_criteria needs a smooth objective: with {integ.k} random effects "
            "(> 4) adaptive quadrature is too costly and importance sampling too noisy for BFGS."
        )
    pop0 = _pop_from_mapping(model, start, integ.sigma_names)
    packer = _Packer(model, pop0)
    cov_table = _cov_table(model, data)
    state = {"z": None, "n": 0}

    def objective(x: np.ndarray, error: bool = False) -> Any:
        state["n"] += 1
        pop = packer.unpack(x)
        typical, valid = _typical_values(model, cov_table, pop)
        if not valid.all() or not all(np.all(np.isfinite(v)) for v in typical.values()):
            return 1e10
        logi, err, z = integ.integrate(
            typical,
            pop.chol(),
            pop.sigma,
            method="aghq",
            n_nodes=n_nodes,
            error=error,
            z0=state["z"],
            tol=1e-7,
        )
        if error:
            return logi, err
        total = float(np.sum(logi))
        if not np.isfinite(total):
            return 1e10
        state["z"] = z
        return -total

    x0 = packer.pack(pop0)
    res = minimize(
        objective,
        x0,
        method="BFGS",
        jac="3-point",
        options={"maxiter": maxiter, "gtol": 1e-4, "finite_diff_rel_step": 1e-4},
    )
    logi, err = objective(res.x, error=True)
    loglik = float(np.sum(logi))
    p = packer.n_parameters
    # The objective carries the inner mode search's error (tol 1e-7), so its 3-point
    # gradient (relative step 1e-4) is only good to ~1e-3: BFGS can stop by "precision
    # loss" short of gtol on a flat optimum (Theophylline: along corr(CL, V) -> 1).  That
    # is an optimum when the gradient is already below the noise floor.
    converged = bool(res.success)
    message = str(res.message)
    grad_max = float(np.max(np.abs(res.jac))) if res.jac is not None else np.inf
    if not converged and res.status == 2 and grad_max < GRADIENT_NOISE:
        converged = True
        message = (
            f"stopped by precision loss with max |gradient| {grad_max:.1e} < {GRADIENT_NOISE:g}"
            " (the finite-difference noise floor): an optimum"
        )
    n_val = integ.n_sub if n == "subjects" else integ.n_obs
    m2 = -2.0 * loglik
    return InformationCriteria(
        loglik=loglik,
        minus2ll=m2,
        n_parameters=p,
        n=int(n_val),
        n_kind=n,
        aic=m2 + 2 * p,
        bic=m2 + p * math.log(n_val),
        estimates=_pop_to_mapping(model, packer.unpack(res.x)),
        loglik_error=float(np.sum(err)),
        converged=converged,
        message=message,
        n_evaluations=state["n"],
        parameter_names=tuple(packer.labels),
    )
