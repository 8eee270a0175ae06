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


# ------------------------------------------------------------------ spreading work over workers
#: Seconds the heaviest test files took in the full suite on a 2-core machine (2026-12-08, warm
#: caches, the other worker busy).
#: The notebook tests are timed one by one (tests/_notebook_runner.py: NOTEBOOK_SECONDS).
FILE_SECONDS = {
    "test_docstrings.py": 265,
    "test_comparison.py": 245,
    "test_ode.py": 205,
    "test_recovery_templates.py": 170,
    "test_batch.py": 160,
    "test_sbc.py": 155,
    "test_cli.py": 110,
    "test_fit_api.py": 110,
    "test_sampling_safety.py": 75,
    "test_recovery_two_compartment.py": 70,
    "test_reference_pheno.py": 65,
    "test_student_t.py": 35,
    "test_closed_form.py": 30,
    "test_blq.py": 25,
    "test_forecast.py": 25,
    "test_iov.py": 25,
    "test_diagnostics.py": 20,
    "test_reference_theophylline.py": 15,
    "test_forecast_cli.py": 15,
    "test_shrinkage.py": 15,
    "test_deterministics.py": 15,
}


def _notebook(nodeid: str) -> str | None:
    """The notebook a ``test_notebook_runs[...]`` test runs, else None."""
    head, _, param = nodeid.partition("::test_notebook_runs[")
    return param.rstrip("]") if param and head.startswith("tests/test_notebooks") else None


def _cost(item) -> float:
    from _notebook_runner import NOTEBOOK_SECONDS

    name = _notebook(item.nodeid)
    if name is not None:
        return NOTEBOOK_SECONDS.get(name, 60)
    return FILE_SECONDS.get(item.path.name, 0)


def pytest_collection_modifyitems(config, items):
    """Longest first (see :func:`pytest_xdist_make_scheduler`); a stable sort, so the order of
    the tests within a file, and of the files not listed, is kept."""
    items.sort(key=lambda item: -_cost(item))


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest without xdist still runs
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with longest-processing-time-first scheduling (``.ci/run``).

    Each test file is one unit of work (its module fixtures -- its fits -- are made once), except
    the notebook tests, each its own unit. Units are handed out in collection order, which
    :func:`pytest_collection_modifyitems` sorts longest first, and a worker takes its next unit
    only when one test of its current units is left. xdist's own loadfile sorts files by their
    number of tests and tops a worker up whenever it has two tests or fewer pending: the
    one-test notebook files (up to 8 minutes each) then piled up, last, on one worker while the
    other sat idle (CI: 28.6 minutes for ~25 minutes of balanced work).
    """
    if config.getoption("dist", None) != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LongestFirst(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid if _notebook(nodeid) else nodeid.split("::", 1)[0]

        def _reschedule(self, node) -> None:
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            # a worker keeps its last pending test until it is sent more (or shut down)
            if self._pending_of(self.assigned_work[node]) > 1:
                return
            self._assign_work_unit(node)

    config.option.loadscopereorder = False  # keep the collection order: longest first
    return LongestFirst(config, log)
