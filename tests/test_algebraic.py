"""Algebraic structural models: f(x, covariates, params) without dosing events."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest

import nlme_bayes as nb
from nlme_bayes.errors import DatasetError, SpecificationError
from nlme_bayes.structural.algebraic import (
    FUNCTIONS,
    Algebraic,
    AlgebraicSchedule,
    register_function,
)


def module_level_growth(x, cov, p):
    """Importable by "test_algebraic:module_level_growth" (stored by reference)."""
    return p["A"] * (1 - pt.exp(-p["k"] * x))


def registered_growth(x, cov, p):
    return p["A"] * (1 - pt.exp(-p["k"] * x))


def _schedule(x, subject=None, covariates=None):
    x = np.asarray(x, dtype=float)
    subject = np.zeros(len(x), np.int64) if subject is None else np.asarray(subject)
    return AlgebraicSchedule(
        n_subjects=int(subject.max()) + 1, n_obs=len(x), obs_subject=subject, obs_time=x, x=x,
        covariates=covariates or {},
    )  # fmt: skip


def _eval(name, params, x):
    return Algebraic(name).predict(params, _schedule(x)).eval()


X = np.array([0.0, 0.5, 3.0, 20.0, 150.0])


def test_builtin_functions_match_their_formulas():
    np.testing.assert_allclose(
        _eval("logistic", {"Asym": 200.0, "xmid": 700.0, "scal": 350.0}, X),
        200 / (1 + np.exp((700 - X) / 350)), rtol=1e-12,
    )  # fmt: skip
    np.testing.assert_allclose(
        _eval("gompertz", {"Asym": 100.0, "b": 4.0, "k": 0.02}, X),
        100 * np.exp(-4 * np.exp(-0.02 * X)), rtol=1e-12,
    )  # fmt: skip
    np.testing.assert_allclose(
        _eval("asymptotic", {"Asym": 100.0, "R0": -5.0, "k": 0.1}, X),
        100 + (-5 - 100) * np.exp(-0.1 * X), rtol=1e-12,
    )  # fmt: skip
    np.testing.assert_allclose(
        _eval("emax", {"E0": 10.0, "Emax": 100.0, "ED50": 20.0}, X),
        10 + 100 * X / (20 + X), rtol=1e-12,
    )  # fmt: skip
    np.testing.assert_allclose(
        _eval("sigmoid_emax", {"E0": 10.0, "Emax": 100.0, "ED50": 20.0, "gamma": 2.5}, X),
        10 + 100 * X**2.5 / (20**2.5 + X**2.5), rtol=1e-12,
    )  # fmt: skip


def test_sigmoid_emax_gradients_are_finite_at_zero_dose_and_match_finite_differences():
    names = ("E0", "Emax", "ED50", "gamma")
    inputs = [pt.dscalar(n) for n in names]
    out = Algebraic("sigmoid_emax").predict(dict(zip(names, inputs, strict=True)), _schedule(X))
    grad = pytensor.function(inputs, pt.grad(out.sum(), inputs))
    value = pytensor.function(inputs, out.sum())
    theta = np.array([10.0, 100.0, 20.0, 2.5])
    g = np.array(grad(*theta))
    assert np.all(np.isfinite(g))
    h = 1e-6 * theta
    fd = [(value(*(theta + h * e)) - value(*(theta - h * e))) / (2 * h[i])
          for i, e in enumerate(np.eye(4))]  # fmt: skip
    np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_parameters_are_indexed_by_subject_and_covariates_are_passed_per_observation():
    def with_offset(x, cov, p):
        return p["a"] * x + cov["OFFSET"]

    model = Algebraic(with_offset, parameters=("a",), covariates=("OFFSET",))
    sched = _schedule([1.0, 2.0, 1.0], subject=[0, 0, 1],
                      covariates={"OFFSET": np.array([0.0, 10.0, 100.0])})  # fmt: skip
    out = model.predict({"a": np.array([1.0, 3.0])}, sched).eval()
    np.testing.assert_allclose(out, [1.0, 12.0, 103.0])


def test_build_schedule_reads_x_and_covariates_from_observation_records():
    frame = nb.datasets.emax_pd1().assign(TIME=0.0)
    data = nb.read_nonmem(frame)
    schedule, obs = Algebraic("emax", x="DOSE", covariates=("GENDER",)).build_schedule(data)
    assert schedule.n_subjects == 100 and schedule.n_obs == 300
    np.testing.assert_array_equal(schedule.x, frame["DOSE"].to_numpy(dtype=float))
    np.testing.assert_array_equal(schedule.covariates["GENDER"], frame["GENDER"].to_numpy())
    assert list(obs.columns[:6]) == ["ID", "TIME", "DV", "DVID", "ROW", "subject"]
    np.testing.assert_array_equal(obs["subject"], np.repeat(np.arange(100), 3))


def test_events_build_schedule_dispatches_to_the_structure():
    from nlme_bayes.events import build_schedule

    schedule, obs = build_schedule(nb.datasets.orange(), Algebraic("logistic"))
    assert isinstance(schedule, AlgebraicSchedule) and len(obs) == 35


def test_tile_copies_subjects():
    sched = _schedule([1.0, 2.0, 3.0], subject=[0, 0, 1],
                      covariates={"C": np.array([1.0, 2.0, 3.0])})  # fmt: skip
    tiled = sched.tile(2)
    assert tiled.n_subjects == 4 and tiled.n_obs == 6
    np.testing.assert_array_equal(tiled.obs_subject, [0, 0, 1, 2, 2, 3])
    np.testing.assert_array_equal(tiled.covariates["C"], [1, 2, 3, 1, 2, 3])


def test_model_round_trips_through_to_dict_for_every_kind_of_function_reference():
    register_function("test_round_trip_fn", registered_growth, parameters=("A", "k"),
                      replace=True)  # fmt: skip
    for structure in (
        Algebraic("gompertz", x="AGE"),
        Algebraic("test_round_trip_fn"),
        Algebraic("test_algebraic:module_level_growth", parameters=("A", "k")),
    ):
        model = nb.Model(
            structure=structure,
            parameters=[nb.Parameter(n, 1.0) for n in structure.parameters],
        )
        again = nb.Model.from_dict(model.to_dict())
        assert again == model


def test_callable_is_stored_by_import_path_or_registered_name():
    by_path = Algebraic(module_level_growth, parameters=("A", "k"))
    assert by_path.function == "test_algebraic:module_level_growth"

    def local_curve(x, cov, p):
        return p["A"] * x

    local = Algebraic(local_curve, parameters=("A",))
    assert local.function == "local_curve" and FUNCTIONS["local_curve"].function is local_curve

    def local_curve(x, cov, p):  # noqa: F811 - a notebook cell run twice redefines it
        return 2 * p["A"] * x

    assert Algebraic(local_curve, parameters=("A",)).function == "local_curve"
    assert FUNCTIONS["local_curve"].function is local_curve


def test_data_errors_name_rows_and_ids():
    with pytest.raises(DatasetError, match=r"EVID: dose records at rows 1, 13, .*no dosing events"):
        Algebraic("logistic").build_schedule(nb.datasets.theophylline())
    frame = pd.DataFrame({"ID": [1, 1, 2], "TIME": [0, 1, 0], "DV": [1.0, 2.0, 3.0],
                          "DVID": [1, 2, 1]})  # fmt: skip
    with pytest.raises(DatasetError, match=r"DVID: the observations have DVIDs \[1, 2\]"):
        Algebraic("logistic").build_schedule(nb.read_nonmem(frame))
    with pytest.raises(DatasetError, match=r"DOSE: column\(s\) needed by .* are not in the data"):
        Algebraic("emax", x="DOSE").build_schedule(nb.datasets.orange())
    frame = nb.datasets.emax_pd1().assign(TIME=0.0)
    frame.loc[4, "DOSE"] = np.nan
    with pytest.raises(DatasetError, match=r"DOSE: missing or non-numeric value on observation "
                                           r"records at row 5 \(ID 2\)"):  # fmt: skip
        Algebraic("emax", x="DOSE").build_schedule(nb.read_nonmem(frame))


def test_specification_errors():
    with pytest.raises(SpecificationError, match="unknown structural function 'nope'.*logistic"):
        Algebraic("nope")
    with pytest.raises(SpecificationError, match="define it with `def name"):
        Algebraic(lambda x, c, p: x, parameters=("a",))

    def no_params(x, cov, p):
        return x

    with pytest.raises(SpecificationError, match=r"give parameters=\(\.\.\.\)"):
        Algebraic(no_params)
    with pytest.raises(SpecificationError, match="function must be a name or a callable"):
        Algebraic(3)
    with pytest.raises(SpecificationError, match="x must be a column name"):
        Algebraic("logistic", x="")
    with pytest.raises(SpecificationError, match="covariates must be column names"):
        Algebraic("logistic", covariates=("WT", 3))
    with pytest.raises(SpecificationError, match=r"parameter\(s\) A given twice"):
        Algebraic("logistic", parameters=("A", "A"))
    with pytest.raises(SpecificationError, match="parameter names must be identifiers"):
        Algebraic("logistic", parameters=("A", "1b"))
    with pytest.raises(SpecificationError, match="cannot import the structural function"):
        Algebraic("no_such_module_xyz:f", parameters=("A",))
    with pytest.raises(SpecificationError, match="is not callable"):
        Algebraic("math:pi", parameters=("A",))
    with pytest.raises(SpecificationError, match=r"needs individual parameters .*missing xmid"):
        Algebraic("logistic").predict({"Asym": 1.0, "scal": 1.0}, _schedule([1.0]))
    with pytest.raises(SpecificationError, match="needs the schedule from its own"):
        Algebraic("logistic").predict({}, object())
    with pytest.raises(DatasetError, match=r"x must have shape \(2,\)"):
        AlgebraicSchedule(n_subjects=1, n_obs=2, obs_subject=np.zeros(2, int),
                          obs_time=np.zeros(2), x=np.zeros(3))  # fmt: skip


def test_register_function_errors():
    with pytest.raises(SpecificationError, match="name must be an identifier"):
        register_function("my growth", module_level_growth, parameters=("A", "k"))
    with pytest.raises(SpecificationError, match="function must be callable"):
        register_function("my_growth", 3, parameters=("A", "k"))
    with pytest.raises(SpecificationError, match="parameters must be a non-empty sequence"):
        register_function("my_growth", module_level_growth, parameters="A")
    with pytest.raises(SpecificationError, match="'logistic' is already registered"):
        register_function("logistic", module_level_growth, parameters=("A", "k"))


def test_a_saved_model_with_an_unregistered_function_says_how_to_restore_it():
    def temporary(x, cov, p):
        return p["A"] * x

    register_function("test_temporary_fn", temporary, parameters=("A", "k"))
    model = nb.Model(structure=Algebraic("test_temporary_fn"),
                     parameters=[nb.Parameter("A", 1.0), nb.Parameter("k", 1.0)])  # fmt: skip
    stored = model.to_dict()
    del FUNCTIONS["test_temporary_fn"]
    with pytest.raises(SpecificationError, match="a saved fit needs the same registration"):
        nb.Model.from_dict(stored)


def test_builder_accepts_proportional_error_for_algebraic_models():
    """The dose-based 'prediction is structurally 0' check does not apply without doses."""
    model = nb.templates.load("logistic", error=nb.Proportional())
    pm_model = model.build(nb.datasets.orange())
    assert np.isfinite(pm_model.compile_logp()(pm_model.initial_point()))
