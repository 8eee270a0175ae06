"""The fit object: ArviZ groups, coordinates, reproducibility, summary, save/load, plots."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import nlme_bayes as nb
from nlme_bayes.errors import SpecificationError
from nlme_bayes.examples import theophylline_model


def test_results_groups_and_names(small_theoph_fit):
    tree = small_theoph_fit.results
    for group in (
        "posterior",
        "sample_stats",
        "log_likelihood",
        "observed_data",
        "constant_data",
        "prior",
        "prior_predictive",
        "posterior_predictive",
        "posterior_internal",
    ):
        assert group in tree.children, group
    post = tree["posterior"].dataset
    assert not [v for v in post.data_vars if v.startswith(("z_", "chol_"))]
    assert {
        "CL_pop",
        "V_pop",
        "ka_pop",
        "omega",
        "omega_corr",
        "eta",
        "CL",
        "V",
        "ka",
        "IPRED",
        "PRED",
        "sigma_add",
    } <= set(post.data_vars)
    assert post["eta"].dims == ("chain", "draw", "subject", "param")
    assert list(post["subject"].values) == list(range(1, 13))
    ll = tree["log_likelihood"].dataset["DV"]
    assert ll.dims == ("chain", "draw", "obs") and ll.sizes["obs"] == 132
    assert list(ll["ID"].values[:3]) == [1, 1, 1]
    np.testing.assert_allclose(ll["TIME"].values[:3], [0.0, 0.25, 0.57])
    assert tree["posterior_predictive"].dataset["DV"].sizes["obs"] == 132
    assert "z_eta_CL_V_ka" in tree["posterior_internal"].dataset
    attrs = tree.attrs
    assert attrs["sampler"] == "nutpie" and attrs["random_seed"] == 11  # "auto"


def test_individual_parameters_are_typical_times_exp_eta(small_theoph_fit):
    post = small_theoph_fit.posterior
    for name in ("CL", "V", "ka"):
        expected = post[f"{name}_pop"] * np.exp(post["eta"].sel(param=name))
        np.testing.assert_allclose(
            post[name].values, expected.transpose(*post[name].dims).values, rtol=1e-10
        )
    # omega and the correlation matrix are those of the sampled eta's prior: unit diagonal
    np.testing.assert_allclose(
        np.diagonal(post["omega_corr"].values, axis1=-2, axis2=-1), 1.0, atol=1e-12
    )


def test_summary_table(small_theoph_fit):
    table = small_theoph_fit.summary()
    assert list(table.index[:3]) == ["CL_pop", "V_pop", "ka_pop"]
    for col in (
        "mean",
        "sd",
        "median",
        "ci2.5%",
        "ci97.5%",
        "mcse_mean",
        "rhat",
        "ess_bulk",
        "ess_tail",
    ):
        assert col in table.columns
    om = small_theoph_fit.posterior["omega"].sel(param="CL").values
    cv = 100 * np.sqrt(np.exp(om**2) - 1)
    assert table.loc["CV%(CL)", "mean"] == pytest.approx(cv.mean(), rel=1e-12)
    assert {"corr(CL,V)", "corr(CL,ka)", "corr(V,ka)", "sigma_add"} <= set(table.index)
    text = small_theoph_fit.report()
    assert "Convergence:" in text and "CL_pop" in text


def test_convergence_report_flags_short_runs(small_theoph_fit):
    report = small_theoph_fit.check_convergence()
    # 2 x 200 draws cannot give 400 effective draws of every quantity: the report must say so.
    assert not report.ok
    assert any("ESS" in p for p in report.problems)
    assert any("draws" in a for a in report.advice)


def test_predictions_and_ebe(small_theoph_fit):
    df = small_theoph_fit.predictions()
    assert list(df.columns) == ["ID", "TIME", "DVID", "DV", "PRED", "IPRED", "IWRES"]
    assert len(df) == 132 and np.isfinite(df["IWRES"]).all()
    ebe = small_theoph_fit.ebe()
    assert list(ebe.index) == list(range(1, 13))
    assert {"CL", "V", "ka", "eta_CL", "eta_V", "eta_ka"} <= set(ebe.columns)


def test_same_seed_identical_draws(theoph):
    kw = dict(
        draws=30, tune=30, chains=2, random_seed=5, progressbar=False, check=False, sampler="pymc"
    )
    a = theophylline_model().fit(theoph, **kw)
    b = theophylline_model().fit(theoph, **kw)
    xr.testing.assert_equal(a.posterior, b.posterior)  # values and coords; attrs hold timestamps
    c = theophylline_model().fit(theoph, **{**kw, "random_seed": 6})
    assert not np.array_equal(a.posterior["CL_pop"].values, c.posterior["CL_pop"].values)


def test_same_seed_identical_draws_nutpie(theoph, monkeypatch):
    """Same seed, same draws -- and every nutpie compile (through ``pm.sample`` and through
    our compile cache) is done without Numba's fast-math, whose reassociated sums made a
    density compiled afresh and the same one loaded from PyTensor's disk cache differ in the
    last bit: a seeded fit then drew differently on a machine's first run than on later ones
    (``inference.REPRODUCIBLE_COMPILE``)."""
    import nutpie
    import pytensor

    from nlme_bayes.compiled import CompileCache

    seen = []
    real = nutpie.compile_pymc_model

    def spy(*args, **kwargs):
        seen.append(pytensor.config.numba__fastmath)
        return real(*args, **kwargs)

    monkeypatch.setattr(nutpie, "compile_pymc_model", spy)
    kw = dict(
        draws=30, tune=30, chains=2, random_seed=5, progressbar=False, check=False, sampler="nutpie"
    )
    a = theophylline_model().fit(theoph, **kw)
    b = theophylline_model().fit(theoph, **kw)
    np.testing.assert_array_equal(a.posterior["CL_pop"].values, b.posterior["CL_pop"].values)
    assert a.results.attrs["sampler"] == "nutpie"
    theophylline_model().fit(theoph, reuse=CompileCache(), **kw)
    assert seen == [False, False, False]
    assert pytensor.config.numba__fastmath  # PyTensor's own default is left as it was


def test_save_load_round_trip(small_theoph_fit, tmp_path):
    path = tmp_path / "fit.nc"
    small_theoph_fit.save(path)
    back = nb.load(path)
    assert back.model == small_theoph_fit.model
    assert back.data.records.equals(small_theoph_fit.data.records)
    assert back.data.covariates == small_theoph_fit.data.covariates
    for group in small_theoph_fit.results.children:
        xr.testing.assert_identical(
            back.results[group].dataset, small_theoph_fit.results[group].dataset
        )
    for key, value in small_theoph_fit.results.attrs.items():
        assert back.results.attrs[key] == value, key
    assert back.summary().equals(small_theoph_fit.summary())
    # the loaded fit rebuilds its PyMC model for posterior predictive checks
    assert back.pm_model["CL"] is not None


def test_save_load_string_ids(tmp_path):
    import pandas as pd

    frame = nb.datasets.theophylline().to_dataframe()
    frame["ID"] = "S" + frame["ID"].astype(int).astype(str).str.zfill(2)
    frame["SEXTXT"] = np.where(frame["WT"] > 70, "M", "F")
    data = nb.read_nonmem(frame)
    fit = theophylline_model().fit(
        data, draws=20, tune=20, chains=1, random_seed=1, progressbar=False, check=False
    )
    fit.save(tmp_path / "s.nc")
    back = nb.load(tmp_path / "s.nc")
    assert back.data.subject_ids == data.subject_ids
    pd.testing.assert_frame_equal(back.data.records, data.records)
    assert list(back.posterior["subject"].values) == list(data.subject_ids)
    # one chain: R-hat cannot be computed; the report says so (no NumPy all-NaN warning)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report = back.check_convergence()
    assert not report.ok and np.isnan(report.figures["max_rhat"])
    assert any("one chain: R-hat" in p for p in report.problems)


def test_load_errors(tmp_path):
    with pytest.raises(nb.NLMEError, match="no such file"):
        nb.load(tmp_path / "missing.nc")
    other = tmp_path / "other.nc"
    xr.DataTree(xr.Dataset({"x": ("a", [1, 2])})).to_netcdf(other, engine="h5netcdf")
    with pytest.raises(nb.NLMEError, match="not an nlme_bayes results file"):
        nb.load(other)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sampler": "stan"}, r"sampler='stan' is not valid; choose one of auto, numpyro"),
        ({"draws": 0}, r"draws must be a positive int"),
        ({"tune": -1}, r"tune must be a non-negative int"),
        ({"target_accept": 1.2}, r"target_accept must be in \(0, 1\)"),
        ({"random_seed": -3}, r"random_seed must be a non-negative int"),
        ({"mass_matrix": "full"}, r"mass_matrix='full' is not valid; choose one of 'dense'"),
        ({"sampler": "pymc", "mass_matrix": "low_rank"}, r"needs sampler='nutpie'"),
        ({"sampler": "nutpie", "mass_matrix": "dense"}, r"needs sampler='pymc'"),
    ],
)
def test_fit_argument_errors(theoph, kwargs, message):
    with pytest.raises(SpecificationError, match=message):
        theophylline_model().fit(theoph, **kwargs)


def test_plots_written(small_theoph_fit, tmp_path):
    gof = small_theoph_fit.plot_gof(tmp_path / "gof.png")
    ind = small_theoph_fit.plot_individual(tmp_path / "ind.png", n_draws=40)
    assert (tmp_path / "gof.png").stat().st_size > 10_000
    assert (tmp_path / "ind.png").stat().st_size > 10_000
    assert len(gof.axes) == 6 and len([a for a in ind.axes if a.get_visible()]) >= 12


def test_individual_curves_match_ipred_at_observation_times(small_theoph_fit):
    """The dense-grid predictions use the same model: at t = 0 oral, IPRED is exactly 0 and
    the curve's median passes near the posterior-median IPRED at observation times."""
    from nlme_bayes.predictions import individual_curves

    curves = individual_curves(small_theoph_fit, n_points=50, n_draws=100)
    assert set(curves.columns) == {"ID", "TIME", "IPRED", "IPRED_lo", "IPRED_hi", "PRED"}
    first = curves.groupby("ID").head(1)
    np.testing.assert_allclose(first["IPRED"], 0.0, atol=1e-12)
    assert (curves["IPRED_lo"] <= curves["IPRED"] + 1e-12).all()
    assert (curves["IPRED"] <= curves["IPRED_hi"] + 1e-12).all()


