"""Individual forecasting for a new patient: against a full refit, the population predictive,
a simulated truth, and an independent MAP optimisation.

The population is pheno without subject 5 (``pheno_fits.population_fit``); subject 5 is the
new patient, and ``pheno_fits.full_fit`` is the refit that includes them.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
from pheno_fits import HELD_OUT, bolus_concentration, full_fit, population_fit, split
from scipy import optimize, stats

import nlme_bayes as nb
from nlme_bayes.errors import SpecificationError
from nlme_bayes.forecast import (
    ForecastWarning,
    forecast,
    map_estimate,
    refit_with_patients,
    weighted_quantile,
)
from nlme_bayes.marginal import population_parameters
from nlme_bayes.regimen import Regimen, patient_records
from nlme_bayes.simulation import simulate

HISTORY = [Regimen(20.0), Regimen(2.5, interval=12.0, n_doses=8, start=12.0)]
COVS = {"WT": 1.2, "APGAR_LT5": 0}


def _doses():
    return [(0.0, 20.0)] + [(12.0 * j, 2.5) for j in range(1, 9)]


@pytest.fixture(scope="module")
def fit():
    return population_fit()


@pytest.fixture(scope="module")
def held_fc(fit):
    _, held = split()
    return forecast(fit, held, random_seed=1)


def _weighted_moments(q, w):
    m = float(np.sum(w * q))
    return m, float(np.sqrt(np.sum(w * (q - m) ** 2)))


def test_forecast_agrees_with_a_full_refit_including_the_patient(held_fc):
    """The new patient's posterior of log CL and log V: forecast vs refit (59 subjects).

    Tolerance: 4 combined Monte Carlo standard errors, for the mean and for the SD. The
    forecast's MCSE is ``sd / sqrt(ESS)`` with ESS from the draws' autocorrelation times the
    weights' efficiency; the refit's from ArviZ (``az.mcse``, mean and sd). Observed with
    these seeds: |z| <= 1.6 (means), SDs within 5 %.
    """
    refit = full_fit()
    fc = held_fc
    assert fc.pareto_k[0] < 0.7 and fc.ess[0] > 0.5 * fc.n_draws
    for p in ("CL", "V"):
        q = np.log(fc.individual[p][0])
        w = fc.weights[0]
        mean_f, sd_f = _weighted_moments(q, w)
        ess_f = fc.ess[0] * fc._ess_of(q)
        mcse_f, mcse_sd_f = sd_f / np.sqrt(ess_f), sd_f / np.sqrt(2 * ess_f)
        da = np.log(refit.posterior[p].sel(subject=HELD_OUT)).reset_coords(drop=True)
        ds = da.to_dataset(name="x")
        mean_r, sd_r = float(da.mean()), float(da.std())
        mcse_r = float(az.mcse(ds)["x"])
        mcse_sd_r = float(az.mcse(ds, method="sd")["x"])
        print(f"{p}: forecast {mean_f:.4f} (sd {sd_f:.4f}), refit {mean_r:.4f} (sd {sd_r:.4f})")
        assert abs(mean_f - mean_r) <= 4 * np.hypot(mcse_f, mcse_r)
        assert abs(sd_f - sd_r) <= 4 * np.hypot(mcse_sd_f, mcse_sd_r)
        # the summary reports the same numbers on the natural scale
        row = fc.summary().loc[(HELD_OUT, p)]
        assert row["mean"] == pytest.approx(np.sum(w * fc.individual[p][0]))
        assert row["lo"] < row["median"] < row["hi"] and row["mcse"] < 0.1 * row["sd"]


def test_without_levels_the_forecast_is_the_population_predictive(fit):
    """No levels: uniform weights, typical values = the covariate model per draw, eta ~ N(0, Omega).

    Standardised etas ``L_s^-1 eta_s`` must be N(0, I) (Kolmogorov-Smirnov, means within
    3.3 SE, variances inside the 99.9 % chi-square interval), and the individual CL must
    have the distribution of :func:`simulate`'s new subjects with the same covariates
    (two-sample KS), two independent code paths.
    """
    rec = patient_records(HISTORY, covariates=COVS, id=900)
    fc = forecast(fit, rec, random_seed=2)
    assert np.all(fc.log_weights == fc.log_weights[0, 0]) and np.isnan(fc.pareto_k[0])
    post = fit.posterior.stack(s=("chain", "draw"))
    th1 = post["CL_pop"].values[fc.index]
    th2, th3 = post["V_pop"].values[fc.index], post["V_APGAR_LT5"].values[fc.index]
    np.testing.assert_allclose(fc.typical["CL"][0], th1 * 1.2, rtol=1e-12)
    np.testing.assert_allclose(fc.typical["V"][0], th2 * 1.2 * (1 + th3 * 0), rtol=1e-12)
    z = np.linalg.solve(fc.omega_chol, fc.eta[0][..., None])[..., 0]
    n = len(z)
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], n - 1) / (n - 1)
    for j in range(2):
        assert abs(z[:, j].mean()) < 3.3 / np.sqrt(n)
        assert lo < z[:, j].var(ddof=1) < hi
        assert stats.kstest(z[:, j], "norm").pvalue > 0.001
    sim = simulate(fit, rec.assign(DV=0.0, EVID=np.where(rec["AMT"] > 0, 1, 0)).iloc[:1]
                   .pipe(lambda r: pd.concat([r, r.assign(AMT=0.0, EVID=0, MDV=0, TIME=1.0)])),
                   n_draws=2000, random_seed=3)  # fmt: skip
    assert stats.ks_2samp(fc.individual["CL"][0], sim["CL"].values.ravel()).pvalue > 0.001
    # the MAP without data is the typical value
    assert fc.map.loc[900, "eta_CL"] == pytest.approx(0.0, abs=1e-6)


def test_many_levels_concentrate_on_the_truth(fit):
    """A simulated patient (eta_CL = +0.3, eta_V = -0.2), levels every 6 h for 10 days.

    The posterior mean of log CL and log V must be within 3 posterior SD of the truth, and
    the SD must shrink with the data: 0 > 2 > 40 levels, to a Bayesian shrinkage
    ``Var_post / omega^2`` below 0.1 (observed: ~0.06).
    """
    rng = np.random.default_rng(7)
    point = population_parameters(fit)
    wt = 1.2
    cl = point["CL_pop"] * wt * np.exp(0.3)
    v = point["V_pop"] * wt * np.exp(-0.2)
    reg = [Regimen(20.0), Regimen(2.5, interval=12.0, n_doses=20, start=12.0)]
    doses = [(0.0, 20.0)] + [(12.0 * j, 2.5) for j in range(1, 21)]
    sds = []
    for times in ([], [2.0, 60.0], np.arange(1.0, 241.0, 6.0)):
        times = np.asarray(times, float)
        conc = bolus_concentration(times, doses, cl, v, before_dose=True)
        dv = conc * (1 + point["sigma_prop"] * rng.standard_normal(len(times)))
        rec = patient_records(reg, observations=dict(zip(times, dv, strict=True)), covariates=COVS)
        fc = forecast(fit, rec, n_draws=1000, random_seed=4)
        w = fc.weights[0]
        m_cl, sd_cl = _weighted_moments(np.log(fc.individual["CL"][0]), w)
        m_v, sd_v = _weighted_moments(np.log(fc.individual["V"][0]), w)
        sds.append((sd_cl, sd_v))
        if len(times) > 2:
            assert abs(m_cl - np.log(cl)) < 3 * sd_cl and abs(m_v - np.log(v)) < 3 * sd_v
            # Bayesian shrinkage Var_post / omega^2: the patient's own data dominate
            assert (sd_cl / point["omega"]["CL"]) ** 2 < 0.1
            assert (sd_v / point["omega"]["V"]) ** 2 < 0.1
    print("posterior SD of (log CL, log V) with 0, 2, 40 levels:", np.round(sds, 4).tolist())
    assert sds[0][0] > sds[1][0] > sds[2][0] and sds[0][1] > sds[1][1] > sds[2][1]


def test_map_matches_an_independent_optimisation(fit):
    """MAP eta at the posterior medians = scipy's minimum of the hand-written log joint."""
    rec = patient_records(HISTORY, observations={2.0: 17.0, 95.5: 24.0}, covariates=COVS)
    got = map_estimate(fit, rec)
    point = population_parameters(fit)
    tv_cl, tv_v = point["CL_pop"] * 1.2, point["V_pop"] * 1.2
    om = np.array([point["omega"]["CL"], point["omega"]["V"]])
    sig = point["sigma_prop"]
    t, y = np.array([2.0, 95.5]), np.array([17.0, 24.0])

    def neg_log_joint(eta):
        f = bolus_concentration(t, _doses(), tv_cl * np.exp(eta[0]), tv_v * np.exp(eta[1]))
        return np.sum(np.log(sig * f) + 0.5 * ((y - f) / (sig * f)) ** 2) + 0.5 * np.sum(
            (eta / om) ** 2
        )

    best = optimize.minimize(neg_log_joint, np.zeros(2), method="Nelder-Mead",
                             options={"xatol": 1e-9, "fatol": 1e-12})  # fmt: skip
    np.testing.assert_allclose(got.loc[1, ["eta_CL", "eta_V"]].to_numpy(float), best.x, atol=2e-4)
    assert got.loc[1, "CL"] == pytest.approx(tv_cl * np.exp(best.x[0]), rel=2e-4)
    # the fast option: Laplace draws around the mode, at one population point
    fm = forecast(fit, rec, method="map", n_draws=500)
    assert (fm.index == -1).all() and fm.n_draws == 500
    s = fm.summary()
    assert s.loc[(1, "eta_CL"), "mean"] == pytest.approx(
        best.x[0], abs=4 * s.loc[(1, "eta_CL"), "mcse"]
    )


