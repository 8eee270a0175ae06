"""Theophylline: our posterior against the Stan (brms) reference posterior.

Reference: ``shared/reference/brms_theoph*`` -- the same model and priors (one-compartment
first-order absorption, dose in mg/kg, log-normal random effects on ka, CL, V in one block
with LKJ(2), HalfNormal(1) SDs, additive error with a half-Student-t(3, 0, 2.5) prior),
4 chains x 1000 draws, 0 divergences. See :func:`nlme_bayes.examples.theophylline_model`.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from conftest import REFERENCE

# our quantity (a function of the posterior Dataset)  ->  brms variable
MAPPING = {
    "log ka_pop": (lambda p: np.log(p["ka_pop"]), "b_lKa_Intercept"),
    "log CL_pop": (lambda p: np.log(p["CL_pop"]), "b_lCl_Intercept"),
    "log V_pop": (lambda p: np.log(p["V_pop"]), "b_lV_Intercept"),
    "omega(ka)": (lambda p: p["omega"].sel(param="ka"), "sd_Subject__lKa_Intercept"),
    "omega(CL)": (lambda p: p["omega"].sel(param="CL"), "sd_Subject__lCl_Intercept"),
    "omega(V)": (lambda p: p["omega"].sel(param="V"), "sd_Subject__lV_Intercept"),
    "corr(ka,CL)": (
        lambda p: p["omega_corr"].sel(param="ka", param_bis="CL"),
        "cor_Subject__lKa_Intercept__lCl_Intercept",
    ),
    "corr(ka,V)": (
        lambda p: p["omega_corr"].sel(param="ka", param_bis="V"),
        "cor_Subject__lKa_Intercept__lV_Intercept",
    ),
    "corr(CL,V)": (
        lambda p: p["omega_corr"].sel(param="CL", param_bis="V"),
        "cor_Subject__lCl_Intercept__lV_Intercept",
    ),
    "sigma": (lambda p: p["sigma_add"], "sigma"),
}


@pytest.fixture(scope="module")
def reference_fit(theoph):
    from nlme_bayes.examples import theophylline_model

    return theophylline_model().fit(
        theoph, draws=1000, tune=1000, chains=4, random_seed=20240601, progressbar=False
    )


@pytest.mark.slow
def test_theophylline_matches_stan_reference(reference_fit):
    """Every population parameter's posterior mean agrees with Stan's.

    Both posteriors are of the same model, so their means differ only by Monte Carlo error:
    ``diff ~ N(0, mcse_ours^2 + mcse_stan^2)`` with ``mcse_stan = sd_stan/sqrt(ess_bulk_stan)``
    (about 0.007 for log ka). We require ``|diff| <= 4 * sqrt(mcse_ours^2 + mcse_stan^2)``,
    a 4-sigma test (false alarm 6e-5 per quantity, ~1e-3 for the 10 quantities), and
    additionally that the posterior SDs agree within 15 % (the SD of a sample SD from
    ~1000 effective draws is ~2-3 %, so 15 % only fails for a genuinely different posterior).
    """
    import arviz as az
    import xarray as xr

    ref = pd.read_csv(os.path.join(REFERENCE, "brms_theoph_draws_summary.csv")).set_index(
        "variable"
    )
    post = reference_fit.posterior
    ds = xr.Dataset({k: f(post).reset_coords(drop=True) for k, (f, _) in MAPPING.items()})
    mcse = az.mcse(ds, method="mean")
    report = []
    for k, (_, ref_name) in MAPPING.items():
        ours_mean = float(ds[k].mean())
        ours_sd = float(ds[k].std())
        r = ref.loc[ref_name]
        mcse_ref = r["sd"] / np.sqrt(r["ess_bulk"])
        tol = 4 * np.sqrt(float(mcse[k]) ** 2 + mcse_ref**2)
        report.append((k, ours_mean, r["mean"], tol, ours_sd, r["sd"]))
        assert abs(ours_mean - r["mean"]) <= tol, (k, ours_mean, r["mean"], tol)
        assert abs(ours_sd / r["sd"] - 1) < 0.15, (k, ours_sd, r["sd"])
    print(
        "\n".join(
            f"{k:12s} ours {a:+.4f} stan {b:+.4f} tol {t:.4f} sd {c:.4f}/{d:.4f}"
            for k, a, b, t, c, d in report
        )
    )


@pytest.mark.slow
def test_theophylline_reference_fit_converged(reference_fit):
    report = reference_fit.check_convergence()
    assert report.figures["divergences"] == 0
    assert report.figures["max_rhat"] < 1.01
    assert report.figures["min_ess_bulk"] > 400
