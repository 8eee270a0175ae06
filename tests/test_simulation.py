"""The NumPy-side simulation core agrees with the PyMC model it mirrors."""

from __future__ import annotations

import numpy as np
import pytest

from nlme_bayes.simulation import (
    Predictor,
    apply_iiv,
    obs_logpdf,
    posterior_draws,
    residual_sd,
    simulate_replicates,
)


def test_predictor_and_apply_iiv_reproduce_ipred_and_pred(small_theoph_fit):
    fit = small_theoph_fit
    d = posterior_draws(fit, n_draws=25, random_seed=1)
    built = fit._ensure_built()
    pred = Predictor(fit.model.structure, built.schedule)
    ipred = pred(apply_iiv(fit.model, d.typical, d.eta))
    flat = fit.posterior["IPRED"].transpose("chain", "draw", "obs").values.reshape(-1, 132)
    np.testing.assert_allclose(ipred, flat[d.index], rtol=1e-10, atol=1e-12)
    flat_pred = fit.posterior["PRED"].transpose("chain", "draw", "obs").values.reshape(-1, 132)
    np.testing.assert_allclose(pred(d.typical), flat_pred[d.index], rtol=1e-10, atol=1e-12)


def test_obs_logpdf_matches_pymc_log_likelihood(small_theoph_fit):
    fit = small_theoph_fit
    d = posterior_draws(fit, n_draws=10, random_seed=2)
    obs = fit._ensure_built().observations
    ipred = fit.posterior["IPRED"].transpose("chain", "draw", "obs").values.reshape(-1, 132)
    ipred = ipred[d.index]
    sd, is_log = residual_sd(fit.model, ipred, obs["DVID"].to_numpy(), d.sigma)
    lp = obs_logpdf(obs["DV"].to_numpy(), ipred, sd, is_log)
    ll = fit.results["log_likelihood"].dataset["DV"].transpose("chain", "draw", "obs")
    np.testing.assert_allclose(lp, ll.values.reshape(-1, 132)[d.index], rtol=1e-10)


def test_log_scale_logpdf_has_jacobian():
    from scipy import stats

    dv, ipred, sd = np.array([2.0]), np.array([1.5]), np.array([0.3])
    lp = obs_logpdf(dv, ipred, sd, np.array([True]))
    assert lp[0] == pytest.approx(stats.lognorm(s=0.3, scale=1.5).logpdf(2.0), rel=1e-12)


def test_simulate_replicates_shapes_and_spread(small_theoph_fit):
    sim = simulate_replicates(small_theoph_fit, n_draws=50, random_seed=3)
    assert sim["DV_sim"].dims == ("draw", "obs") and sim["DV_sim"].shape == (50, 132)
    assert list(sim["ID"].values[:2]) == [1, 1]
    # new subjects spread more than the fitted ones (between-subject variability added)
    same = simulate_replicates(small_theoph_fit, n_draws=50, random_seed=3, new_subjects=False)
    late = sim["TIME"].values > 5
    assert (
        sim["IPRED_sim"].values[:, late].std(0).mean()
        > same["IPRED_sim"].values[:, late].std(0).mean()
    )


def test_predictions_are_compiled_once_per_structure_and_schedule(theoph):
    """Equal schedules built separately share one compiled prediction; another schedule or
    structure gets its own, and the shared one predicts the same as a fresh compile."""
    import nlme_bayes as nb
    from nlme_bayes import simulation
    from nlme_bayes.events import build_schedule

    oral = nb.OneCompartment(route="oral")
    first = Predictor(oral, build_schedule(theoph, oral)[0])
    again = Predictor(oral, build_schedule(theoph, oral)[0])
    assert again._f is first._f
    fewer = nb.read_nonmem(theoph.to_dataframe().query("ID <= 6"))
    assert Predictor(oral, build_schedule(fewer, oral)[0])._f is not first._f
    other = nb.OneCompartment(route="oral")
    assert Predictor(other, build_schedule(theoph, other)[0])._f is not first._f
    params = {"CL": np.full(12, 0.04), "V": np.full(12, 0.5), "ka": np.full(12, 1.5)}
    simulation._PREDICTIONS.clear()
    fresh = Predictor(oral, build_schedule(theoph, oral)[0])
    assert fresh._f is not first._f
    np.testing.assert_array_equal(again(params), fresh(params))