def test_predictions_bands_and_population_band(held_fc):
    fc = held_fc
    pred = fc.predict(regimen=Regimen(3.0, interval=12.0, n_doses=4, start=144.0), n_points=60)
    assert {"IPRED", "IPRED_lo", "IPRED_hi", "DV_lo", "DV_hi", "POP", "POP_lo", "POP_hi"} <= set(
        pred
    )
    late = pred["TIME"] > 20
    p = pred[late]
    assert (p["IPRED_lo"] <= p["IPRED"]).all() and (p["IPRED"] <= p["IPRED_hi"]).all()
    assert ((p["DV_hi"] - p["DV_lo"]) > (p["IPRED_hi"] - p["IPRED_lo"])).all()
    # the levels inform: the individual band is narrower than the population band
    assert ((p["IPRED_hi"] - p["IPRED_lo"]) < (p["POP_hi"] - p["POP_lo"])).mean() > 0.9
    assert pred["TIME"].max() == pytest.approx(192.0)
    # the posterior median at the measured times: the levels inside the 90 % prediction bands
    obs = fc.data.observations()
    at = fc.predict(times=obs["TIME"].to_numpy(), before_dose=True, population=False)
    assert ((obs["DV"].to_numpy() > at["DV_lo"]) & (obs["DV"].to_numpy() < at["DV_hi"])).all()
    # concentration draws: weighted mean of IPRED at a time
    rows, draws = fc.concentration_draws([50.0])
    assert draws.shape == (fc.n_draws, 1) and rows["ID"].tolist() == [HELD_OUT]
    fig = fc.plot()
    assert len(fig.axes) == 1


