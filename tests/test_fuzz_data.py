"""Property-based tests of ``read_nonmem``: exact or a clear ``DatasetError``, nothing else.

Hypothesis generates valid NONMEM datasets (several subjects, doses and observations,
optional columns, numeric and text covariates, numeric or text IDs) and corrupts them
(shuffled rows, junk and spreadsheet-style cells, missing/extra/duplicate columns, NaN/inf,
negative times, huge values, subjects without observations, non-UTF-8 bytes, byte-order
marks, short lines, decimal commas).  The properties:

* a valid dataset is read back exactly, from a DataFrame or from a CSV file in any of the
  ways a spreadsheet writes one (BOM, CRLF, quoting, blank lines, name case);
* a corrupted one either raises :class:`~nlme_bayes.errors.DatasetError` whose every line
  names its column (and the rows and subject IDs), or is returned with records that hold
  exactly what the file says: no other exception, no silent change.

The runs are derandomized (same examples every time) and sized to take a few seconds.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nlme_bayes.data import STANDARD_COLUMNS, read_nonmem
from nlme_bayes.data_validation import MISSING_TOKENS
from nlme_bayes.errors import DatasetError, DatasetWarning

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_TMP = tempfile.TemporaryDirectory(prefix="nlme_fuzz_")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INT_COLUMNS = {"EVID", "MDV", "CMT", "ADDL", "SS", "DVID"}

# numbers that survive a trip through text exactly (repr round-trips every float64)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)
times = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)


@st.composite
def datasets(draw: st.DrawFn) -> pd.DataFrame:
    """A valid NONMEM dataset as a DataFrame of Python numbers and text."""
    n_subjects = draw(st.integers(1, 4))
    text_ids = draw(st.booleans())
    id_pool = draw(
        st.lists(
            st.text("abcXYZ-_0123456789", min_size=1, max_size=4).filter(
                lambda t: not _NUMBER.fullmatch(t) and t not in MISSING_TOKENS
            )
            if text_ids
            else st.integers(-(2**62), 2**62),
            min_size=n_subjects,
            max_size=n_subjects,
            unique=True,
        )
    )
    extra = draw(st.sets(st.sampled_from(["EVID", "MDV", "CMT", "RATE", "DVID"])))
    rows = []
    for ident in id_pool:
        n = draw(st.integers(1, 5))
        t = sorted(draw(st.lists(times, min_size=n, max_size=n)))
        wt = draw(positive)
        sex = draw(st.sampled_from(["M", "F"]))
        for k in range(n):
            dose = draw(st.booleans())
            row = {"ID": ident, "TIME": t[k], "WT": wt, "SEX": sex}
            row["AMT"] = draw(positive) if dose else 0.0
            row["DV"] = np.nan if dose else draw(finite)
            row["EVID"], row["MDV"] = (1, 1) if dose else (0, 0)
            row["CMT"] = draw(st.sampled_from([1, 2]))
            row["RATE"] = draw(st.sampled_from([0.0, 0.0, 2.5])) if dose else 0.0
            row["DVID"] = draw(st.sampled_from([1, 2]))
            rows.append(row)
    frame = pd.DataFrame(rows)
    keep = ["ID", "TIME", "DV", "AMT", *sorted(extra), "WT", "SEX"]
    return frame[keep]


def _expected_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """The canonical values of a standard column, with read_nonmem's documented defaults."""
    if name in frame.columns:
        return frame[name].to_numpy()
    n = len(frame)
    defaults = {
        "EVID": (frame["AMT"] > 0).astype(int).to_numpy(),
        "MDV": ((frame["AMT"] > 0) | frame["DV"].isna()).astype(int).to_numpy(),
        "CMT": np.zeros(n, int),
        "DVID": np.ones(n, int),
    }
    return defaults.get(name, np.zeros(n))


def _assert_exact(ds, frame: pd.DataFrame) -> None:
    rec = ds.records
    assert len(rec) == len(frame), "no record may be dropped or added"
    assert rec["ID"].tolist() == frame["ID"].tolist()
    assert rec["ROW"].tolist() == list(range(1, len(frame) + 1))
    for name in STANDARD_COLUMNS[1:]:
        got, want = rec[name].to_numpy(), _expected_column(frame, name)
        if name in _INT_COLUMNS:
            assert rec[name].dtype == np.int64
        np.testing.assert_array_equal(got, np.asarray(want, dtype=got.dtype), err_msg=name)
    np.testing.assert_array_equal(rec["WT"].to_numpy(), frame["WT"].to_numpy())
    assert rec["SEX"].tolist() == frame["SEX"].tolist()
    events = ds.events()  # no ADDL: the event table is the records, in the same order
    for name in ("ID", "TIME", "AMT", "EVID", "RATE", "CMT"):
        assert events[name].tolist() == rec[name].tolist()
    assert not events["IMPLIED"].any()