def test_no_subject_starts_in_the_flip_flop_mode(small_theoph_fit):
    """Regression (seed 11): jittered non-centred offsets used to scatter subjects into the
    ka < k mode, where they stayed (36 % of one chain's subjects, omega(V) 1.56 vs 0.15).
    Chains now start with every subject at the typical values."""
    post = small_theoph_fit.posterior
    flipped = (post["ka"] < post["CL"] / post["V"]).mean(("draw", "subject"))
    assert float(flipped.max()) == 0.0, flipped.values
    omega_v = post["omega"].sel(param="V").median("draw")
    assert float(omega_v.max()) < 0.4, omega_v.values  # reference posterior mean 0.146


def test_individual_plot_of_a_two_output_model(tmp_path):
    """A joint model (DVID 1 concentration, DVID 2 a response): the dense curves come per
    output, equal the structural prediction of each output at the observation times, and the
    plot gives every subject one panel per output (or only the output asked for)."""
    from nlme_bayes.predictions import individual_curves

    structure = nb.ODEModel(
        states=("central",),
        parameters=("CL", "V"),
        rhs=lambda t, A, p: {"central": -p["CL"] / p["V"] * A["central"]},
        outputs={"C": lambda A, p: A["central"] / p["V"],
                 "E": lambda A, p: 100.0 * A["central"] / (p["V"] + A["central"])},
        dvid={1: "C", 2: "E"},
    )  # fmt: skip
    rows = []
    for sid, (cl, v) in enumerate([(1.0, 10.0), (1.5, 12.0), (0.8, 9.0), (1.2, 11.0)], start=1):
        rows.append((sid, 0.0, 100.0, 0.0, 1, 1, 1))
        for t in (1.0, 4.0, 12.0):
            c = 100.0 / v * np.exp(-cl / v * t)
            rows.append((sid, t, 0.0, c * 1.05, 0, 0, 1))
            rows.append((sid, t, 0.0, 100.0 * c / (1.0 + c) * 0.97, 0, 0, 2))
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["ID", "TIME", "AMT", "DV", "EVID", "MDV", "DVID"])
    model = nb.Model(
        name="pk_response",
        structure=structure,
        parameters=[nb.Parameter("CL", 1.0), nb.Parameter("V", 10.0)],
        omega=nb.Omega(blocks="diagonal"),
        error={1: nb.Proportional(), 2: nb.Additive()},
    )
    fit = model.fit(nb.read_nonmem(frame), draws=40, tune=40, chains=1, random_seed=1,
                    progressbar=False, check=False, sampler="nutpie")  # fmt: skip
    curves = individual_curves(fit, n_points=13, n_draws=20)
    assert sorted(curves["DVID"].unique()) == [1, 2]
    assert len(curves) == 4 * 2 * 13
    # the grid 0, 1, ..., 12 h holds the observation times: IPRED there from the structure
    post = fit.posterior
    draws = {n: post[n].isel(chain=0).values for n in ("CL", "V")}  # (draw, subject)
    for sid, k in ((1, 0), (3, 2)):
        for dvid in (1, 2):
            got = curves[(curves["ID"] == sid) & (curves["DVID"] == dvid)].set_index("TIME")
            c = (
                100.0
                / draws["V"][:, k, None]
                * np.exp(-draws["CL"][:, k, None] / draws["V"][:, k, None] * np.array([4.0, 12.0]))
            )
            want = c if dvid == 1 else 100.0 * c / (1.0 + c)
            # the curves use 20 of the 40 draws: the medians agree within the spread
            lo, hi = np.quantile(want, [0.02, 0.98], axis=0)
            assert np.all(got.loc[[4.0, 12.0], "IPRED"].to_numpy() >= lo - 1e-9)
            assert np.all(got.loc[[4.0, 12.0], "IPRED"].to_numpy() <= hi + 1e-9)
    fig = fit.plot_individual(tmp_path / "both.png", n_points=13, n_draws=20)
    titles = [a.get_title() for a in fig.axes if a.get_visible()]
    assert len(titles) == 8 and "ID 1 · DVID 2" in titles
    fig = fit.plot_individual(None, n_points=13, n_draws=20, dvid=2)
    assert len([a for a in fig.axes if a.get_visible()]) == 4
    with pytest.raises(ValueError, match=r"dvid=3: the observed outputs are DVID \[1, 2\]"):
        fit.plot_individual(None, dvid=3)


