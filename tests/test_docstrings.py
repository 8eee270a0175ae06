"""Every docstring example in the package runs.

``test_docstring_examples`` is plain ``doctest.testmod`` of every module: examples that need a
fitted model are marked ``# doctest: +SKIP`` there.  ``test_skipped_docstring_examples`` runs
those again with the SKIP removed, in a namespace with real objects prepared once per session
(``fit``, ``pheno_fit``, ``fc``, ... see :func:`_prepared_namespace`), in a temporary folder.
Only the examples matching :data:`EXCLUDED` stay skipped, and with them the later lines of the
same docstring that use a name one of them assigned (unless the namespace provides it).
Shown outputs must match (ELLIPSIS for random values); an exception always fails.
"""

from __future__ import annotations

import ast
import copy
import doctest
import functools
import importlib
import inspect
import io
import pkgutil
import shutil
from pathlib import Path

import pytest

import nlme_bayes

MODULES = sorted(m.name for m in pkgutil.walk_packages(nlme_bayes.__path__, prefix="nlme_bayes."))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
REPO = Path(__file__).resolve().parent.parent

#: Source patterns of +SKIP examples that stay skipped in the second pass, with the reason.
EXCLUDED = {
    ".fit(": "runs a full MCMC fit (its result is provided as `fit`, `fit1`, ...)",
    "run_plan(": "runs a batch plan's fits on a Dask cluster",
    "refit=True": "refits the model for high Pareto k",
    'main(["--draws"': "the main job runs full fits",
    '"--version"': "argparse exits the interpreter (SystemExit)",
    "occasion_draws(": "needs a fit with inter-occasion variability (tests/test_iov.py)",
    "summary = sbc.run(study)": "fits 20 SBC replicates (sbc.run's own example fits two)",
    "sbc.uniformity(sbc.ranks(study))": "needs the 20 fits of the module example's study",
    'cluster = make_cluster({"kind": "slurm"': "needs a SLURM cluster",
    '_ = fit.report("theophylline_report.html")': "the HTML report (~10 s): run once, in "
    "nlme_bayes.report.write_html_report's example",
}


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"