def test_tables_diagnostics_and_update_population_off(fit, held_fc):
    fc = held_fc
    d = fc.diagnostics()
    assert d.loc[HELD_OUT, "n_levels"] == 3 and 0.5 < d.loc[HELD_OUT, "acceptance"] <= 1
    ds = fc.draws()
    assert ds["CL"].dims == ("ID", "sample") and float(ds["weight"].sum()) == pytest.approx(1)
    assert "min ESS of weights" in repr(fc)
    _, held = split()
    fu = forecast(fit, held, update_population=False, n_draws=400)
    assert np.ptp(fu.log_weights) == 0 and fu.n_draws == 400 and np.isnan(fu.pareto_k[0])


def test_several_patients_are_forecast_independently(fit):
    """Two patients in one call = each alone (same distribution: means within 4 MCSE)."""
    a = patient_records(HISTORY, observations={2.0: 17.0, 95.5: 24.0}, covariates=COVS, id=1)
    b = patient_records(HISTORY, observations={2.0: 12.0}, covariates={"WT": 2.0, "APGAR_LT5": 1},
                        id=2)  # fmt: skip
    both = forecast(fit, pd.concat([a, b]), n_draws=1000, random_seed=5)
    alone = forecast(fit, b, n_draws=1000, random_seed=6)
    sb, sa = both.summary().loc[2], alone.summary().loc[2]
    for p in ("CL", "V"):
        tol = 4 * np.hypot(sb.loc[p, "mcse"], sa.loc[p, "mcse"])
        assert abs(sb.loc[p, "mean"] - sa.loc[p, "mean"]) < tol


