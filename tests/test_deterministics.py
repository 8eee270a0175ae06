"""Deterministics computed after sampling (nlme_bayes.deterministics) equal PyMC's own.

PyMC's prior draws hold every free variable *and* every Deterministic, computed by PyMC
itself: they are the reference, with no MCMC needed. The models cover what the builder
emits: a full Omega block with IPRED/PRED (Theophylline), covariates (phenobarbital), a
structural function without doses (sigmoid Emax), inter-occasion variability (kappa and
per-occasion parameters), and an ODE model, which is left to the sampler.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr

import nlme_bayes as nb
from nlme_bayes import deterministics, templates
from nlme_bayes.builder import build
from nlme_bayes.examples import pheno_model, theophylline_model

FAST = {"mode": "FAST_COMPILE"}  # PyMC's prior draws: no Numba compile for a few draws


def _cases():
    t = templates.get("sigmoid_emax")
    return {
        "theophylline": (theophylline_model(), nb.datasets.theophylline()),
        "phenobarbital": (pheno_model(), nb.datasets.phenobarbital()),
        "sigmoid_emax": (t.model(), t.example_data(n_subjects=4, random_seed=1)),
    }


@pytest.mark.parametrize("case", ["theophylline", "phenobarbital", "sigmoid_emax"])
def test_equal_to_pymc_deterministics(case):
    model, data = _cases()[case]
    pm_model = build(model, data).pm_model
    assert deterministics.vectorizable(pm_model)
    prior = pm.sample_prior_predictive(
        draws=30, model=pm_model, random_seed=3, compile_kwargs=FAST
    )["prior"].dataset
    ours = deterministics.compute(pm_model, prior[[rv.name for rv in pm_model.free_RVs]])
    names = [d.name for d in pm_model.deterministics]
    assert list(ours.data_vars) == names
    for name in names:
        assert ours[name].dims == prior[name].dims, name
        np.testing.assert_allclose(ours[name].values, prior[name].values, rtol=1e-10, atol=1e-12)
        for dim in prior[name].dims[2:]:
            np.testing.assert_array_equal(ours[dim].values, prior[dim].values)


def test_blocks_of_draws_give_the_same_values(monkeypatch):
    pm_model = build(theophylline_model(), nb.datasets.theophylline()).pm_model
    prior = pm.sample_prior_predictive(
        draws=25, model=pm_model, random_seed=4, compile_kwargs=FAST
    )["prior"].dataset
    whole = deterministics.compute(pm_model, prior)
    monkeypatch.setattr(deterministics, "BLOCK_ELEMENTS", 500)  # a few draws per block
    blocks = deterministics.compute(pm_model, prior)
    for name in whole.data_vars:
        np.testing.assert_array_equal(whole[name].values, blocks[name].values)


def test_inter_occasion_variability():
    model = nb.Model(
        structure=nb.OneCompartment(route="iv"),
        parameters=[nb.Parameter("CL", 2.0, iov=True), nb.Parameter("V", 20.0)],
        occasions=nb.Occasions(),
    )
    rows = []
    for sid in (1, 2, 3):
        for occ, t0 in ((1, 0.0), (2, 48.0)):
            rows.append(dict(ID=sid, TIME=t0, AMT=100.0, EVID=1, DV=np.nan, MDV=1, OCC=occ))
            for dt in (1.0, 4.0, 12.0):
                rows.append(dict(ID=sid, TIME=t0 + dt, AMT=0.0, EVID=0, DV=3.0, MDV=0, OCC=occ))
    pm_model = build(model, nb.read_nonmem(pd.DataFrame(rows))).pm_model
    assert {"kappa", "CL_occ"} <= {d.name for d in pm_model.deterministics}
    prior = pm.sample_prior_predictive(
        draws=20, model=pm_model, random_seed=5, compile_kwargs=FAST
    )["prior"].dataset
    ours = deterministics.compute(pm_model, prior)
    for name in ours.data_vars:
        np.testing.assert_allclose(ours[name].values, prior[name].values, rtol=1e-10, atol=1e-12)


def test_ode_models_are_left_to_the_sampler():
    t = templates.get("mm_oral")
    pm_model = build(t.model(), t.example_data(n_subjects=2, random_seed=1)).pm_model
    assert not deterministics.vectorizable(pm_model)
    with pytest.raises(ValueError, match="Scan"):
        deterministics.compute(pm_model, xr.Dataset())


def test_missing_free_variable_is_named():
    pm_model = build(theophylline_model(), nb.datasets.theophylline()).pm_model
    prior = pm.sample_prior_predictive(draws=3, model=pm_model, random_seed=1, compile_kwargs=FAST)[
        "prior"
    ].dataset
    with pytest.raises(ValueError, match="sigma_add"):
        deterministics.compute(pm_model, prior.drop_vars("sigma_add"))
