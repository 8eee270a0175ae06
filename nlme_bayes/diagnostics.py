"""Sampling and model diagnostics over a fit: where divergences sit, MCSE, EBE plots, traces.

- :func:`convergence_report`: the verdict (R-hat, ESS, divergences, tree depth, E-BFMI) with
  where the divergences concentrate and the Monte Carlo error of every summary figure;
- :func:`divergence_association`, :func:`mcse_relative`: the tables behind it;
- :func:`plot_divergences`, :func:`plot_trace`: sampler geometry and mixing;
- :func:`plot_eta_covariates`, :func:`plot_eta_qq`: the empirical Bayes estimates (EBEs,
  posterior means of eta) against covariates and against normality. Read them with the
  shrinkage (:mod:`nlme_bayes.shrinkage`) in mind: above 20-30 % shrinkage the EBEs are
  pulled to 0 and hide trends.

Plots are matplotlib figures, safe without a display (Agg), written as PNG when ``path``
is given.

Examples
--------
>>> from nlme_bayes.diagnostics import convergence_report, plot_eta_qq
>>> print(convergence_report(fit))  # doctest: +SKIP
Convergence: ...
>>> fig = plot_eta_qq(fit, "eta_qq.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from .errors import SpecificationError
from .shrinkage import eta_shrinkage, iiv_parameters, observations_per_subject

__all__ = [
    "convergence_report",
    "divergence_association",
    "mcse_relative",
    "plot_divergences",
    "plot_eta_covariates",
    "plot_eta_qq",
    "plot_trace",
    "DIAGNOSTIC_THRESHOLDS",
]

#: ``smd``: |standardised mean difference| between divergent and other draws that names a
#: quantity as associated with divergences (also at least 2/sqrt(n divergent), a rough
#: two-standard-error bound); ``mcse_rel``: largest MCSE of a summary figure relative to the
#: posterior SD.
DIAGNOSTIC_THRESHOLDS = {"smd": 0.5, "mcse_rel": 0.10}


def convergence_report(fit: Any) -> Any:
    """The full convergence report of a fit (see :func:`nlme_bayes.summary.check_convergence`).

    ``ok`` is False for R-hat > 1.01, bulk/tail ESS < 400, any divergence, E-BFMI < 0.3 or
    tree-depth saturation. Beyond the verdict it says which population quantities differ
    between divergent and other draws (with advice per parameter: centred vs non-centred
    random effects) and notes summary figures whose MCSE exceeds 10 % of the posterior SD.
    ``report.tables`` holds ``"divergences"`` and ``"mcse"``.

    Examples
    --------
    >>> from nlme_bayes.diagnostics import convergence_report
    >>> report = convergence_report(fit)  # doctest: +SKIP
    >>> report.ok, report.figures["max_mcse_rel"]  # a short fit: MCSE > 10% of SD  # doctest: +SKIP
    (False, 0...)
    """
    from .summary import check_convergence

    return check_convergence(fit)


# --------------------------------------------------------------------------- tables
def _population_draws(fit: Any) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
    """Flattened draws of typical values, covariate effects, omegas and sigmas.

    Positive quantities (typical values, omegas, sigmas) are on the log scale, where
    funnels and NUTS work. Returns draws, scale and kind per label.
    """
    from .summary import _quantities

    quantities, kind = _quantities(fit)
    keep = ("typical value", "covariate effect", "omega (SD)", "residual error")
    draws, scale = {}, {}
    for label, da in quantities.items():
        if kind[label] not in keep:
            continue
        x = da.transpose("chain", "draw").values.ravel().astype(float)
        if kind[label] != "covariate effect" and np.all(x > 0):
            draws[label], scale[label] = np.log(x), "log"
        else:
            draws[label], scale[label] = x, "linear"
    return draws, scale, kind


def divergence_association(fit: Any) -> pd.DataFrame:
    r"""How each population quantity differs between divergent and non-divergent draws.

    For each typical value, covariate effect, omega and sigma (positive ones on the log
    scale), the standardised mean difference

    .. math:: d = \frac{\bar x_{\mathrm{div}} - \bar x_{\mathrm{ok}}}{\mathrm{SD}(x)}

    with the SD over all draws. ``|d|`` large means divergences sit in a particular region
    of that quantity, e.g. small ``omega`` in the neck of a funnel. A quantity is
    ``flagged`` when ``|d| >= 0.5`` and ``|d| >= 2/sqrt(n_div)`` (a rough two-standard-error
    bound that ignores autocorrelation, so a lone divergence does not name anything).
    Draws are pooled over chains: when a chain is stuck (e.g. in the neck of a funnel) and
    diverges there, the table says where it is stuck, which is the diagnosis wanted.

    Returns
    -------
    pandas.DataFrame
        Index ``quantity``, sorted by ``|d|`` (largest first); columns ``scale``,
        ``mean_divergent``, ``mean_other``, ``smd``, ``flagged``. Empty when there are no
        divergences (or only divergent draws).

    Examples
    --------
    >>> from nlme_bayes.diagnostics import divergence_association
    >>> divergence_association(fit).head(3)  # no divergences: an empty table  # doctest: +SKIP
    Empty DataFrame
    Columns: [scale, mean_divergent, mean_other, smd, flagged]
    Index: []
    """
    cols = ["scale", "mean_divergent", "mean_other", "smd", "flagged"]
    stats = fit.results["sample_stats"].dataset
    if "diverging" not in stats:
        return pd.DataFrame(columns=cols).rename_axis("quantity")
    div = stats["diverging"].transpose("chain", "draw").values.ravel().astype(bool)
    n_div = int(div.sum())
    if n_div == 0 or n_div == div.size:
        return pd.DataFrame(columns=cols).rename_axis("quantity")
    draws, scale, _ = _population_draws(fit)
    limit = max(DIAGNOSTIC_THRESHOLDS["smd"], 2.0 / math.sqrt(n_div))
    rows = []
    for label, x in draws.items():
        sd = float(np.std(x, ddof=1))
        m_div, m_ok = float(x[div].mean()), float(x[~div].mean())
        smd = (m_div - m_ok) / sd if sd > 0 else float("nan")
        rows.append(
            {
                "quantity": label,
                "scale": scale[label],
                "mean_divergent": m_div,
                "mean_other": m_ok,
                "smd": smd,
                "flagged": bool(np.isfinite(smd) and abs(smd) >= limit),
            }
        )
    out = pd.DataFrame(rows, columns=["quantity", *cols]).set_index("quantity")
    return out.iloc[np.argsort(-np.nan_to_num(out["smd"].abs().to_numpy()), kind="stable")]


def mcse_relative(fit: Any, *, ci_prob: float = 0.95) -> pd.DataFrame:
    """MCSE of each summary figure relative to the posterior SD, per population quantity.

    The figures of :func:`nlme_bayes.summary.summary_table`: mean, SD, median and the two
    equal-tailed interval bounds (quantiles ``(1 - ci_prob)/2`` and ``(1 + ci_prob)/2``),
    each with ArviZ's MCSE (``method="mean"``, ``"sd"``, ``"median"``, ``"quantile"``)
    divided by the posterior SD. Above 0.10 the last digit people read off the table is
    Monte Carlo noise: draw more.

    Returns
    -------
    pandas.DataFrame
        Index ``parameter`` (the summary table's rows); columns ``mean, sd, median,
        q<lo>%, q<hi>%``.

    Examples
    --------
    >>> from nlme_bayes.diagnostics import mcse_relative
    >>> mcse_relative(fit).max(axis=1)  # doctest: +SKIP
    parameter
    CL_pop         0...
    ...
    sigma_add      0...
    dtype: float64
    """
    import arviz as az

    from .summary import _quantities

    quantities, _ = _quantities(fit)
    ds = xr.Dataset({k: v.reset_coords(drop=True) for k, v in quantities.items()})
    lo, hi = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
    mcse = {
        "mean": az.mcse(ds, method="mean"),
        "sd": az.mcse(ds, method="sd"),
        "median": az.mcse(ds, method="median"),
        f"q{lo * 100:g}%": az.mcse(ds, method="quantile", prob=lo),
        f"q{hi * 100:g}%": az.mcse(ds, method="quantile", prob=hi),
    }
    rows = {}
    for k, da in ds.data_vars.items():
        sd = float(np.std(da.values.ravel(), ddof=1))
        rows[k] = {c: float(m[k]) / sd if sd > 0 else float("nan") for c, m in mcse.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("parameter")


# --------------------------------------------------------------------------- plots
def _ebe(fit: Any, names: list[str]) -> pd.DataFrame:
    """Posterior-mean eta of the observed subjects, one column per parameter."""
    # rename_axis returns a copy: setting .index.name would rename the pandas index that
    # xarray shares with the fit's "subject" coordinate, corrupting the results in place
    eta = fit.posterior["eta"].mean(("chain", "draw")).to_pandas().rename_axis("ID")
    n_obs = observations_per_subject(fit).reindex(eta.index, fill_value=0)
    return eta.loc[n_obs.to_numpy() > 0, names]


def plot_divergences(
    fit: Any,
    path: str | os.PathLike | None = None,
    *,
    subject: Any = None,
    params: str | Sequence[str] | None = None,
) -> Any:
    """Funnel plot per random effect: ``log omega_p`` against one subject's eta, divergent red.

    The centred random effect of a subject with little data forms a funnel with its
    omega; divergences piling up in the neck (small omega) call for the non-centred form,
    piling up at large omega with data-rich subjects for the centred one.

    Parameters
    ----------
    fit : Fit
    path : path-like, optional
        Write a PNG there.
    subject : optional
        The subject ID whose eta is on the x axis; default: the subject with the fewest
        observations (the most funnel-prone). ``"mean_abs"`` uses the mean ``|eta|`` over
        subjects instead.
    params : str or sequence of str, optional
        Random-effect parameters (default all).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    SpecificationError
        An unknown subject or a parameter without a random effect.

    Examples
    --------
    >>> from nlme_bayes.diagnostics import plot_divergences
    >>> fig = plot_divergences(fit, "divergences.png")  # doctest: +SKIP
    """
    from .plots import _figure, _save

    names = iiv_parameters(fit, params)
    post = fit.posterior
    stats = fit.results["sample_stats"].dataset
    div = (
        stats["diverging"].transpose("chain", "draw").values.ravel().astype(bool)
        if "diverging" in stats
        else np.zeros(post.sizes["chain"] * post.sizes["draw"], bool)
    )
    n_obs = observations_per_subject(fit)
    subjects = list(post["subject"].values)
    if subject is None:
        subject = n_obs.reindex(subjects).idxmin()
    elif subject != "mean_abs" and subject not in subjects:
        raise SpecificationError(
            f"subject={subject!r} is not a subject of this fit; IDs are {subjects[:10]}"
            + (" ..." if len(subjects) > 10 else "")
            + " (or use subject='mean_abs')."
        )
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = _figure(nrows, ncols, (4.2 * ncols, 3.8 * nrows))
    for j, n in enumerate(names):
        a = axes[j // ncols, j % ncols]
        eta = post["eta"].sel(param=n).transpose("chain", "draw", "subject")
        if subject == "mean_abs":
            x = np.abs(eta.values).mean(axis=-1).ravel()
            xlabel = f"mean |eta({n})| over subjects"
        else:
            x = eta.sel(subject=subject).values.ravel()
            xlabel = f"eta({n}) of subject {subject} ({int(n_obs[subject])} obs)"
        y = np.log(post["omega"].sel(param=n).transpose("chain", "draw").values.ravel())
        a.scatter(x[~div], y[~div], s=6, color="0.55", alpha=0.4, lw=0, label="draws")
        a.scatter(x[div], y[div], s=14, color="C3", lw=0, label=f"divergent ({div.sum()})")
        a.set_xlabel(xlabel)
        a.set_ylabel(f"log omega({n})")
        a.set_title(f"{n} ({'centred' if fit.model.parameter(n).centered else 'non-centred'})")
        a.legend(fontsize=7, loc="best")
    for j in range(len(names), nrows * ncols):
        axes[j // ncols, j % ncols].set_visible(False)
    fig.suptitle(f"{fit.model.name}: divergences against the random effects' funnels")
    fig.tight_layout()
    return _save(fig, path)


def plot_eta_covariates(
    fit: Any,
    covariates: str | Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
    *,
    params: str | Sequence[str] | None = None,
    max_levels: int = 4,
) -> Any:
    """EBEs (posterior-mean eta) against each covariate: a grid of parameters x covariates.

    A numeric covariate with more than ``max_levels`` distinct values is drawn as a scatter
    with its least-squares line and Pearson r; others (strings, or few levels, e.g. SEX
    0/1) as box plots with the points jittered over them. Covariates are taken per subject
    (a time-varying one at its first record, ``covariate_table(time_varying="baseline")``).
    Only subjects with observations are shown. A trend in a parameter that has no such
    covariate effect in the model is a candidate covariate; a trend left in one that has
    it means the effect's form is off.

    Parameters
    ----------
    fit : Fit
    covariates : str or sequence of str, optional
        Default: every covariate of the dataset.
    path : path-like, optional
    params : str or sequence of str, optional
        Random-effect parameters (default all).
    max_levels : int
        Numeric covariates with at most this many distinct values are categorical.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    SpecificationError
        An unknown covariate (the message lists those available), a dataset without
        covariates, or a parameter without a random effect.

    Examples
    --------
    >>> from nlme_bayes.diagnostics import plot_eta_covariates
    >>> fig = plot_eta_covariates(fit, ["WT"], "eta_cov.png")  # doctest: +SKIP
    """
    from .plots import _figure, _save

    names = iiv_parameters(fit, params)
    available = list(fit.data.covariates)
    if covariates is None:
        wanted = available
    else:
        wanted = [covariates] if isinstance(covariates, str) else list(covariates)
    if not wanted:
        raise SpecificationError("The dataset has no covariate columns to plot the etas against.")
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise SpecificationError(
            f"Unknown covariate(s) {', '.join(map(repr, unknown))}; the dataset's covariates "
            f"are: {', '.join(sorted(available)) or '(none)'}."
        )
    ebe = _ebe(fit, names)
    table = fit.data.covariate_table(wanted, time_varying="baseline").reindex(ebe.index)
    shrink = eta_shrinkage(fit)
    fig, axes = _figure(len(names), len(wanted), (3.3 * len(wanted), 2.9 * len(names)))
    rng = np.random.default_rng(0)
    for i, n in enumerate(names):
        y = ebe[n].to_numpy(dtype=float)
        for j, c in enumerate(wanted):
            a = axes[i, j]
            col = table[c]
            numeric = pd.api.types.is_numeric_dtype(col) and col.nunique() > max_levels
            if numeric:
                x = col.to_numpy(dtype=float)
                ok = np.isfinite(x)
                a.scatter(x[ok], y[ok], s=14, color="C0", alpha=0.8, lw=0)
                if ok.sum() > 2 and np.ptp(x[ok]) > 0:
                    b1, b0 = np.polyfit(x[ok], y[ok], 1)
                    grid = np.linspace(x[ok].min(), x[ok].max(), 20)
                    r = float(np.corrcoef(x[ok], y[ok])[0, 1])
                    a.plot(grid, b0 + b1 * grid, color="C3", lw=1.5, label=f"linear, r={r:.2f}")
                    a.legend(fontsize=7, loc="best")
            else:
                levels = sorted(pd.unique(col.dropna()).tolist(), key=str)
                groups = [y[(col == lv).to_numpy()] for lv in levels]
                a.boxplot(groups, positions=range(len(levels)), widths=0.5, showfliers=False)
                for k, g in enumerate(groups):
                    a.scatter(k + rng.uniform(-0.12, 0.12, len(g)), g, s=12, color="C0", lw=0)
                a.set_xticks(range(len(levels)))
                a.set_xticklabels([str(lv) for lv in levels])
            a.axhline(0, color="0.5", lw=0.8, ls="--")
            if i == len(names) - 1:
                a.set_xlabel(c)
            if j == 0:
                a.set_ylabel(f"EBE eta({n})\n(shrinkage {shrink[n]:.0%})")
    fig.suptitle(f"{fit.model.name}: EBEs (posterior mean eta) vs covariates")
    fig.tight_layout()
    return _save(fig, path)


def plot_eta_qq(
    fit: Any,
    path: str | os.PathLike | None = None,
    *,
    params: str | Sequence[str] | None = None,
) -> Any:
    """Normal QQ plot of the standardised EBEs, ``E[eta_i | y] / median(omega)``, per parameter.

    Observed subjects only. The solid line ``y = x`` is what unshrunk etas drawn from
    ``N(0, omega^2)`` follow; the dashed line has slope ``1 - shrinkage`` (SD-based eta
    shrinkage), what shrunk but normal EBEs follow. Curvature away from the dashed line
    suggests a skewed or heavy-tailed eta distribution (another IIV form, a missing
    covariate, a mixture).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from nlme_bayes.diagnostics import plot_eta_qq
    >>> fig = plot_eta_qq(fit, "eta_qq.png")  # doctest: +SKIP
    """
    from scipy import stats

    from .plots import _figure, _save

    names = iiv_parameters(fit, params)
    ebe = _ebe(fit, names)
    omega = fit.posterior["omega"].median(("chain", "draw")).to_pandas()
    shrink = eta_shrinkage(fit)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = _figure(nrows, ncols, (3.8 * ncols, 3.6 * nrows))
    for j, n in enumerate(names):
        a = axes[j // ncols, j % ncols]
        z = np.sort(ebe[n].to_numpy(dtype=float) / float(omega[n]))
        m = len(z)
        q = stats.norm.ppf((np.arange(1, m + 1) - 0.5) / m)  # Hazen plotting positions
        a.scatter(q, z, s=16, color="C0", zorder=3)
        lim = float(max(np.abs(q).max(), np.abs(z).max())) * 1.1
        a.plot([-lim, lim], [-lim, lim], color="0.3", lw=1, label="y = x (no shrinkage)")
        slope = 1.0 - float(shrink[n])
        a.plot(
            [-lim, lim],
            [-lim * slope, lim * slope],
            color="C3",
            lw=1,
            ls="--",
            label=f"slope 1 - shrinkage = {slope:.2f}",
        )
        a.set_xlim(-lim, lim)
        a.set_ylim(-lim, lim)
        a.set_xlabel("normal quantile")
        a.set_ylabel(f"EBE eta({n}) / omega")
        a.set_title(f"{n} ({m} subjects)")
        a.legend(fontsize=7, loc="upper left")
    for j in range(len(names), nrows * ncols):
        axes[j // ncols, j % ncols].set_visible(False)
    fig.suptitle(f"{fit.model.name}: normal QQ plot of the standardised EBEs")
    fig.tight_layout()
    return _save(fig, path)


def plot_trace(
    fit: Any,
    path: str | os.PathLike | None = None,
    *,
    kind: Literal["trace", "rank"] = "trace",
    var_names: Sequence[str] | None = None,
) -> Any:
    """Trace (with marginal densities) or rank plots of the population parameters.

    The quantities of the summary table except CV% (typical values, covariate effects,
    omegas, correlations, sigmas), drawn by ArviZ (``plot_trace_dist`` or ``plot_rank``)
    with divergent draws marked on the traces. Chains that do not overlap, or rank
    histograms far from uniform, mean the chains have not mixed.

    Parameters
    ----------
    fit : Fit
    path : path-like, optional
    kind : {"trace", "rank"}
    var_names : sequence of str, optional
        Labels of the summary table to draw (default all but CV%).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    SpecificationError
        An unknown ``kind`` or label.

    Examples
    --------
    >>> from nlme_bayes.diagnostics import plot_trace
    >>> fig = plot_trace(fit, "trace.png", kind="rank")  # doctest: +SKIP
    """
    import arviz as az

    from .plots import _figure, _save
    from .summary import _quantities

    if kind not in ("trace", "rank"):
        raise SpecificationError(f"kind={kind!r} is not valid; choose one of 'rank', 'trace'.")
    _figure(1, 1, (1, 1))  # select a headless backend if there is no display
    import matplotlib.pyplot as plt

    plt.close()
    quantities, qkind = _quantities(fit)
    labels = [k for k in quantities if qkind[k] != "omega (CV%)"]
    if var_names is not None:
        unknown = [v for v in var_names if v not in quantities]
        if unknown:
            raise SpecificationError(
                f"Unknown quantity {', '.join(map(repr, unknown))}; choose from "
                f"{', '.join(labels)}."
            )
        labels = list(var_names)
    ds = xr.Dataset({k: quantities[k].reset_coords(drop=True) for k in labels})
    tree = xr.DataTree.from_dict({"posterior": ds})
    stats = fit.results["sample_stats"].dataset
    if "diverging" in stats:
        tree["sample_stats"] = xr.DataTree(stats[["diverging"]])
    if kind == "trace":
        pc = az.plot_trace_dist(tree, backend="matplotlib", figure_kwargs={"layout": "constrained"})
    else:
        ncols = min(4, len(labels))
        size = (3.6 * ncols, 3.0 * math.ceil(len(labels) / ncols))
        pc = az.plot_rank(
            tree, backend="matplotlib", figure_kwargs={"figsize": size, "layout": "constrained"}
        )
    plot = pc.viz["plot"]
    first = next(iter(plot.dataset.data_vars.values()))
    fig = np.asarray(first.values).ravel()[0].get_figure()
    fig.suptitle(f"{fit.model.name}: {kind} plots of the population parameters")
    return _save(fig, path)
