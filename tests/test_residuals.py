"""NPDE and posterior-predictive residuals; the goodness-of-fit figure that shows them."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import nlme_bayes as nb
from nlme_bayes.errors import SpecificationError
from nlme_bayes.plots import plot_gof
from nlme_bayes.residuals import _residual_scale, npde, npde_statistics, pp_residuals
from nlme_bayes.simulation import observation_table
from nlme_bayes.vpc import _replicates


def test_npde_of_data_simulated_from_the_model_are_standard_normal(small_theoph_fit):
    """NPDE of data simulated from the fit itself are N(0, 1).

    10 datasets with the Theophylline design are simulated from the posterior, each
    subject from its own replicated study (new subject, its own posterior draw), so that
    subjects are independent as the npde assume; they are compared with 500 other
    simulated studies: 1320 npde. Under the model each npde is N(0, 1) (the rank of a fixed
    linear combination is uniform for exchangeable vectors) and the decorrelation makes a
    subject's npde nearly independent. Tolerances for n = 1320: mean within
    3 SE = 3 / sqrt(n) = 0.083 of 0; variance within the central 99.8 % of
    chi2(n - 1) / (n - 1) (0.89 to 1.12); Kolmogorov-Smirnov p > 0.01.
    """
    fit = small_theoph_fit
    obs = observation_table(fit)
    subject = obs["subject"].to_numpy()  # 0..11
    n_sub, n_data, k = 12, 10, 500
    rep = _replicates(fit, n_sim=n_sub * n_data + k, new_subjects=True, random_seed=21)
    # shuffled: replicates come in draw order, chain by chain
    rep = np.random.default_rng(0).permutation(rep["DV_sim"], axis=0)
    sims = rep[n_sub * n_data :]
    values = []
    for d in range(n_data):
        data = rep[d * n_sub + subject, np.arange(len(obs))]  # subject i from study d*12+i
        values.append(npde_statistics(data, sims, obs["ID"])["npde"].to_numpy())
    values = np.concatenate(values)
    n = values.size
    assert n == 1320 and np.isfinite(values).all()
    assert abs(values.mean()) <= 3 / math.sqrt(n), values.mean()
    lo, hi = stats.chi2.ppf([0.001, 0.999], n - 1) / (n - 1)
    assert lo <= values.var(ddof=1) <= hi, (values.var(ddof=1), lo, hi)
    assert stats.kstest(values, "norm").pvalue > 0.01


def test_npde_decorrelates_within_subject():
    """Correlated normal vectors: pde are correlated within a subject, npde are not."""
    rng = np.random.default_rng(3)
    n_sub, k = 300, 800
    cov = 0.5 * np.eye(3) + 0.5  # correlation 0.5
    obs = rng.multivariate_normal(np.zeros(3), cov, size=n_sub)
    sims = rng.multivariate_normal(np.zeros(3), cov, size=(k, n_sub)).reshape(k, 3 * n_sub)
    res = npde_statistics(obs.ravel(), sims, np.repeat(np.arange(n_sub), 3))
    z = res["npde"].to_numpy().reshape(n_sub, 3)
    naive = stats.norm.ppf(np.clip((sims < obs.ravel()).mean(0), 0.5 / k, 1 - 0.5 / k))
    naive = naive.reshape(n_sub, 3)
    tol = 3 / math.sqrt(n_sub)  # SE of a correlation near 0
    assert np.corrcoef(naive[:, 0], naive[:, 1])[0, 1] > 0.5 - tol
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < tol
    assert abs(np.corrcoef(z[:, 1], z[:, 2])[0, 1]) < tol


def test_npde_table_and_pde_bounds(small_theoph_fit):
    k = 500
    table = npde(small_theoph_fit, n_draws=k, random_seed=1)
    assert list(table.columns) == ["ID", "TIME", "DVID", "DV", "PRED", "EPRED", "pde", "npde"]
    assert len(table) == 132 and np.isfinite(table[["PRED", "EPRED", "npde"]]).all().all()
    assert table["pde"].between(1 / (2 * k), 1 - 1 / (2 * k)).all()
    np.testing.assert_allclose(table["npde"], stats.norm.ppf(table["pde"]))


def test_pp_residuals_table(small_theoph_fit):
    table = pp_residuals(small_theoph_fit, n_draws=300)
    assert list(table.columns) == [
        "ID",
        "TIME",
        "DVID",
        "DV",
        "PRED",
        "IPRED",
        "DV_rep_mean",
        "DV_rep_sd",
        "ppres",
    ]
    assert len(table) == 132 and np.isfinite(table.drop(columns="ID")).all().all()
    assert (table["DV_rep_sd"] > 0).all()
    # residual SD (sigma ~ 0.7) dominates the replicate spread; residuals are O(1)
    assert 0.3 < table["ppres"].std() < 1.5


def test_log_scale_error_models_use_log_dv():
    fake = SimpleNamespace(model=SimpleNamespace(error=nb.LogAdditive()))
    obs = pd.DataFrame({"DVID": [1, 1]})
    y, s = _residual_scale(fake, obs, np.array([1.0, np.e]), np.array([[np.e, 1.0]]))
    np.testing.assert_allclose(y, [0.0, 1.0])
    np.testing.assert_allclose(s, [[1.0, 0.0]])


def test_residual_errors(small_theoph_fit):
    with pytest.raises(SpecificationError, match=r"n_draws=10: .*more replicates than .* \(11\)"):
        npde(small_theoph_fit, n_draws=10)
    with pytest.raises(SpecificationError, match=r"n_draws=1: .*integer >= 2"):
        pp_residuals(small_theoph_fit, n_draws=1)
    with pytest.raises(SpecificationError, match=r"expected simulations of shape \(K, 3\)"):
        npde_statistics(np.zeros(3), np.zeros((10, 4)), [1, 1, 1])
    with pytest.raises(SpecificationError, match=r"subject 1 has 3 observations but only 3"):
        npde_statistics(np.zeros(3), np.random.default_rng(0).normal(size=(3, 3)), [1, 1, 1])


def test_plot_gof_renders_png(small_theoph_fit, tmp_path):
    fig = plot_gof(small_theoph_fit, tmp_path / "gof.png", n_draws=200)
    assert (tmp_path / "gof.png").stat().st_size > 10_000
    assert len(fig.axes) == 6
    titles = [a.get_title() for a in fig.axes]
    assert "NPDE vs TIME" in titles and "DV vs IPRED" in titles