def _read(source, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)  # subjects without observations
        return read_nonmem(source, **kwargs)


def _write_csv(frame: pd.DataFrame, name: str, *, quoting: int, crlf: bool, bom: bool,
               blank_lines: bool) -> Path:  # fmt: skip
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=quoting, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(frame.columns)
    for i, row in enumerate(frame.itertuples(index=False)):
        writer.writerow(["." if isinstance(v, float) and np.isnan(v) else repr(v)
                         if isinstance(v, float) else v for v in row])  # fmt: skip
        if blank_lines and i % 2:
            buffer.write("\r\n" if crlf else "\n")
    path = Path(_TMP.name) / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8"))
    return path


# ------------------------------------------------------------------ valid data: read exactly


@FUZZ
@given(frame=datasets())
def test_valid_dataframe_is_read_exactly(frame: pd.DataFrame) -> None:
    before = frame.copy()
    _assert_exact(_read(frame), frame)
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is never modified


@FUZZ
@given(
    frame=datasets(),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    crlf=st.booleans(),
    bom=st.booleans(),
    blank_lines=st.booleans(),
    lower=st.booleans(),
)
def test_valid_csv_is_read_exactly(frame, quoting, crlf, bom, blank_lines, lower) -> None:
    # standard names match in any case; covariates keep their spelling
    named = (
        frame.rename(columns=lambda c: c.lower() if c in STANDARD_COLUMNS else c)
        if lower
        else frame
    )
    path = _write_csv(named, "valid.csv", quoting=quoting, crlf=crlf, bom=bom,
                      blank_lines=blank_lines)  # fmt: skip
    _assert_exact(_read(path), frame)


# ------------------------------------------------------------------ corrupted data

JUNK = [
    "abc", "1,5", "1,000", "1.000,5", "#N/A", "#DIV/0!", "NaN", "NAN", "nan", "NA", "inf",
    "-inf", "Infinity", "1e400", "-1e400", "", ".", "   ", "\uff11", "1_0", "08:30", "True",
    "-1", "-0", "0", "1e308", "-1e308", "1.5", "2", "3", "4", "5", "0x10", "1e", "--1", "+1",
    "\ufeff1", "1\u00a0", "\u00e9", "M", "'1'", '"1"', "1;2", "NULL", "None", "9" * 30,
]  # fmt: skip


@st.composite
def corrupted(draw: st.DrawFn) -> tuple[str, object]:
    """A valid dataset with 1-3 faults, as a DataFrame (of text) or as CSV bytes."""
    frame = draw(datasets()).astype(object)
    frame = frame.where(frame.notna(), ".")
    cells = frame.map(lambda v: repr(v) if isinstance(v, float) else str(v))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from([
            "shuffle", "junk", "junk", "text", "drop", "duplicate", "extra", "swap", "negative",
            "huge", "no_observations", "string_id", "empty_row",
        ]))  # fmt: skip
        n, m = cells.shape
        if op == "shuffle":
            order = draw(st.permutations(range(n)))
            cells = cells.iloc[list(order)].reset_index(drop=True)
        elif op in ("junk", "text"):
            i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, m - 1))
            value = draw(st.sampled_from(JUNK) if op == "junk" else st.text(max_size=6))
            cells.iat[i, j] = value
        elif op == "drop" and m > 1:
            cells = cells.drop(columns=cells.columns[draw(st.integers(0, m - 1))])
        elif op == "duplicate":
            j = draw(st.integers(0, m - 1))
            name, copy = cells.columns[j], cells.iloc[:, j].copy()
            cells.insert(
                m, name.lower() if draw(st.booleans()) else name, copy, allow_duplicates=True
            )
        elif op == "extra":
            cells[draw(st.sampled_from(["X", "ROW", "", " ", "IMPLIED", "Wt2"]))] = draw(
                st.sampled_from(JUNK)
            )
        elif op == "swap" and m > 1:
            a, b = draw(st.integers(0, m - 1)), draw(st.integers(0, m - 1))
            names = list(cells.columns)
            names[a], names[b] = names[b], names[a]
            cells.columns = names
        elif op == "negative" and "TIME" in cells.columns:
            cells.at[draw(st.integers(0, n - 1)), "TIME"] = "-" + draw(
                st.sampled_from(["1", "0.5"])
            )
        elif op == "huge":
            j = draw(st.integers(0, m - 1))
            cells.iat[draw(st.integers(0, n - 1)), j] = draw(
                st.sampled_from(["1e308", "1e300", "-1e308"])
            )
        elif op == "no_observations" and "DV" in cells.columns:
            cells.loc[:, "DV"] = "."
        elif op == "string_id" and "ID" in cells.columns:
            cells.at[draw(st.integers(0, n - 1)), "ID"] = "S" + str(draw(st.integers(0, 9)))
        elif op == "empty_row":
            cells.iloc[draw(st.integers(0, n - 1)), :] = ""
    as_bytes = draw(st.booleans())
    if not as_bytes:
        return "frame", cells
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\n").writerows([list(cells.columns), *cells.values.tolist()])
    data = buffer.getvalue().encode("utf-8")
    for _ in range(draw(st.integers(0, 2))):
        byte_op = draw(st.sampled_from(["latin1", "bom", "cut", "comma", "nul", "quote"]))
        at = draw(st.integers(0, len(data)))
        if byte_op == "latin1":
            data = (
                data[:at] + draw(st.sampled_from([b"\xe9", b"\xff", b"\x80", b"\xb5"])) + data[at:]
            )
        elif byte_op == "bom":
            data = b"\xef\xbb\xbf" + data
        elif byte_op == "cut":  # a truncated file or a shortened line
            data = data[:at]
        elif byte_op == "comma":
            data = data.replace(b".", b",", 1)
        elif byte_op == "nul":
            data = data[:at] + b"\x00" + data[at:]
        else:
            data = data[:at] + b'"' + data[at:]
    return "bytes", data