def test_an_atypical_patient_warns_and_refit_helper(fit):
    rec = patient_records(HISTORY, observations={2.0: 51.0, 95.5: 72.0}, covariates=COVS, id=77)
    with pytest.warns(ForecastWarning, match="Pareto k > 0.7 for patient\\(s\\) 77"):
        forecast(fit, rec, n_draws=1000)
    clash = patient_records(HISTORY, observations={2.0: 17.0}, covariates=COVS, id=1)
    with pytest.raises(SpecificationError, match="already subjects of the fit"):
        refit_with_patients(fit, clash)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "laplace"}, "method='laplace' is not valid"),
        ({"n_steps": 0}, "n_steps must be a positive int"),
        ({"n_draws": 0}, "n_draws must be a positive int"),
        ({"method": "map", "n_draws": -1}, "n_draws must be a positive int"),
    ],
)
def test_forecast_option_errors(fit, kwargs, match):
    rec = patient_records(HISTORY, observations={2.0: 17.0}, covariates=COVS)
    with pytest.raises(SpecificationError, match=match):
        forecast(fit, rec, **kwargs)


def test_forecast_data_errors(fit):
    no_cov = patient_records(HISTORY, observations={2.0: 17.0}, covariates={"WT": 1.2})
    with pytest.raises(SpecificationError, match="needs covariate\\(s\\) APGAR_LT5"):
        forecast(fit, no_cov)
    pd_level = patient_records(HISTORY, observations={2.0: 17.0}, covariates=COVS, dvid=2)
    with pytest.raises(SpecificationError, match="DVID \\[2\\] has no residual error model"):
        forecast(fit, pd_level)
    with pytest.raises(SpecificationError, match="new patients' NONMEM-style records"):
        forecast(fit, "patient.csv")
    # a level before the first dose: predicted 0, proportional error -> zero likelihood
    impossible = patient_records(HISTORY, observations={0.0: 5.0}, covariates=COVS)
    with pytest.raises(SpecificationError, match="zero likelihood under every population draw"):
        forecast(fit, impossible, n_draws=50)
    bad = patient_records(HISTORY, observations={2.0: 17.0}, covariates=COVS)
    with pytest.raises(SpecificationError, match="unknown patient ID"):
        forecast(fit, bad, n_draws=50).predict(regimen={5: Regimen(1.0)})
    with pytest.raises(SpecificationError, match="ci_prob must lie in"):
        forecast(fit, bad, n_draws=50).summary(ci_prob=1.5)


