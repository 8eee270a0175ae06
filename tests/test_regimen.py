"""Regimens as NONMEM records, patients' records, and prediction grids over a history."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import nlme_bayes as nb
from nlme_bayes.errors import SpecificationError
from nlme_bayes.events import build_schedule
from nlme_bayes.regimen import Regimen, dose_records, patient_records, prediction_dataset
from nlme_bayes.simulation import Predictor

IV = nb.OneCompartment(route="iv")
ORAL = nb.OneCompartment(route="oral")


def test_regimen_times_rate_and_intervals():
    r = Regimen(10.0, interval=8.0, n_doses=4, start=2.0, duration=0.5)
    np.testing.assert_array_equal(r.dose_times, [2.0, 10.0, 18.0, 26.0])
    assert r.end == 34.0 and r.rate == 20.0
    assert r.interval_bounds("first") == (2.0, 10.0)
    assert r.interval_bounds("last") == (26.0, 34.0)
    assert r.interval_bounds(1) == (10.0, 18.0)
    assert r.replace(amount=5.0).amount == 5.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"amount": 0.0}, "amount must be a finite number > 0"),
        ({"amount": float("nan")}, "amount must be a finite number > 0"),
        ({"amount": 1.0, "n_doses": 0}, "n_doses must be an int >= 1"),
        ({"amount": 1.0, "n_doses": 2.5}, "n_doses must be an int >= 1"),
        ({"amount": 1.0, "n_doses": 3}, "interval must be a finite number > 0"),
        ({"amount": 1.0, "duration": -1.0}, "duration must be a finite number >= 0"),
        ({"amount": 1.0, "start": -2.0}, "start must be a finite number >= 0"),
        ({"amount": 1.0, "route": "sc"}, "route='sc' is not valid"),
        ({"amount": 1.0, "route": 0}, "route=0 is not valid"),
    ],
)
def test_regimen_rejects_bad_values(kwargs, match):
    with pytest.raises(SpecificationError, match=match):
        Regimen(**kwargs)


def test_interval_bounds_errors():
    with pytest.raises(SpecificationError, match="has no dosing interval"):
        Regimen(5.0).interval_bounds()
    with pytest.raises(SpecificationError, match="has 2 dosing intervals"):
        Regimen(5.0, interval=12.0, n_doses=2).interval_bounds(2)
    with pytest.raises(SpecificationError, match="choose 'first', 'last' or an index"):
        Regimen(5.0, interval=12.0, n_doses=2).interval_bounds("middle")


def test_route_to_compartment():
    assert Regimen(1.0).cmt(ORAL) == 0  # the model's default (depot)
    assert Regimen(1.0, route="oral").cmt(ORAL) == 1
    assert Regimen(1.0, route="iv").cmt(ORAL) == 2
    assert Regimen(1.0, route="iv").cmt(IV) == 1
    assert Regimen(1.0, route=3).cmt() == 3
    with pytest.raises(SpecificationError, match="has no depot compartment"):
        Regimen(1.0, route="oral").cmt(IV)
    with pytest.raises(SpecificationError, match="needs the structural model"):
        Regimen(1.0, route="iv").cmt()


def test_compact_and_explicit_records_predict_the_same():
    """ADDL/II records and one record per dose give identical concentrations."""
    regs = [Regimen(100.0, route="oral"), Regimen(50.0, interval=12.0, n_doses=5, start=12.0)]
    times = [1.0, 13.0, 30.0, 61.0]
    preds = []
    for compact in (False, True):
        rec = dose_records(regs, structure=ORAL, compact=compact)
        assert (rec["ADDL"] > 0).any() == compact
        hist = nb.read_nonmem(rec.assign(DV=np.nan))
        ds, _ = prediction_dataset(hist, times)
        schedule, _ = build_schedule(ds, ORAL)
        preds.append(Predictor(ORAL, schedule)({"CL": [2.0], "V": [20.0], "ka": [1.1]}))
    np.testing.assert_allclose(preds[0], preds[1], rtol=1e-13)


def test_infusion_records_have_rate():
    rec = dose_records(Regimen(60.0, interval=24.0, n_doses=2, duration=0.5))
    assert rec["RATE"].tolist() == [120.0, 120.0] and rec["EVID"].tolist() == [1, 1]


def test_patient_records_levels_before_doses_and_covariates():
    rec = patient_records(
        Regimen(5.0, interval=12.0, n_doses=3),
        observations=pd.DataFrame({"time": [12.0, 30.0], "dv": [4.0, 6.5]}),
        covariates={"WT": 1.3},
        id="new",
    )
    ds = nb.read_nonmem(rec)
    assert ds.subject_ids == ("new",) and ds.n_observations == 2
    ev = ds.events()
    at12 = ev[ev["TIME"] == 12.0]["EVID"].tolist()
    assert at12 == [0, 1]  # the level at a dose time is a pre-dose (trough) sample
    assert ds.covariate_table()["WT"].tolist() == [1.3]


@pytest.mark.parametrize(
    "obs, match",
    [
        (pd.DataFrame({"TIME": [1.0]}), "column\\(s\\) DV missing"),
        ("abc", "observations must be a DataFrame with TIME and DV"),
    ],
)
def test_patient_records_rejects_bad_observations(obs, match):
    with pytest.raises(SpecificationError, match=match):
        patient_records(Regimen(5.0), observations=obs)


def test_patient_records_rejects_bad_covariates():
    with pytest.raises(SpecificationError, match="'AMT' is a standard NONMEM column"):
        patient_records(Regimen(5.0), covariates={"AMT": 3})
    with pytest.raises(SpecificationError, match="must be one value"):
        patient_records(Regimen(5.0), covariates={"WT": [1, 2]})
    with pytest.raises(SpecificationError, match="a Regimen or a sequence of Regimen"):
        dose_records([Regimen(5.0), 3])


def test_prediction_grid_before_and_after_a_bolus():
    """At a bolus time: after - before = dose / V exactly; a reset restarts the system."""
    hist = nb.read_nonmem(patient_records(Regimen(10.0, interval=12.0, n_doses=3)))
    ds, rows = prediction_dataset(hist, [12.0, 12.0, 24.0], before_dose=[True, False, True])
    assert rows["before_dose"].tolist() == [True, False, True]
    schedule, _ = build_schedule(ds, IV)
    c = Predictor(IV, schedule)({"CL": [1.0], "V": [10.0]})
    assert c[1] - c[0] == pytest.approx(10.0 / 10.0, rel=1e-12)
    k = 0.1
    assert c[0] == pytest.approx(np.exp(-k * 12.0), rel=1e-12)
    assert c[2] == pytest.approx(np.exp(-k * 24.0) + np.exp(-k * 12.0), rel=1e-12)


def test_prediction_grid_keeps_covariates_extra_doses_and_resets():
    rec = patient_records(Regimen(10.0), covariates={"WT": 2.0}, id=7)
    reset = rec.iloc[[0]].assign(TIME=5.0, AMT=0.0, EVID=3, MDV=1)
    hist = nb.read_nonmem(pd.concat([rec, reset], ignore_index=True))
    extra = {7: dose_records(Regimen(4.0, start=6.0), id=7)}
    ds, rows = prediction_dataset(hist, [4.0, 8.0], extra_doses=extra)
    # t = 4 is before the reset at t = 5 (first dose only); t = 8 after it (the extra dose)
    schedule, obs = build_schedule(ds, IV)
    c = Predictor(IV, schedule)({"CL": [1.0], "V": [10.0]})
    np.testing.assert_allclose(c, [np.exp(-0.4), 0.4 * np.exp(-0.2)], rtol=1e-12)
    assert ds.covariate_table()["WT"].tolist() == [2.0]
    with pytest.raises(SpecificationError, match="unknown subject ID"):
        prediction_dataset(hist, [1.0], extra_doses={99: extra[7]})
