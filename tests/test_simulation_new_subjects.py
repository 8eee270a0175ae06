"""Simulation of new subjects: exact structural predictions, Omega spread, covariates, tables.

The exactness tests compare with concentrations written out by hand (superposition of
one-compartment bolus, infusion and first-order-absorption responses), not with the
structural code; the spread tests compare sample moments of many simulated random effects
with Omega, with tolerances from their sampling distributions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pheno_fits import population_fit
from scipy import stats

import nlme_bayes as nb
from nlme_bayes.errors import SpecificationError
from nlme_bayes.examples import pheno_model
from nlme_bayes.regimen import Regimen, dose_records, patient_records
from nlme_bayes.simulation import (
    prediction_intervals,
    sigma_for_dvids,
    simulate,
    simulate_exposure,
    simulation_table,
)

PHENO_POINT = {
    "CL_pop": 0.0047,
    "V_pop": 0.96,
    "V_APGAR_LT5": 0.17,
    "omega": {"CL": 0.2, "V": 0.17},
    "sigma_prop": 0.12,
}


def _one_cmt_iv(t, doses, cl, v):
    """Hand-written 1-cmt IV: doses = [(time, amount, duration)]; t after a same-time bolus."""
    k = cl / v
    c = np.zeros_like(t, dtype=float)
    for td, amt, dur in doses:
        dt = t - td
        if dur == 0:
            c += np.where(dt >= 0, amt / v * np.exp(-k * np.maximum(dt, 0)), 0.0)
        else:
            rate = amt / dur
            on = np.clip(dt, 0, dur)
            c += np.where(
                dt > 0, rate / cl * (1 - np.exp(-k * on)) * np.exp(-k * np.maximum(dt - dur, 0)), 0
            )
    return c


def test_simulation_at_fixed_parameters_is_the_exact_prediction():
    """IPRED of every simulated subject = the hand-written superposition at its CL, V."""
    a = patient_records(
        [Regimen(20.0), Regimen(2.5, interval=12.0, n_doses=8, start=12.0)],
        covariates={"WT": 1.1, "APGAR_LT5": 1},
        id=1,
    )
    b = patient_records(
        [Regimen(15.0, duration=0.5), Regimen(3.0, interval=12.0, n_doses=6, start=12, duration=1)],
        covariates={"WT": 2.4, "APGAR_LT5": 0},
        id=2,
    )
    design = nb.read_nonmem(pd.concat([a, b], ignore_index=True).assign(DV=np.nan))
    times = np.array([0.25, 1.0, 12.0, 12.5, 50.0, 96.0])
    sim = simulate(
        pheno_model(), design, times=times, n_subjects=6, n_draws=3, uncertainty=PHENO_POINT
    )
    assert sim["IPRED"].shape == (3, 36) and sim["CL"].shape == (3, 6)
    doses = {
        1: [(0.0, 20.0, 0.0)] + [(12.0 * j, 2.5, 0.0) for j in range(1, 9)],
        2: [(0.0, 15.0, 0.5)] + [(12.0 * j, 3.0, 1.0) for j in range(1, 7)],
    }
    wt = {1: 1.1, 2: 2.4}
    lt5 = {1: 1, 2: 0}
    for s in range(3):
        for j in range(sim.sizes["subject"]):
            design_id = 1 + j % 2
            sel = sim["subject_index"].values == j
            t = sim["TIME"].values[sel]
            before = sim["before_dose"].values[sel]
            cl, v = float(sim["CL"][s, j]), float(sim["V"][s, j])
            expected = _one_cmt_iv(t, doses[design_id], cl, v)
            # a pre-dose sample at a bolus time excludes that bolus
            for i in np.flatnonzero(before):
                for td, amt, dur in doses[design_id]:
                    if td == t[i] and dur == 0:
                        expected[i] -= amt / v
            np.testing.assert_allclose(sim["IPRED"].values[s, sel], expected, rtol=1e-10)
            # typical values follow the covariate model exactly; etas act log-normally
            tv_cl = PHENO_POINT["CL_pop"] * wt[design_id]
            tv_v = PHENO_POINT["V_pop"] * wt[design_id] * (1 + 0.17 * lt5[design_id])
            assert float(sim["CL_TV"][s, j]) == pytest.approx(tv_cl, rel=1e-12)
            assert float(sim["V_TV"][s, j]) == pytest.approx(tv_v, rel=1e-12)
            assert cl == pytest.approx(tv_cl * np.exp(float(sim["eta"][s, j, 0])), rel=1e-12)
            pred = _one_cmt_iv(t, doses[design_id], tv_cl, tv_v)
            for i in np.flatnonzero(before):
                pred[i] -= sum(a for td, a, d in doses[design_id] if td == t[i] and d == 0) / tv_v
            np.testing.assert_allclose(sim["PRED"].values[s, sel], pred, rtol=1e-10)


def _oral_model(blocks="block"):
    return nb.Model(
        structure=nb.OneCompartment(route="oral"),
        parameters=[nb.Parameter("CL", 2.0), nb.Parameter("V", 20.0), nb.Parameter("ka", 1.0)],
        omega=nb.Omega(blocks=blocks),
        error=nb.Combined(),
    )


ORAL_POINT = {
    "CL_pop": 2.0,
    "V_pop": 20.0,
    "ka_pop": 1.2,
    "omega": {"CL": 0.3, "V": 0.2, "ka": 0.5},
    "omega_corr": np.array([[1.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 1.0]]),
    "sigma_add": 0.05,
    "sigma_prop": 0.1,
}


def test_oral_simulation_exact_and_spread_matches_omega():
    """Oral doses: exact; and 4000 new subjects' etas have covariance Omega.

    Tolerances: each variance ratio ``s^2 / omega^2`` inside the central 99.9 % interval of
    ``chi2(n - 1) / (n - 1)``; each correlation within 3.3 / sqrt(n - 3) on Fisher's z
    scale; the residual SD ratio likewise (chi-square).
    """
    n_sub, n_draws = 2000, 2
    times = [0.5, 2.0, 12.0, 25.0]
    sim = simulate(
        _oral_model(),
        Regimen(100.0, interval=12.0, n_doses=3),
        times=times,
        n_subjects=n_sub,
        n_draws=n_draws,
        uncertainty=ORAL_POINT,
        random_seed=5,
    )
    cl, v, ka = (sim[p].values for p in ("CL", "V", "ka"))
    t = np.asarray(times)
    k = cl / v
    expected = np.zeros(cl.shape + (4,))
    for td in (0.0, 12.0, 24.0):  # the dose at 12 h precedes the sample at 12 h? No: before
        dt = t - td
        pos = dt > 0
        term = 100 * ka[..., None] / (v[..., None] * (ka - k)[..., None])
        term = term * (np.exp(-k[..., None] * dt) - np.exp(-ka[..., None] * dt))
        expected += np.where(pos, term, 0.0)
    got = sim["IPRED"].values.reshape(n_draws, n_sub, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-9)

    eta = sim["eta"].values.reshape(-1, 3)
    n = eta.shape[0]
    sd = np.array([0.3, 0.2, 0.5])
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], n - 1) / (n - 1)
    ratio = eta.var(axis=0, ddof=1) / sd**2
    assert np.all((ratio > lo) & (ratio < hi)), ratio
    corr = np.corrcoef(eta.T)
    tol = 3.3 / np.sqrt(n - 3)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        z, z0 = np.arctanh(corr[i, j]), np.arctanh(ORAL_POINT["omega_corr"][i, j])
        assert abs(z - z0) < tol, (i, j, corr[i, j])
    np.testing.assert_allclose(np.log(cl / sim["CL_TV"].values), sim["eta"].values[..., 0])
    # residual error: combined, sd = sqrt(a^2 + (b f)^2)
    f = sim["IPRED"].values
    z = (sim["DV"].values - f) / np.sqrt(0.05**2 + (0.1 * f) ** 2)
    zr = z.var(ddof=1)
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], z.size - 1) / (z.size - 1)
    assert lo < zr < hi and abs(z.mean()) < 3.3 / np.sqrt(z.size)


def test_parameter_uncertainty_uses_each_draws_omega(small_theoph_fit):
    """With posterior draws, eta = L_draw z with z ~ N(0, I): standardised etas are N(0, I)."""
    fit = small_theoph_fit
    design = nb.datasets.theophylline()
    sim = simulate(fit, design, n_draws=200, random_seed=2)
    post = fit.posterior
    idx = sim["posterior_index"].values
    sdv = post["omega"].stack(s=("chain", "draw")).transpose("s", "param").values[idx]
    corr = post["omega_corr"].stack(s=("chain", "draw")).transpose("s", "param", "param_bis")
    cov = sdv[:, :, None] * corr.values[idx] * sdv[:, None, :]
    z = np.linalg.solve(np.linalg.cholesky(cov)[:, None], sim["eta"].values[..., None])[..., 0]
    z = z.reshape(-1, 3)
    assert np.all(np.abs(z.mean(axis=0)) < 3.3 / np.sqrt(len(z)))
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], len(z) - 1) / (len(z) - 1)
    assert np.all((z.var(axis=0) > lo) & (z.var(axis=0) < hi))
    # uncertainty: the typical prediction varies between draws; at a point it does not
    assert np.ptp(sim["PRED"].values[:, 5]) > 0
    point = simulate(fit, design, n_draws=20, uncertainty=False)
    assert np.ptp(point["PRED"].values[:, 5]) == 0
    assert (point["posterior_index"].values == -1).all() and point.attrs["uncertainty"] == "point"
    # the design's own sampling times are used (DV ignored), ID coordinates kept
    assert sim.sizes["obs"] == 132 and list(sim["subject"].values) == list(design.subject_ids)


def test_covariates_resampled_jointly_from_the_fitted_subjects():
    fit = population_fit()
    sim = simulate(
        fit,
        Regimen(20.0),
        times=[2.0, 24.0],
        n_subjects=30,
        n_draws=40,
        covariates="resample",
        random_seed=1,
    )
    table = fit.data.covariate_table(["WT", "APGAR_LT5"])
    pairs = set(map(tuple, table.to_numpy()))
    got = np.stack([sim["WT"].values.ravel(), sim["APGAR_LT5"].values.ravel()], axis=1)
    assert set(map(tuple, got)) <= pairs  # whole covariate vectors of fitted subjects
    assert np.ptp(sim["WT"].values[:, 0]) > 0  # each draw samples its own subjects
    # typical values follow each subject's own covariates
    post = fit.posterior.stack(s=("chain", "draw"))
    idx = sim["posterior_index"].values
    theta1 = post["CL_pop"].values[idx]
    np.testing.assert_allclose(sim["CL_TV"].values, theta1[:, None] * sim["WT"].values)


def test_tables_and_prediction_intervals():
    sim = simulate(
        pheno_model(),
        Regimen(20.0, interval=12.0, n_doses=3),
        times=[12.0, 12.0, 30.0],
        before_dose=[True, False, False],
        n_subjects=50,
        n_draws=10,
        covariates={"WT": 1.0, "APGAR_LT5": 0},
        uncertainty=PHENO_POINT,
    )
    long = simulation_table(sim)
    assert len(long) == 10 * 150
    assert {"draw", "ID", "TIME", "DVID", "before_dose", "IPRED", "PRED", "DV"} <= set(long)
    pi = prediction_intervals(sim, var="IPRED", probs=(0.1, 0.5, 0.9))
    assert pi[["TIME", "before_dose"]].values.tolist() == [
        [12.0, False],
        [12.0, True],
        [30.0, False],
    ]
    sel = sim["TIME"].values == 30.0
    expected = np.quantile(sim["IPRED"].values[:, sel].ravel(), [0.1, 0.5, 0.9])
    np.testing.assert_allclose(pi.iloc[2][["q0.1", "q0.5", "q0.9"]].to_numpy(float), expected)
    # the dose at 12 h: just after it, higher than just before (by dose / V)
    assert (pi.iloc[0]["q0.5"] - pi.iloc[1]["q0.5"]) > 15.0
    with pytest.raises(SpecificationError, match="var='X' is not in the simulation"):
        prediction_intervals(sim, var="X")
    with pytest.raises(SpecificationError, match="probs must lie in"):
        prediction_intervals(sim, probs=[1.5])


def test_design_records_flag_pre_dose_samples():
    rec = patient_records(
        Regimen(10.0, interval=12.0, n_doses=2), observations={12.0: 1.0, 20.0: 1.0}, id=3
    )
    sim = simulate(
        pheno_model(), rec, covariates={"WT": 1, "APGAR_LT5": 0}, n_draws=2,
        uncertainty=PHENO_POINT, residual_error=False,
    )  # fmt: skip
    assert sim["before_dose"].values.tolist() == [True, False]
    assert "DV" not in sim


def test_exposure_metrics_of_simulated_subjects_match_closed_forms():
    """Bolus q12h, last of 30 intervals: Cmax, trough exact; AUC, time above MIC to O(h^2)."""
    n, tau, dose, mic = 30, 12.0, 4.0, 50.0
    ex = simulate_exposure(
        pheno_model(),
        Regimen(dose, interval=tau, n_doses=n),
        threshold=mic,
        n_subjects=300,
        n_draws=2,
        covariates={"WT": 1.2, "APGAR_LT5": 0},
        uncertainty=PHENO_POINT,
    )
    cl, v = ex["CL"].values, ex["V"].values
    k = cl / v
    cmax = dose / v * (1 - np.exp(-k * tau * n)) / (1 - np.exp(-k * tau))
    trough = cmax * np.exp(-k * tau)
    np.testing.assert_allclose(ex["cmax"].values, cmax, rtol=1e-10)
    np.testing.assert_allclose(ex["trough"].values, trough, rtol=1e-10)
    np.testing.assert_allclose(ex["cmin"].values, trough, rtol=1e-10)
    np.testing.assert_allclose(ex["tmax"].values, ex.attrs["t0"])
    auc = cmax * (1 - np.exp(-k * tau)) / k
    np.testing.assert_allclose(ex["auc"].values, auc, rtol=1e-5)
    np.testing.assert_allclose(ex["cavg"].values, auc / tau, rtol=1e-5)
    above = np.clip(np.log(cmax / mic) / k, 0, tau) / tau
    np.testing.assert_allclose(ex["time_above"].values, above, atol=1e-4)
    frac = ex["time_above"].values
    assert (frac == 1).any() and (frac == 0).any() and ((frac > 0) & (frac < 1)).any()
    assert (ex.attrs["t0"], ex.attrs["t1"]) == (tau * (n - 1), tau * n)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"covariates": None}, "needs covariate\\(s\\) WT, APGAR_LT5"),
        ({"covariates": "bogus"}, "covariates='bogus' is not valid"),
        ({"covariates": pd.DataFrame({"WT": [1.0]})}, "column\\(s\\) APGAR_LT5 missing"),
        (
            {"covariates": pd.DataFrame({"WT": [1.0, 2.0], "APGAR_LT5": [0, 1]})},
            "2 rows for 3 simulated subjects",
        ),
        ({"covariates": 3}, "covariates must be None, 'resample'"),
        ({"covariates": "resample"}, "covariates='resample' needs the fitted data"),
        ({"uncertainty": True}, "A Model has no posterior"),
        ({"uncertainty": "yes"}, "uncertainty must be True"),
        ({"n_subjects": 0}, "n_subjects must be a positive int"),
        ({"n_draws": 0}, "n_draws must be a positive int"),
        ({"times": None}, "A Regimen design needs times="),
    ],
)
def test_simulate_errors(kwargs, match):
    args = {
        "times": [1.0],
        "n_subjects": 3,
        "covariates": {"WT": 1.0, "APGAR_LT5": 0},
        "uncertainty": PHENO_POINT,
    }
    args.update(kwargs)
    with pytest.raises(SpecificationError, match=match):
        simulate(pheno_model(), Regimen(10.0), **args)


def test_simulate_rejects_bad_sources_and_designs():
    with pytest.raises(SpecificationError, match="expected a Fit or a Model"):
        simulate("model", Regimen(1.0), times=[1.0], uncertainty=PHENO_POINT)
    with pytest.raises(SpecificationError, match="design must be a Regimen"):
        simulate(pheno_model(), 42, times=[1.0], uncertainty=PHENO_POINT)
    no_obs = nb.NonmemDataset.from_records(dose_records(Regimen(1.0)))
    with pytest.raises(SpecificationError, match="has no observation records"):
        simulate(
            pheno_model(), no_obs, uncertainty=PHENO_POINT, covariates={"WT": 1, "APGAR_LT5": 0}
        )
    with pytest.raises(SpecificationError, match="Linear covariate factor"):
        simulate(
            pheno_model(), Regimen(1.0), times=[1.0], uncertainty=PHENO_POINT,
            covariates={"WT": 1.0, "APGAR_LT5": -10.0},
        )  # fmt: skip


def test_sigma_names_follow_the_fits_dvids():
    model = nb.Model(
        structure=nb.OneCompartment(route="iv"),
        parameters=[nb.Parameter("CL", 1.0), nb.Parameter("V", 10.0)],
        error={1: nb.Proportional(), 2: nb.Combined()},
    )
    sigma = {"sigma_prop_DVID1": 0.1, "sigma_add_DVID2": 1.0, "sigma_prop_DVID2": 0.2}
    assert sigma_for_dvids(model, [1, 2], [1], sigma) == {"sigma_prop": 0.1}
    assert sigma_for_dvids(model, [1, 2], [1, 2], sigma) == sigma
    with pytest.raises(SpecificationError, match="DVID \\[3\\] has no residual error model"):
        sigma_for_dvids(model, [1, 2], [3], sigma)


def test_models_with_occasion_effects_are_refused():
    model = nb.Model(
        structure=nb.OneCompartment(route="iv"),
        parameters=[nb.Parameter("CL", 1.0, iov=True), nb.Parameter("V", 10.0)],
        occasions=nb.Occasions(column="OCC"),
    )
    point = {"CL_pop": 1.0, "V_pop": 10.0, "omega": {"CL": 0.2, "V": 0.2}, "sigma_add": 0.1}
    with pytest.raises(SpecificationError, match="inter-occasion variability"):
        simulate(model, Regimen(10.0), times=[1.0], uncertainty=point)
