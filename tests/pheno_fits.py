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
