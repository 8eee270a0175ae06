r"""Shrinkage: how much the individual estimates borrow from the population.

Four views of the same question, all free functions over a :class:`~nlme_bayes.Fit`:

``eta_shrinkage``
    The pharmacometric SD-based eta-shrinkage of Savic & Karlsson (2009), NONMEM's
    ``ETASHRINKSD``, with the posterior mean of each eta as the empirical Bayes estimate
    (EBE):

    .. math:: sh_\eta(p) = 1 - \frac{\mathrm{SD}_i\left(E[\eta_{ip} \mid y]\right)}{\omega_p}

    ``SD_i`` is the sample SD across subjects (divisor ``N - 1``) about the EBEs' mean.
    Only subjects with at least one observation count: a subject without data has
    ``E[eta_i | y] = 0`` and would be 100 % shrunk, which says nothing about the design (as
    NONMEM's ``ETASTYPE=1``, which averages only over subjects whose data depend on the eta).
``bayesian_shrinkage``
    Per subject and parameter, the posterior variance of eta relative to its prior
    variance, ``Var(eta_ip | y) / E[omega_p^2 | y]``: 0 = the subject's own data pin its
    eta down, 1 = it is the population distribution (no information of its own).
``epsilon_shrinkage``
    ``1 - SD(IWRES)`` (NONMEM's ``EPSSHRINK``), per ``DVID``.
``plot_borrowing_strength``
    For each subject, its own-data (maximum-likelihood) estimate, its posterior mean and
    the population value, on one line.

Shrinkage above 20-30 % makes EBE-based diagnostics (eta vs covariate plots, eta QQ
plots, IPRED-based GOF) unreliable: they then show the prior more than the data.

Examples
--------
>>> from nlme_bayes.shrinkage import eta_shrinkage, shrinkage_table
>>> eta_shrinkage(fit)  # doctest: +SKIP
param
CL    0...
V     0...
ka    0...
Name: eta_shrinkage, dtype: float64
>>> shrinkage_table(fit).index.tolist()  # doctest: +SKIP
['eta(CL)', 'eta(V)', 'eta(ka)', 'epsilon']
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from .compile_mode import lean_mode
from .errors import SpecificationError
from .residual_family import is_residual_parameter

__all__ = [
    "eta_shrinkage",
    "bayesian_shrinkage",
    "bayesian_shrinkage_summary",
    "epsilon_shrinkage",
    "shrinkage_table",
    "own_data_estimates",
    "plot_borrowing_strength",
    "iiv_parameters",
    "observations_per_subject",
]

_OMEGA_CHOICES = ("median", "per_draw")


# --------------------------------------------------------------------------- validation
def iiv_parameters(fit: Any, params: str | Sequence[str] | None = None) -> list[str]:
    """The random-effect parameters to work on, validated against the fitted model.

    Parameters
    ----------
    fit : Fit
    params : str or sequence of str, optional
        Default: every parameter with a random effect, in model order.

    Returns
    -------
    list of str

    Raises
    ------
    SpecificationError
        The model has no random effects, or a name is not a parameter or has
        ``iiv=None``; the message lists the parameters that have one.

    Examples
    --------
    >>> iiv_parameters(fit, "CL")  # doctest: +SKIP
    ['CL']
    """
    model = fit.model
    names = list(model.iiv_names)
    if not names:
        raise SpecificationError(
            f"Model {model.name!r} has no random effects (iiv=None for every parameter): "
            "there are no etas to diagnose."
        )
    if params is None:
        return names
    wanted = [params] if isinstance(params, str) else list(params)
    for n in wanted:
        if n in names:
            continue
        if n in model.parameter_names:
            raise SpecificationError(
                f"Parameter {n!r} has no random effect (iiv=None), so it has no eta; "
                f"parameters with one: {', '.join(sorted(names))}."
            )
        raise SpecificationError(
            f"No parameter {n!r} in model {model.name!r}; parameters with a random effect: "
            f"{', '.join(sorted(names))}."
        )
    return wanted


def observations_per_subject(fit: Any) -> pd.Series:
    """Number of observation records (``EVID=0, MDV=0``) of each subject, in subject order.

    Examples
    --------
    >>> observations_per_subject(fit).head(3)  # doctest: +SKIP
    ID
    1    11
    2    11
    3    11
    Name: n_obs, dtype: int64
    """
    ids = list(fit.data.subject_ids)
    counts = fit.data.observations().groupby("ID", sort=False).size()
    return counts.reindex(ids, fill_value=0).rename("n_obs").rename_axis("ID").astype(int)


def _observed_mask(fit: Any) -> np.ndarray:
    """Subjects (posterior ``subject`` order) with at least one observation."""
    n = observations_per_subject(fit)
    subjects = list(fit.posterior["subject"].values)
    return n.reindex(subjects, fill_value=0).to_numpy() > 0


def _eta(fit: Any) -> Any:
    post = fit.posterior
    if "eta" not in post or "omega" not in post:
        iiv_parameters(fit)  # raises for a model without random effects
        raise SpecificationError("The posterior holds no 'eta'/'omega': was it fitted by nb?")
    return post["eta"].transpose("chain", "draw", "subject", "param")


# --------------------------------------------------------------------------- eta shrinkage
def eta_shrinkage(fit: Any, *, omega: Literal["median", "per_draw"] = "median") -> pd.Series:
    r"""SD-based eta-shrinkage per parameter (NONMEM's ``ETASHRINKSD``, as a fraction).

    With the EBE :math:`\hat\eta_{ip} = E[\eta_{ip} \mid y]` (posterior mean, where NONMEM
    uses the conditional mode) and :math:`s_p = \mathrm{SD}_i(\hat\eta_{ip})`, the sample SD
    (divisor ``N - 1``) over the ``N`` subjects with at least one observation:

    - ``omega="median"``: :math:`sh_p = 1 - s_p / \mathrm{median}(\omega_p \mid y)`, the
      classical definition with the point estimate of omega;
    - ``omega="per_draw"``: :math:`sh_p = \frac{1}{S}\sum_s (1 - s_p / \omega_p^{(s)})`, the
      posterior mean of the shrinkage computed against each draw's omega. By Jensen's
      inequality :math:`E[1/\omega] \ge 1/E[\omega]`, so this is lower than the shrinkage
      at the posterior mean of omega, and the gap grows with the uncertainty of omega
      (few subjects): it carries that uncertainty instead of ignoring it.

    Parameters
    ----------
    fit : Fit
    omega : {"median", "per_draw"}

    Returns
    -------
    pandas.Series
        Indexed by parameter (``param``), one value per random effect: 0 = no shrinkage,
        1 = every EBE at 0. Values can be negative when the EBEs vary more than omega.

    Raises
    ------
    SpecificationError
        An unknown ``omega`` choice, a model without random effects, or fewer than two
        subjects with observations.

    Examples
    --------
    >>> from nlme_bayes.shrinkage import eta_shrinkage
    >>> eta_shrinkage(fit, omega="per_draw")  # doctest: +SKIP
    param
    CL    0...
    V     0...
    ka    0...
    Name: eta_shrinkage, dtype: float64
    """
    if omega not in _OMEGA_CHOICES:
        raise SpecificationError(
            f"omega={omega!r} is not valid; choose one of {', '.join(map(repr, _OMEGA_CHOICES))}."
        )
    eta = _eta(fit)
    observed = _observed_mask(fit)
    if observed.sum() < 2:
        raise SpecificationError(
            f"eta shrinkage needs at least 2 subjects with observations, got {observed.sum()}."
        )
    ebe = eta.values.mean(axis=(0, 1))[observed]  # (n_observed, k)
    sd = ebe.std(axis=0, ddof=1)
    om = fit.posterior["omega"].transpose("chain", "draw", "param")
    if omega == "median":
        value = 1.0 - sd / np.median(om.values.reshape(-1, om.sizes["param"]), axis=0)
    else:
        value = (1.0 - sd / om.values.reshape(-1, om.sizes["param"])).mean(axis=0)
    index = pd.Index([str(p) for p in eta["param"].values], name="param")
    return pd.Series(value, index=index, name="eta_shrinkage")


# --------------------------------------------------------------------------- Bayesian shrinkage
def bayesian_shrinkage(fit: Any) -> pd.DataFrame:
    r"""Per-subject shrinkage: posterior variance of eta relative to its prior variance.

    .. math:: B_{ip} = \frac{\mathrm{Var}(\eta_{ip} \mid y)}{E[\omega_p^2 \mid y]}

    with the variance over all posterior draws (divisor ``S - 1``). A subject whose data
    determine its eta has :math:`B \approx 0`; a subject without information about it
    keeps the population distribution, :math:`\eta_i \mid y \sim \int N(0, \omega^2)
    p(\omega \mid y)`, whose variance is exactly :math:`E[\omega^2 \mid y]`, so
    :math:`B = 1`. The law of total variance,
    :math:`\omega^2 = E_y[\mathrm{Var}(\eta \mid y)] + \mathrm{Var}_y(E[\eta \mid y])`,
    makes the mean of :math:`B_{ip}` over subjects the variance form of the eta-shrinkage
    (NONMEM's ``ETASHRINKVR``, :math:`1 - \mathrm{Var}(\hat\eta)/\omega^2`): this is its
    per-subject decomposition. ``1 - B`` is the fraction of the between-subject variance
    that the subject's own data explain.

    Returns
    -------
    pandas.DataFrame
        Index ``ID`` (every subject; those without observations are at ~1), one column per
        random-effect parameter.

    Examples
    --------
    >>> from nlme_bayes.shrinkage import bayesian_shrinkage
    >>> bayesian_shrinkage(fit).round(2).head(2)  # doctest: +SKIP
    param    CL     V    ka
    ID
    1      0...
    2      0...
    """
    eta = _eta(fit)
    k = eta.sizes["param"]
    draws = eta.values.reshape(-1, eta.sizes["subject"], k)
    var_post = draws.var(axis=0, ddof=1)
    om = fit.posterior["omega"].transpose("chain", "draw", "param").values.reshape(-1, k)
    prior_var = (om**2).mean(axis=0)
    return pd.DataFrame(
        var_post / prior_var,
        index=pd.Index(list(eta["subject"].values), name="ID"),
        columns=pd.Index([str(p) for p in eta["param"].values], name="param"),
    )


def bayesian_shrinkage_summary(fit: Any) -> pd.DataFrame:
    """Mean, median, min and max of :func:`bayesian_shrinkage` over the observed subjects.

    Subjects without observations (shrinkage ~1 by construction) are left out;
    ``n_subjects`` says how many count.

    Returns
    -------
    pandas.DataFrame
        Index ``param``; columns ``mean, median, min, max, n_subjects``.

    Examples
    --------
    >>> from nlme_bayes.shrinkage import bayesian_shrinkage_summary
    >>> bayesian_shrinkage_summary(fit)  # doctest: +SKIP
               mean    median       min       max  n_subjects
    param
    CL     0...  12
    V      0...  12
    ka     0...  12
    """
    b = bayesian_shrinkage(fit)[_observed_mask(fit)]
    out = pd.DataFrame(
        {
            "mean": b.mean(),
            "median": b.median(),
            "min": b.min(),
            "max": b.max(),
            "n_subjects": len(b),
        }
    )
    out = out.rename_axis("param")
    return out


# --------------------------------------------------------------------------- epsilon
def epsilon_shrinkage(fit: Any) -> float | pd.Series:
    """Residual (epsilon) shrinkage ``1 - SD(IWRES)`` (NONMEM's ``EPSSHRINK``, a fraction).

    ``IWRES`` is :meth:`Fit.predictions`'s (posterior-mean IPRED and sigma); SD is the
    sample SD (divisor ``n - 1``) over the observations with a finite IWRES. High epsilon
    shrinkage (IWRES squeezed towards 0) means the individual curves over-fit the data and
    IPRED-based diagnostics lose their power.

    Returns
    -------
    float or pandas.Series
        One number when the data have a single ``DVID``; otherwise a Series indexed by
        ``DVID``.

    Raises
    ------
    SpecificationError
        The fit was made with ``store_predictions=False`` (no IPRED).

    Examples
    --------
    >>> from nlme_bayes.shrinkage import epsilon_shrinkage
    >>> epsilon_shrinkage(fit)  # doctest: +SKIP
    0...
    """
    if "IPRED" not in fit.posterior:
        raise SpecificationError(
            "epsilon shrinkage needs IPRED in the posterior; refit with store_predictions=True."
        )
    pred = fit.predictions()
    pred = pred[np.isfinite(pred["IWRES"].to_numpy(dtype=float))]
    values = pred.groupby("DVID")["IWRES"].agg(lambda x: 1.0 - float(np.std(x, ddof=1)))
    if len(values) == 1:
        return float(values.iloc[0])
    return values.rename("epsilon_shrinkage")


def shrinkage_table(fit: Any) -> pd.DataFrame:
    """All shrinkage figures of a fit in one printable table.

    Rows ``eta(CL)``, ... (one per random effect) and ``epsilon`` (or ``epsilon(DVID k)``).
    Columns: ``kind``; ``shrinkage`` (eta: SD-based against the posterior median of omega;
    epsilon: ``1 - SD(IWRES)``); ``shrinkage_per_draw`` (eta: SD-based per draw of omega);
    ``bayesian_mean``, ``bayesian_min``, ``bayesian_max`` (per-subject Bayesian shrinkage
    over the observed subjects); ``n_subjects``. Figures that do not apply are NaN.

    Examples
    --------
    >>> from nlme_bayes.shrinkage import shrinkage_table
    >>> print(shrinkage_table(fit).round(3))  # doctest: +SKIP
                 kind  shrinkage  ...
    quantity ...
    eta(CL)       eta      0...
    eta(V)        eta      0...
    eta(ka)       eta      0...
    epsilon   epsilon      0...
    """
    med = eta_shrinkage(fit, omega="median")
    per = eta_shrinkage(fit, omega="per_draw")
    bayes = bayesian_shrinkage_summary(fit)
    rows = []
    for p in med.index:
        rows.append(
            {
                "quantity": f"eta({p})",
                "kind": "eta",
                "shrinkage": med[p],
                "shrinkage_per_draw": per[p],
                "bayesian_mean": bayes.loc[p, "mean"],
                "bayesian_min": bayes.loc[p, "min"],
                "bayesian_max": bayes.loc[p, "max"],
                "n_subjects": int(bayes.loc[p, "n_subjects"]),
            }
        )
    eps = epsilon_shrinkage(fit)
    if isinstance(eps, float):
        rows.append({"quantity": "epsilon", "kind": "epsilon", "shrinkage": eps})
    else:
        rows += [
            {"quantity": f"epsilon(DVID {k})", "kind": "epsilon", "shrinkage": v}
            for k, v in eps.items()
        ]
    return pd.DataFrame(rows).set_index("quantity")


# --------------------------------------------------------------------------- own-data estimates
def _apply_iiv(kind: str | None, typical: Any, eta: Any) -> Any:
    """Individual parameter from typical value and eta (NumPy or PyTensor)."""
    import pytensor.tensor as pt

    if kind is None:
        return typical
    if kind == "normal":
        return typical + eta
    if kind == "logit":
        return pt.sigmoid(pt.log(typical) - pt.log1p(-typical) + eta)
    return typical * pt.exp(eta)


def _apply_iiv_np(kind: str | None, typical: np.ndarray, eta: np.ndarray) -> np.ndarray:
    if kind == "normal":
        return typical + eta
    if kind == "logit":
        return 1.0 / (1.0 + np.exp(-(np.log(typical) - np.log1p(-typical) + eta)))
    return typical * np.exp(eta)


def _loglik(model: Any, ipred: Any, obs: pd.DataFrame, sigma: Mapping[str, float]) -> Any:
    """Sum of the observations' log-likelihood under the fitted error model (PyTensor).

    ``sigma`` holds the residual parameters' point values (``sigma_*`` and an estimated
    ``nu``); Student-t errors use their degrees of freedom.
    """
    import pytensor.tensor as pt

    from .priors import Prior
    from .residual_family import logpdf
    from .spec import Additive, Combined, LogAdditive, Proportional

    dvid = obs["DVID"].to_numpy().astype(int)
    dv = obs["DV"].to_numpy(dtype=float)
    present = sorted(set(dvid.tolist()))
    errs = model.error if isinstance(model.error, Mapping) else dict.fromkeys(present, model.error)
    total = pt.constant(0.0)
    for k in present:
        idx = np.flatnonzero(dvid == k)
        err = errs[k]
        sfx = "" if len(present) == 1 else f"_DVID{k}"
        f, y = ipred[idx], dv[idx]
        loc = f
        if isinstance(err, Additive):
            sd = sigma[f"sigma_add{sfx}"] * pt.ones_like(f)
        elif isinstance(err, Proportional):
            sd = sigma[f"sigma_prop{sfx}"] * f
        elif isinstance(err, Combined):
            sd = pt.sqrt(sigma[f"sigma_add{sfx}"] ** 2 + (sigma[f"sigma_prop{sfx}"] * f) ** 2)
        elif isinstance(err, LogAdditive):
            sd = sigma[f"sigma_log{sfx}"] * pt.ones_like(f)
            loc, y = pt.log(f), np.log(y)
            total = total - float(np.sum(y))  # Jacobian: the density of DV, not of log DV
        else:  # pragma: no cover - guarded by Model validation
            raise SpecificationError(f"Unknown error model {err!r}.")
        nu = sigma[f"nu{sfx}"] if isinstance(err.nu, Prior) else err.nu
        nu = None if nu is None else np.full(len(idx), float(nu))
        total = total + pt.sum(logpdf(y, loc, sd, nu))
    return total


def own_data_estimates(fit: Any, *, bound: float = 5.0, max_se: float = 1.0) -> pd.DataFrame:
    r"""Each subject's "own-data" estimate: its likelihood maximised alone, ignoring the eta prior.

    The population quantities (per-subject typical values incl. covariate effects, and the
    residual SDs) are fixed at their posterior medians; then for every subject,
    :math:`\hat\eta_i = \arg\max_{\eta} \log p(y_i \mid \eta)` over ``|eta| <= bound``
    (L-BFGS-B on a compiled PyTensor log-likelihood and its gradient; the likelihood is
    separable over subjects, so all subjects are optimised at once). The standard error
    comes from the observed information (the exact Hessian of the subject's
    log-likelihood). An estimate is *identifiable* when it is inside the bounds, the
    Hessian is positive definite and ``SE <= max_se`` (on the eta scale: ``max_se=1`` means
    the data cannot place the parameter within a factor ``e`` for log-normal IIV). A
    subject with one observation and two random effects, or none, is not.

    Parameters
    ----------
    fit : Fit
    bound : float
        Box bound on each eta for the optimiser.
    max_se : float
        Largest SE on the eta scale for an estimate to count as identifiable.

    Returns
    -------
    pandas.DataFrame
        Index ``ID`` (subject order); columns ``n_obs``, and per random-effect parameter
        ``P``: ``eta_P`` (own-data eta), ``se_P``, ``identifiable_P`` (bool), ``P_own``
        (individual parameter at the own-data eta), ``P_typical`` (typical value, posterior
        median).

    Examples
    --------
    >>> from nlme_bayes.shrinkage import own_data_estimates
    >>> own_data_estimates(fit).head(2)  # doctest: +SKIP
        n_obs    eta_CL     se_CL  ...
    ID ...
    1      11 ...
    2      11 ...
    """
    import pytensor
    import pytensor.tensor as pt
    from scipy.optimize import minimize

    from .events import build_schedule
    from .predictions import typical_parameters

    model = fit.model
    names = iiv_parameters(fit)
    k = len(names)
    post = fit.posterior
    n_sub = post.sizes["subject"]
    typ = {n: np.median(v.reshape(-1, n_sub), axis=0) for n, v in typical_parameters(fit).items()}
    sigma = {str(v): float(post[v].median()) for v in post.data_vars if is_residual_parameter(v)}
    schedule, obs = build_schedule(fit.data, model.structure)
    eta = pt.dmatrix("eta")
    params = {
        p.name: _apply_iiv(
            p.iiv, pt.constant(typ[p.name]), eta[:, names.index(p.name)] if p.iiv else None
        )
        for p in model.parameters
    }
    total = _loglik(model, model.structure.predict(params, schedule), obs, sigma)
    grad = pt.grad(total, eta)
    # the log-likelihood is a sum over subjects: row j of every subject's Hessian at once
    hess = pt.stack([pt.grad(grad[:, j].sum(), eta) for j in range(k)], axis=1)
    f_val_grad = pytensor.function([eta], [total, grad], mode=lean_mode("FAST_RUN"))
    f_hess = pytensor.function([eta], hess, mode=lean_mode("FAST_RUN"))

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = f_val_grad(x.reshape(n_sub, k))
        if not np.isfinite(v):
            return 1e300, np.zeros_like(x)
        return -float(v), -np.asarray(g).ravel()

    res = minimize(
        objective,
        np.zeros(n_sub * k),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-bound, bound)] * (n_sub * k),
        options={"maxiter": 5000, "gtol": 1e-8},
    )
    est = res.x.reshape(n_sub, k)
    info = -np.asarray(f_hess(est))  # (n_sub, k, k) observed information
    se = np.full((n_sub, k), np.inf)
    for i in range(n_sub):
        h = 0.5 * (info[i] + info[i].T)
        scale = max(1.0, float(np.abs(h).max()))
        if np.all(np.isfinite(h)) and np.linalg.eigvalsh(h).min() > 1e-9 * scale:
            se[i] = np.sqrt(np.diag(np.linalg.inv(h)))
    n_obs = observations_per_subject(fit).to_numpy()
    out = pd.DataFrame({"n_obs": n_obs}, index=pd.Index(list(post["subject"].values), name="ID"))
    for j, n in enumerate(names):
        inside = np.abs(est[:, j]) < bound * (1 - 1e-6)
        out[f"eta_{n}"] = est[:, j]
        out[f"se_{n}"] = se[:, j]
        out[f"identifiable_{n}"] = inside & (se[:, j] <= max_se) & (n_obs > 0)
        out[f"{n}_own"] = _apply_iiv_np(model.parameter(n).iiv, typ[n], est[:, j])
        out[f"{n}_typical"] = typ[n]
    return out


# --------------------------------------------------------------------------- plot
def plot_borrowing_strength(
    fit: Any,
    param: str | None = None,
    path: str | os.PathLike | None = None,
    *,
    bound: float = 5.0,
    max_se: float = 1.0,
) -> Any:
    """Own-data estimate -> posterior mean -> population value, per subject.

    One panel per random-effect parameter (or only ``param``). Subjects are on the x axis,
    sorted by their number of observations (fewest first; the tick label gives ID and
    ``n``). For each subject, on one vertical line: its own-data estimate (circle; maximum
    likelihood of its data alone, :func:`own_data_estimates`; hollow when not identifiable),
    an arrow to its posterior mean (diamond), and its typical value (grey bar; differs from
    the population line only through covariates). Both estimates are taken on the eta scale
    and drawn as the parameter at that eta, ``typical_i * exp(eta)`` for log-normal IIV, so
    that a subject without information sits on its typical value (the posterior mean of
    ``P_i`` itself is ``exp(omega^2/2)`` above it). The horizontal line is the population
    typical value (posterior median of ``P_pop``). Long arrows ending at the population
    value = strength borrowed; short arrows = the subject's own data rule. Log-normal
    parameters use a log axis.

    Parameters
    ----------
    fit : Fit
    param : str, optional
        One parameter with a random effect (default: all of them).
    path : path-like, optional
        Write a PNG there.
    bound, max_se : float
        Passed to :func:`own_data_estimates`.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    SpecificationError
        ``param`` is not a parameter with a random effect.

    Examples
    --------
    >>> from nlme_bayes.shrinkage import plot_borrowing_strength
    >>> fig = plot_borrowing_strength(fit, path="borrowing.png")  # doctest: +SKIP
    """
    from matplotlib.ticker import FuncFormatter

    from .plots import _figure, _save

    names = iiv_parameters(fit, param)
    own = own_data_estimates(fit, bound=bound, max_se=max_se)
    order = own.reset_index().sort_values(["n_obs", "ID"], kind="stable").index.to_numpy()
    own = own.iloc[order]
    x = np.arange(len(own))
    post = fit.posterior
    fig, axes = _figure(len(names), 1, (max(8.0, 0.32 * len(own) + 2.5), 3.6 * len(names)))
    for a, n in zip(axes[:, 0], names, strict=True):
        kind = fit.model.parameter(n).iiv
        y_own = own[f"{n}_own"].to_numpy()
        eta_mean = post["eta"].sel(param=n).mean(("chain", "draw")).values[order]
        y_post = _apply_iiv_np(kind, own[f"{n}_typical"].to_numpy(), eta_mean)
        y_typ = own[f"{n}_typical"].to_numpy()
        ident = own[f"identifiable_{n}"].to_numpy()
        pop = float(post[f"{n}_pop"].median()) if f"{n}_pop" in post else float(np.median(y_typ))
        a.axhline(pop, color="0.35", lw=1.2, ls="--", zorder=1, label=f"population {n}_pop")
        span = np.nanmax(np.abs(np.r_[y_own, y_post, y_typ])) or 1.0
        for xi, yo, yp, yt in zip(x, y_own, y_post, y_typ, strict=True):
            lo, hi = min(yo, yp, yt), max(yo, yp, yt)
            a.plot([xi, xi], [lo, hi], color="0.85", lw=0.8, zorder=0)
            if abs(yp - yo) > 1e-3 * span:  # no arrow head where the two coincide
                a.annotate(
                    "",
                    xy=(xi, yp),
                    xytext=(xi, yo),
                    arrowprops=dict(arrowstyle="->", color="C0", lw=1.0, alpha=0.7),
                    zorder=2,
                )
        a.scatter(x, y_typ, marker="_", s=140, color="0.45", zorder=3, label="typical value")
        kw = dict(s=60, zorder=4, edgecolors="C0", linewidths=1.2)
        a.scatter(x[ident], y_own[ident], color="C0", label="own data (max. likelihood)", **kw)
        a.scatter(
            x[~ident], y_own[~ident], facecolors="white", label="own data: not identifiable", **kw
        )
        a.scatter(x, y_post, marker="D", s=22, color="C3", zorder=5, label="posterior mean of eta")
        if kind in ("lognormal", None):
            a.set_yscale("log")
            a.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            a.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            a.tick_params(axis="y", which="minor", labelsize=7)
        a.set_ylabel(n)
        a.set_xticks(x)
        a.set_xticklabels(
            [f"{sid}\n{m}" for sid, m in zip(own.index, own["n_obs"], strict=True)],
            fontsize=7 if len(own) <= 40 else 5,
        )
        a.set_xlim(-0.7, len(own) - 0.3)
        a.set_title(f"{n}: own-data estimate -> posterior mean (borrowing strength)", fontsize=10)
    axes[0, 0].legend(fontsize=7, ncol=3, loc="best")
    axes[-1, 0].set_xlabel("subject ID / number of observations (sorted by observations)")
    fig.tight_layout()
    return _save(fig, path)