_LINE = re.compile(r"^(?P<column>[^:]+): ")


def _check_error(error: DatasetError, columns: list[str]) -> None:
    """Every violation names its column (or the file's line), and its rows' subject IDs."""
    message = str(error)
    assert message.startswith("dataset "), message
    known = {c.strip().strip('\ufeff"').strip().upper() for c in columns}
    known |= {*STANDARD_COLUMNS, "COLUMNS", "COLUMN_MAP"}
    for line in error.violations:
        if line.startswith("dataset "):  # a fault of the file itself
            assert re.search(r"\bline \d|empty|no data rows|is (a|an|gzip) ", line), line
            continue
        head = _LINE.match(line)
        assert head is not None, line
        assert head["column"].strip().upper() in known, line
        if re.search(r"\bat rows? \d", line):
            assert re.search(r"\bIDs? \S", line), line


def _oracle(cells: pd.DataFrame, ds) -> None:
    """A dataset that was returned holds exactly what the source says."""
    rec = ds.records
    assert len(rec) == len(cells)
    names = {c.strip().upper(): c for c in cells.columns}
    for std in STANDARD_COLUMNS:
        if std not in names:
            continue
        text = cells[names[std]].astype(str).str.strip()
        for i, cell in enumerate(text):
            if cell in MISSING_TOKENS:
                continue
            got = rec[std].iloc[i]
            if _NUMBER.fullmatch(cell):
                if std == "ID" and isinstance(got, str):
                    assert got == cell
                else:
                    assert got == float(cell), (std, i, cell, got)
            else:
                assert std == "ID" and got == cell, (std, i, cell, got)


def _cells_of(data: bytes) -> pd.DataFrame:
    text = data.decode("utf-8-sig")
    rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r and any(c.strip() for c in r)
            or (r and len(r) > 1)]  # fmt: skip
    return pd.DataFrame(rows[1:], columns=[c.strip() for c in rows[0]])


@settings(FUZZ, max_examples=200)
@given(case=corrupted())
def test_corrupted_data_is_refused_clearly_or_read_exactly(case) -> None:
    kind, payload = case
    if kind == "frame":
        source, columns = payload, [str(c) for c in payload.columns]
    else:
        source = Path(_TMP.name) / "corrupted.csv"
        source.write_bytes(payload)
        first = payload.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
        columns = next(csv.reader([first]), [])
    try:
        ds = _read(source)
    except DatasetError as error:
        _check_error(error, columns)
        return
    _oracle(payload if kind == "frame" else _cells_of(payload), ds)


def test_fuzzing_finds_both_outcomes() -> None:
    """The corruption strategy is not vacuous: it yields refusals and exact reads."""
    outcomes = {"error": 0, "ok": 0}

    @settings(FUZZ, max_examples=40)
    @given(case=corrupted())
    def run(case) -> None:
        kind, payload = case
        source = payload
        if kind == "bytes":
            source = Path(_TMP.name) / "census.csv"
            source.write_bytes(payload)
        try:
            _read(source)
            outcomes["ok"] += 1
        except DatasetError:
            outcomes["error"] += 1

    run()
    assert outcomes["error"] > 10 and outcomes["ok"] > 0, outcomes


@pytest.mark.parametrize("junk", JUNK)
def test_every_junk_value_in_time_is_exact_or_refused(junk: str) -> None:
    frame = pd.DataFrame({"ID": ["1", "1"], "TIME": ["0", junk], "DV": [".", "5"],
                          "AMT": ["100", "0"]})  # fmt: skip
    try:
        ds = _read(frame)
    except DatasetError as error:
        _check_error(error, list(frame.columns))
        return
    _oracle(frame, ds)
