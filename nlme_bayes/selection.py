"""Is a random effect's variance needed? Evidence from fits with and without it.

Three views, because none settles it alone: the subject-level integrated elpd difference
between the fits (needed if it exceeds twice its SE), the posterior of omega against its prior
(how much the data moved it), and an interval Savage-Dickey Bayes factor for omega below a
negligible size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .comparison import compare
from .errors import SpecificationError

__all__ = ["VarianceCheck", "variance_needed"]


# =========================================================================== variance_needed
@dataclass(frozen=True)
class VarianceCheck:
    """Is the random effect (its variance omega^2) of a parameter supported by the data?

    Attributes
    ----------
    parameter : str
    omega_posterior, omega_prior : dict
        ``median``, ``q05``, ``q95`` of omega (the SD of eta) under the posterior / the prior.
    sd_ratio : float
        Posterior SD / prior SD of omega: near 1, the data say little about it.
    bayes_factor_negligible : float
        Posterior odds / prior odds of ``omega < negligible`` (an interval Savage-Dickey
        Bayes factor for "negligible" vs "not negligible"; < 1/10 is strong evidence that the
        variance is not negligible). With no posterior draw below ``negligible`` it is an
        upper bound (half a draw counted).
    negligible : float
    elpd_diff, dse : float or None
        Subject-level elpd of the fit with the random effect minus the fit without, and its SE
        (matched by subject); None without ``fit_without``.
    verdict : str

    Examples
    --------
    >>> check = variance_needed(fit_with, fit_without, parameter="ka")  # doctest: +SKIP
    >>> print(check)  # doctest: +SKIP
    omega(ka): posterior median ...
    BF(omega < 0.1 vs >=): ...
    subject-level elpd with - without: ...
    >>> check.elpd_diff, check.dse  # doctest: +SKIP
    (..., ...)
    """

    parameter: str
    omega_posterior: dict[str, float]
    omega_prior: dict[str, float]
    sd_ratio: float
    bayes_factor_negligible: float
    negligible: float
    elpd_diff: float | None
    dse: float | None
    verdict: str

    def __str__(self) -> str:
        po, pr = self.omega_posterior, self.omega_prior
        lines = [
            f"omega({self.parameter}): posterior median {po['median']:.3g} "
            f"[{po['q05']:.3g}, {po['q95']:.3g}], prior median {pr['median']:.3g} "
            f"[{pr['q05']:.3g}, {pr['q95']:.3g}]; posterior/prior SD {self.sd_ratio:.2f}",
            f"BF(omega < {self.negligible:g} vs >=): {self.bayes_factor_negligible:.3g}",
        ]
        if self.elpd_diff is not None:
            lines.append(
                f"subject-level elpd with - without: {self.elpd_diff:.2f} +- {self.dse:.2f}"
            )
        lines.append(self.verdict)
        return "\n".join(lines)


def variance_needed(
    fit_with: Any,
    fit_without: Any = None,
    *,
    parameter: str,
    negligible: float = 0.1,
    method: Literal["integrated", "auto", "kfold"] = "integrated",
    random_seed: int = 0,
    **loo_options: Any,
) -> VarianceCheck:
    """Judge whether a parameter needs its random effect.

    Two honest pieces of evidence, no single test:

    1. Posterior vs prior of omega in ``fit_with``: how much the data moved and narrowed it,
       and the Bayes factor for "omega < ``negligible``" (0.1 = 10 % CV for a log-normal
       parameter) against "omega >= ``negligible``", from the posterior and prior mass below
       it (valid under the model's prior; with a wide prior it favours "negligible" less).
    2. With ``fit_without`` (the same model with ``iiv=None`` for the parameter): the
       subject-level LOO elpd difference (eta integrated out, so that both models predict new
       subjects; observation-level LOO would always favour more random effects). The random
       effect is supported when the difference exceeds 2 SE.

    Parameters
    ----------
    fit_with : Fit
        The model with the random effect.
    fit_without : Fit, optional
        The model without it, fitted to the same data.
    parameter : str
    negligible : float
        An omega below which the variability is practically irrelevant.
    method : {"integrated", "auto", "kfold"}
        Subject-level LOO method for the elpd comparison.
    random_seed : int
    **loo_options
        Passed to :func:`loo`.

    Returns
    -------
    VarianceCheck

    Examples
    --------
    >>> print(variance_needed(fit, parameter="ka"))  # doctest: +SKIP
    omega(ka): posterior median ...
    BF(omega < 0.1 vs >=): ...
    """
    import pymc as pm

    model = fit_with.model
    if parameter not in model.iiv_names:
        raise SpecificationError(
            f"variance_needed: {parameter!r} has no random effect in fit_with; parameters with "
            f"one: {', '.join(model.iiv_names) or 'none'}."
        )
    if fit_without is not None and parameter in fit_without.model.iiv_names:
        raise SpecificationError(
            f"variance_needed: fit_without still has a random effect on {parameter!r}; fit "
            f"the model with Parameter({parameter!r}, ..., iiv=None)."
        )
    om = fit_with.posterior["omega"].sel(param=parameter).values.ravel()
    prior = model.parameter(parameter).omega_prior or model.omega.sd_prior
    dist = prior.pymc_class().dist(**prior.kwargs)
    pr = np.asarray(pm.draw(dist, draws=20000, random_seed=random_seed), dtype=float)

    def q(x: np.ndarray) -> dict[str, float]:
        a, b, c = np.quantile(x, [0.5, 0.05, 0.95])
        return {"median": float(a), "q05": float(b), "q95": float(c)}

    p_post = max(np.sum(om < negligible), 0.5) / len(om)
    p_prior = float(np.mean(pr < negligible))
    if p_prior <= 0 or p_prior >= 1:
        bf = float("nan")
    else:
        bf = float((p_post / (1 - p_post)) / (p_prior / (1 - p_prior)))
    sd_ratio = float(np.std(om) / np.std(pr))
    d = dse = None
    if fit_without is not None:
        table = compare(
            {"with": fit_with, "without": fit_without},
            by="subject",
            method=method,
            random_seed=random_seed,
            **loo_options,
        )
        d = float(table.loc["with", "elpd"] - table.loc["without", "elpd"])
        dse = float(max(table["dse"]))
    if d is not None and d > 2 * dse:
        verdict = (
            f"Needed: with it, new subjects are predicted better by {d:.1f} +- {dse:.1f} "
            "(elpd, > 2 SE)."
        )
    elif d is not None and d < -2 * dse:
        verdict = f"Not needed: new subjects are predicted worse with it ({d:.1f} +- {dse:.1f})."
    elif d is not None:
        verdict = (
            f"Not clearly needed: the elpd difference {d:.1f} +- {dse:.1f} is within 2 SE; "
            "keep it only if prior knowledge says so."
        )
    elif np.isfinite(bf) and bf < 0.1:
        verdict = "Supported: the posterior puts omega well above the negligible level."
    elif sd_ratio > 0.8:
        verdict = "Weakly identified: omega's posterior is close to its prior."
    else:
        verdict = "Inconclusive from the posterior alone: compare with fit_without."
    return VarianceCheck(
        parameter=parameter,
        omega_posterior=q(om),
        omega_prior=q(pr),
        sd_ratio=sd_ratio,
        bayes_factor_negligible=bf,
        negligible=float(negligible),
        elpd_diff=d,
        dse=dse,
        verdict=verdict,
    )
