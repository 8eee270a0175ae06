"""Shared fixtures: small fits reused by many tests (fitted once per session)."""

from __future__ import annotations

import os
import warnings

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("PYTENSOR_FLAGS", "")
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")

REFERENCE = os.path.join(os.path.dirname(__file__), "reference")


@pytest.fixture(scope="session")
def theoph():
    import nlme_bayes as nb

    return nb.datasets.theophylline()


@pytest.fixture(scope="session")
def small_theoph_fit(theoph):
    """A short Theophylline fit (2 chains x 200 draws) for API tests, not for accuracy."""
    from nlme_bayes.examples import theophylline_model

    return theophylline_model().fit(
        theoph,
        draws=200,
        tune=200,
        chains=2,
        random_seed=11,
        progressbar=False,
        check=False,
        posterior_predictive=True,
        prior_predictive=True,
    )
