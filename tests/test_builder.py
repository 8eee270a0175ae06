"""The emitted PyMC model: names, dims, coordinates, and errors raised before compiling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytest

import nlme_bayes as nb
from nlme_bayes.builder import build
from nlme_bayes.errors import DatasetError, SpecificationError
from nlme_bayes.examples import pheno_model, theophylline_model


def _oral(**kw):
    params = kw.pop(
        "parameters", [nb.Parameter("CL", 0.04), nb.Parameter("V", 0.5), nb.Parameter("ka", 1.5)]
    )
    return nb.Model(structure=nb.OneCompartment(route="oral"), parameters=params, **kw)


def test_theophylline_model_names_and_dims(theoph):
    built = build(theophylline_model(), theoph)
    m = built.pm_model
    assert isinstance(m, pm.Model)
    free = {rv.name for rv in m.free_RVs}
    assert free == {"CL_pop", "V_pop", "ka_pop", "chol_omega_CL_V_ka", "z_eta_CL_V_ka", "sigma_add"}
    assert set(built.offset_vars) == {"z_eta_CL_V_ka", "chol_omega_CL_V_ka"}
    dims = m.named_vars_to_dims
    assert dims["eta"] == ("subject", "param")
    assert dims["omega"] == ("param",)
    assert dims["omega_corr"] == ("param", "param_bis")
    assert dims["CL"] == ("subject",)
    assert dims["IPRED"] == ("obs",) and dims["PRED"] == ("obs",) and dims["DV"] == ("obs",)
    assert list(m.coords["subject"]) == list(range(1, 13))
    assert list(m.coords["param"]) == ["CL", "V", "ka"]
    assert len(m.coords["obs"]) == 132
    # start: typical values as given, omega 0.3 with no correlation (packed Cholesky)
    assert {k: v for k, v in built.initvals.items() if k.endswith("_pop")} == {
        "CL_pop": 0.04,
        "V_pop": 0.5,
        "ka_pop": 1.5,
    }
    np.testing.assert_allclose(built.initvals["chol_omega_CL_V_ka"], [0.3, 0, 0.3, 0, 0, 0.3])
    assert set(built.jitter_vars) == {"CL_pop", "V_pop", "ka_pop", "sigma_add"}


def test_builder_emits_plain_pymc_that_users_can_extend(theoph):
    m = theophylline_model().build(theoph)
    with m:
        pm.Deterministic("half_life", np.log(2) * m["V"] / m["CL"], dims="subject")
    assert "half_life" in m.named_vars


def test_pheno_covariates_and_diagonal_omega():
    built = build(pheno_model(), nb.datasets.phenobarbital())
    free = {rv.name for rv in built.pm_model.free_RVs}
    assert free == {
        "CL_pop",
        "V_pop",
        "V_APGAR_LT5",
        "omega_CL",
        "z_eta_CL",
        "omega_V",
        "z_eta_V",
        "sigma_prop",
    }
    # PRED at the typical values equals the closed form computed by hand for subject 1.
    import pytensor

    m = built.pm_model

    f = pytensor.function(
        [m[k] for k in ("CL_pop", "V_pop", "V_APGAR_LT5")], m["PRED"], on_unused_input="ignore"
    )
    pred = f(0.005, 1.0, 0.2)
    rec = nb.datasets.phenobarbital().records
    s1 = rec[rec["ID"] == 1]
    wt, apgar_lt5 = s1["WT"].iloc[0], s1["APGAR_LT5"].iloc[0]
    cl, v = 0.005 * wt, 1.0 * wt * (1 + 0.2 * apgar_lt5)
    doses = s1[s1["EVID"] == 1]
    t_obs = s1[(s1["EVID"] == 0) & (s1["MDV"] == 0)]["TIME"].to_numpy()
    expected = [
        sum(
            a / v * np.exp(-cl / v * (t - td))
            for td, a in zip(doses["TIME"], doses["AMT"], strict=True)
            if td <= t
        )
        for t in t_obs
    ]
    obs = built.observations
    np.testing.assert_allclose(pred[(obs["ID"] == 1).to_numpy()], expected, rtol=1e-10)


def test_categorical_and_exponential_covariates_build():
    data = nb.datasets.warfarin_pk()
    model = _oral(
        parameters=[
            nb.Parameter(
                "CL",
                0.1,
                covariates=(
                    nb.Power("WT", reference=70, exponent=0.75),
                    nb.Categorical("SEX", reference=1),
                ),
            ),
            nb.Parameter("V", 8.0, covariates=(nb.Exponential("AGE", reference=30),)),
            nb.Parameter("ka", 1.0),
        ],
        error=nb.Combined(),
    )
    m = model.build(data)
    assert m.named_vars_to_dims["CL_SEX"] == ("SEX_level",)
    assert "V_AGE" in m.named_vars and "CL_WT" not in m.named_vars  # fixed exponent
    assert {"sigma_add", "sigma_prop"} <= set(m.named_vars)


def test_centered_block_and_no_iiv():
    model = _oral(
        parameters=[
            nb.Parameter("CL", 0.04, centered=True),
            nb.Parameter("V", 0.5, centered=True),
            nb.Parameter("ka", 1.5, iiv=None),
        ]
    )
    built = build(model, nb.datasets.theophylline())
    free = {rv.name for rv in built.pm_model.free_RVs}
    assert "phi_CL_V" in free and not any(n.startswith("z_eta") for n in free)
    # centred: the sampled variable is log CL_i (Monolix's phi); eta = phi - log CL_typ
    point = built.pm_model.initial_point()
    point["phi_CL_V"] = point["phi_CL_V"] + np.array([0.1, -0.2])
    f = built.pm_model.compile_fn(
        built.pm_model.replace_rvs_by_values([built.pm_model["eta"], built.pm_model["CL"]]),
        inputs=built.pm_model.value_vars,
        on_unused_input="ignore",
    )
    eta, cl = f(point)
    np.testing.assert_allclose(eta, np.tile([0.1, -0.2], (eta.shape[0], 1)), atol=1e-12)
    np.testing.assert_allclose(np.log(cl), point["phi_CL_V"][:, 0], rtol=1e-12)
    assert list(built.pm_model.coords["param"]) == ["CL", "V"]


def test_logit_normal_parameters_build_with_their_default_and_informed_priors():
    """PyMC 6's LogitNormal is a factory class, not a ``pm.Distribution`` subclass: the
    default prior of an ``iiv="logit"`` parameter and ``Prior.typical(scale="logit")`` must
    still build, with the typical value inside (0, 1) and a finite log density."""
    model = _oral(
        parameters=[
            nb.Parameter("CL", 0.04),
            nb.Parameter("V", 0.5, prior=nb.Prior.typical(0.5, cv=40)),
            nb.Parameter("ka", 0.6, iiv="logit"),  # default LogitNormal(logit 0.6, 1)
        ]
    )
    built = build(model, nb.datasets.theophylline())
    pm_model = built.pm_model
    point = pm_model.initial_point()
    assert np.isfinite(pm_model.compile_logp()(point))
    draws = pm.draw(pm_model["ka_pop"], draws=2000, random_seed=1)
    assert 0 < draws.min() and draws.max() < 1
    assert np.median(draws) == pytest.approx(0.6, abs=0.03)
    informed = model.with_priors({"ka_pop": nb.Prior.typical(0.6, cv=30, scale="logit")})
    assert np.isfinite(build(informed, nb.datasets.theophylline()).pm_model.point_logps()["ka_pop"])


def test_proportional_error_stays_finite_when_a_prediction_underflows():
    """A sample far in the terminal phase (IPRED ~ 1e-33 at the start point, DV 5e-9): with
    SD = sigma * IPRED its log density term was -9e51 (a NUTS chain near such a point
    diverges on every transition). The floor (1e-6 of the median DV) keeps it ordinary."""
    rows = [dict(ID=1, TIME=0.0, AMT=100.0, EVID=1, DV=0.0, CMT=1)]
    for t, dv in [(0.5, 5.0), (2.0, 4.0), (8.0, 2.0), (24.0, 0.6), (600.0, 5e-9)]:
        rows.append(dict(ID=1, TIME=t, AMT=0.0, EVID=0, DV=dv, CMT=1))
    rows += [dict(r, ID=2) for r in rows]
    data = nb.read_nonmem(pd.DataFrame(rows))
    model = nb.Model(
        structure=nb.OneCompartment(route="iv"),
        parameters=[nb.Parameter("CL", 2.0), nb.Parameter("V", 15.0)],
        error=nb.Proportional(),
    )
    pm_model = build(model, data).pm_model
    point = pm_model.initial_point()
    logp = pm_model.compile_logp(vars=[pm_model["DV"]], sum=False)(point)[0]
    assert np.all(np.isfinite(logp)) and logp.min() > -100
    grad = pm_model.compile_dlogp()(point)
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() < 1e6


def test_fixed_parameter_is_not_sampled():
    model = _oral(
        parameters=[
            nb.Parameter("CL", 0.04),
            nb.Parameter("V", 0.5),
            nb.Parameter("ka", 1.5, fixed=True, iiv=None),
        ]
    )
    free = {rv.name for rv in model.build(nb.datasets.theophylline()).free_RVs}
    assert "ka_pop" not in free


# ----------------------------------------------------------------------------- errors
def test_covariate_not_in_data(theoph):
    model = _oral(
        parameters=[
            nb.Parameter("CL", 0.04, covariates=(nb.Power("CRCL", 100),)),
            nb.Parameter("V", 0.5),
            nb.Parameter("ka", 1.5),
        ]
    )
    with pytest.raises(SpecificationError, match=r"covariate\(s\) CRCL not in the data.*WT"):
        model.build(theoph)


def test_categorical_reference_level_missing():
    model = _oral(
        parameters=[
            nb.Parameter("CL", 0.1, covariates=(nb.Categorical("SEX", 3),)),
            nb.Parameter("V", 8.0),
            nb.Parameter("ka", 1.0),
        ]
    )
    with pytest.raises(SpecificationError, match=r"reference level 3 is not in the data"):
        model.build(nb.datasets.warfarin_pk())


def test_dose_into_unknown_compartment_names_rows():
    df = pd.DataFrame(
        {
            "ID": [1, 1, 1],
            "TIME": [0, 0, 1.0],
            "AMT": [10, 10, 0],
            "DV": [0, 0, 1.0],
            "CMT": [1, 3, 2],
        }
    )
    with pytest.raises(DatasetError, match=r"doses into compartment\(s\) \[3\] at row 2 \(ID 1\)"):
        _oral().build(nb.read_nonmem(df))


def test_observation_in_non_central_compartment():
    df = pd.DataFrame(
        {"ID": [1, 1], "TIME": [0, 1.0], "AMT": [10, 0], "DV": [0, 1.0], "CMT": [1, 1]}
    )
    with pytest.raises(DatasetError, match=r"observations in compartment\(s\) \[1\] at row 2"):
        _oral().build(nb.read_nonmem(df))


def test_steady_state_dose_rejected_with_rows():
    df = pd.DataFrame(
        {
            "ID": [1, 1],
            "TIME": [0, 1.0],
            "AMT": [10, 0],
            "DV": [0, 1.0],
            "CMT": [1, 2],
            "SS": [1, 0],
            "II": [12, 0],
        }
    )
    with pytest.raises(DatasetError, match=r"SS: steady-state doses .* row 1 \(ID 1\)"):
        _oral().build(nb.read_nonmem(df))


def test_zero_order_input_into_depot_builds():
    df = pd.DataFrame(
        {
            "ID": [1, 1],
            "TIME": [0, 1.0],
            "AMT": [10, 0],
            "DV": [0, 1.0],
            "CMT": [1, 2],
            "RATE": [5, 0],
        }
    )
    built = build(_oral(error=nb.Combined()), nb.read_nonmem(df))
    assert built.schedule.oral_infusion.n_pairs == 1 and built.schedule.oral.n_pairs == 0


def test_proportional_error_with_zero_prediction_names_rows(theoph):
    # Theophylline has t=0 samples at the time of the oral dose: prediction exactly 0.
    with pytest.raises(SpecificationError, match=r"rows 2, 14.*predicted concentration of 0"):
        _oral(error=nb.Proportional()).build(theoph)


def test_log_error_needs_positive_dv():
    # Warfarin has DV = 0 (below quantification) at t = 0.5 h in four subjects.
    with pytest.raises(DatasetError, match=r"LogAdditive error needs DV > 0, but DV <= 0 at rows"):
        _oral(error=nb.LogAdditive()).build(nb.datasets.warfarin_pk())


def test_error_model_missing_for_a_dvid():
    data = nb.read_nonmem(
        pd.DataFrame(
            {
                "ID": [1, 1, 1],
                "TIME": [0, 1.0, 2.0],
                "AMT": [10, 0, 0],
                "DV": [0, 1.0, 2.0],
                "CMT": [1, 2, 2],
                "DVID": [1, 1, 2],
            }
        )
    )
    with pytest.raises(SpecificationError, match=r"DVID \[2\].*only for DVID \[1\]"):
        _oral(error={1: nb.Additive()}).build(data)


def test_invalid_prior_reported_before_compiling(theoph):
    model = _oral(
        parameters=[
            nb.Parameter("CL", prior=nb.Prior("LogNormal", mu=0, width=1)),
            nb.Parameter("V", 0.5),
            nb.Parameter("ka", 1.5),
        ]
    )
    with pytest.raises(SpecificationError, match=r"prior of CL: invalid prior"):
        model.build(theoph)


def test_time_varying_covariate_refused_then_baseline_on_request():
    frame = nb.datasets.theophylline().to_dataframe()
    frame.loc[(frame["ID"] == 3) & (frame["TIME"] > 5), "WT"] += 1.0
    data = nb.read_nonmem(frame)
    model = _oral(
        parameters=[
            nb.Parameter("CL", 0.04, covariates=(nb.Power("WT", 70),)),
            nb.Parameter("V", 0.5),
            nb.Parameter("ka", 1.5),
        ]
    )
    with pytest.raises(
        DatasetError,
        match=r"WT: varies within a subject.*ID 3.*"
        r"time_varying_covariates='baseline'",
    ):
        model.build(data)
    built = build(model.replace(time_varying_covariates="baseline"), data)
    assert built.covariates.loc[3, "WT"] == frame.loc[frame["ID"] == 3, "WT"].iloc[0]
    with pytest.raises(SpecificationError, match=r"time_varying_covariates='last' is not valid"):
        model.replace(time_varying_covariates="last")


def test_linear_covariate_factor_must_stay_positive():
    """A draw where 1 + theta*(COV - ref) <= 0 has zero density (not NaN)."""
    # theta3 under an unconstrained Normal prior (pheno_model truncates it at -1)
    model = pheno_model()
    v = model.parameter("V")
    cov = (v.covariates[0], nb.Linear("APGAR_LT5", coefficient=nb.Prior("Normal", mu=0, sigma=1)))
    model = model.with_parameter(nb.Parameter("V", 1.0, covariates=cov))
    m2 = build(model, nb.datasets.phenobarbital()).pm_model
    p2 = m2.initial_point()
    p2["V_APGAR_LT5"] = np.asarray(-1.5)
    assert m2.compile_logp()(p2) == -np.inf
    p2["V_APGAR_LT5"] = np.asarray(0.2)
    assert np.isfinite(m2.compile_logp()(p2))


def test_power_covariate_needs_positive_values():
    frame = nb.datasets.theophylline().to_dataframe()
    frame.loc[frame["ID"] == 2, "WT"] = 0.0
    model = _oral(
        parameters=[
            nb.Parameter("CL", 0.04, covariates=(nb.Power("WT", 70),)),
            nb.Parameter("V", 0.5),
            nb.Parameter("ka", 1.5),
        ]
    )
    msg = r"Power\('WT'\) on CL: covariate values must be > 0, got 0.0 for ID 2;"
    with pytest.raises(SpecificationError, match=msg):
        model.build(nb.read_nonmem(frame))


def test_categorical_with_only_the_reference_level():
    frame = nb.datasets.warfarin_pk().to_dataframe()
    frame["SEX"] = 1
    model = _oral(
        parameters=[
            nb.Parameter("CL", 0.1, covariates=(nb.Categorical("SEX", 1),)),
            nb.Parameter("V", 8.0),
            nb.Parameter("ka", 1.0),
        ]
    )
    with pytest.raises(SpecificationError, match=r"Categorical\('SEX'\): only the reference level"):
        model.build(nb.read_nonmem(frame))


def test_omega_block_sd_priors_must_share_a_family(theoph):
    model = _oral(
        parameters=[
            nb.Parameter("CL", 0.04, omega_prior=nb.Prior("HalfNormal", sigma=0.5)),
            nb.Parameter("V", 0.5, omega_prior=nb.Prior("Exponential", lam=2.0)),
            nb.Parameter("ka", 1.5),
        ]
    )
    with pytest.raises(SpecificationError, match=r"SD priors in a block must be the same"):
        model.build(theoph)


def test_start_point_with_zero_density_is_named(theoph):
    """A typical value outside its prior's support: refused before building, culprit named."""
    model = _oral(
        parameters=[
            nb.Parameter("CL", typical=0.5, prior=nb.Prior("Uniform", lower=0.01, upper=0.1)),
            nb.Parameter("V", 0.5),
            nb.Parameter("ka", 1.5),
        ]
    )
    with pytest.raises(
        SpecificationError, match=r"Parameter CL: typical=0.5 is outside the support of its prior"
    ):
        model.fit(theoph, draws=10, tune=10, chains=1, progressbar=False)
