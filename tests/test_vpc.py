"""VPC: calibration on data simulated from the fit, binning, strata, pcVPC, plots, errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nlme_bayes.errors import SpecificationError
from nlme_bayes.simulation import observation_table
from nlme_bayes.vpc import _replicates, auto_bin_edges, plot_vpc, vpc, vpc_statistics

N_POOL = 300  # replicated studies (new subjects, one posterior draw each)
M_OBSERVED = 100  # of which this many play the observed data in turn


@pytest.fixture(scope="module")
def pool(small_theoph_fit):
    """The Theophylline design and ``N_POOL`` studies simulated from the fit's posterior."""
    obs = observation_table(small_theoph_fit)[["ID", "TIME", "DVID"]].reset_index(drop=True)
    rep = _replicates(small_theoph_fit, n_sim=N_POOL, new_subjects=True, random_seed=7)
    # shuffled: replicates come in draw order, chain by chain
    return obs, np.random.default_rng(0).permutation(rep["DV_sim"], axis=0)


def _coverage(obs, sims, *, scale=1.0):
    """Per study: the 0/1 'observed percentile inside the 90 % band', shape (M, bins * 3)."""
    inside = []
    for m in range(M_OBSERVED):
        observed = obs.assign(DV=sims[m] * scale)
        res = vpc_statistics(observed, np.delete(sims, m, axis=0), pi=(0.05, 0.5, 0.95), ci=0.9)
        inside.append(res.stats.sort_values(["pi", "bin"])["inside"].to_numpy())
    return np.array(inside, dtype=float)


def test_vpc_calibration_on_data_simulated_from_the_fit(pool):
    """Observed percentiles fall inside the 90 % simulated intervals about 90 % of the time.

    Each of the first M = 100 simulated studies plays the observed data in turn against the
    other 299 (leave-one-out): observed and simulated studies are then exchangeable draws of
    the posterior predictive with new subjects, the situation a VPC assumes. Expected rate:
    with 299 simulations and interpolated quantiles, a value falls outside the 5 %-95 %
    interval of the others with probability about 2 x 15.9 / 300, so p = 0.894.

    Tolerance: the 30 indicators of one study (10 bins x 3 percentiles) are correlated, but
    whatever their correlation the coverage fraction of one study has variance <= p (1 - p),
    so the mean over M independent studies has SD <= sqrt(0.9 * 0.1 / 100) = 0.03 (the
    binomial SD with one unit per study); we allow 3 SD = 0.09, overall and per percentile.
    The naive binomial SD, treating all 3000 indicators as independent, would be 0.0055.
    Power: with observations scaled by 1.5 (a wrong model) coverage drops to about 0.6;
    we require < 0.7, far below the 0.80 the tolerance allows.
    """
    obs, sims = pool
    inside = _coverage(obs, sims)
    assert inside.shape == (M_OBSERVED, 30)
    p = 0.894
    sd = math.sqrt(0.9 * 0.1 / M_OBSERVED)
    overall = inside.mean()
    assert abs(overall - p) <= 3 * sd, (overall, sd)
    per_pct = inside.reshape(M_OBSERVED, 3, 10).mean(axis=(0, 2))  # 5th, 50th, 95th
    assert np.all(np.abs(per_pct - p) <= 3 * sd), per_pct
    # cluster-robust SE from the studies themselves: also within 3 SE
    se = inside.mean(axis=1).std(ddof=1) / math.sqrt(M_OBSERVED)
    assert abs(overall - p) <= 3 * max(se, 1e-3), (overall, se)
    # a model that is wrong by a factor 1.5 is detected
    assert _coverage(obs, sims, scale=1.5).mean() < 0.7


def test_auto_bins_follow_the_sampling_grid(pool):
    obs, _ = pool
    t = obs["TIME"].to_numpy()
    edges = auto_bin_edges(t)
    counts = np.histogram(t, edges)[0]
    assert len(edges) == 11 and edges[0] == t.min() and edges[-1] == t.max()
    assert counts.min() >= 5 and counts.sum() == len(t)
    # nominal times with 5 % jitter: one bin per nominal time, none split
    rng = np.random.default_rng(0)
    nominal = np.array([0.5, 1, 2, 4, 8, 12, 24.0])
    jittered = (nominal * np.exp(rng.uniform(-0.05, 0.05, (10, 7)))).ravel()
    e = auto_bin_edges(jittered)
    assert len(e) == 8
    assert np.array_equal(np.searchsorted(e[1:-1], jittered), np.tile(np.arange(7), 10))
    # dense early samples and a trough window: 3 nominal times + 1 window
    sparse = np.r_[np.repeat([0.5, 1, 2], 20), rng.uniform(23, 25, 40)]
    assert np.histogram(sparse, auto_bin_edges(sparse))[0].tolist() == [20, 20, 20, 40]
    # a number of bins
    assert len(auto_bin_edges(t, n_bins=4)) == 5


def test_user_bins_and_table_layout(pool):
    obs, sims = pool
    res = vpc_statistics(obs.assign(DV=sims[0]), sims[1:], bins=[0, 1, 5, 12.5, 25])
    assert res.bins[["lower", "upper"]].to_numpy().tolist() == [
        [0, 1],
        [1, 5],
        [5, 12.5],
        [12.5, 25],
    ]
    assert res.bins["n_obs"].sum() == len(obs)
    assert len(res.stats) == 4 * 3 and res.n_sim == N_POOL - 1
    row = res.stats.iloc[0]
    assert row["sim_lo"] <= row["sim_median"] <= row["sim_hi"]
    assert set(res.observations.columns) >= {"TIME", "DV", "y", "bin", "stratum"}
    assert len(vpc_statistics(obs.assign(DV=sims[0]), sims[1:], bins=3).bins) == 3


