"""Simulation-based calibration: the statistics, the error paths, and one small study.

The small study (``test_small_sbc_study_is_calibrated``) runs the whole pipeline -- prior
draws, NONMEM CSVs, a batch plan on a 2-worker Dask LocalCluster, ranks -- on the Emax
template (6 subjects, 30 replicates, 2 chains x 250 draws), and has a negative control: the
same fits, ranked against a truth moved by one posterior SD, must fail the test. The
full-size studies (100 replicates per template, 4 chains) are ``benchmarks/validate_sbc.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import nlme_bayes as nb
from nlme_bayes import sbc, templates
from nlme_bayes.errors import SpecificationError


# ---------------------------------------------------------------------------- statistics
def _table(ranks: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame([{"quantity": q, "rank": int(r)} for q, rs in ranks.items() for r in rs])


def test_uniformity_passes_uniform_ranks_and_rejects_bent_ones():
    """Uniform ranks pass; U-shaped (too narrow), humped (too wide) and shifted (biased)
    ranks of the same size fail at the Bonferroni threshold."""
    rng = np.random.default_rng(3)
    n, L = 200, 100
    u = rng.integers(0, L, n)
    narrow = np.where(rng.random(n) < 0.5, rng.integers(0, 15, n), rng.integers(85, 100, n))
    wide = np.clip(rng.normal(50, 12, n).round(), 0, L - 1).astype(int)
    biased = np.clip(u + 30, 0, L - 1)
    res = sbc.uniformity(_table({"u": u, "narrow": narrow, "wide": wide, "biased": biased}),
                         n_ranks=L)  # fmt: skip
    assert res["passed"].to_dict() == {"u": True, "narrow": False, "wide": False, "biased": False}
    assert (res["threshold"] == 0.05 / 4).all() and (res["n_bins"] == 20).all()
    assert res.loc["u", "df"] == 19 and res.loc["narrow", "p_value"] < 1e-6


def test_uniformity_chi_square_by_hand():
    """X^2 = sum (O - E)^2 / E over bins of equal width, and its chi-square p-value; bins of
    unequal width (7 ranks in 3 bins) get proportional expectations."""
    from scipy import stats

    ranks = np.array([0, 0, 1, 5, 6, 6, 9, 9, 9, 9, 2, 3])
    res = sbc.uniformity(_table({"q": ranks}), n_ranks=10, n_bins=2)
    observed = np.array([5, 7])  # ranks 0-4 / 5-9
    chi2 = float(np.sum((observed - 6.0) ** 2 / 6.0))
    assert res.loc["q", "chi2"] == pytest.approx(chi2)
    assert res.loc["q", "p_value"] == pytest.approx(stats.chi2.sf(chi2, 1))
    uneven = sbc.uniformity(_table({"q": np.array([0, 1, 2, 3, 4, 5, 6])}), n_ranks=7, n_bins=3)
    assert uneven.loc["q", "chi2"] == pytest.approx(0.0)  # 2, 2, 3 ranks: as expected


def test_coverage_counts_central_intervals_and_gives_binomial_limits():
    t = pd.DataFrame({"quantity": ["a"] * 10, "rank": range(10),
                      "truth": [0.0] * 9 + [10.0], "q05": [-2.0] * 10, "q25": [-1.0] * 5
                      + [0.5] * 5, "q75": [1.0] * 10, "q95": [2.0] * 10})  # fmt: skip
    cov = sbc.coverage(t)
    assert cov.loc["a", "coverage_50"] == 0.5 and cov.loc["a", "coverage_90"] == 0.9
    assert cov.loc["a", "limits_90"] == "0.60-1.00" and cov.loc["a", "within_90"]
    with pytest.raises(SpecificationError, match=r"levels must be among \[0.5, 0.9\]"):
        sbc.coverage(t, levels=(0.8,))


def test_thinning_spreads_draws_over_chains_and_the_whole_chain():
    draws = np.arange(4 * 100).reshape(4, 100)
    kept = sbc._thin(draws, 10)
    assert len(kept) == 10 and len(set(kept)) == 10
    per_chain = [int(np.sum((kept >= 100 * c) & (kept < 100 * (c + 1)))) for c in range(4)]
    assert per_chain == [3, 3, 2, 2]
    assert {0, 99, 100, 199} <= set(kept.tolist())  # first and last draw of the chains used


def test_plot_ranks_draws_one_panel_per_quantity(tmp_path):
    rng = np.random.default_rng(0)
    fig = sbc.plot_ranks(_table({f"q{i}": rng.integers(0, 50, 60) for i in range(5)}),
                         tmp_path / "ranks.png", n_ranks=50)  # fmt: skip
    assert sum(ax.get_visible() for ax in fig.axes) == 5
    assert (tmp_path / "ranks.png").stat().st_size > 10_000


# ---------------------------------------------------------------------------- preparation
@pytest.fixture(scope="module")
def emax():
    t = templates.get("emax")
    return t, t.example_data(n_subjects=6, random_seed=11)


def test_pin_data_priors_fixes_the_additive_sd_prior_on_the_design(emax):
    t, design = emax
    model = t.model()
    assert model.error.sigma is None  # data-derived default: HalfNormal(SD of DV)
    pinned = sbc.pin_data_priors(model, design)
    sd = float(np.std(design.observations()["DV"].to_numpy(float)))
    assert pinned.error.sigma.dist == "HalfNormal"
    assert pinned.error.sigma.kwargs["sigma"] == pytest.approx(sd, rel=1e-5)
    explicit = sbc.pin_data_priors(templates.load("one_cmt_oral"), design)
    assert explicit.error == templates.load("one_cmt_oral").error  # nothing data-derived


def test_prepare_writes_replicates_whose_dv_are_the_prior_draws(emax, tmp_path):
    """The CSVs are the design with DV replaced (row by row) and read back as valid data;
    the truth table has the population quantities and the first subject's etas."""
    t, design = emax
    study = sbc.prepare(t.model(), design, tmp_path / "s", n_replicates=4, draws=50,
                        chains=2, n_ranks=10, random_seed=5)  # fmt: skip
    assert study.quantities == ("E0_pop", "Emax_pop", "ED50_pop", "omega_E0", "omega_Emax",
                                "omega_ED50", "sigma_add", "eta_E0[1]", "eta_Emax[1]",
                                "eta_ED50[1]")  # fmt: skip
    assert list(study.truth.index) == ["rep-r0001", "rep-r0002", "rep-r0003", "rep-r0004"]
    again = sbc.load_study(tmp_path / "s")
    pd.testing.assert_frame_equal(again.truth, study.truth)
    assert again.quantities == study.quantities and again.n_ranks == 10
    rep = nb.read_nonmem(tmp_path / "s" / "sims" / "r0002.csv")
    base = design.records.drop(columns=["ROW", "DV"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(rep.records.drop(columns=["ROW", "DV"]), base,
                                  check_dtype=False)  # fmt: skip
    assert not np.allclose(rep.observations()["DV"], design.observations()["DV"])
    # the simulated DV scatter around E0 + Emax*DOSE/(ED50 + DOSE) of the true parameters
    truth = study.truth.loc["rep-r0002"]
    assert truth["omega_Emax"] > 0 and truth["sigma_add"] > 0
    plan = (tmp_path / "s" / "plan.toml").read_text()
    assert 'json = "model.json"' in plan and "reuse_compiled = true" in plan
    before = sbc.ranks(study)  # nothing fitted yet: every row kept, none ranked
    assert len(before) == 40 and before["rank"].isna().all()
    assert set(before["status"]) == {"not run"}
    assert (sbc.uniformity(before, n_ranks=10)["missing"] == 4).all()


def test_prepare_and_load_errors(emax, tmp_path):
    t, design = emax
    with pytest.raises(SpecificationError, match="n_replicates must be an integer >= 2"):
        sbc.prepare(t.model(), design, tmp_path / "a", n_replicates=1)
    with pytest.raises(SpecificationError, match="n_ranks - 1 = 99 thinned draws need"):
        sbc.prepare(t.model(), design, tmp_path / "a", draws=20, chains=2)
    blq = templates.load("one_cmt_oral").replace(blq=nb.BLQ("M3", lloq=0.1))
    with pytest.raises(SpecificationError, match="models with censoring"):
        sbc.prepare(blq, design, tmp_path / "a")
    sbc.prepare(t.model(), design, tmp_path / "b", n_replicates=2, draws=50, n_ranks=10)
    with pytest.raises(SpecificationError, match="already holds a study; use load_study"):
        sbc.prepare(t.model(), design, tmp_path / "b", n_replicates=2, draws=50, n_ranks=10)
    with pytest.raises(SpecificationError, match=r"no SBC study in .* \(sbc.json is missing\)"):
        sbc.load_study(tmp_path / "nothing")
    with pytest.raises(SpecificationError, match="expected the table of sbc.ranks"):
        sbc.uniformity(pd.DataFrame({"x": [1]}))


# ---------------------------------------------------------------------------- a small study
@pytest.mark.slow
def test_small_sbc_study_is_calibrated(emax, tmp_path):
    """30 replicates of the Emax template drawn from its priors, each fitted through the
    batch runner. Every quantity's ranks pass the chi-square test at the Bonferroni level
    (family-wise 5 %), and every 90 % interval coverage lies within its 99 % binomial
    limits. Negative control: ranked against the truth plus 1.5 posterior SD, the same fits
    fail the test on every quantity (such a bias puts ~86 % of the ranks in the top third,
    not 33 %; at 1 SD, 30 replicates miss it on sigma_add, p = 0.03 > 0.005)."""
    t, design = emax
    study = sbc.prepare(t.model(), design, tmp_path / "sbc", n_replicates=30, draws=250,
                        tune=250, chains=2, n_ranks=20, random_seed=2024)  # fmt: skip
    summary = sbc.run(study)
    assert summary.ok, summary.failed
    table = sbc.ranks(study)
    assert table["rank"].notna().all() and set(table["status"]) == {"done"}
    res = sbc.uniformity(table, n_ranks=study.n_ranks)
    print(res.to_string())
    assert res["passed"].all(), res
    cov = sbc.coverage(table)
    print(cov.to_string())
    assert cov["within_90"].all(), cov

    shifted = table.copy()
    shifted["truth"] = shifted["truth"] + 1.5 * shifted["sd"]
    shifted["rank"] = [  # re-rank against the moved truth, from the same fits
        int(np.sum(sbc._thin(sbc._posterior_quantity(post, q), study.n_ranks - 1) < truth))
        for post, q, truth in _posteriors(study, shifted)
    ]
    bad = sbc.uniformity(shifted, n_ranks=study.n_ranks)
    assert not bad["passed"].any(), bad


def _posteriors(study, table):
    from nlme_bayes.batch import load_plan
    from nlme_bayes.io import load

    plan = load_plan(study.plan_path)
    paths = {task.dataset: plan.results_path(task) for task in plan.tasks}
    cache: dict = {}
    for rep, q, truth in table[["replicate", "quantity", "truth"]].itertuples(index=False):
        if rep not in cache:
            cache[rep] = load(paths[rep]).posterior
        yield cache[rep], q, truth