def _public_callables():
    """``(qualified name, object)`` of every public function, class, method and property.

    Public: named in the module's ``__all__`` (else not starting with ``_``), defined in that
    module, in a module with no ``_``-prefixed component; for classes also the methods,
    class/static methods and properties defined in the class body.
    """
    for info in pkgutil.walk_packages(nlme_bayes.__path__, prefix="nlme_bayes."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        names = getattr(module, "__all__", None) or [
            n for n in vars(module) if not n.startswith("_")
        ]
        for name in names:
            obj = getattr(module, name, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if obj.__module__ != module.__name__:
                continue
            yield f"{info.name}.{name}", obj
            if not inspect.isclass(obj):
                continue
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(value, property):
                    value = value.fget
                elif isinstance(value, functools.cached_property):
                    value = value.func
                elif isinstance(value, (classmethod, staticmethod)):
                    value = value.__func__
                if inspect.isfunction(value):
                    yield f"{info.name}.{name}.{attr}", value


def test_every_public_callable_has_an_example():
    """Every public function, class, method and property has a docstring with an example."""
    found = list(_public_callables())
    assert len(found) > 100, "the walk found too few public callables"
    missing = [name for name, obj in found if ">>>" not in (obj.__doc__ or "")]
    assert not missing, (
        f"{len(missing)} public callable(s) have no docstring example (>>>): " + ", ".join(missing)
    )


#: The names :func:`_prepared_namespace` provides to the second pass.
PREPARED = frozenset(
    "nb np model data fit fit1 fit2 fit_with fit_without pheno_fit rec patient_data fc pp "
    "built start parser Regimen".split()
)


def test_every_public_callable_has_an_example_that_runs():
    """At least one example line of each public callable runs: in the first pass, or in the
    second (not matched by :data:`EXCLUDED`, not using a name only an excluded line made)."""
    parser = doctest.DocTestParser()
    never = []
    for name, obj in _public_callables():
        test = parser.get_doctest(obj.__doc__ or "", {}, name, None, 0)
        runs, _ = unskipped(test, set(PREPARED))
        if not any(not ex.options.get(doctest.SKIP) for ex in runs.examples):
            never.append(name)
    assert not never, f"{len(never)} public callable(s) have no example that runs: {never}"


def _excluded(source: str) -> str | None:
    return next((why for pattern, why in EXCLUDED.items() if pattern in source), None)


def _assigned(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }


def _used(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def unskipped(test: doctest.DocTest, provided: set[str]) -> tuple[doctest.DocTest, dict]:
    """A copy of ``test`` whose +SKIP examples run, except the excluded ones.

    Returns the copy and ``{source: reason}`` of the examples that stay skipped.
    """
    test = copy.copy(test)
    test.examples = [copy.copy(ex) for ex in test.examples]
    missing: set[str] = set()  # names assigned by excluded lines and not provided
    still: dict[str, str] = {}
    for ex in test.examples:
        if not ex.options.get(doctest.SKIP):
            continue
        why = _excluded(ex.source)
        needs = _used(ex.source) & missing
        if why is None and needs:
            why = f"uses {', '.join(sorted(needs))} from an excluded line"
        if why is None:
            ex.options = {k: v for k, v in ex.options.items() if k != doctest.SKIP}
        else:
            missing |= _assigned(ex.source) - provided
            still[ex.source.strip()] = why
    return test, still


def _skipped_tests():
    finder = doctest.DocTestFinder()
    out = []
    for name in MODULES:
        for test in finder.find(importlib.import_module(name)):
            if any(ex.options.get(doctest.SKIP) for ex in test.examples):
                out.append(test)
    return sorted(out, key=lambda t: t.name)


SKIPPED = _skipped_tests()


@pytest.fixture(scope="session")
def examples_dir(tmp_path_factory):
    """A working folder for the examples (they write gof.png, fit.nc, ...) with the plans."""
    where = tmp_path_factory.mktemp("docstring_examples")
    shutil.copytree(REPO / "examples", where / "examples", ignore=shutil.ignore_patterns("results"))
    return where


@pytest.fixture(scope="session")
def reused_own_data_estimates():
    """``own_data_estimates`` computed once per fit (~10 s of graph rewriting each time).

    The HTML report, ``plot_borrowing_strength`` and ``own_data_estimates``'s own example all
    ask for the same table of the same fit: each still runs its code, on a copy of the table.
    """
    from nlme_bayes import shrinkage

    real = shrinkage.own_data_estimates
    tables: dict = {}

    def once(fit, **options):
        call = inspect.signature(real).bind(fit, **options)
        call.apply_defaults()
        key = (id(fit), tuple((k, v) for k, v in call.arguments.items() if k != "fit"))
        if key not in tables:
            tables[key] = (fit, real(fit, **options))  # the fit is kept: its id stays unique
        return tables[key][1].copy()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shrinkage, "own_data_estimates", once)
        yield


@pytest.fixture(scope="session")
def prepared_namespace(small_theoph_fit, theoph, examples_dir):
    return _prepared_namespace(small_theoph_fit, theoph, examples_dir)


def _prepared_namespace(fit, theoph, where: Path) -> dict:
    """The objects the skipped examples refer to, built once (~30 s, mostly the fits).

    ``fit``/``fit1``/``fit_with``: the conftest's short Theophylline fit (2 x 200 draws);
    ``fit2``/``fit_without``: the same model without IIV on ka (2 x 100 draws);
    ``pheno_fit``: pheno without subject 5 (``pheno_fits.population_fit``, shared with the
    forecasting tests); ``rec``/``patient_data``: the new neonate of ``forecast``'s example
    and ``fc`` its forecast; ``model``/``data``: Theophylline's; ``pp``: its prior predictive;
    ``built``/``start``: what ``fit`` passes to ``finite_starts``; ``parser``: the CLI's.
    The folder gets ``fit.nc`` (pheno_fit), ``patient.csv`` (rec) and ``theophylline_fit.nc``.
    """
    import dataclasses
    import os

    import numpy as np
    from pheno_fits import population_fit
    from pymc.initial_point import make_initial_point_fn

    import nlme_bayes as nb
    from nlme_bayes.builder import build
    from nlme_bayes.cli import build_parser
    from nlme_bayes.examples import theophylline_model
    from nlme_bayes.forecast import forecast
    from nlme_bayes.prior_predictive import prior_predictive
    from nlme_bayes.regimen import Regimen, patient_records

    model = theophylline_model()
    ka = dataclasses.replace(model.parameter("ka"), iiv=None)
    fit_without = model.with_parameter(ka).fit(
        theoph, draws=100, tune=100, chains=2, random_seed=1, progressbar=False, check=False
    )
    pheno_fit = population_fit()
    rec = patient_records(
        [Regimen(20.0), Regimen(2.5, interval=12.0, n_doses=8, start=12.0)],
        observations={2.0: 17.0, 95.5: 24.0},
        covariates={"WT": 1.2, "APGAR_LT5": 0},
        id=101,
    )
    built = build(model, theoph)
    start = make_initial_point_fn(
        model=built.pm_model, overrides=built.initvals, return_transformed=False
    )
    cwd = os.getcwd()
    os.chdir(where)
    try:
        pheno_fit.save("fit.nc")
        fit.save("theophylline_fit.nc")
        rec.to_csv("patient.csv", index=False)
    finally:
        os.chdir(cwd)
    namespace = dict(
        nb=nb,
        np=np,
        model=model,
        data=theoph,
        fit=fit,
        fit1=fit,
        fit2=fit_without,
        fit_with=fit,
        fit_without=fit_without,
        pheno_fit=pheno_fit,
        rec=rec,
        patient_data=rec,
        fc=forecast(pheno_fit, rec, n_draws=500, random_seed=1),
        pp=prior_predictive(model, theoph, n_draws=100),
        built=built,
        start=start,
        parser=build_parser(),
        Regimen=Regimen,
    )
    assert set(namespace) == PREPARED
    return namespace


@pytest.mark.parametrize("test", SKIPPED, ids=[t.name for t in SKIPPED])
def test_skipped_docstring_examples(
    test, prepared_namespace, examples_dir, reused_own_data_estimates, monkeypatch
):
    """The +SKIP examples run too, on the prepared objects (see :data:`EXCLUDED`)."""
    import matplotlib.pyplot as plt

    monkeypatch.chdir(examples_dir)
    test, still = unskipped(test, set(prepared_namespace))
    test.globs = {**test.globs, **prepared_namespace}
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    try:
        result = runner.run(test, out=out.write, clear_globs=True)
    finally:
        plt.close("all")
    assert result.failed == 0, out.getvalue()