def test_stratify_by_dvid_and_covariate(small_theoph_fit):
    fit = small_theoph_fit
    by_wt = vpc(fit, n_draws=50, stratify="WT")
    wt = fit.data.covariate_table(["WT"])["WT"]
    med = float(
        np.median(fit.data.records.set_index("ROW").loc[observation_table(fit)["ROW"], "WT"])
    )
    assert by_wt.strata == [f"WT ≤ {med:.4g}", f"WT > {med:.4g}"]
    n_low = int((observation_table(fit)["ID"].map(wt) <= med).sum())
    assert by_wt.bins.groupby("stratum", sort=False)["n_obs"].sum().tolist() == [
        n_low,
        132 - n_low,
    ]
    three = vpc(fit, n_draws=50, stratify="WT", stratify_bins=[50, 60, 75, 90])
    assert three.strata == ["50 ≤ WT < 60", "60 ≤ WT < 75", "75 ≤ WT ≤ 90"]
    assert vpc(fit, n_draws=20, stratify="DVID").strata == ["DVID = 1"]
    # two DVIDs / a categorical column: one stratum each, bins chosen per stratum
    rng = np.random.default_rng(1)
    obs = pd.DataFrame({"TIME": np.r_[np.tile([1.0, 2, 4], 10), np.tile([24.0, 48], 10)]})
    obs["DVID"] = np.r_[np.ones(30, int), np.full(20, 2)]
    obs["DV"] = rng.normal(size=50)
    res = vpc_statistics(obs, rng.normal(size=(40, 50)), stratify="DVID")
    assert res.strata == [1, 2] and res.bins.groupby("stratum").size().tolist() == [3, 2]


def test_prediction_correction():
    obs = pd.DataFrame(
        {
            "TIME": [1.0, 1.0, 1.0, 2.0, 2.0],
            "DV": [1.0, 2.0, 3.0, 4.0, 5.0],
            "PRED": [1.0, 2.0, 4.0, 0.0, 3.0],  # bin 0 median PRED 2; bin 1 median 1.5
        }
    )
    sims = np.tile(obs["DV"].to_numpy(), (3, 1))
    res = vpc_statistics(obs, sims, bins=[0.5, 1.5, 2.5], prediction_corrected=True)
    y = res.observations["y"].to_numpy()
    # PRED equal to the bin median: unchanged; otherwise DV * PRED_bin / PRED;
    # PRED = 0: left uncorrected
    np.testing.assert_allclose(y, [2.0, 2.0, 1.5, 4.0, 2.5])
    # the same correction applies to the simulations (here equal to the observations)
    assert np.allclose(res.stats["sim_median"], res.stats["observed"])
    assert res.prediction_corrected


def test_plot_vpc_writes_png(small_theoph_fit, tmp_path):
    fig = plot_vpc(
        small_theoph_fit,
        path=tmp_path / "pcvpc.png",
        n_draws=100,
        stratify="WT",
        prediction_corrected=True,
        log_y=True,
    )
    assert (tmp_path / "pcvpc.png").stat().st_size > 10_000
    assert len([a for a in fig.axes if a.get_visible()]) == 2
    res = vpc(small_theoph_fit, n_draws=100)
    fig = plot_vpc(res, path=tmp_path / "vpc.png")
    assert (tmp_path / "vpc.png").stat().st_size > 10_000 and len(fig.axes) == 1


def test_vpc_errors(small_theoph_fit, pool):
    fit = small_theoph_fit
    obs, sims = pool
    observed = obs.assign(DV=sims[0])
    with pytest.raises(
        SpecificationError, match=r"stratify='SEX' is not a column.*'DVID', 'AMT_MG'"
    ):
        vpc(fit, stratify="SEX")
    with pytest.raises(SpecificationError, match=r"bins='weekly' is not an option"):
        vpc_statistics(observed, sims, bins="weekly")
    with pytest.raises(SpecificationError, match=r"strictly increasing"):
        vpc_statistics(observed, sims, bins=[0, 5, 3, 30])
    with pytest.raises(SpecificationError, match=r"leave out .* extend the first and last edge"):
        vpc_statistics(observed, sims, bins=[0, 5, 12])
    with pytest.raises(SpecificationError, match=r"number of bins must be at least 1"):
        vpc_statistics(observed, sims, bins=0)
    with pytest.raises(SpecificationError, match=r"pi=\(0.05, 0.5, 1.2\).*strictly between 0"):
        vpc(fit, pi=(0.05, 0.5, 1.2))
    with pytest.raises(SpecificationError, match=r"pi=.*increasing"):
        vpc_statistics(observed, sims, pi=(0.95, 0.5))
    with pytest.raises(SpecificationError, match=r"ci=1.5.*strictly between 0 and 1"):
        vpc(fit, ci=1.5)
    with pytest.raises(
        SpecificationError, match=r"simulations: expected shape \(n_sim >= 2, 132\)"
    ):
        vpc_statistics(observed, sims[:, :10])
    with pytest.raises(SpecificationError, match=r"missing column\(s\) PRED"):
        vpc_statistics(observed, sims, prediction_corrected=True)
    with pytest.raises(SpecificationError, match=r"stratify_bins.*without stratify"):
        vpc(fit, stratify_bins=[0, 70, 100])
    with pytest.raises(SpecificationError, match=r"n_draws=1"):
        vpc(fit, n_draws=1)
    res = vpc_statistics(observed, sims[1:])
    with pytest.raises(SpecificationError, match=r"apply when computing a VPC from a fit"):
        plot_vpc(res, n_draws=10)
