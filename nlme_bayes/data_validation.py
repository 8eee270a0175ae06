"""Reading and validating NONMEM-style event records (the engine behind ``read_nonmem``).

This module turns a CSV file or a DataFrame into canonical, validated records:

1. :func:`nlme_bayes.data_source.load_source` reads the raw text (``"."`` and empty cells
   are missing values);
2. :func:`canonical_names` maps user column names to the standard ones
   (case-insensitive, ``column_map``) and checks the column set;
3. :func:`validate_records` parses every column, derives the optional standard columns,
   checks every rule and raises one :class:`~nlme_bayes.errors.DatasetError` listing *all*
   violations, each naming the column, the 1-based source row(s) and the subject ID(s).

Users call :func:`nlme_bayes.data.read_nonmem`; the functions here are internal.

Example
-------
>>> import pandas as pd
>>> frame = pd.DataFrame({"ID": [1, 1], "TIME": [0.0, 1.0], "DV": [".", 2.5]})
>>> parsed = validate_records(frame, source="<DataFrame>")
>>> parsed.records[["ID", "TIME", "DV", "EVID", "MDV", "ROW"]].to_dict("list")
{'ID': [1, 1], 'TIME': [0.0, 1.0], 'DV': [nan, 2.5], 'EVID': [0, 0], 'MDV': [1, 0], 'ROW': [1, 2]}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nlme_bayes.errors import DatasetError

__all__ = [
    "MISSING_TOKENS",
    "RESERVED_COLUMNS",
    "STANDARD_COLUMNS",
    "ParsedRecords",
    "canonical_names",
    "dataset_error",
    "format_where",
    "validate_records",
]

STANDARD_COLUMNS: tuple[str, ...] = (
    "ID", "TIME", "DV", "AMT", "EVID", "MDV", "CMT", "RATE", "II", "ADDL", "SS", "DVID",
)  # fmt: skip
"""The standard NONMEM data items, in the order of ``NonmemDataset.records``."""

REQUIRED_COLUMNS: tuple[str, ...] = ("ID", "TIME", "DV")
RESERVED_COLUMNS: tuple[str, ...] = ("ROW", "IMPLIED")
"""Column names added by nlme_bayes itself; a source column may not use them."""

MISSING_TOKENS: frozenset[str] = frozenset({"", ".", "NA", "NaN", "nan"})
"""Cell texts read as a missing value (NONMEM writes ``"."``; R writes ``NA``)."""

MAX_LISTED = 5
_INT_COLUMNS = frozenset({"EVID", "MDV", "CMT", "ADDL", "SS", "DVID"})
_MAX_INDEX = 2.0**31  # CMT and DVID are small integers; larger values are typos
MAX_ADDL = 1_000_000
"""The most additional doses one record may imply (more is a typo, and would not fit)."""
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|Inf|INF|infinity|Infinity)"
_EVID_TEXT = "0 (observation), 1 (dose), 2 (other event), 3 (reset) or 4 (reset and dose)"


@dataclass(frozen=True)
class ParsedRecords:
    """Validated canonical records and what :func:`read_nonmem` needs to wrap them.

    Attributes
    ----------
    records : pandas.DataFrame
        The 12 standard columns, the covariates and ``ROW`` (1-based source row).
    covariates : tuple of str
        Non-standard columns in source order.
    column_map : dict of str to str
        Source spelling -> standard name for every renamed column.
    subjects_without_observations : tuple
        IDs of subjects with no observation record (legal, but worth a warning).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"id": [1, 1], "time": [0.0, 1.0], "dv": [0.0, 2.5], "amt": [10.0, 0.0]})
    >>> parsed = validate_records(df, source="<DataFrame>")
    >>> parsed.records[["ID", "TIME", "EVID", "MDV", "ROW"]].values.tolist()
    [[1.0, 0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0, 2.0]]
    """

    records: pd.DataFrame
    covariates: tuple[str, ...]
    column_map: dict[str, str]
    subjects_without_observations: tuple[object, ...]


# --------------------------------------------------------------------------- messages


def _fmt_value(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def _join(texts: list[str], noun: str) -> str:
    """``"3, 7, 9"`` or ``"3, 7, 9, 11, 13 ... (120 rows)"``."""
    text = ", ".join(texts[:MAX_LISTED])
    if len(texts) > MAX_LISTED:
        text += f" ... ({len(texts)} {noun})"
    return text


def _fmt_list(values: list[object], noun: str, *, quote: bool = False) -> str:
    """Format values (text quoted with ``quote``) and join them, capped."""
    return _join([repr(v) if quote else _fmt_value(v) for v in values], noun)


def _unique_in_order(values: object) -> list[object]:
    return list(pd.unique(pd.Series(values, dtype=object)))


def format_where(rows: np.ndarray, ids: pd.Series | np.ndarray) -> str:
    """Describe source rows and their subject IDs for a message.

    Parameters
    ----------
    rows : numpy.ndarray
        1-based source row numbers, ascending.
    ids : pandas.Series or numpy.ndarray
        The ID of each of those rows (``NaN`` for a missing ID).

    Returns
    -------
    str
        ``"row 5 (ID 2)"``, ``"rows 3, 7 (IDs 1, 2)"`` or, for long lists,
        ``"rows 3, 7, 9, 11, 13 ... (120 rows) (IDs 1, 2, 3, 4, 5 ... (40 IDs))"``.

    Examples
    --------
    >>> format_where(np.array([5]), np.array([2]))
    'row 5 (ID 2)'
    """
    row_list = [str(int(r)) for r in rows]
    id_list = ["missing" if pd.isna(i) else _fmt_value(i) for i in _unique_in_order(ids)]
    row_text = ("row " if len(row_list) == 1 else "rows ") + _join(row_list, "rows")
    id_text = ("ID " if len(id_list) == 1 else "IDs ") + _join(id_list, "IDs")
    return f"{row_text} ({id_text})"


def dataset_error(source: str, violations: list[str]) -> DatasetError:
    """Build the single error that lists every violation on its own line.

    Examples
    --------
    >>> problems = ["TIME: missing at row 3 (ID 1)", "DV: missing at row 7 (ID 2)"]
    >>> err = dataset_error("study.csv", problems)
    >>> print(err)
    dataset study.csv has 2 problems:
      - TIME: missing at row 3 (ID 1)
      - DV: missing at row 7 (ID 2)
    >>> len(err.violations)
    2
    """
    noun = "problem" if len(violations) == 1 else "problems"
    lines = "\n".join(f"  - {v}" for v in violations)
    return DatasetError(f"dataset {source} has {len(violations)} {noun}:\n{lines}", violations)


def canonical_names(
    columns: list[str], column_map: Mapping[str, str] | None, source: str
) -> tuple[list[str], dict[str, str]]:
    """Map source column names to standard names; check the column set.

    Parameters
    ----------
    columns : list of str
        Source column names (stripped).
    column_map : mapping of str to str, optional
        User name -> standard name; user names match case-insensitively.
    source : str
        Label used in messages.

    Returns
    -------
    names : list of str
        The new name of each column: standard names in upper case, covariates as spelled.
    applied : dict of str to str
        Source name -> new name, for every column whose name changed.

    Raises
    ------
    DatasetError
        Duplicate names (case-insensitive), a bad ``column_map`` entry, a reserved name or
        a missing required column; all such problems at once.

    Examples
    --------
    >>> canonical_names(["subj", "Time", "CONC", "WT"], {"SUBJ": "ID", "conc": "DV"}, "<DataFrame>")
    (['ID', 'TIME', 'DV', 'WT'], {'subj': 'ID', 'Time': 'TIME', 'CONC': 'DV'})
    """
    violations: list[str] = []
    found = ", ".join(columns) if columns else "none"
    unnamed = [str(i + 1) for i, c in enumerate(columns) if c == ""]
    if unnamed:
        violations.append(
            f"columns: column(s) {', '.join(unnamed)} (counted from 1) have no name but hold "
            "data; give every column a header"
        )
    by_upper: dict[str, list[str]] = {}
    for c in columns:
        if c:
            by_upper.setdefault(c.upper(), []).append(c)
    for group in by_upper.values():
        if len(group) > 1:
            names = ", ".join(repr(c) for c in group)
            violations.append(
                f"columns: duplicate column names {names} (names are case-insensitive); "
                "rename or drop all but one"
            )
    target_of: dict[str, str] = {}
    for user, target in (column_map or {}).items():
        std = str(target).strip().upper()
        matches = by_upper.get(str(user).strip().upper(), [])
        if std not in STANDARD_COLUMNS:
            violations.append(
                f"column_map: target {target!r} (for {user!r}) is not a standard column; "
                f"expected one of {', '.join(STANDARD_COLUMNS)}"
            )
        elif not matches:
            violations.append(
                f"column_map: column {user!r} not found (matched case-insensitively); "
                f"columns found: {found}"
            )
        else:
            target_of[matches[0]] = std
    names: list[str] = []
    for c in columns:
        if c in target_of:
            names.append(target_of[c])
        elif c.upper() in STANDARD_COLUMNS:
            names.append(c.upper())
        else:
            names.append(c)
    origin: dict[str, list[str]] = {}
    for c, n in zip(columns, names, strict=True):
        if n in STANDARD_COLUMNS:
            origin.setdefault(n, []).append(c)
    for std, sources in origin.items():
        if len(sources) > 1 and len({s.upper() for s in sources}) == len(sources):
            violations.append(
                f"columns: {', '.join(repr(s) for s in sources)} all give {std} "
                "(via column_map or case-insensitive matching); keep only one of them"
            )
    for c in columns:
        if c.upper() in RESERVED_COLUMNS and c not in target_of:
            violations.append(
                f"columns: {c!r} is a reserved name (nlme_bayes adds ROW and IMPLIED itself); "
                "rename that column"
            )
    missing = [r for r in REQUIRED_COLUMNS if r not in names]
    if missing:
        hint = ""
        if len(columns) == 1 and any(sep in columns[0] for sep in ";\t|"):
            hint = "; the file does not seem to be comma-separated (re-save it as CSV)"
        elif any(c.startswith("#") and c.lstrip("#").strip().upper() in missing for c in columns):
            hint = (
                "; the header starts with a comment mark (NONMEM's IGNORE=#): remove the '#' "
                "from the header line"
            )
        elif column_map is None:
            hint = "; map your own names with e.g. column_map={'SUBJ': 'ID', 'CONC': 'DV'}"
        violations.append(
            f"columns: missing required column(s) {', '.join(missing)}; columns found: "
            f"{found}{hint}"
        )
    if violations:
        raise dataset_error(source, violations)
    applied = {c: n for c, n in zip(columns, names, strict=True) if c != n}
    return names, applied


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Parsed:
    """One column parsed: numbers (NaN when missing or bad), and masks."""

    values: np.ndarray
    missing: np.ndarray
    bad: np.ndarray
    text: pd.Series | None

    @property
    def given(self) -> np.ndarray:
        return ~self.missing & ~self.bad


def _parse(column: pd.Series) -> _Parsed:
    if pd.api.types.is_bool_dtype(column.dtype):
        column = column.astype(float)
    if pd.api.types.is_complex_dtype(column.dtype):
        column = column.astype(object)  # reported as non-numeric, never silently made real
    if pd.api.types.is_numeric_dtype(column.dtype):
        values = column.to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(values)
        return _Parsed(values, missing, np.zeros(len(values), dtype=bool), None)
    text = column.astype(str).str.strip()
    missing = (column.isna() | text.isin(MISSING_TOKENS)).to_numpy()
    # Strict: ASCII digits only -- Python's float() would also take "1_000" and "\uff11\uff10"
    matched = text.str.fullmatch(_NUMBER, flags=re.ASCII).fillna(False).to_numpy(dtype=bool)
    numeric = matched & ~missing
    values = text.where(numeric).astype("float64").to_numpy(dtype=float, na_value=np.nan)
    bad = ~numeric & ~missing
    return _Parsed(values, missing, bad, text)


class _Checker:
    """Collects violations against the source rows and IDs."""

    def __init__(self, ids: pd.Series) -> None:
        self.ids = ids
        self.rows = np.arange(1, len(ids) + 1)
        self.violations: list[str] = []

    def where(self, mask: np.ndarray) -> str:
        return format_where(self.rows[mask], self.ids.to_numpy()[mask])

    def check(self, mask: np.ndarray, what: str, fix: str = "") -> None:
        """Add ``"<what> at <rows (IDs)>[; <fix>]"`` when ``mask`` selects any row."""
        if mask.any():
            tail = f"; {fix}" if fix else ""
            self.violations.append(f"{what} at {self.where(mask)}{tail}")

    def values(self, values: np.ndarray | pd.Series, mask: np.ndarray, noun: str = "value") -> str:
        """``"value 5"`` or ``"values 5, 7"`` for the distinct values selected by ``mask``."""
        listed = _unique_in_order(np.asarray(values)[mask])
        plural = f"{noun}s"
        return (noun if len(listed) == 1 else plural) + " " + _fmt_list(listed, plural)


def _parse_ids(column: pd.Series, chk: _Checker) -> tuple[pd.Series, np.ndarray]:
    """IDs as given (integer-like numbers -> int) and factorized codes (-1 = missing).

    Numbers are kept exactly: integer columns stay integers, integer text is read with
    Python's ``int`` (no detour through float), and IDs that no int64/float64 holds exactly
    stay text.  Two spellings of one number (``"01"`` and ``"1"``) are an error, not a merge.
    """
    clashes: list[tuple[str, np.ndarray]] = []
    if isinstance(column.dtype, pd.StringDtype):
        ids, missing = _text_ids(column)
    elif pd.api.types.is_integer_dtype(column.dtype):
        missing = column.isna().to_numpy()
        ids = _integer_ids(column, missing)
    else:
        parsed = _parse(column)
        missing = parsed.missing
        if parsed.bad.any():
            ids = parsed.text.where(~missing)  # type: ignore[union-attr]
        else:
            values = parsed.values
            finite = np.isfinite(values) | missing
            chk.check(~finite, "ID: infinite value", "every subject needs a finite ID")
            if parsed.text is None:
                ids = _float_ids(values, missing)
            else:
                ids, clashes = _numeric_text_ids(parsed.text, values, missing)
    ids = ids.reset_index(drop=True)
    chk.ids = ids
    chk.check(missing, "ID: missing value", "every record needs a subject ID")
    for names, where in clashes:
        chk.check(
            where,
            f"ID: {names} are the same number written differently",
            "write each subject's ID the same way on every record (IDs that are all numbers "
            "are compared as numbers)",
        )
    codes, _ = pd.factorize(ids, use_na_sentinel=True)
    return ids, codes


def _text_ids(column: pd.Series) -> tuple[pd.Series, np.ndarray]:
    text = column.astype(object).where(column.notna(), None).astype(str).str.strip()
    missing = (column.isna().to_numpy()) | text.isin(MISSING_TOKENS).to_numpy()
    return text.where(~missing), missing


def _integer_ids(column: pd.Series, missing: np.ndarray) -> pd.Series:
    """An integer column: int64 when it fits (exact), text otherwise (e.g. huge uint64)."""
    given = column[~missing]
    lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    fits = given.empty or (int(given.min()) >= lo and int(given.max()) <= hi)
    if not fits:
        return pd.Series([None if m else str(v) for v, m in zip(column, missing, strict=True)])
    if missing.any():
        return pd.Series(column.to_numpy(dtype=float, na_value=np.nan))
    return pd.Series(column.to_numpy(dtype=np.int64))


def _float_ids(values: np.ndarray, missing: np.ndarray) -> pd.Series:
    ids = pd.Series(values, dtype=float)
    if not missing.any() and np.all(_integer_like(values) & (np.abs(values) < 2.0**63)):
        ids = ids.astype(np.int64)
    return ids


def _numeric_text_ids(
    text: pd.Series, values: np.ndarray, missing: np.ndarray
) -> tuple[pd.Series, list[tuple[str, np.ndarray]]]:
    """IDs written as numbers in text: exact ints, floats, or (if not exact) the text.

    Also returns each number written in several ways, with the rows concerned.
    """
    given = ~missing
    integer_text = text.str.fullmatch(r"[+-]?\d+", flags=re.ASCII).fillna(False).to_numpy(bool)
    if np.all(integer_text[given]):
        exact = [int(t) if g else None for t, g in zip(text, given, strict=True)]
        numbers = pd.Series(exact, dtype=object)
        if all(-(2**63) <= v < 2**63 for v in numbers[given]) and not missing.any():
            numbers = numbers.astype(np.int64)
        elif any(abs(v) >= 2**53 for v in numbers[given]):
            numbers = text.where(given)  # no numeric dtype holds them exactly: keep the text
        else:
            numbers = pd.Series(values, dtype=float)
    elif np.any(_integer_like(values) & (np.abs(values) >= 2.0**53)):
        numbers = text.where(given)  # float64 cannot tell these integers apart
    else:
        numbers = _float_ids(values, missing)
    # one number, several spellings ("01" and "1", "1" and "1.0"): ambiguous, never merged
    spelled = pd.DataFrame({"text": text[given], "id": numbers[given].astype(object)})
    spellings = spelled.drop_duplicates("text").groupby("id", sort=False)["text"]
    groups = [list(group) for _, group in spellings if len(group) > 1]
    clashes = [
        (" and ".join(repr(t) for t in group[:MAX_LISTED]), given & text.isin(group).to_numpy())
        for group in groups[:MAX_LISTED]
    ]
    return numbers, clashes


_COMMA_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d*,\d+)", re.ASCII)
_CLOCK_TIME = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AaPp][Mm])?")


def _non_numeric_fix(values: list[str]) -> str:
    """How to fix these non-numeric cells: advice for the usual spreadsheet habits."""
    fixes = []
    if any(_COMMA_NUMBER.fullmatch(v) for v in values):
        fixes.append(
            "write numbers with a decimal point and no thousands separator ('1234.5', not "
            "'1,234.5' or '1234,5')"
        )
    if any(v.startswith("#") for v in values):
        fixes.append("'#N/A', '#DIV/0!', '#VALUE!' are spreadsheet errors: fix the formula")
    if any(_CLOCK_TIME.fullmatch(v) for v in values):
        fixes.append(
            "a clock time is not a number: give elapsed time (e.g. hours since the first dose)"
        )
    if any("_" in v or any(ch.isdigit() and not ch.isascii() for ch in v) for v in values):
        fixes.append("write plain ASCII digits (no '_' separators, no other scripts' digits)")
    fixes.append("expected a number; write '.' or leave the cell empty for a missing value")
    return "; ".join(fixes)


def _check_non_numeric(name: str, parsed: _Parsed, chk: _Checker) -> None:
    if parsed.bad.any():
        listed = _unique_in_order(parsed.text.to_numpy()[parsed.bad])  # type: ignore[union-attr]
        word = "value" if len(listed) == 1 else "values"
        chk.check(
            parsed.bad,
            f"{name}: non-numeric {word} {_fmt_list(listed, 'values', quote=True)}",
            _non_numeric_fix([str(v) for v in listed]),
        )
    with np.errstate(invalid="ignore"):
        chk.check(np.isinf(parsed.values), f"{name}: infinite value", "expected a finite number")


def _check_subject_order(
    codes: np.ndarray, time: np.ndarray, evid: np.ndarray, chk: _Checker
) -> None:
    """Rules: ID blocks contiguous; TIME non-decreasing within a block (except resets).

    Rows with a missing ID (reported elsewhere) are skipped.
    """
    position = np.flatnonzero(codes >= 0)
    codes, time, evid = codes[position], time[position], evid[position]
    new_block = np.ones(codes.size, dtype=bool)
    new_block[1:] = codes[1:] != codes[:-1]
    starts = np.flatnonzero(new_block)
    block_codes = codes[starts]
    seen_before = pd.Series(block_codes).duplicated().to_numpy()
    if seen_before.any():
        parts = []
        repeated = _unique_in_order(block_codes[seen_before])
        for code in repeated[:MAX_LISTED]:
            again = position[starts[seen_before & (block_codes == code)]] + 1
            ident = _fmt_value(chk.ids.iloc[int(position[starts[block_codes == code][0]])])
            word = "row" if again.size == 1 else "rows"
            parts.append(f"ID {ident} reappears at {word} {_fmt_list(list(again), 'rows')}")
        more = f" ... ({len(repeated)} IDs)" if len(repeated) > MAX_LISTED else ""
        chk.violations.append(
            f"ID: a subject's records are split by other subjects' records: {'; '.join(parts)}"
            f"{more}; sort the data so that each subject's records are contiguous "
            "(NONMEM would treat each block as a new individual)"
        )
    with np.errstate(invalid="ignore"):
        back = np.r_[False, time[1:] < time[:-1]]
    decreasing = np.zeros(chk.rows.size, dtype=bool)
    decreasing[position] = ~new_block & back & ~np.isin(evid, (3, 4))
    if decreasing.any():
        at = int(np.flatnonzero(decreasing)[0])
        before = time[np.searchsorted(position, at) - 1]
        chk.check(
            decreasing,
            f"TIME: decreases within a subject (e.g. {before:g} -> "
            f"{time[np.searchsorted(position, at)]:g} at row {at + 1})",
            "TIME must be non-decreasing within each subject; sort by ID and TIME, or restart "
            "the clock with a reset record (EVID 3 or 4)",
        )


def _integer_like(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values == np.round(values))


def validate_records(
    frame: pd.DataFrame,
    *,
    source: str,
    column_map: Mapping[str, str] | None = None,
    compartments: Collection[int] | None = None,
) -> ParsedRecords:
    """Parse, derive and validate; raise one error listing every violation.

    Parameters
    ----------
    frame : pandas.DataFrame
        Raw source columns (text or numbers), as returned by
        :func:`~nlme_bayes.data_source.load_source`.
    source : str
        Label used in messages.
    column_map : mapping of str to str, optional
        User name -> standard name.
    compartments : collection of int, optional
        Valid ``CMT`` values besides 0 (the model's default compartment).

    Returns
    -------
    ParsedRecords
        Canonical records in source order and the covariate names.

    Raises
    ------
    DatasetError
        Listing every violation, one per line, each with column, rows and IDs.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"ID": [1, 1, 2], "TIME": [0.0, 1.0, 0.0], "DV": [0.0, 2.5, 1.0]})
    >>> validate_records(df, source="<DataFrame>").subjects_without_observations
    ()
    """
    if frame.columns.size and any(c == "" for c in frame.columns):
        keep = [i for i, c in enumerate(frame.columns) if c != "" or not _all_blank(frame, i)]
        frame = frame.iloc[:, keep]
    names, applied = canonical_names(list(frame.columns), column_map, source)
    if len(frame) == 0:
        raise DatasetError(f"dataset {source} has no data rows: expected at least one record")
    frame = frame.set_axis(names, axis=1).reset_index(drop=True)
    n = len(frame)
    chk = _Checker(pd.Series(np.full(n, np.nan)))
    ids, codes = _parse_ids(frame["ID"], chk)

    parsed = {c: _parse(frame[c]) for c in STANDARD_COLUMNS[1:] if c in frame.columns}
    for name, p in parsed.items():
        _check_non_numeric(name, p, chk)
    covariates = tuple(c for c in names if c not in STANDARD_COLUMNS)
    cov_columns = {name: _parse_covariate(name, frame[name], chk) for name in covariates}

    def column(name: str) -> _Parsed:
        if name in parsed:
            return parsed[name]
        nan = np.full(n, np.nan)
        return _Parsed(nan, np.ones(n, dtype=bool), np.zeros(n, dtype=bool), None)

    std = _derive_and_check(column, chk, compartments)
    _check_subject_order(codes, std["TIME"], std["EVID"], chk)
    if chk.violations:
        raise dataset_error(source, chk.violations)

    records = pd.DataFrame({"ID": ids})
    for name in STANDARD_COLUMNS[1:]:
        records[name] = std[name].astype(np.int64) if name in _INT_COLUMNS else std[name]
    for name in covariates:
        records[name] = cov_columns[name].reset_index(drop=True)
    records["ROW"] = np.arange(1, n + 1, dtype=np.int64)

    observed = (std["EVID"] == 0) & (std["MDV"] == 0)
    has_obs = np.zeros(int(codes.max()) + 1, dtype=bool)
    has_obs[codes[observed]] = True
    firsts = pd.Series(codes).drop_duplicates().index.to_numpy()
    silent = tuple(ids.iloc[i] for i in firsts if not has_obs[codes[i]])
    return ParsedRecords(records, covariates, applied, silent)


def _parse_covariate(name: str, column: pd.Series, chk: _Checker) -> pd.Series:
    """Numbers (float64), or text if the column holds no number at all (categories)."""
    p = _parse(column)
    if p.bad.any() and not p.given.any():
        text = p.text.where(~pd.Series(p.missing))  # type: ignore[union-attr]
        commas = text[p.bad].map(lambda v: bool(_COMMA_NUMBER.fullmatch(v)))
        if commas.all():  # all "70,5": numbers in a spreadsheet's locale, not categories
            listed = _unique_in_order(text[p.bad].to_numpy())
            chk.check(
                p.bad,
                f"{name}: every value is a number written with a comma "
                f"({_fmt_list(listed, 'values', quote=True)})",
                "write numbers with a decimal point and no thousands separator ('70.5', not "
                "'70,5'); only a column of words is read as categories",
            )
        return text
    if p.bad.any():
        listed = _unique_in_order(p.text.to_numpy()[p.bad])  # type: ignore[union-attr]
        chk.check(
            p.bad,
            f"{name}: mixes numbers and text (non-numeric "
            f"{_fmt_list(listed, 'values', quote=True)})",
            "a covariate must be all numbers or all text (categories); fix the odd cells",
        )
    with np.errstate(invalid="ignore"):
        chk.check(np.isinf(p.values), f"{name}: infinite value", "expected a finite number")
    return pd.Series(p.values, dtype=float)


def _derive_and_check(
    column: Callable[[str], _Parsed], chk: _Checker, compartments: Collection[int] | None
) -> dict[str, np.ndarray]:
    """Fill the standard columns' defaults and check the record-level rules."""
    time, dv, amt_p = column("TIME"), column("DV"), column("AMT")
    chk.check(time.missing, "TIME: missing value", "every record needs a time")
    with np.errstate(invalid="ignore"):
        negative = time.values < 0
    chk.check(
        negative,
        f"TIME: negative {chk.values(time.values, negative)}",
        "expected TIME >= 0",
    )
    amt = np.where(amt_p.given, amt_p.values, 0.0)

    evid_p = column("EVID")
    evid = np.where(evid_p.missing, (amt > 0).astype(float), evid_p.values)
    evid_ok = np.isin(evid, (0, 1, 2, 3, 4))
    bad_evid = ~evid_ok & ~evid_p.bad
    chk.check(
        bad_evid,
        f"EVID: invalid {chk.values(evid, bad_evid)}",
        f"expected {_EVID_TEXT}",
    )
    mdv_p = column("MDV")
    derived_mdv = np.where((evid != 0) | ~dv.given, 1.0, 0.0)
    mdv = np.where(mdv_p.missing, derived_mdv, mdv_p.values)
    bad_mdv = ~np.isin(mdv, (0, 1)) & ~mdv_p.bad
    chk.check(
        bad_mdv,
        f"MDV: invalid {chk.values(mdv, bad_mdv)}",
        "expected 0 (observation) or 1 (no observation)",
    )
    mdv0_non_obs = (mdv == 0) & evid_ok & (evid != 0)
    chk.check(
        mdv0_non_obs,
        "MDV: 0 (observation) on a non-observation record (EVID != 0)",
        "set MDV=1 on dose, other-event and reset records",
    )
    obs = (evid == 0) & (mdv == 0)
    chk.check(
        obs & dv.missing,
        "DV: missing on observation record(s) (EVID 0, MDV 0)",
        "give the observed value, or set MDV=1 to exclude the record",
    )

    dose = np.isin(evid, (1, 4))
    chk.check(
        dose & amt_p.missing,
        "AMT: missing on dose record(s) (EVID 1 or 4)",
        "give the dose amount (AMT > 0)",
    )
    rate_p, ii_p, addl_p, ss_p = column("RATE"), column("II"), column("ADDL"), column("SS")
    rate = np.where(rate_p.given, rate_p.values, 0.0)
    ss = np.where(ss_p.given, ss_p.values, 0.0)
    ii = np.where(ii_p.given, ii_p.values, 0.0)
    # NONMEM's steady-state constant infusion: AMT 0, RATE > 0, SS > 0
    ss_infusion = (amt == 0) & (rate > 0) & np.isin(ss, (1, 2))
    bad_amt = dose & amt_p.given & (amt <= 0) & ~ss_infusion
    chk.check(
        bad_amt,
        f"AMT: non-positive {chk.values(amt, bad_amt)} on dose record(s) (EVID 1 or 4)",
        "expected AMT > 0 on a dose record (or AMT 0 with RATE > 0 and SS 1 for a "
        "steady-state constant infusion)",
    )

    cmt_p = column("CMT")
    cmt = np.where(cmt_p.missing, 0.0, cmt_p.values)
    bad_cmt = cmt_p.given & ~(_integer_like(cmt) & (cmt >= 0))
    _check_huge("CMT", cmt, cmt_p.given & ~bad_cmt & (cmt >= _MAX_INDEX), chk)
    chk.check(
        bad_cmt,
        f"CMT: negative or non-integer {chk.values(cmt, bad_cmt)}",
        "expected a compartment number (0 = the model's default compartment)",
    )
    if compartments is not None:
        allowed = sorted({int(c) for c in compartments})
        unknown = cmt_p.given & ~bad_cmt & (cmt != 0) & ~np.isin(cmt, allowed)
        chk.check(
            unknown,
            f"CMT: unknown {chk.values(cmt, unknown, 'compartment')}",
            f"the model has compartments {', '.join(map(str, allowed)) or 'none'} "
            "(0 = the model's default compartment)",
        )

    modelled = np.isin(rate, (-1.0, -2.0))
    chk.check(
        modelled,
        "RATE: -1 (modelled rate) / -2 (modelled duration) is not supported yet",
        "give the infusion rate explicitly (RATE = AMT / duration)",
    )
    neg_rate = (rate < 0) & ~modelled
    chk.check(
        neg_rate,
        f"RATE: negative {chk.values(rate, neg_rate)}",
        "expected RATE >= 0 (0 = bolus)",
    )

    chk.check(ii < 0, f"II: negative {chk.values(ii, ii < 0)}", "expected II >= 0")
    addl = np.where(addl_p.given, addl_p.values, 0.0)
    bad_addl = addl_p.given & ~(_integer_like(addl) & (addl >= 0))
    _check_huge("ADDL", addl, addl_p.given & ~bad_addl & (addl > MAX_ADDL), chk)
    chk.check(
        bad_addl,
        f"ADDL: negative or non-integer {chk.values(addl, bad_addl)}",
        "ADDL is the number of additional doses",
    )
    addl_ok = addl_p.given & ~bad_addl & (addl > 0)
    chk.check(
        addl_ok & ~ii_p.bad & (ii <= 0),
        "II: missing or non-positive interval with ADDL > 0",
        "additional doses need the dosing interval II > 0",
    )
    chk.check(
        addl_ok & evid_ok & ~dose,
        "ADDL: additional doses on a non-dose record (EVID 0, 2 or 3)",
        "put ADDL on the dose record (EVID 1 or 4)",
    )
    bad_ss = ss_p.given & ~np.isin(ss, (0, 1, 2))
    chk.check(
        bad_ss,
        f"SS: invalid {chk.values(ss, bad_ss)}",
        "expected 0 (no steady state), 1 (steady state, reset) or 2 (steady state, added)",
    )
    ss_no_ii = np.isin(ss, (1, 2)) & (amt > 0) & (ii <= 0) & ~ii_p.bad
    chk.check(
        ss_no_ii,
        "SS: steady-state dose (SS > 0, AMT > 0) with II missing or <= 0",
        "steady-state dosing needs the interval II > 0",
    )
    dvid_p = column("DVID")
    dvid = np.where(dvid_p.missing, 1.0, dvid_p.values)
    bad_dvid = dvid_p.given & ~_integer_like(dvid)
    _check_huge("DVID", dvid, dvid_p.given & ~bad_dvid & (np.abs(dvid) >= _MAX_INDEX), chk)
    chk.check(
        bad_dvid,
        f"DVID: non-integer {chk.values(dvid, bad_dvid)}",
        "DVID numbers the observed output (1, 2, ...)",
    )

    return {
        "TIME": time.values,
        "DV": dv.values,
        "AMT": amt,
        "EVID": evid,
        "MDV": mdv,
        "CMT": cmt,
        "RATE": rate,
        "II": ii,
        "ADDL": addl,
        "SS": ss,
        "DVID": dvid,
    }


def _check_huge(name: str, values: np.ndarray, mask: np.ndarray, chk: _Checker) -> None:
    """An integer column (CMT, DVID, ADDL) with a value too large to be meant (or stored)."""
    limit = MAX_ADDL if name == "ADDL" else int(_MAX_INDEX) - 1
    chk.check(mask, f"{name}: too large {chk.values(values, mask)}", f"expected at most {limit:,}")


def _all_blank(frame: pd.DataFrame, position: int) -> bool:
    column = frame.iloc[:, position]
    return bool((column.isna() | column.astype(str).str.strip().isin(MISSING_TOKENS)).all())
