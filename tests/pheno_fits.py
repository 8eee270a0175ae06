"""Small phenobarbital fits shared by the simulation, forecasting and dosing tests.

Each is computed once per test session (``functools.cache``), whichever module asks first.
2 chains x 1000 draws (500 warm-up): ~10 s each with nutpie, and enough draws that the
Monte Carlo error of the comparisons is a few percent of a posterior SD.
"""

from __future__ import annotations

import functools

#: the subject held out of the "population" fit and forecast as a new patient (3 levels)
HELD_OUT = 5
SETTINGS = dict(draws=1000, tune=500, chains=2, progressbar=False, check=False, sampler="nutpie")


def split(pid: int = HELD_OUT):
    """(pheno without subject ``pid``, subject ``pid`` alone) as datasets."""
    import nlme_bayes as nb
    from nlme_bayes.data import NonmemDataset

    data = nb.datasets.phenobarbital()
    rec = data.records.drop(columns="ROW")
    covs = list(data.covariates)
    held = NonmemDataset.from_records(rec[rec["ID"] == pid], covariates=covs)
    rest = NonmemDataset.from_records(rec[rec["ID"] != pid], covariates=covs)
    return rest, held


@functools.cache
def population_fit():
    """Pheno fitted without subject HELD_OUT."""
    from nlme_bayes.examples import pheno_model

    rest, _ = split()
    return pheno_model().fit(rest, random_seed=3, **SETTINGS)


@functools.cache
def full_fit():
    """Pheno fitted with every subject (HELD_OUT included): the refit a forecast must match."""
    import nlme_bayes as nb
    from nlme_bayes.examples import pheno_model

    return pheno_model().fit(nb.datasets.phenobarbital(), random_seed=4, **SETTINGS)


def bolus_concentration(t, doses, cl, v, *, before_dose=False):
    """Hand-written one-compartment IV bolus superposition (independent of the package).

    ``doses``: (time, amount) pairs; ``cl``, ``v`` broadcast against ``t``'s leading axes.
    A time equal to a dose time counts that dose unless ``before_dose``.
    """
    import numpy as np

    t = np.asarray(t, dtype=float)
    cl, v = np.asarray(cl, dtype=float)[..., None], np.asarray(v, dtype=float)[..., None]
    before = np.broadcast_to(np.asarray(before_dose, bool), t.shape)
    c = 0.0
    for td, amt in doses:
        dt = t - td
        counts = (dt > 0) | ((dt == 0) & ~before)
        c = c + np.where(counts, amt / v * np.exp(-cl / v * np.maximum(dt, 0.0)), 0.0)
    return c


def simulate_patients(fit, n, rng):
    """``n`` new neonates drawn as a forecast from ``fit`` assumes (for calibration checks).

    Population parameters from the fit's posterior, covariates of a fitted subject,
    ``eta ~ N(0, Omega)`` (diagonal in the pheno model), a loading dose of 15 mg/kg and three
    maintenance doses of 2.5 mg/kg q12h, levels at 2 h and 47.5 h with proportional error.

    Returns
    -------
    with_levels, without_levels : DataFrame
        The patients' records (IDs 1..n), with and without the levels.
    doses : list of (time, amount) lists
    cl, v : (n,) true individual parameters
    """
    import numpy as np
    import pandas as pd

    from nlme_bayes.marginal import _pop_from_posterior
    from nlme_bayes.regimen import Regimen, patient_records

    n_total = fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]
    pop = _pop_from_posterior(fit, rng.integers(0, n_total, n))
    table = fit.data.covariate_table(["WT", "APGAR_LT5"]).reset_index(drop=True)
    cov = table.iloc[rng.integers(0, len(table), n)].reset_index(drop=True)
    wt, lt5 = cov["WT"].to_numpy(), cov["APGAR_LT5"].to_numpy()
    eta = rng.standard_normal((n, 2)) * pop.omega_sd
    cl = pop.typical["CL"] * wt * np.exp(eta[:, 0])
    v = pop.typical["V"] * wt * (1 + pop.coef["V_APGAR_LT5"] * lt5) * np.exp(eta[:, 1])
    with_levels, without, doses = [], [], []
    for i in range(n):
        load, keep = round(15 * wt[i], 1), round(2.5 * wt[i], 1)
        hist = [(0.0, load)] + [(12.0 * j, keep) for j in (1, 2, 3)]
        times = np.array([2.0, 47.5])
        conc = bolus_concentration(times, hist, cl[i], v[i])
        dv = conc * (1 + pop.sigma["sigma_prop"][i] * rng.standard_normal(2))
        regs = [Regimen(load), Regimen(keep, interval=12.0, n_doses=3, start=12.0)]
        covs = {"WT": wt[i], "APGAR_LT5": lt5[i]}
        obs = dict(zip(times, dv, strict=True))
        with_levels.append(patient_records(regs, observations=obs, covariates=covs, id=i + 1))
        without.append(patient_records(regs, covariates=covs, id=i + 1))
        doses.append(hist)
    return (
        pd.concat(with_levels, ignore_index=True),
        pd.concat(without, ignore_index=True),
        doses,
        cl,
        v,
    )
