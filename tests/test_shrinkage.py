"""Shrinkage on a design where the answer is known: rich subjects vs one-sample subjects.

One-compartment IV bolus, ``C = Dose/V * exp(-CL/V * t)``, CL = 2 L/h, V = 20 L (k = 0.1/h),
log-normal IIV with omega = 0.3 on both, additive error SD 0.05 mg/L (1-2 % of the
concentrations of 3-5 mg/L in the first hours). Subjects 1-15 are rich (10-12 samples over
0.25-30 h), subjects 16-30 have one sample each, drawn between 0.5 and 3 h, and subjects 31
and 32 have a dose but no observation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import nlme_bayes as nb
from nlme_bayes.errors import SpecificationError
from nlme_bayes.shrinkage import (
    bayesian_shrinkage,
    bayesian_shrinkage_summary,
    epsilon_shrinkage,
    eta_shrinkage,
    own_data_estimates,
    plot_borrowing_strength,
    shrinkage_table,
)

RICH = list(range(1, 16))
SPARSE = list(range(16, 31))
NO_DATA = [31, 32]
GRID = np.array([0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 30])


def simulate(seed: int = 20240) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    eta = rng.normal(0.0, 0.3, size=(len(RICH) + len(SPARSE), 2))
    rows = []
    for i, sid in enumerate(RICH + SPARSE):
        cl, v = 2.0 * np.exp(eta[i, 0]), 20.0 * np.exp(eta[i, 1])
        rows.append(dict(ID=sid, TIME=0.0, AMT=100.0, DV=0.0, EVID=1, MDV=1))
        if sid in RICH:
            times = np.sort(rng.choice(GRID, size=10 + i % 3, replace=False))
        else:
            times = np.array([rng.uniform(0.5, 3.0)])
        conc = 100.0 / v * np.exp(-cl / v * times) + 0.05 * rng.standard_normal(len(times))
        rows += [
            dict(ID=sid, TIME=float(t), AMT=0.0, DV=float(c), EVID=0, MDV=0)
            for t, c in zip(times, conc, strict=True)
        ]
    rows += [dict(ID=sid, TIME=0.0, AMT=100.0, DV=0.0, EVID=1, MDV=1) for sid in NO_DATA]
    return pd.DataFrame(rows)


def iv_model(**kw) -> nb.Model:
    return nb.Model(
        name="iv_rich_sparse",
        structure=nb.OneCompartment(route="iv"),
        parameters=[nb.Parameter("CL", 2.0), nb.Parameter("V", 20.0, **kw)],
        omega=nb.Omega(blocks="diagonal"),
        error=nb.Additive(),
    )


@pytest.fixture(scope="module")
def fit():
    with pytest.warns(nb.DatasetWarning):  # subjects 31 and 32 have no observations
        data = nb.read_nonmem(simulate())
    return iv_model().fit(
        data, draws=400, tune=400, chains=2, random_seed=3, progressbar=False, check=False
    )


def test_sampling_is_usable(fit):
    """The shrinkage tests below need a posterior, not a sampling failure."""
    report = fit.check_convergence()
    assert report.figures["divergences"] == 0
    assert report.figures["max_rhat"] < 1.05
    assert report.figures["min_ess_bulk"] > 100


def test_bayesian_shrinkage_rich_vs_one_sample_subjects(fit):
    """Per-subject B = Var(eta_i | y) / E[omega^2 | y] where the linear-Gaussian math says.

    Linearise ``log C`` in the etas: one sample at time t has sensitivities
    ``g = (-k t, k t - 1)`` for (CL, V) and relative error ``s ~ 0.05/4 ~ 0.012``. The
    subject's posterior covariance is ``omega^2 I - omega^4 g g' / (s^2 + omega^2 |g|^2)``
    (Sherman-Morrison), so ``B_CL = 1 - omega^2 g_CL^2 / (s^2 + omega^2 |g|^2) >= 0.84`` for
    k t <= 0.3 (t <= 3 h; 0.997 at 0.5 h) and ``B_CL + B_V >= 1``: one observation informs one
    direction only. Rich subjects inform both: ``B ~ s^2 / (n omega^2 g^2) ~ 0.01-0.05``.
    Subjects without data keep the population distribution, ``B = 1``. The thresholds (rich
    < 0.2, one-sample CL > 0.6, sum > 0.8, no-data within 0.3 of 1) sit more than three Monte
    Carlo SEs from these values: a variance estimated from ESS >= 100 draws has a relative SE
    of sqrt(2/100) = 0.14, and averaging over 15 subjects shrinks that further.
    """
    b = bayesian_shrinkage(fit)
    assert list(b.columns) == ["CL", "V"] and list(b.index) == RICH + SPARSE + NO_DATA
    rich, sparse, none = b.loc[RICH], b.loc[SPARSE], b.loc[NO_DATA]
    print("rich mean", rich.mean().round(3).to_dict(), "sparse mean", sparse.mean().round(3))
    assert (rich.mean() < 0.2).all()
    assert sparse["CL"].mean() > 0.6
    assert sparse.sum(axis=1).mean() > 0.8
    np.testing.assert_allclose(none.to_numpy(), 1.0, atol=0.3)
    summary = bayesian_shrinkage_summary(fit)
    assert list(summary.columns) == ["mean", "median", "min", "max", "n_subjects"]
    assert (summary["n_subjects"] == 30).all()  # the two subjects without data are left out
    np.testing.assert_allclose(summary["mean"], b.loc[RICH + SPARSE].mean(), rtol=1e-12)


def test_eta_shrinkage_matches_numpy(fit):
    """1 - SD_i(E[eta_i]) / omega over the 30 observed subjects, from the raw arrays."""
    post = fit.posterior
    eta = post["eta"].transpose("chain", "draw", "subject", "param").values
    omega = post["omega"].transpose("chain", "draw", "param").values.reshape(-1, 2)
    observed = np.isin(post["subject"].values, RICH + SPARSE)
    sd = eta.mean(axis=(0, 1))[observed].std(axis=0, ddof=1)
    expected_median = 1 - sd / np.median(omega, axis=0)
    expected_per_draw = np.mean(1 - sd[None, :] / omega, axis=0)
    got_median = eta_shrinkage(fit)
    got_per_draw = eta_shrinkage(fit, omega="per_draw")
    assert list(got_median.index) == ["CL", "V"]
    np.testing.assert_allclose(got_median.to_numpy(), expected_median, rtol=1e-12)
    np.testing.assert_allclose(got_per_draw.to_numpy(), expected_per_draw, rtol=1e-12)
    # subjects without data would add two EBEs at 0 and change the figure: they are excluded
    sd_all = eta.mean(axis=(0, 1)).std(axis=0, ddof=1)
    assert not np.allclose(1 - sd_all / np.median(omega, axis=0), expected_median, rtol=1e-6)
    # CL is barely informed by the one-sample subjects: more shrinkage than V
    assert got_median["CL"] > got_median["V"]


def test_epsilon_shrinkage_matches_independent_iwres(fit):
    post = fit.posterior
    obs = fit.data.observations()
    ipred = post["IPRED"].mean(("chain", "draw")).values
    sigma = float(post["sigma_add"].mean())
    iwres = (obs["DV"].to_numpy() - ipred) / sigma
    expected = 1 - np.std(iwres, ddof=1)
    got = epsilon_shrinkage(fit)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-10)


def test_shrinkage_table(fit):
    table = shrinkage_table(fit)
    assert list(table.index) == ["eta(CL)", "eta(V)", "epsilon"]
    assert table.loc["eta(V)", "shrinkage"] == pytest.approx(eta_shrinkage(fit)["V"], rel=1e-12)
    assert table.loc["eta(CL)", "shrinkage_per_draw"] == pytest.approx(
        eta_shrinkage(fit, omega="per_draw")["CL"], rel=1e-12
    )
    assert table.loc["epsilon", "shrinkage"] == pytest.approx(epsilon_shrinkage(fit), rel=1e-12)
    assert np.isnan(table.loc["epsilon", "bayesian_mean"])
    print(table.round(3).to_string())


def test_own_data_estimates(fit):
    """Rich subjects: own-data eta identifiable and near the posterior mean (B ~ 0.05, so the
    prior's pull B*eta is a fraction of the posterior SD); one sample cannot identify two etas
    (singular information); no data, nothing."""
    own = own_data_estimates(fit)
    post = fit.posterior["eta"]
    for p in ("CL", "V"):
        assert own.loc[RICH, f"identifiable_{p}"].all()
        assert not own.loc[SPARSE + NO_DATA, f"identifiable_{p}"].any()
        mean = post.sel(param=p).mean(("chain", "draw")).to_pandas().loc[RICH]
        sd = post.sel(param=p).std(("chain", "draw")).to_pandas().loc[RICH]
        assert (np.abs(own.loc[RICH, f"eta_{p}"] - mean) < 4 * sd).all()
    assert (own.loc[NO_DATA, ["eta_CL", "eta_V"]] == 0).all().all()
    assert own["n_obs"].loc[SPARSE].eq(1).all()


def test_plot_borrowing_strength(fit, tmp_path):
    fig = plot_borrowing_strength(fit, path=tmp_path / "borrow.png")
    assert (tmp_path / "borrow.png").stat().st_size > 20_000
    assert len(fig.axes) == 2
    # subjects sorted by number of observations: the two without data first
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels[:2] == ["31\n0", "32\n0"] and labels[-1].endswith("\n12")
    one = plot_borrowing_strength(fit, "V")
    assert len(one.axes) == 1


def test_errors(fit):
    with pytest.raises(SpecificationError, match=r"omega='mean' is not valid; choose one of"):
        eta_shrinkage(fit, omega="mean")
    with pytest.raises(SpecificationError, match=r"No parameter 'ka'.*random effect: CL, V"):
        plot_borrowing_strength(fit, param="ka")
    no_iiv_v = nb.Fit(model=iv_model(iiv=None), data=fit.data, results=fit.results)
    with pytest.raises(SpecificationError, match=r"'V' has no random effect \(iiv=None\)"):
        plot_borrowing_strength(no_iiv_v, param="V")
    tree = fit.results.copy(deep=True)
    tree["posterior"] = xr.DataTree(tree["posterior"].dataset.drop_vars(["IPRED", "PRED"]))
    no_pred = nb.Fit(model=fit.model, data=fit.data, results=tree)
    with pytest.raises(SpecificationError, match=r"needs IPRED.*store_predictions=True"):
        epsilon_shrinkage(no_pred)