def test_forecast_needs_a_fit_and_refuses_occasion_effects(fit):
    from types import SimpleNamespace

    rec = patient_records(HISTORY, observations={2.0: 17.0}, covariates=COVS)
    with pytest.raises(SpecificationError, match="forecast needs a Fit"):
        forecast(fit.model, rec)
    iov = fit.model.replace(
        parameters=(fit.model.parameter("CL").__class__(**{**vars(fit.model.parameter("CL")),
                                                           "iov": True}),
                    fit.model.parameter("V")),
        occasions=nb.Occasions(column="OCC"),
    )  # fmt: skip
    with pytest.raises(SpecificationError, match="inter-occasion variability"):
        forecast(SimpleNamespace(model=iov, posterior=fit.posterior), rec)


def test_ode_model_forecasts_like_its_closed_form(fit):
    """An ODE structural model forecasts through its tiled schedule.

    The population fit's posterior, read through the linear one-compartment IV *ODE* (same
    parameters CL, V; RODAS4 on a fine grid), must forecast the held-out patient as the
    closed form does: the same seeds, so the same population draws and Metropolis-Hastings
    proposals, and the two log densities differ only by the ODE's error (< 1e-6 relative
    here) -- individual draws agree to 1e-4, the weights to 1e-3.
    """
    import dataclasses

    _, held = split()
    ode = nb.ode_templates.load("one_cmt_iv_linear", max_step=1.0)
    ode_fit = dataclasses.replace(fit, model=fit.model.replace(structure=ode))
    fc_cf = forecast(fit, held, random_seed=3, n_draws=200)
    fc_ode = forecast(ode_fit, held, random_seed=3, n_draws=200)
    for p in ("CL", "V"):
        np.testing.assert_allclose(fc_ode.individual[p], fc_cf.individual[p], rtol=1e-4)
    np.testing.assert_allclose(fc_ode.weights, fc_cf.weights, rtol=1e-3, atol=1e-9)
    assert fc_ode.pareto_k[0] < 0.7


def test_default_prediction_grid_has_doses_and_infusion_ends(fit):
    rec = patient_records(
        [Regimen(20.0, duration=0.5), Regimen(3.0, interval=12.0, n_doses=2, start=12.0)],
        observations={5.0: 15.0},
        covariates=COVS,
    )
    fc = forecast(fit, rec, n_draws=100)
    pred = fc.predict(n_points=10, population=False)
    for td in (0.0, 0.5, 12.0, 24.0):  # each dose and infusion end: just before and after
        assert set(pred.loc[pred["TIME"] == td, "before_dose"]) == {True, False}
    peak = pred[(pred["TIME"] == 0.5) & ~pred["before_dose"]]["IPRED"].iloc[0]
    assert peak == pytest.approx(pred["IPRED"][pred["TIME"] <= 5].max())


def test_weighted_quantile_matches_numpy_for_equal_weights():
    x = np.random.default_rng(0).normal(size=(4001, 3))
    q = weighted_quantile(x, np.ones(4001), [0.05, 0.5, 0.95])
    np.testing.assert_allclose(q, np.quantile(x, [0.05, 0.5, 0.95], axis=0, method="hazen"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = weighted_quantile(np.full((3, 1), np.nan), np.ones(3), [0.5])
    assert np.isnan(out).all()


def test_refit_with_patients_combines_the_data(fit, monkeypatch):
    """The refit sees the fit's subjects and the patients, with the fit's settings."""
    _, held = split()
    seen = {}

    def fake_fit(self, data, **kwargs):
        seen["ids"], seen["kwargs"] = data.subject_ids, kwargs
        return "refit"

    monkeypatch.setattr(nb.Model, "fit", fake_fit)
    assert refit_with_patients(fit, held, progressbar=False) == "refit"
    assert len(seen["ids"]) == 59 and seen["ids"][-1] == HELD_OUT
    assert seen["kwargs"]["draws"] == 1000 and seen["kwargs"]["progressbar"] is False
