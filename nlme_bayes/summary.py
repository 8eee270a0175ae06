"""The parameter table a pharmacometrician expects, and the convergence verdict.

Rows (labels): typical values ``CL_pop`` (natural scale), covariate effects ``CL_WT``,
``omega(CL)`` (SD of eta), ``CV%(CL)`` (``100*sqrt(exp(omega^2)-1)``, log-normal
parameters only), ``corr(CL,V)``, ``omega_iov(CL)`` (SD of the inter-occasion kappa),
residual error ``sigma_*``. Columns: mean, sd, median,
the equal-tailed credible interval, MCSE of the mean, R-hat, bulk and tail ESS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from .residual_family import is_residual_parameter

__all__ = ["summary_table", "ConvergenceReport", "check_convergence", "THRESHOLDS"]

#: Thresholds of the convergence verdict (Vehtari et al. 2021 for R-hat and ESS).
THRESHOLDS = {"rhat": 1.01, "ess": 400.0, "ebfmi": 0.3, "treedepth_frac": 0.01}


def _quantities(fit: Any) -> tuple[dict[str, xr.DataArray], dict[str, str]]:
    post = fit.results["posterior"].dataset
    model = fit.model
    out: dict[str, xr.DataArray] = {}
    kind: dict[str, str] = {}
    for p in model.parameters:
        name = f"{p.name}_pop"
        if name in post:
            out[name], kind[name] = post[name], "typical value"
    for p in model.parameters:
        for eff in p.covariates:
            name = f"{p.name}_{eff.covariate}"
            if name not in post:
                continue
            da = post[name]
            extra = [d for d in da.dims if d not in ("chain", "draw")]
            if extra:
                for level in da[extra[0]].values:
                    label = f"{name}[{level}]"
                    out[label], kind[label] = da.sel({extra[0]: level}), "covariate effect"
            else:
                out[name], kind[name] = da, "covariate effect"
    if "omega" in post:
        names = list(post["omega"]["param"].values)
        for n in names:
            om = post["omega"].sel(param=n)
            out[f"omega({n})"], kind[f"omega({n})"] = om, "omega (SD)"
            if model.parameter(n).iiv == "lognormal":
                cv = 100.0 * np.sqrt(np.expm1(om**2))
                out[f"CV%({n})"], kind[f"CV%({n})"] = cv, "omega (CV%)"
        corr = post["omega_corr"]
        blocks = model.omega.resolve(model.iiv_names)
        for block in blocks:
            for i, a in enumerate(block):
                for b in block[i + 1 :]:
                    label = f"corr({a},{b})"
                    out[label] = corr.sel(param=a, param_bis=b)
                    kind[label] = "correlation"
    if "omega_iov" in post:  # inter-occasion variability (SD of kappa)
        for n in post["omega_iov"]["param_iov"].values:
            label = f"omega_iov({n})"
            out[label], kind[label] = post["omega_iov"].sel(param_iov=n), "IOV (SD)"
    for name in sorted(v for v in post.data_vars if is_residual_parameter(v)):
        out[str(name)], kind[str(name)] = post[name], "residual error"
    return out, kind


def summary_table(fit: Any, *, ci_prob: float = 0.95) -> pd.DataFrame:
    """Summary of the population parameters; see the module docstring for rows/columns.

    Examples
    --------
    >>> summary_table(fit, ci_prob=0.9)  # the same as fit.summary(ci_prob=0.9)  # doctest: +SKIP
                       kind        mean  ...
    parameter ...
    CL_pop        typical value    0.0...
    ...
    sigma_add    residual error    0...
    """
    quantities, kind = _quantities(fit)
    ds = xr.Dataset({k: v.reset_coords(drop=True) for k, v in quantities.items()})
    lo, hi = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
    rhat = az.rhat(ds)
    ess_bulk = az.ess(ds, method="bulk")
    ess_tail = az.ess(ds, method="tail")
    mcse = az.mcse(ds, method="mean")
    rows = []
    for k, da in ds.data_vars.items():
        x = da.values.ravel()
        rows.append(
            {
                "parameter": k,
                "kind": kind[k],
                "mean": float(np.mean(x)),
                "sd": float(np.std(x, ddof=1)),
                "median": float(np.median(x)),
                f"ci{lo * 100:g}%": float(np.quantile(x, lo)),
                f"ci{hi * 100:g}%": float(np.quantile(x, hi)),
                "mcse_mean": float(mcse[k]),
                "rhat": float(rhat[k]),
                "ess_bulk": float(ess_bulk[k]),
                "ess_tail": float(ess_tail[k]),
            }
        )
    return pd.DataFrame(rows).set_index("parameter")


@dataclass
class ConvergenceReport:
    """Verdict on a fit's sampling, with the problems found and what to do about them.

    Attributes
    ----------
    ok : bool
        False for R-hat > 1.01, bulk/tail ESS < 400, any divergence, E-BFMI < 0.3 or
        tree-depth saturation (> 1 % of transitions); nothing else changes it.
    problems, advice : list of str
        What failed (including where the divergences concentrate) and what to do.
    figures : dict of str to float
        ``max_rhat``, ``max_rhat_eta``, ``min_ess_bulk``, ``min_ess_tail``, ``divergences``,
        ``treedepth_saturation``, ``min_ebfmi``, ``max_mcse_rel`` (largest MCSE of a summary
        figure relative to the posterior SD) and, with divergences,
        ``max_abs_divergence_smd``.
    notes : list of str
        Findings that do not change the verdict (MCSE above 10 % of the posterior SD).
    tables : dict of str to DataFrame
        ``"divergences"`` (:func:`~nlme_bayes.diagnostics.divergence_association`) and
        ``"mcse"`` (:func:`~nlme_bayes.diagnostics.mcse_relative`).

    Examples
    --------
    >>> report = ConvergenceReport(ok=False, problems=["1 divergence"],
    ...                            advice=["Raise target_accept (e.g. 0.95)."])
    >>> report.ok, report.problems
    (False, ['1 divergence'])
    """

    ok: bool
    problems: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        head = "Convergence: OK" if self.ok else "Convergence: PROBLEMS FOUND"
        figs = ", ".join(f"{k}={v:.4g}" for k, v in self.figures.items())
        lines = [head, f"  ({figs})"]
        lines += [f"  - {p}" for p in self.problems]
        if self.notes:
            lines.append("  Notes:")
            lines += [f"  . {n}" for n in self.notes]
        if self.advice:
            lines.append("  Advice:")
            lines += [f"  * {a}" for a in self.advice]
        return "\n".join(lines)


def _divergence_advice(fit: Any, flagged: pd.Series) -> list[str]:
    """What to do about divergences concentrated in a region of the ``flagged`` quantities.

    ``flagged`` maps quantity labels to their standardised mean difference (divergent minus
    other draws); one line per omega or sigma, one line for the other quantities together.
    """
    out: list[str] = []
    others: list[str] = []
    for quantity, smd in flagged.items():
        where = "small" if smd < 0 else "large"
        if quantity.startswith("omega(") and quantity.endswith(")"):
            p = quantity[len("omega(") : -1]
            block = next(b for b in fit.model.omega.resolve(fit.model.iiv_names) if p in b)
            centered = fit.model.parameter(block[0]).centered  # the builder's rule, per block
            if smd < 0 and centered:
                out.append(
                    f"omega({p}) is small in divergent draws: the typical funnel of a centred "
                    f"random effect -- use the non-centred form (centered=False) for {p}."
                )
            elif smd > 0 and not centered:
                out.append(
                    f"omega({p}) is large in divergent draws: the inverted funnel of a "
                    f"non-centred random effect whose subjects are rich in data -- use the "
                    f"centred form (centered=True) for {p}."
                )
            else:
                out.append(
                    f"omega({p}) is {where} in divergent draws although {p} is already "
                    f"{'centred' if centered else 'non-centred'}: its variability is poorly "
                    f"identified -- raise target_accept, give omega({p}) a tighter prior "
                    f"(Parameter({p!r}, omega_prior=Prior('HalfNormal', sigma=0.3))), or drop "
                    "the random effect."
                )
        elif quantity.startswith("sigma_"):
            out.append(
                f"{quantity} is {where} in divergent draws"
                + (
                    ": with few observations per subject the individual curves can fit them "
                    "exactly as the residual error goes to 0 (a funnel between sigma and the "
                    "etas) -- give it an informative prior (e.g. from the assay's precision) "
                    "or estimate fewer random effects."
                    if smd < 0
                    else " -- check the error model (Combined() for a wide concentration "
                    "range) and its prior."
                )
            )
        else:
            others.append(f"{quantity} ({where})")
    if others:
        out.append(
            f"{', '.join(others)} in divergent draws: look at the pair plots of the population "
            "parameters (strong correlations such as CL-V, or the ka/k flip-flop of oral "
            "models); give typical= near the mode, tighten the priors, or raise target_accept."
        )
    return out


def _run_problems(fit: Any, n_div: int) -> tuple[list[str], list[str], int]:
    """An interrupted run (a problem) and rejected non-finite proposals (a note), counted."""
    import json

    from .sampling_safety import nonfinite_transitions

    problems, notes = [], []
    attrs = fit.results.attrs
    if attrs.get("interruption"):
        info = json.loads(attrs["interruption"])
        problems.append(
            f"sampling was interrupted ({info['reason']}): {info['kept']} of "
            f"{info['requested']} draws per chain kept; run the fit to the end before "
            "reporting it"
        )
    n_bad = nonfinite_transitions(fit.results["sample_stats"].dataset)
    if n_bad:
        notes.append(
            f"{n_bad} of the {n_div} divergent transitions stopped at a non-finite log "
            "density (numerical overflow or underflow, e.g. exp(eta) overflowing or a "
            "predicted concentration of 0 under proportional error); the sampler rejected "
            "those proposals, so none of them is a draw. Many of them mean the sampler "
            "wanders where the model cannot be evaluated: tighten the priors or give "
            "typical= values nearer the posterior."
        )
    return problems, notes, n_bad


def check_convergence(fit: Any, table: pd.DataFrame | None = None) -> ConvergenceReport:
    """R-hat, bulk/tail ESS, divergences, tree-depth saturation and E-BFMI, with advice.

    Also says where divergences concentrate (which typical values, omegas or sigmas differ
    in divergent draws, with advice per parameter) and notes summary figures whose MCSE is
    above 10 % of their posterior SD; see :class:`ConvergenceReport`.

    Examples
    --------
    >>> report = check_convergence(fit)  # the same as fit.check_convergence()  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    Convergence: ...
    """
    from .diagnostics import DIAGNOSTIC_THRESHOLDS, divergence_association, mcse_relative

    table = summary_table(fit) if table is None else table
    stats = fit.results["sample_stats"].dataset
    problems: list[str] = []
    advice: list[str] = []
    post = fit.results["posterior"].dataset
    one_chain = post.sizes.get("chain", 1) < 2
    eta_rhat = float(az.rhat(post[["eta"]])["eta"].max()) if "eta" in post else 1.0
    rhat = table["rhat"].to_numpy(dtype=float)
    figures = {
        "max_rhat": float(np.nanmax(rhat)) if np.isfinite(rhat).any() else float("nan"),
        "max_rhat_eta": eta_rhat,
        "min_ess_bulk": float(np.nanmin(table["ess_bulk"])),
        "min_ess_tail": float(np.nanmin(table["ess_tail"])),
    }
    if one_chain:
        problems.append("one chain: R-hat (agreement between chains) cannot be computed")
        advice.append(
            "Run at least 2 chains (4 recommended): one chain cannot show that the sampler "
            "found the whole posterior rather than one mode of it."
        )
    bad = table.index[table["rhat"] > THRESHOLDS["rhat"]].tolist()
    if bad or eta_rhat > THRESHOLDS["rhat"]:
        who = bad + (["eta"] if eta_rhat > THRESHOLDS["rhat"] else [])
        problems.append(f"R-hat > {THRESHOLDS['rhat']} for {', '.join(who)}")
        advice.append(
            "Run longer (more tune and draws) and check the trace plots; R-hat far above 1 often "
            "means chains found different modes (e.g. the ka/k flip-flop of oral models): give "
            "typical= values near the expected mode or tighter priors."
        )
    low = table.index[
        (table["ess_bulk"] < THRESHOLDS["ess"]) | (table["ess_tail"] < THRESHOLDS["ess"])
    ].tolist()
    if low:
        problems.append(f"bulk or tail ESS < {THRESHOLDS['ess']:g} for {', '.join(low)}")
        advice.append(
            "Draw more samples (draws=) or more chains; reparameterise if ESS per draw is very low."
        )
    n_div = int(stats["diverging"].sum()) if "diverging" in stats else 0
    figures["divergences"] = n_div
    problems_run, notes_run, figures["nonfinite_transitions"] = _run_problems(fit, n_div)
    problems += problems_run
    div_table = divergence_association(fit)
    if n_div:
        problems.append(f"{n_div} divergent transitions")
        advice.append(
            "Raise target_accept (0.95 or 0.99). If divergences persist, switch the random "
            "effects' parameterisation: centered=True for parameters whose subjects are rich in "
            "data, non-centered (default) for sparse data; tighten the omega priors."
        )
        if len(div_table):
            figures["max_abs_divergence_smd"] = float(div_table["smd"].abs().max())
            top = div_table.head(3)
            named = ", ".join(
                f"{q} ({'lower' if d < 0 else 'higher'} in divergent draws, SMD {d:+.2f})"
                for q, d in top["smd"].items()
            )
            flagged = div_table[div_table["flagged"]]
            if len(flagged):
                problems.append(f"divergences concentrate where: {named}")
                advice += _divergence_advice(fit, flagged["smd"])
            else:
                problems.append(
                    f"divergences are not clearly associated with any population quantity "
                    f"(largest: {named})"
                )
    depth_var = next((v for v in ("reached_max_treedepth", "maxdepth_reached") if v in stats), None)
    if depth_var is not None:  # PyMC's and nutpie's names
        frac = float(stats[depth_var].mean())
        figures["treedepth_saturation"] = frac
        if frac > THRESHOLDS["treedepth_frac"]:
            problems.append(f"{frac:.1%} of transitions hit the maximum tree depth")
            advice.append(
                "Raise max_treedepth, or reparameterise (strong posterior correlations, "
                "e.g. between CL and V, make trajectories long)."
            )
    if "energy" in stats:
        ebfmi = np.atleast_1d(
            az.bfmi(fit.results)["energy"].values
            if hasattr(az.bfmi(fit.results), "data_vars")
            else az.bfmi(fit.results)
        )
        figures["min_ebfmi"] = float(np.min(ebfmi))
        if np.min(ebfmi) < THRESHOLDS["ebfmi"]:
            problems.append(f"low E-BFMI ({np.min(ebfmi):.2f} < {THRESHOLDS['ebfmi']})")
            advice.append(
                "Low E-BFMI: the sampler explores the energy poorly; reparameterise the "
                "random effects (centered vs non-centered) or use more informative "
                "omega priors."
            )
    mcse = mcse_relative(fit)
    figures["max_mcse_rel"] = float(np.nanmax(mcse.to_numpy())) if mcse.size else 0.0
    notes: list[str] = notes_run
    limit = DIAGNOSTIC_THRESHOLDS["mcse_rel"]
    over = [
        f"{q} ({row.idxmax()} {row.max():.0%})" for q, row in mcse.iterrows() if row.max() > limit
    ]
    if over:
        notes.append(
            f"MCSE > {limit:.0%} of the posterior SD for: {'; '.join(over)}; these figures "
            "are not reliable to the digits printed -- draw more (draws=, chains=)."
        )
    return ConvergenceReport(
        ok=not problems,
        problems=problems,
        advice=advice,
        figures=figures,
        notes=notes,
        tables={"divergences": div_table, "mcse": mcse},
    )
