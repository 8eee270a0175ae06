"""Priors in pharmacometric terms, priors from a previous fit, and prior predictive checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import nlme_bayes as nb
from nlme_bayes.examples import pheno_model, theophylline_model
from nlme_bayes.informed_priors import apply_priors, prior_names, priors_from_fit
from nlme_bayes.prior_predictive import plot_prior_predictive, prior_predictive


# ----------------------------------------------------------------------------- typical value + CV
def test_typical_value_and_cv_give_the_lognormal():
    p = nb.Prior.typical(0.04, cv=30)
    mu, sigma = p.kwargs["mu"], p.kwargs["sigma"]
    dist = stats.lognorm(s=sigma, scale=math.exp(mu))
    assert dist.median() == pytest.approx(0.04, rel=1e-5)
    assert math.sqrt(math.expm1(sigma**2)) == pytest.approx(0.30, rel=1e-5)  # CV of LogNormal
    assert "median 0.04, CV 30 %" in p.describe()


def test_typical_on_other_scales():
    assert nb.Prior.typical(-2.0, cv=50, scale="normal") == nb.Prior("Normal", mu=-2.0, sigma=1.0)
    f = nb.Prior.typical(0.8, cv=20, scale="logit")
    assert f.dist == "LogitNormal" and f.kwargs["mu"] == pytest.approx(math.log(4), rel=1e-5)


def test_interval_and_omega():
    p = nb.Prior.interval(2.0, 50.0, prob=0.9)
    dist = stats.lognorm(s=p.kwargs["sigma"], scale=math.exp(p.kwargs["mu"]))
    assert dist.ppf([0.05, 0.95]) == pytest.approx([2.0, 50.0], rel=1e-5)
    om = nb.Prior.omega(30, uncertainty=50)
    assert math.exp(om.kwargs["mu"]) == pytest.approx(math.sqrt(math.log1p(0.09)), rel=1e-5)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: nb.Prior.typical(0.04, cv=0), r"cv must be a positive number"),
        (lambda: nb.Prior.typical(-1.0, cv=30), r"value must be a positive number"),
        (lambda: nb.Prior.typical(1.5, cv=30, scale="logit"), r"must be in \(0, 1\)"),
        (lambda: nb.Prior.typical(1.0, cv=30, scale="exp"), r"scale='exp' is not valid"),
        (lambda: nb.Prior.interval(5.0, 1.0), r"upper must exceed lower"),
        (lambda: nb.Prior.interval(1.0, 5.0, prob=1.5), r"prob must be in \(0, 1\)"),
        (lambda: nb.Prior.omega(30, uncertainty=-1), r"uncertainty must be a positive number"),
    ],
)
def test_pharmacometric_prior_errors(make, match):
    with pytest.raises(nb.SpecificationError, match=match):
        make()


@pytest.mark.parametrize(
    ("prior", "text"),
    [
        (nb.Prior("Normal", mu=0.0, sigma=2.0), "mean 0, SD 2, 95 % interval [-3.92, 3.92]"),
        (nb.Prior("HalfNormal", sigma=1.0), "median 0.674, 95 % interval [0.0313, 2.24]"),
        (nb.Prior("Gamma", alpha=2.0, beta=1.0), "median 1.6"),  # quantiles of draws
    ],
)
def test_describe(prior, text):
    assert text in prior.describe()


# ----------------------------------------------------------------------------- applying priors
def test_prior_names_and_apply_by_name():
    model = pheno_model()
    assert "V_APGAR_LT5" in prior_names(model) and "sigma_prop" in prior_names(model)
    new = apply_priors(
        model,
        {
            "CL_pop": nb.Prior.typical(0.0047, cv=20),
            "V_APGAR_LT5": nb.Prior("Normal", mu=0.2, sigma=0.1),
            "omega_V": nb.Prior.omega(20),
            "sigma_prop": nb.Prior("HalfNormal", sigma=0.2),
        },
    )
    assert new.parameter("CL").prior == nb.Prior.typical(0.0047, cv=20)
    assert new.parameter("V").covariates[1].coefficient == nb.Prior("Normal", mu=0.2, sigma=0.1)
    assert new.parameter("V").omega_prior == nb.Prior.omega(20)
    assert new.error.sigma == nb.Prior("HalfNormal", sigma=0.2)
    assert new.parameter("CL").covariates == model.parameter("CL").covariates  # untouched


def test_apply_priors_to_combined_dvid_errors_iov_and_exponents():
    model = nb.Model(
        structure=nb.OneCompartment(route="iv"),
        parameters=[
            nb.Parameter(
                "CL",
                1.0,
                iov=True,
                covariates=(nb.Power("WT", 70, exponent=nb.Prior("Normal", mu=0.75, sigma=0.2)),),
            ),
            nb.Parameter("V", 10.0),
        ],  # fmt: skip
        error={1: nb.Combined(), 2: nb.Additive()},
        occasions=nb.Occasions(),
    )
    names = prior_names(model)
    assert {"sigma_add_DVID1", "sigma_prop_DVID1", "omega_iov_CL", "CL_WT"} <= set(names)
    hn = nb.Prior("HalfNormal", sigma=0.1)
    new = model.with_priors({"sigma_prop_DVID1": hn, "omega_iov_CL": hn, "CL_WT": hn})
    assert new.error[1].proportional == hn and new.error[2] == model.error[2]
    assert new.parameter("CL").iov_prior == hn
    assert new.parameter("CL").covariates[0].exponent == hn


@pytest.mark.parametrize(
    ("priors", "match"),
    [
        (
            {"KA_pop": nb.Prior("Normal", sigma=1)},
            r"'KA_pop' not in the model; valid names: CL_pop",
        ),
        ({"CL_pop": 0.004}, r"CL_pop must be a Prior"),
    ],
)
def test_apply_priors_errors(priors, match):
    with pytest.raises(nb.SpecificationError, match=match):
        apply_priors(pheno_model(), priors)


def test_priors_from_a_previous_fit(small_theoph_fit):
    priors = priors_from_fit(small_theoph_fit)
    model = small_theoph_fit.model
    assert set(priors) == set(prior_names(model))
    post = small_theoph_fit.posterior
    cl = priors["CL_pop"]
    assert cl.dist == "LogNormal"
    geo_mean = float(np.exp(np.log(post["CL_pop"]).mean()))
    assert math.exp(cl.kwargs["mu"]) == pytest.approx(geo_mean, rel=1e-5)  # 6 digits kept
    wide = priors_from_fit(small_theoph_fit, inflate=2.0)
    # both are rounded to 6 significant digits: equal to that precision
    assert wide["omega_CL"].kwargs["sigma"] == pytest.approx(
        2 * priors["omega_CL"].kwargs["sigma"], rel=1e-5
    )
    again = model.with_priors(priors)
    assert again.parameter("V").prior == priors["V_pop"]
    with pytest.raises(nb.SpecificationError, match=r"inflate must be > 0"):
        priors_from_fit(small_theoph_fit, inflate=0)


# ----------------------------------------------------------------------------- prior predictive
@pytest.fixture(scope="module")
def pheno_pp():
    return prior_predictive(pheno_model(), nb.datasets.phenobarbital(), n_draws=40, n_points=20)


def test_prior_predictive_shapes_and_numbers(pheno_pp):
    pp = pheno_pp
    assert pp.draws["DV"].shape == (40, 155)
    assert pp.draws["CL"].dims == ("draw", "subject")
    assert pp.curves["IPRED"].shape == (40, 59 * 20)
    assert set(pp.summary().index) >= {"CL_pop", "V_pop", "omega_CL", "sigma_prop"}
    # weak priors (LogNormal sigma=2): the data sit inside the wide prior predictive range
    assert pp.coverage(0.9) > 0.9
    with pytest.raises(nb.SpecificationError, match=r"prob must be in \(0, 1\)"):
        pp.coverage(1.0)


def test_prior_predictive_plot(pheno_pp, tmp_path):
    fig = plot_prior_predictive(pheno_pp, tmp_path / "pp.png", n_curves=10)
    assert len(fig.axes) == 2 and (tmp_path / "pp.png").exists()


def test_prior_predictive_argument_errors():
    with pytest.raises(nb.SpecificationError, match=r"n_draws must be an integer >= 2"):
        prior_predictive(pheno_model(), nb.datasets.phenobarbital(), n_draws=1)


def test_prior_predictive_of_a_censored_model():
    data = nb.datasets.theophylline()
    model = theophylline_model().replace(blq=nb.BLQ("M3", lloq=1.0))
    pp = model.prior_predictive(data, n_draws=20, n_points=5)
    assert pp.observations["BLQ"].sum() == int((data.observations()["DV"] < 1.0).sum())
    assert float(pp.draws["DV"].min()) >= 1.0  # simulated values below the LLOQ are censored