def test_predictive_refuses_draws_that_lack_a_sampled_variable(small_theoph_fit):
    """A saved fit whose draws miss one of the rebuilt model's free variables (another
    version's parameterisation) must not get predictions with that variable drawn from its
    prior: a clear error instead."""
    fit = small_theoph_fit
    tree = fit.results.copy()
    del tree["posterior_internal"]  # where the non-centred offsets z_eta_* live
    old = nb.Fit(model=fit.model, data=fit.data, results=tree, built=fit.built)
    with pytest.raises(nb.SamplingError, match=r"lack .*z_eta_CL_V_ka.*Refit"):
        old.sample_posterior_predictive(random_seed=1)


def test_auto_sampler_gives_pymc_for_rosenbrock_odes_with_three_or_more_states():
    """Numba compiles a 3-state RODAS4 gradient far more slowly than C (warfarin: not done in
    9 min against ~2 min), so "auto" picks PyMC's NUTS there; explicit schemes, two-state
    systems and closed forms stay on nutpie, and so do mass_matrix="low_rank" and reuse=
    (nutpie's alone)."""
    from nlme_bayes.inference import choose_sampler
    from nlme_bayes.structural import ode_templates

    load = ode_templates.load
    assert choose_sampler("auto", load("turnover_oral")) == "pymc"
    assert choose_sampler("auto", load("tmdd_qss_iv", method="rodas3")) == "pymc"
    assert choose_sampler("auto", load("turnover_oral", method="dopri5")) == "nutpie"
    assert choose_sampler("auto", load("mm_oral")) == "nutpie"
    assert choose_sampler("auto", theophylline_model().structure) == "nutpie"
    assert choose_sampler("auto", load("turnover_oral"), mass_matrix="low_rank") == "nutpie"
    assert choose_sampler("auto", load("turnover_oral"), reuse=object()) == "nutpie"
    assert choose_sampler("nutpie", load("turnover_oral")) == "nutpie"  # asked for: given


