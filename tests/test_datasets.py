"""Tests of nlme_bayes.datasets: every shipped data set loads cleanly with its documented size.

The expected counts were verified against the CSV files themselves (pandas, independently of
read_nonmem): subjects = distinct IDs, observations = rows with EVID 0 and MDV 0.
"""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from nlme_bayes import datasets
from nlme_bayes.data import NonmemDataset, read_nonmem
from nlme_bayes.errors import DatasetError, SpecificationError

# name: (subjects, observations, records, dose records, covariates)
EXPECTED = {
    "theophylline": (12, 132, 144, 12, ("WT", "DOSE_MGKG", "AMT_MG")),
    "theophylline_saemix": (12, 120, 132, 12, ("WT", "SEX")),
    "indomethacin": (6, 66, 72, 6, ()),
    "phenobarbital": (59, 155, 744, 589, ("WT", "APGAR", "APGAR_LT5")),
    "warfarin": (32, 483, 515, 32, ("WT", "AGE", "SEX")),
    "warfarin_pk": (32, 251, 283, 32, ("WT", "AGE", "SEX")),
    "mavoglurant": (120, 2427, 2678, 198, ("DOSE", "OCC", "AGE", "SEX", "WT", "HT")),
    "nimotuzumab": (12, 321, 441, 120, ("TAD", "OCC", "WT", "BSA", "AGE", "HT", "DOSE")),
    "orange": (5, 35, 35, 0, ()),
}


def test_list_datasets_matches_the_loaders() -> None:
    assert datasets.list_datasets() == tuple(EXPECTED)
    for name in datasets.list_datasets():
        assert callable(getattr(datasets, name))
        assert datasets.path(name).is_file()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_dataset_loads_without_warning_with_documented_counts(name: str) -> None:
    subjects, observations, records, doses, covariates = EXPECTED[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = getattr(datasets, name)()
    assert isinstance(ds, NonmemDataset)
    assert ds.n_subjects == subjects
    assert ds.n_observations == observations
    assert len(ds.records) == records
    assert int(ds.records["EVID"].isin([1, 4]).sum()) == doses
    assert ds.covariates == covariates
    assert ds.source == str(datasets.path(name))
    assert len(ds.events()) == records  # no ADDL in the shipped data


@pytest.mark.parametrize("name", list(EXPECTED))
def test_counts_agree_with_the_raw_file(name: str) -> None:
    raw = pd.read_csv(datasets.path(name))
    evid = raw["EVID"] if "EVID" in raw else 0
    mdv = raw["MDV"] if "MDV" in raw else 0
    observed = (evid == 0) & (mdv == 0)
    subjects, observations, records, _, _ = EXPECTED[name]
    assert raw["ID"].nunique() == subjects
    assert int(pd.Series(observed, index=raw.index).sum()) == observations
    assert len(raw) == records


def test_dataset_docstrings_give_units_and_source() -> None:
    for name in datasets.list_datasets():
        doc = getattr(datasets, name).__doc__
        assert "Source" in doc and "Examples" in doc, name
        assert "TIME" in doc, name


def test_warfarin_has_pk_and_pd_outputs() -> None:
    obs = datasets.warfarin().observations()
    assert obs.groupby("DVID").size().to_dict() == {1: 251, 2: 232}
    assert set(datasets.warfarin_pk().observations()["DVID"]) == {1}


def test_theophylline_amounts_are_per_kg() -> None:
    ds = datasets.theophylline()
    doses = ds.records[ds.records["EVID"] == 1]
    total = doses["AMT"] * doses["WT"]
    assert ((total - doses["AMT_MG"]).abs() < 0.01 * doses["AMT_MG"]).all()
    table = ds.covariate_table(["WT", "DOSE_MGKG"])
    assert table.shape == (12, 2)
    with pytest.raises(DatasetError, match=r"AMT_MG: varies within a subject"):
        ds.covariate_table()


def test_mavoglurant_second_occasions_are_reset_doses() -> None:
    ds = datasets.mavoglurant()
    resets = ds.records[ds.records["EVID"] == 4]
    assert len(resets) == 78
    assert (resets["TIME"] == 0).all() and (resets["OCC"] == 2).all()
    # the unmodified file restarts the clock on EVID 1 records, which NONMEM forbids
    with pytest.raises(DatasetError, match=r"TIME: decreases within a subject .*\(78 rows\)"):
        read_nonmem(datasets.path("mavoglurant"))


def test_orange_has_no_doses() -> None:
    ds = datasets.orange()
    assert (ds.records["EVID"] == 0).all()
    assert ds.subject_ids == (1, 2, 3, 4, 5)


def test_emax_tables_are_plain_dataframes() -> None:
    for loader in (datasets.emax_pd1, datasets.emax_pd2):
        table = loader()
        assert list(table.columns) == ["ID", "DOSE", "DV", "GENDER"]
        assert table.shape == (300, 4) and table["ID"].nunique() == 100


def test_unknown_dataset_name() -> None:
    with pytest.raises(SpecificationError, match=r"unknown dataset 'theo'; available datasets: "):
        datasets.path("theo")
