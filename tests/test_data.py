"""Tests of nlme_bayes.data: reading, validation (every rule), ADDL expansion, covariates."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from nlme_bayes.data import STANDARD_COLUMNS, NonmemDataset, read_nonmem
from nlme_bayes.errors import DatasetError, DatasetWarning, SpecificationError


def frame(**columns: list) -> pd.DataFrame:
    """A small DataFrame; columns default to a valid one-subject dose + 2 observations."""
    base = {"ID": [1, 1, 1], "TIME": [0.0, 1.0, 2.0], "DV": [0.0, 5.0, 3.0],
            "AMT": [100.0, 0.0, 0.0]}  # fmt: skip
    base.update(columns)
    return pd.DataFrame(base)


def problems(data: pd.DataFrame | str, **kwargs: object) -> list[str]:
    with pytest.raises(DatasetError) as info:
        read_nonmem(data, **kwargs)
    return info.value.violations


# ----------------------------------------------------------------- reading and derivation


def test_defaults_are_derived_for_absent_columns() -> None:
    ds = read_nonmem(frame())
    rec = ds.records
    assert list(rec.columns) == [*STANDARD_COLUMNS, "ROW"]
    assert rec["EVID"].tolist() == [1, 0, 0]
    assert rec["MDV"].tolist() == [1, 0, 0]
    assert rec["CMT"].tolist() == [0, 0, 0]
    assert rec["DVID"].tolist() == [1, 1, 1]
    assert rec["ROW"].tolist() == [1, 2, 3]
    for name in ("RATE", "II"):
        assert rec[name].tolist() == [0.0, 0.0, 0.0]
    for name in ("ADDL", "SS"):
        assert rec[name].tolist() == [0, 0, 0]
    for name in ("EVID", "MDV", "CMT", "ADDL", "SS", "DVID", "ROW"):
        assert rec[name].dtype == np.int64
    for name in ("TIME", "DV", "AMT", "RATE", "II"):
        assert rec[name].dtype == np.float64
    assert ds.n_subjects == 1 and ds.n_observations == 2
    assert ds.covariates == () and ds.source == "<DataFrame>"


def test_mdv_derived_from_missing_dv_and_given_evid_kept() -> None:
    ds = read_nonmem(frame(DV=[np.nan, ".", 3.0], EVID=[1, 0, 0], AMT=[5, 0, 0]))
    assert ds.records["MDV"].tolist() == [1, 1, 0]
    assert ds.n_observations == 1


def test_missing_cells_in_optional_columns_take_the_defaults() -> None:
    data = frame(EVID=[".", 0, 0], MDV=["", ".", 1], CMT=[".", 2, 2], RATE=[".", ".", "."])
    rec = read_nonmem(data).records
    assert rec["EVID"].tolist() == [1, 0, 0]
    assert rec["MDV"].tolist() == [1, 0, 1]
    assert rec["CMT"].tolist() == [0, 2, 2]
    assert rec["RATE"].tolist() == [0.0, 0.0, 0.0]


def test_data_without_doses_is_valid() -> None:
    ds = read_nonmem(pd.DataFrame({"ID": [1, 1, 2], "TIME": [1, 2, 1], "DV": [3, 4, 5]}))
    assert ds.n_observations == 3
    assert (ds.records["EVID"] == 0).all()
    assert len(ds.events()) == 3


def test_csv_with_dots_bom_and_case_insensitive_names(tmp_path) -> None:
    text = (
        "\ufeffid,Time,amt,dv,evid,mdv,Wt,Sex\n"
        "1,0,100,.,1,1,70,M\n"
        "1,1,.,5.5,0,0,70,M\n"
        "2,0,100,,1,1,80,F\n"
        "2,1.5,.,4.5,0,0,80,F\n"
    )
    file = tmp_path / "data.csv"
    file.write_text(text, encoding="utf-8")
    ds = read_nonmem(file)
    assert list(ds.records.columns[:12]) == list(STANDARD_COLUMNS)
    assert ds.covariates == ("Wt", "Sex")
    assert ds.column_map == {"id": "ID", "Time": "TIME", "amt": "AMT", "dv": "DV",
                             "evid": "EVID", "mdv": "MDV"}  # fmt: skip
    assert ds.records["ID"].tolist() == [1, 1, 2, 2]
    assert ds.records["ID"].dtype == np.int64
    assert ds.records["AMT"].tolist() == [100.0, 0.0, 100.0, 0.0]
    assert ds.records["Sex"].tolist() == ["M", "M", "F", "F"]
    assert ds.source == str(file)
    assert "data.csv" in repr(ds)


def test_column_map_is_case_insensitive() -> None:
    data = pd.DataFrame({"Subj": [1, 1], "t": [0, 1], "conc": [0.0, 2.0], "Dose": [10, 0]})
    ds = read_nonmem(data, column_map={"SUBJ": "id", "T": "TIME", "CONC": "DV", "dose": "AMT"})
    assert ds.subject_ids == (1,)
    assert ds.records["AMT"].tolist() == [10.0, 0.0]
    assert ds.column_map == {"Subj": "ID", "t": "TIME", "conc": "DV", "Dose": "AMT"}


def test_column_map_errors_name_the_column() -> None:
    data = pd.DataFrame({"SUBJ": [1], "TIME": [0], "DV": [1.0]})
    found = problems(data, column_map={"SUBJ": "ID", "CONC": "DV", "TIME": "CLOCK"})
    text = "\n".join(found)
    assert re.search(r"column_map: column 'CONC' not found .*columns found: SUBJ, TIME, DV", text)
    assert re.search(r"column_map: target 'CLOCK' \(for 'TIME'\) is not a standard column", text)


def test_column_map_onto_an_existing_column_is_a_duplicate() -> None:
    data = pd.DataFrame({"ID": [1], "SUBJ": [1], "TIME": [0], "DV": [1.0]})
    with pytest.raises(DatasetError, match=r"'ID', 'SUBJ' all give ID"):
        read_nonmem(data, column_map={"SUBJ": "ID"})


def test_duplicate_column_names_case_insensitive() -> None:
    data = pd.DataFrame([[1, 0, 1.0, 70, 71]], columns=["ID", "TIME", "DV", "WT", "wt"])
    with pytest.raises(DatasetError, match=r"duplicate column names 'WT', 'wt'"):
        read_nonmem(data)


def test_duplicate_column_names_in_csv(tmp_path) -> None:
    file = tmp_path / "dup.csv"
    file.write_text("ID,TIME,DV,DV\n1,0,1,2\n")
    with pytest.raises(DatasetError, match=r"duplicate column names 'DV', 'DV'"):
        read_nonmem(file)


def test_reserved_column_name() -> None:
    with pytest.raises(DatasetError, match=r"'row' is a reserved name"):
        read_nonmem(frame(row=[1, 2, 3]))


def test_string_ids_kept_in_first_appearance_order() -> None:
    data = pd.DataFrame({"ID": ["b", "b", "a"], "TIME": [0, 1, 0], "DV": [1.0, 2.0, 3.0]})
    ds = read_nonmem(data)
    assert ds.subject_ids == ("b", "a")
    assert ds.records["ID"].tolist() == ["b", "b", "a"]


def test_integer_like_float_ids_become_int() -> None:
    data = pd.DataFrame({"ID": [3.0, 3.0, 1.0], "TIME": [0, 1, 0], "DV": [1.0, 2.0, 3.0]})
    ds = read_nonmem(data)
    assert ds.records["ID"].dtype == np.int64
    assert ds.subject_ids == (3, 1)


def test_text_ids_in_csv(tmp_path) -> None:
    file = tmp_path / "ids.csv"
    file.write_text("ID,TIME,DV\nP-01,0,1\nP-01,1,2\nP-02,0,3\n")
    assert read_nonmem(file).subject_ids == ("P-01", "P-02")


def test_categorical_text_covariate_is_kept() -> None:
    ds = read_nonmem(frame(SEX=["M", "M", "M"], WT=[70, 70, 70]))
    assert ds.covariates == ("SEX", "WT")
    assert ds.records["SEX"].tolist() == ["M", "M", "M"]
    assert ds.records["WT"].dtype == np.float64


def test_callers_frame_is_not_mutated() -> None:
    data = frame().rename(columns={"ID": "id"}).assign(DV=[".", "5", "3"], WT=["70", "70", "70"])
    before = data.copy()
    read_nonmem(data)
    pd.testing.assert_frame_equal(data, before)
    assert list(data.columns) == list(before.columns)


def test_round_trip_through_to_dataframe() -> None:
    data = frame(SEX=["F", "F", "F"], WT=[60.5, 60.5, 60.5], ADDL=[1, 0, 0], II=[12, 0, 0])
    ds = read_nonmem(data)
    again = read_nonmem(ds.to_dataframe())
    pd.testing.assert_frame_equal(again.records, ds.records)
    assert again.covariates == ds.covariates
    assert "ROW" not in ds.to_dataframe().columns


def test_round_trip_through_csv(tmp_path) -> None:
    ds = read_nonmem(frame(SEX=["F", "F", "F"], WT=[60.5, 60.5, 60.5]))
    file = tmp_path / "out.csv"
    ds.to_dataframe().to_csv(file, index=False)
    pd.testing.assert_frame_equal(read_nonmem(file).records, ds.records)


def test_from_records_without_validation() -> None:
    ds = read_nonmem(pd.DataFrame({"ID": [1, 1, 2], "TIME": [0, 1, 0], "DV": [1.0, 2, 3],
                                   "WT": [70, 70, 80]}))  # fmt: skip
    sub = NonmemDataset.from_records(ds.records[ds.records["ID"] == 2], source="subset")
    assert sub.subject_ids == (2,)
    assert sub.covariates == ("WT",)
    assert sub.records.index.tolist() == [0]
    assert sub.records["ROW"].tolist() == [3]
    with pytest.raises(DatasetError, match=r"missing standard column\(s\) EVID"):
        NonmemDataset.from_records(ds.records.drop(columns="EVID"))
    with pytest.raises(DatasetError, match=r"covariate\(s\) AGE are not columns"):
        NonmemDataset.from_records(ds.records, covariates=["WT", "AGE"])


def test_observations_and_repr() -> None:
    ds = read_nonmem(frame(WT=[70, 70, 70]))
    obs = ds.observations()
    assert obs["ROW"].tolist() == [2, 3]
    assert repr(ds) == (
        "NonmemDataset(1 subjects, 2 observations, 1 dose records, covariates: WT, "
        "source: <DataFrame>)"
    )


# ----------------------------------------------------------------- validation rules


def test_rule1_missing_required_column_lists_columns_found() -> None:
    data = pd.DataFrame({"ID": [1], "TIME": [0], "CONC": [1.0]})
    with pytest.raises(
        DatasetError, match=r"missing required column\(s\) DV; columns found: ID, TIME, CONC"
    ):
        read_nonmem(data)


def test_rule2_non_numeric_value_in_standard_column() -> None:
    data = frame(ID=[1, 1, 2], TIME=[0, 1, "abc"], DV=[0, 1, 2], AMT=[1, 0, 0])
    with pytest.raises(DatasetError, match=r"TIME: non-numeric value 'abc' at row 3 \(ID 2\)"):
        read_nonmem(data)


def test_rule2_comma_decimal_is_not_converted(tmp_path) -> None:
    file = tmp_path / "comma.csv"
    file.write_text('ID,TIME,DV\n1,0,"1,5"\n1,1,2\n')
    with pytest.raises(DatasetError, match=r"DV: non-numeric value '1,5' at row 1 \(ID 1\)"):
        read_nonmem(file)


def test_rule2_mixed_numeric_and_text_covariate() -> None:
    with pytest.raises(DatasetError, match=r"WT: mixes numbers and text .*'heavy'.* at row 2"):
        read_nonmem(frame(WT=[70, "heavy", 70]))


def test_rule3_missing_time() -> None:
    with pytest.raises(DatasetError, match=r"TIME: missing value at row 2 \(ID 1\)"):
        read_nonmem(frame(TIME=[0, np.nan, 2]))


def test_rule3_infinite_values() -> None:
    found = problems(frame(DV=[0, np.inf, 1], WT=[70, 70, -np.inf]))
    assert any(re.match(r"DV: infinite value at row 2 \(ID 1\)", v) for v in found)
    assert any(re.match(r"WT: infinite value at row 3 \(ID 1\)", v) for v in found)


def test_rule4_negative_time() -> None:
    with pytest.raises(DatasetError, match=r"TIME: negative value -1 at row 1 \(ID 1\)"):
        read_nonmem(frame(TIME=[-1, 1, 2]))


def test_rule5_time_decreasing_within_subject() -> None:
    with pytest.raises(
        DatasetError, match=r"TIME: decreases within a subject .* at row 3 \(ID 1\)"
    ):
        read_nonmem(frame(TIME=[0, 2, 1]))


def test_rule5_reset_record_may_restart_the_clock() -> None:
    data = pd.DataFrame({"ID": [1] * 4, "TIME": [0, 5, 0, 5], "DV": [0, 1, 0, 2],
                         "AMT": [10, 0, 10, 0], "EVID": [1, 0, 4, 0]})  # fmt: skip
    assert read_nonmem(data).n_observations == 2


def test_rule6_evid_out_of_range() -> None:
    with pytest.raises(DatasetError, match=r"EVID: invalid value 5 at row 2 \(ID 1\)"):
        read_nonmem(frame(EVID=[1, 5, 0]))


def test_rule6_mdv_out_of_range() -> None:
    with pytest.raises(DatasetError, match=r"MDV: invalid value 2 at row 3"):
        read_nonmem(frame(MDV=[1, 0, 2]))


def test_rule6_mdv_zero_on_a_dose_record() -> None:
    with pytest.raises(
        DatasetError, match=r"MDV: 0 \(observation\) on a non-observation record .* at row 1"
    ):
        read_nonmem(frame(MDV=[0, 0, 0]))


def test_rule7_dose_without_positive_amount() -> None:
    found = problems(frame(ID=[1, 1, 2], EVID=[1, 1, 4], AMT=[0, ".", -5], TIME=[0, 1, 0]))
    text = "\n".join(found)
    assert re.search(r"AMT: missing on dose record\(s\) \(EVID 1 or 4\) at row 2 \(ID 1\)", text)
    assert re.search(r"AMT: non-positive values 0, -5 on dose record\(s\).* at rows 1, 3", text)


def test_rule8_observation_without_dv() -> None:
    with pytest.raises(DatasetError, match=r"DV: missing on observation record\(s\).* at row 2"):
        read_nonmem(frame(DV=[0, np.nan, 1], MDV=[1, 0, 0]))


def test_rule9_cmt_not_a_non_negative_integer() -> None:
    with pytest.raises(
        DatasetError, match=r"CMT: negative or non-integer values 1.5, -1 at rows 2, 3"
    ):
        read_nonmem(frame(CMT=[1, 1.5, -1]))


def test_rule9_unknown_compartment() -> None:
    with pytest.raises(
        DatasetError, match=r"CMT: unknown compartment 3 at row 3 .*compartments 1, 2"
    ):
        read_nonmem(frame(CMT=[1, 0, 3]), compartments=(1, 2))
    assert read_nonmem(frame(CMT=[1, 0, 2]), compartments={1, 2}).n_observations == 2


def test_rule10_modelled_rate_not_supported() -> None:
    with pytest.raises(DatasetError, match=r"RATE: -1 \(modelled rate\).* not supported yet"):
        read_nonmem(frame(RATE=[-2, 0, 0]))


def test_rule10_negative_rate() -> None:
    with pytest.raises(DatasetError, match=r"RATE: negative value -5 at row 1"):
        read_nonmem(frame(RATE=[-5, 0, 0]))


def test_rule11_addl_without_interval() -> None:
    with pytest.raises(DatasetError, match=r"II: missing or non-positive interval with ADDL > 0"):
        read_nonmem(frame(ADDL=[2, 0, 0], II=[0, 0, 0]))
    with pytest.raises(DatasetError, match=r"II: missing .* at row 1 \(ID 1\)"):
        read_nonmem(frame(ADDL=[2, 0, 0], II=[".", 0, 0]))


def test_rule11_addl_negative_or_fractional() -> None:
    with pytest.raises(DatasetError, match=r"ADDL: negative or non-integer values -1, 1.5"):
        read_nonmem(frame(ADDL=[-1, 1.5, 0], II=[12, 0, 0]))


def test_rule11_addl_on_a_non_dose_record() -> None:
    with pytest.raises(DatasetError, match=r"ADDL: additional doses on a non-dose record"):
        read_nonmem(frame(ADDL=[0, 2, 0], II=[0, 12, 0]))


def test_rule11_ss_out_of_range() -> None:
    with pytest.raises(DatasetError, match=r"SS: invalid value 3 at row 1"):
        read_nonmem(frame(SS=[3, 0, 0], II=[12, 0, 0]))


def test_rule11_steady_state_without_interval() -> None:
    with pytest.raises(DatasetError, match=r"SS: steady-state dose .* with II missing or <= 0"):
        read_nonmem(frame(SS=[1, 0, 0]))
    # a steady-state constant infusion (AMT 0, RATE > 0, SS 1) needs no interval
    data = frame(AMT=[0, 0, 0], RATE=[5, 0, 0], SS=[1, 0, 0], EVID=[1, 0, 0])
    assert read_nonmem(data).records["SS"].tolist() == [1, 0, 0]


def test_rule11_negative_interval() -> None:
    with pytest.raises(DatasetError, match=r"II: negative value -12 at row 1 \(ID 1\)"):
        read_nonmem(frame(II=[-12, 0, 0]))


def test_dvid_must_be_an_integer() -> None:
    with pytest.raises(DatasetError, match=r"DVID: non-integer value 1.5 at row 2 \(ID 1\)"):
        read_nonmem(frame(DVID=[1, 1.5, 2]))


def test_rule12_infinite_id() -> None:
    with pytest.raises(DatasetError, match=r"ID: infinite value at row 3"):
        read_nonmem(frame(ID=[1, 1, np.inf]))


def test_rule12_missing_id() -> None:
    found = problems(frame(ID=[1, np.nan, 1]))
    assert found == ["ID: missing value at row 2 (ID missing); every record needs a subject ID"]


def test_semicolon_separated_file_gets_a_hint(tmp_path) -> None:
    file = tmp_path / "excel.csv"
    file.write_text("ID;TIME;DV\n1;0;1.5\n")
    with pytest.raises(DatasetError, match=r"does not seem to be comma-separated"):
        read_nonmem(file)
    file.write_text("ID;TIME;DV\n1;0;1,5\n")  # a comma decimal makes the lines ragged
    with pytest.raises(DatasetError, match=r"could not be parsed.*not comma-separated"):
        read_nonmem(file)


def test_rule13_non_contiguous_subjects() -> None:
    data = pd.DataFrame({"ID": [1, 2, 1, 2, 3], "TIME": [0, 0, 1, 1, 0], "DV": [1.0] * 5})
    with pytest.raises(
        DatasetError, match=r"ID 1 reappears at row 3; ID 2 reappears at row 4; sort the data"
    ) as info:
        read_nonmem(data)
    assert len(info.value.violations) == 1


def test_rule14_subject_without_observations_warns_and_is_kept() -> None:
    data = pd.DataFrame({"ID": [1, 1, 2], "TIME": [0, 1, 0], "DV": [0, 1.0, 0],
                         "AMT": [5, 0, 5]})  # fmt: skip
    with pytest.warns(DatasetWarning, match=r"subject\(s\) 2 have no observation record"):
        ds = read_nonmem(data)
    assert ds.subject_ids == (1, 2)


def test_rule15_empty_inputs(tmp_path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DatasetError, match=r"empty\.csv is empty"):
        read_nonmem(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("ID,TIME,DV\n")
    with pytest.raises(DatasetError, match=r"has no data rows"):
        read_nonmem(header_only)
    with pytest.raises(DatasetError, match=r"<DataFrame> has no data rows"):
        read_nonmem(pd.DataFrame({"ID": [], "TIME": [], "DV": []}))


def test_non_utf8_file(tmp_path) -> None:
    file = tmp_path / "latin1.csv"
    file.write_bytes("ID,TIME,DV,CENTRE\n1,0,1.0,Malm\u00f6\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin1\.csv is not UTF-8"):
        read_nonmem(file)


def test_missing_file_is_a_file_not_found_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        read_nonmem(tmp_path / "nope.csv")


def test_parser_failure_is_wrapped(tmp_path) -> None:
    file = tmp_path / "ragged.csv"
    file.write_text("ID,TIME,DV\n1,0,1\n1,1,2,3,4\n")
    with pytest.raises(DatasetError, match=r"ragged\.csv could not be parsed as CSV"):
        read_nonmem(file)


def test_unnamed_column_with_data(tmp_path) -> None:
    file = tmp_path / "unnamed.csv"
    file.write_text("ID,TIME,DV,\n1,0,1,7\n")
    with pytest.raises(DatasetError, match=r"column\(s\) 4 .* have no name but hold data"):
        read_nonmem(file)
    file.write_text("ID,TIME,DV,\n1,0,1,\n")  # trailing commas of a spreadsheet export
    assert read_nonmem(file).covariates == ()


def test_all_violations_reported_at_once(tmp_path) -> None:
    file = tmp_path / "bad.csv"
    file.write_text(
        "ID,TIME,DV,AMT,EVID\n"
        "1,0,.,100,1\n"
        "1,abc,5,0,0\n"  # non-numeric TIME
        "1,2,6,0,7\n"  # bad EVID
        "2,0,.,0,1\n"  # dose without amount
    )
    with pytest.raises(DatasetError) as info:
        read_nonmem(file)
    found = info.value.violations
    assert len(found) == 3
    assert found[0].startswith("TIME: non-numeric value 'abc' at row 2 (ID 1)")
    assert found[1].startswith("EVID: invalid value 7 at row 3 (ID 1)")
    assert found[2].startswith("AMT: non-positive value 0 on dose record(s)")
    message = str(info.value)
    assert message.startswith(f"dataset {file} has 3 problems:")
    assert all(f"\n  - {v}" in message for v in found)


def test_long_row_lists_are_capped() -> None:
    data = pd.DataFrame({"ID": np.repeat(np.arange(40), 3), "TIME": np.tile([0, 1, 2], 40),
                         "DV": 1.0, "EVID": 9})  # fmt: skip
    with pytest.raises(
        DatasetError,
        match=r"EVID: invalid value 9 at rows 1, 2, 3, 4, 5 \.\.\. \(120 rows\) "
        r"\(IDs 0, 1, 2, 3, 4 \.\.\. \(40 IDs\)\); expected 0 \(observation\)",
    ):
        read_nonmem(data)


# ----------------------------------------------------------------- events (ADDL)


def addl_data(**extra: list) -> pd.DataFrame:
    data = {
        "ID": [1, 1, 1, 1, 2, 2],
        "TIME": [0.0, 12.0, 24.0, 30.0, 0.0, 5.0],
        "DV": [".", 3.0, 2.0, 4.0, ".", 1.0],
        "AMT": [100, 0, 0, 0, 50, 0],
        "II": [12, 0, 0, 0, 0, 0],
        "ADDL": [3, 0, 0, 0, 0, 0],
    }
    data.update(extra)
    return pd.DataFrame(data)


def test_events_expand_addl_with_ties_after_source_records() -> None:
    events = read_nonmem(addl_data()).events()
    assert len(events) == 6 + 3
    assert events.index.tolist() == list(range(9))
    assert events["TIME"].tolist() == [0, 12, 12, 24, 24, 30, 36, 0, 5]
    assert events["IMPLIED"].tolist() == [False, False, True, False, True, False, True,
                                          False, False]  # fmt: skip
    assert events["ROW"].tolist() == [1, 2, 1, 3, 1, 4, 1, 5, 6]
    implied = events[events["IMPLIED"]]
    assert (implied["AMT"] == 100).all() and (implied["EVID"] == 1).all()
    assert (implied["MDV"] == 1).all() and implied["DV"].isna().all()
    assert (events["ADDL"] == 0).all() and (implied["SS"] == 0).all()
    assert events["ID"].tolist() == [1] * 7 + [2] * 2


def test_events_keep_rate_and_cmt_of_the_initiating_dose() -> None:
    data = addl_data(RATE=[50, 0, 0, 0, 0, 0], CMT=[1, 2, 2, 2, 1, 2])
    implied = read_nonmem(data).events().query("IMPLIED")
    assert (implied["RATE"] == 50).all() and (implied["CMT"] == 1).all()


def test_events_reset_cancels_pending_implied_doses() -> None:
    data = pd.DataFrame({
        "ID": [1, 1, 1, 1], "TIME": [0.0, 10.0, 30.0, 40.0], "DV": [0, 1.0, 0, 2.0],
        "AMT": [100, 0, 0, 0], "II": [12, 0, 0, 0], "ADDL": [5, 0, 0, 0],
        "EVID": [1, 0, 3, 0]})  # fmt: skip
    events = read_nonmem(data).events()
    # implied doses at 12 and 24 are given; 36, 48, 60 come after the reset at 30
    assert events["TIME"].tolist() == [0, 10, 12, 24, 30, 40]
    assert events["IMPLIED"].sum() == 2


def test_events_implied_dose_at_the_reset_time_is_cancelled() -> None:
    data = pd.DataFrame({
        "ID": [1, 1, 1], "TIME": [0.0, 24.0, 30.0], "DV": [0, 0, 2.0],
        "AMT": [100, 80, 0], "II": [12, 0, 0], "ADDL": [2, 0, 0], "EVID": [1, 4, 0]})  # fmt: skip
    events = read_nonmem(data).events()
    assert events["TIME"].tolist() == [0, 12, 24, 30]
    assert events["AMT"].tolist() == [100, 100, 80, 0]


def test_events_clock_restart_keeps_each_period_together() -> None:
    data = pd.DataFrame({
        "ID": [1] * 5, "TIME": [0.0, 20.0, 0.0, 6.0, 30.0], "DV": [0, 1.0, 0, 2.0, 1.0],
        "AMT": [100, 0, 50, 0, 0], "II": [8, 0, 8, 0, 0], "ADDL": [4, 0, 1, 0, 0],
        "EVID": [1, 0, 4, 0, 0]})  # fmt: skip
    events = read_nonmem(data).events()
    # period 1: doses at 0, 8, 16 (24 and 32 are cancelled by the reset); period 2: 0, 8
    assert events["TIME"].tolist() == [0, 8, 16, 20, 0, 6, 8, 30]
    assert events["ROW"].tolist() == [1, 1, 1, 2, 3, 4, 3, 5]
    assert events["EVID"].tolist() == [1, 1, 1, 0, 4, 0, 1, 0]


def test_events_implied_doses_take_covariates_of_the_next_record() -> None:
    data = addl_data(WT=[70, 71, 72, 73, 80, 80])
    events = read_nonmem(data).events()
    implied = events[events["IMPLIED"]]
    # implied doses at 12 and 24 take the value of the record at the same time; at 36 no
    # later record exists, so the subject's last record
    assert implied["TIME"].tolist() == [12, 24, 36]
    assert implied["WT"].tolist() == [71.0, 72.0, 73.0]


def test_events_two_addl_doses_at_the_same_time_keep_source_order() -> None:
    data = pd.DataFrame({
        "ID": [1, 1, 1], "TIME": [0.0, 0.0, 30.0], "DV": [0, 0, 1.0],
        "AMT": [10, 20, 0], "CMT": [1, 2, 2], "II": [12, 12, 0], "ADDL": [1, 1, 0]})  # fmt: skip
    events = read_nonmem(data).events()
    assert events["TIME"].tolist() == [0, 0, 12, 12, 30]
    assert events["AMT"].tolist() == [10, 20, 10, 20, 0]


def test_events_with_string_ids_and_text_covariates() -> None:
    data = addl_data(ID=["a"] * 4 + ["b"] * 2, SEX=["F"] * 4 + ["M"] * 2)
    events = read_nonmem(data).events()
    assert events["ID"].tolist() == ["a"] * 7 + ["b"] * 2
    assert events.loc[events["IMPLIED"], "SEX"].tolist() == ["F", "F", "F"]


# ----------------------------------------------------------------- covariate_table


def cov_data() -> pd.DataFrame:
    return pd.DataFrame({
        "ID": [1, 1, 2, 2, 3], "TIME": [0, 1, 0, 1, 0], "DV": [1.0, 2, 3, 4, 5],
        "WT": [70, 70, 80, 80, 90], "SEX": ["F", "F", "M", "M", "F"],
        "CRCL": [100, 110, 90, 90, 80]})  # fmt: skip


def test_covariate_table_constant_covariates() -> None:
    table = read_nonmem(cov_data()).covariate_table(["WT", "SEX"])
    assert table.index.name == "ID"
    assert table.index.tolist() == [1, 2, 3]
    assert list(table.columns) == ["WT", "SEX"]
    assert table["WT"].tolist() == [70.0, 80.0, 90.0]
    assert table["SEX"].tolist() == ["F", "M", "F"]


def test_covariate_table_varying_covariate_is_an_error() -> None:
    with pytest.raises(
        DatasetError,
        match=r"CRCL: varies within a subject, changing at row 2 \(ID 1\); pass "
        r"time_varying='baseline'",
    ):
        read_nonmem(cov_data()).covariate_table()


def test_covariate_table_baseline() -> None:
    table = read_nonmem(cov_data()).covariate_table(["CRCL"], time_varying="baseline")
    assert table["CRCL"].tolist() == [100.0, 90.0, 80.0]
    assert read_nonmem(cov_data()).covariate_table("WT").columns.tolist() == ["WT"]


def test_covariate_table_missing_values_are_an_error() -> None:
    data = cov_data().assign(WT=[70, ".", 80, 80, np.nan])
    ds = read_nonmem(data)
    with pytest.raises(DatasetError, match=r"WT: missing value at rows 2, 5 \(IDs 1, 3\)"):
        ds.covariate_table(["WT"])
    with pytest.raises(DatasetError, match=r"WT: missing value at row 5 \(ID 3\)"):
        ds.covariate_table(["WT"], time_varying="baseline")


def test_covariate_table_unknown_name() -> None:
    ds = read_nonmem(cov_data())
    with pytest.raises(
        SpecificationError,
        match=r"unknown covariate\(s\) 'AGE'; available covariates in <DataFrame>: CRCL, SEX, WT",
    ):
        ds.covariate_table(["WT", "AGE"])
    with pytest.raises(SpecificationError, match=r"time_varying='first' is not an option"):
        ds.covariate_table(time_varying="first")  # type: ignore[arg-type]


def test_covariate_table_empty_selection() -> None:
    table = read_nonmem(cov_data()).covariate_table([])
    assert table.shape == (3, 0)


def test_no_warning_for_valid_data() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_nonmem(cov_data())