@pytest.mark.parametrize("dense", [False, True])
def test_pymc_nuts_adapts_from_the_mean_of_the_chain_starts(theoph, dense):
    """The step given to pm.sample in place of its own init: adaptive diagonal (or full)
    mass matrix started at the mean of the chains' starts on the unconstrained scale, with the
    fit's target_accept and max_treedepth."""
    from pymc.blocking import DictToArrayBijection
    from pymc.step_methods.hmc import quadpotential

    from nlme_bayes.builder import build
    from nlme_bayes.inference import pymc_nuts

    m = build(theophylline_model(), theoph).pm_model
    starts = [{"CL_pop": 0.02}, {"CL_pop": 0.08}]
    step = pymc_nuts(m, starts, dense=dense, seed=3, target_accept=0.93, max_treedepth=7)
    kind = quadpotential.QuadPotentialFullAdapt if dense else quadpotential.QuadPotentialDiagAdapt
    assert isinstance(step.potential, kind)
    assert step.target_accept == 0.93 and step.max_treedepth == 7
    ip = m.initial_point()
    points = [DictToArrayBijection.map({**ip, "CL_pop_log__": np.log(v["CL_pop"])}).data
              for v in starts]  # fmt: skip
    np.testing.assert_allclose(step.potential._initial_mean, np.mean(points, axis=0))
    assert np.isclose(step.potential._initial_mean, np.log(0.04)).sum() == 1  # log sqrt(.02*.08)
