"""NONMEM-style event data: :func:`read_nonmem` and the validated :class:`NonmemDataset`.

One row per event, the NONMEM way.  The standard data items are
``ID, TIME, DV, AMT, EVID, MDV, CMT, RATE, II, ADDL, SS, DVID``; only ``ID``, ``TIME`` and
``DV`` are required, every other column is a covariate.

Derived defaults (for an absent column, or a missing cell in it)
    ``AMT`` = 0; ``EVID`` = 1 where ``AMT > 0`` else 0; ``MDV`` = 1 on non-observation
    records (``EVID != 0``) or where ``DV`` is missing, else 0; ``CMT`` = 0 (the model's
    default compartment); ``RATE`` = ``II`` = ``ADDL`` = ``SS`` = 0; ``DVID`` = 1.
Missing values
    ``"."`` (NONMEM), an empty cell, ``NA``, ``NaN`` and ``nan`` are missing.
Observations
    Records with ``EVID == 0`` and ``MDV == 0``.  ``DV`` of any other record is not used.
Columns with a role in a model
    ``LLOQ`` (lower limit of quantification, DV units), ``BLQ`` or ``CENS`` (1 = below the
    LLOQ, 0 = quantified) and ``OCC`` (occasion) are kept as they are, like covariates; the
    model gives them their meaning (``Model(blq=BLQ(...))``, see :mod:`nlme_bayes.censoring`;
    ``Model(occasions=Occasions("OCC"))``, see :mod:`nlme_bayes.occasions`), which checks
    them and names the offending rows. A censored record must be an observation (``EVID``
    0, ``MDV`` 0) with some ``DV`` (often the LLOQ or 0; it is replaced by the LLOQ).
Subjects
    Identified by ``ID`` (numbers or text), in order of first appearance; each subject's
    records must be contiguous and ``TIME`` non-decreasing within a subject, except that a
    reset record (``EVID`` 3 or 4) may restart the clock.

Validation reports every violation at once in one :class:`~nlme_bayes.errors.DatasetError`,
one line each, in the form ``COLUMN: what at rows R (IDs I); how to fix``, for example
``TIME: non-numeric value 'abc' at row 5 (ID 2); expected a number ...``.  Rows are 1-based
data rows of the source (the header is not counted).

Example
-------
>>> import pandas as pd
>>> from nlme_bayes.data import read_nonmem
>>> frame = pd.DataFrame({
...     "id": [1, 1, 1, 2, 2], "time": [0, 1, 4, 0, 2], "amt": [100, 0, 0, 100, 0],
...     "dv": [".", 5.1, 2.0, ".", 4.2], "WT": [70, 70, 70, 82, 82]})
>>> ds = read_nonmem(frame)
>>> ds
NonmemDataset(2 subjects, 3 observations, 2 dose records, covariates: WT, source: <DataFrame>)
>>> ds.covariate_table()["WT"].to_dict()
{1: 70.0, 2: 82.0}
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from nlme_bayes.data_source import load_source
from nlme_bayes.data_validation import (
    RESERVED_COLUMNS,
    STANDARD_COLUMNS,
    dataset_error,
    format_where,
    validate_records,
)
from nlme_bayes.errors import DatasetWarning, SpecificationError

__all__ = ["STANDARD_COLUMNS", "NonmemDataset", "read_nonmem"]

_DOSE_EVIDS = (1, 4)
_RESET_EVIDS = (3, 4)


def read_nonmem(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    column_map: Mapping[str, str] | None = None,
    compartments: Collection[int] | None = None,
) -> NonmemDataset:
    """Read and validate NONMEM-style event records.

    Parameters
    ----------
    source : str, os.PathLike or pandas.DataFrame
        A UTF-8 CSV file with a header row (``"."`` or an empty cell = missing; a byte-order
        mark is honoured, so UTF-16/32 files with one are read too), or a DataFrame, which
        is never modified.
    column_map : mapping of str to str, optional
        Your column names -> standard names, e.g. ``{"SUBJ": "ID", "CONC": "DV"}``.  Your
        names match case-insensitively.  Standard names themselves are recognised in any
        case (``id``, ``Time``); covariate columns keep their spelling.
    compartments : collection of int, optional
        The model's compartment numbers; any other non-zero ``CMT`` is an error.  ``CMT`` 0
        always means "the model's default compartment".

    Returns
    -------
    NonmemDataset
        Validated records in source order (not ADDL-expanded; see
        :meth:`NonmemDataset.events`).

    Raises
    ------
    DatasetError
        One error listing every violation (``.violations``), each naming the column, the
        1-based source row(s) and subject ID(s): missing required columns, non-numeric or
        infinite values, missing or negative or decreasing TIME, invalid EVID/MDV/CMT/RATE/
        II/ADDL/SS/DVID, dose records without a positive AMT, observations without DV,
        missing IDs, one ID written two ways (``01`` and ``1``), non-contiguous subjects,
        numbers written with a comma; and for a file: empty, binary (a spreadsheet,
        archive, PDF), not UTF-8, NUL characters, unbalanced quotes, or a line with more or
        fewer fields than the header (each naming the line).  Nothing is guessed, padded,
        cut or silently converted: a dataset that is returned holds exactly the values of
        the source (``tests/test_fuzz_data.py`` checks this property).
    FileNotFoundError
        ``source`` names a file that does not exist (other ``OSError`` likewise pass through).

    Warns
    -----
    DatasetWarning
        Subjects without any observation record (they are kept).

    Notes
    -----
    A covariate column that holds only text (e.g. ``SEX`` = ``"M"``/``"F"``) is kept as
    text; a column mixing numbers and text is an error.  Numeric covariates are float64.
    Numbers are plain ASCII (``1_000`` and full-width digits are refused).  Integer-valued
    numeric IDs become int64 (read exactly, never through float); text IDs stay text, and
    so do numeric IDs that no int64/float64 holds exactly.

    Examples
    --------
    >>> import pandas as pd
    >>> ds = read_nonmem(pd.DataFrame({"SUBJ": ["a", "a"], "TIME": [0, 1], "CONC": [0, 3.2],
    ...                                "AMT": [10, 0]}), column_map={"SUBJ": "ID", "CONC": "DV"})
    >>> ds.subject_ids, ds.n_observations
    (('a',), 1)
    """
    frame, label = load_source(source)
    parsed = validate_records(frame, source=label, column_map=column_map, compartments=compartments)
    if parsed.subjects_without_observations:
        ids = ", ".join(str(i) for i in parsed.subjects_without_observations)
        warnings.warn(
            f"dataset {label}: subject(s) {ids} have no observation record (EVID 0, MDV 0); "
            "they are kept and contribute no likelihood term",
            DatasetWarning,
            stacklevel=2,
        )
    return NonmemDataset(
        records=parsed.records,
        covariates=parsed.covariates,
        source=label,
        column_map=parsed.column_map,
    )


@dataclass(frozen=True, eq=False, repr=False)
class NonmemDataset:
    """Validated NONMEM-style event records.

    Build it with :func:`read_nonmem` (validating) or :meth:`from_records` (trusted).

    Attributes
    ----------
    records : pandas.DataFrame
        One row per source record, in source order (not ADDL-expanded), index 0..n-1.
        Columns: the 12 :data:`STANDARD_COLUMNS` (``ID`` as given; ``EVID``, ``MDV``,
        ``CMT``, ``ADDL``, ``SS``, ``DVID`` int64; the rest float64), the covariates, and
        ``ROW`` (int64, the 1-based source row number).
    covariates : tuple of str
        Non-standard columns, in source order.
    source : str
        The file path, or ``"<DataFrame>"``.
    column_map : dict of str to str
        Source column name -> standard name, for every column that was renamed (by
        ``column_map`` or by upper-casing).

    Examples
    --------
    >>> import pandas as pd
    >>> ds = read_nonmem(pd.DataFrame({"ID": [1, 1], "TIME": [0, 2], "DV": [0, 1.5],
    ...                                "AMT": [5, 0], "ADDL": [1, 0], "II": [1, 0]}))
    >>> ds.events()[["TIME", "EVID", "AMT", "IMPLIED", "ROW"]]
       TIME  EVID  AMT  IMPLIED  ROW
    0   0.0     1  5.0    False    1
    1   1.0     1  5.0     True    1
    2   2.0     0  0.0    False    2
    """

    records: pd.DataFrame
    covariates: tuple[str, ...]
    source: str = "<records>"
    column_map: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_records(
        cls,
        records: pd.DataFrame,
        *,
        covariates: Sequence[str] | None = None,
        source: str = "<records>",
        column_map: Mapping[str, str] | None = None,
    ) -> NonmemDataset:
        """Wrap records that are already canonical, without re-validating them.

        Parameters
        ----------
        records : pandas.DataFrame
            Canonical records (e.g. a subset of another dataset's ``records``).  A missing
            ``ROW`` column is numbered 1..n; the index is reset.
        covariates : sequence of str, optional
            Default: every column that is neither standard nor ``ROW``/``IMPLIED``.
        source : str
            Where the records came from.
        column_map : mapping of str to str, optional
            Kept for provenance.

        Returns
        -------
        NonmemDataset

        Raises
        ------
        DatasetError
            A standard column is missing, or a named covariate is not a column.

        Examples
        --------
        >>> import pandas as pd
        >>> ds = read_nonmem(pd.DataFrame({"ID": [1, 2], "TIME": [0, 0], "DV": [1.0, 2.0]}))
        >>> first = NonmemDataset.from_records(ds.records[ds.records["ID"] == 1])
        >>> first.n_subjects
        1
        """
        missing = [c for c in STANDARD_COLUMNS if c not in records.columns]
        if covariates is None:
            skip = set(STANDARD_COLUMNS) | set(RESERVED_COLUMNS)
            covariates = [c for c in records.columns if c not in skip]
        absent = [c for c in covariates if c not in records.columns]
        problems = []
        if missing:
            problems.append(
                f"columns: missing standard column(s) {', '.join(missing)}; from_records "
                "needs canonical records (use read_nonmem to derive the defaults)"
            )
        if absent:
            problems.append(f"columns: covariate(s) {', '.join(absent)} are not columns")
        if problems:
            raise dataset_error(source, problems)
        out = records.reset_index(drop=True).copy()
        if "ROW" not in out.columns:
            out["ROW"] = np.arange(1, len(out) + 1, dtype=np.int64)
        return cls(out, tuple(covariates), source, dict(column_map or {}))

    def to_dataframe(self) -> pd.DataFrame:
        """Records without ``ROW``; :func:`read_nonmem` reads them back to equal records.

        Returns
        -------
        pandas.DataFrame

        Examples
        --------
        >>> import pandas as pd
        >>> ds = read_nonmem(pd.DataFrame({"ID": [1], "TIME": [0], "DV": [1.0]}))
        >>> list(ds.to_dataframe().columns) == list(STANDARD_COLUMNS)
        True
        """
        return self.records.drop(columns="ROW").copy()

    # ------------------------------------------------------------------ summaries

    @property
    def subject_ids(self) -> tuple[object, ...]:
        """Subject IDs in order of first appearance.

        Examples
        --------
        >>> import pandas as pd
        >>> ds = read_nonmem(pd.DataFrame({"ID": [7, 7, 3, 3], "TIME": [0.0, 1.0, 0.0, 1.0],
        ...                                "DV": [0.0, 2.1, 0.0, 1.7]}))
        >>> ds.subject_ids
        (7, 3)
        """
        return tuple(pd.unique(self.records["ID"]).tolist())

    @property
    def n_subjects(self) -> int:
        """Number of subjects.

        Examples
        --------
        >>> from nlme_bayes import datasets
        >>> datasets.theophylline().n_subjects
        12
        """
        return int(self.records["ID"].nunique())

    @property
    def n_observations(self) -> int:
        """Number of observation records (``EVID == 0`` and ``MDV == 0``).

        Examples
        --------
        >>> import pandas as pd
        >>> ds = read_nonmem(pd.DataFrame({"ID": [1, 1, 1], "TIME": [0.0, 1.0, 2.0],
        ...     "AMT": [100.0, 0.0, 0.0], "DV": [0.0, 2.5, 1.8], "MDV": [1, 0, 0]}))
        >>> ds.n_observations  # the dose record is not an observation
        2
        """
        return int(self._observed().sum())

    def _observed(self) -> pd.Series:
        return (self.records["EVID"] == 0) & (self.records["MDV"] == 0)

    def observations(self) -> pd.DataFrame:
        """The observation records (``EVID == 0`` and ``MDV == 0``), index as in ``records``.

        Returns
        -------
        pandas.DataFrame

        Examples
        --------
        >>> import pandas as pd
        >>> ds = read_nonmem(pd.DataFrame({"ID": [1, 1], "TIME": [0, 1], "DV": [".", 2.0],
        ...                                "AMT": [10, 0]}))
        >>> ds.observations()["DV"].tolist()
        [2.0]
        """
        return self.records[self._observed()].copy()

    def __repr__(self) -> str:
        n_doses = int(self.records["EVID"].isin(_DOSE_EVIDS).sum())
        covs = ", ".join(self.covariates) if self.covariates else "none"
        source = self.source if self.source.startswith("<") else Path(self.source).name
        return (
            f"NonmemDataset({self.n_subjects} subjects, {self.n_observations} observations, "
            f"{n_doses} dose records, covariates: {covs}, source: {source})"
        )

    # ------------------------------------------------------------------ events

    def events(self) -> pd.DataFrame:
        """The event table, with additional doses (``ADDL``) written out.

        A dose record (``EVID`` 1 or 4) with ``ADDL = n`` and ``II = ii`` implies ``n``
        further doses at ``TIME + k * ii`` (``k = 1..n``), identical to it (``AMT``,
        ``RATE``, ``CMT``, ``II``) except ``EVID = 1``, ``MDV = 1``, ``SS = 0``,
        ``DV = NaN``; ``ROW`` is the initiating record's row and ``IMPLIED`` is True.
        ``ADDL`` is 0 on every row of the result (nothing is left implied).

        Ordering rules, within a subject
            By time.  Records at the same time keep source order, and implied doses come
            *after* source records at the same time: a trough sample taken at the time of an
            implied dose is measured before that dose.  Implied doses at the same time are
            ordered by their initiating record.  A reset record (``EVID`` 3 or 4) that
            restarts the clock starts a new period: all events of the earlier period come
            first.  Subjects are in order of first appearance; the index is 0..n-1.
        Reset records cancel pending implied doses (NONMEM semantics)
            An implied dose of a record before a reset record R is kept only if it is
            applied before R, i.e. if its time is earlier than R's time (or, when R
            restarts the clock, earlier than the last time before R).  An implied dose at
            exactly the reset time is cancelled.
        Covariates on implied doses (NONMEM semantics)
            The values on a record hold for the interval that ends at that record, so an
            implied dose at time ``t`` takes the covariate values of the subject's next
            source record at or after ``t`` (the first such record in source order), or of
            the subject's last record if there is none.

        Returns
        -------
        pandas.DataFrame
            The columns of ``records`` plus the bool column ``IMPLIED``.

        Examples
        --------
        >>> import pandas as pd
        >>> ds = read_nonmem(pd.DataFrame({
        ...     "ID": [1, 1, 1], "TIME": [0, 24, 30], "DV": [0, 3.1, 4.0],
        ...     "AMT": [100, 0, 0], "II": [24, 0, 0], "ADDL": [2, 0, 0]}))
        >>> ds.events()[["TIME", "EVID", "IMPLIED"]]
           TIME  EVID  IMPLIED
        0   0.0     1    False
        1  24.0     0    False
        2  24.0     1     True
        3  30.0     0    False
        4  48.0     1     True
        """
        return _expand_addl(self.records)

    # ------------------------------------------------------------------ covariates

    def covariate_table(
        self,
        names: Sequence[str] | None = None,
        *,
        time_varying: Literal["error", "baseline"] = "error",
    ) -> pd.DataFrame:
        """One value per subject for each requested covariate.

        Parameters
        ----------
        names : sequence of str, optional
            Covariates to include, in this order; default all of :attr:`covariates`.
        time_varying : {"error", "baseline"}
            What to do with a covariate whose value changes within a subject: ``"error"``
            raises; ``"baseline"`` takes the value on the subject's first record.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``ID`` (subject order), one column per covariate.

        Raises
        ------
        SpecificationError
            An unknown covariate name (the message lists the available ones), or an
            unknown ``time_varying`` option.
        DatasetError
            A requested covariate has missing values (checked on every record with
            ``"error"``, on the first record of each subject with ``"baseline"``; there is
            no silent imputation), or varies within a subject with ``"error"``.

        Examples
        --------
        >>> import pandas as pd
        >>> ds = read_nonmem(pd.DataFrame({"ID": [1, 1, 2], "TIME": [0, 1, 0],
        ...                                "DV": [1.0, 2.0, 3.0], "WT": [70, 72, 80]}))
        >>> ds.covariate_table(["WT"], time_varying="baseline")["WT"].tolist()
        [70.0, 80.0]
        """
        if time_varying not in ("error", "baseline"):
            raise SpecificationError(
                f"time_varying={time_varying!r} is not an option; expected 'baseline' or 'error'"
            )
        if names is None:
            wanted = list(self.covariates)
        else:
            wanted = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in wanted if n not in self.covariates]
        if unknown:
            available = ", ".join(sorted(self.covariates)) or "none"
            raise SpecificationError(
                f"unknown covariate(s) {', '.join(map(repr, unknown))}; available covariates "
                f"in {self.source}: {available}"
            )
        rec = self.records
        ids = rec["ID"]
        new_subject = (ids != ids.shift()).to_numpy()
        rows = rec["ROW"].to_numpy()
        first = np.flatnonzero(new_subject)
        violations = []
        for name in wanted:
            values = rec[name]
            checked = np.ones(len(rec), bool) if time_varying == "error" else new_subject
            na = values.isna().to_numpy() & checked
            if na.any():
                violations.append(
                    f"{name}: missing value at {format_where(rows[na], ids.to_numpy()[na])}; "
                    "fill it in (there is no silent imputation) or leave the covariate out"
                )
            if time_varying == "error":
                changed = ~new_subject & (values != values.shift()).to_numpy() & ~na
                changed[1:] &= ~na[:-1]
                if changed.any():
                    where = format_where(rows[changed], ids.to_numpy()[changed])
                    violations.append(
                        f"{name}: varies within a subject, changing at {where}; pass "
                        "time_varying='baseline' (when fitting: "
                        "Model(time_varying_covariates='baseline')) to use each subject's "
                        "first-record value, or model it as a time-varying covariate"
                    )
        if violations:
            raise dataset_error(self.source, violations)
        table = rec.iloc[first][wanted]
        table.index = pd.Index(ids.iloc[first].to_numpy(), name="ID")
        return table.copy()


def _expand_addl(records: pd.DataFrame) -> pd.DataFrame:
    """Write out ADDL doses, cancel those pending at a reset, and order the events."""
    rec = records.reset_index(drop=True)
    n = len(rec)
    time = rec["TIME"].to_numpy(dtype=float)
    evid = rec["EVID"].to_numpy()
    addl = rec["ADDL"].to_numpy()
    subject = pd.factorize(rec["ID"])[0]
    new_subject = np.ones(n, dtype=bool)
    new_subject[1:] = subject[1:] != subject[:-1]
    # a "period" is a run of records between resets; periods are numbered globally
    starts_period = new_subject | np.isin(evid, _RESET_EVIDS)
    period = np.cumsum(starts_period) - 1
    period_starts = np.flatnonzero(starts_period)
    # implied doses are kept only if applied before the next reset of the same subject
    cutoff = np.full(period_starts.size, np.inf)
    if period_starts.size > 1:
        period_max = np.maximum.reduceat(time, period_starts)
        next_start = period_starts[1:]
        same = ~new_subject[next_start]
        cutoff[:-1] = np.where(same, np.maximum(period_max[:-1], time[next_start]), np.inf)

    initiating = np.flatnonzero(np.isin(evid, _DOSE_EVIDS) & (addl > 0))
    counts = addl[initiating]
    src = np.repeat(initiating, counts)
    k = np.arange(src.size) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    t_implied = time[src] + k * rec["II"].to_numpy(dtype=float)[src]
    keep = t_implied < cutoff[period[src]]
    src, t_implied = src[keep], t_implied[keep]

    source_part = rec.assign(ADDL=np.int64(0), IMPLIED=False)
    if src.size == 0:
        return source_part
    implied = rec.iloc[src].reset_index(drop=True)
    covariate_src = _next_record(period, time, subject, period[src], t_implied, subject[src])
    for name in rec.columns:
        if name not in STANDARD_COLUMNS and name != "ROW":
            implied[name] = rec[name].take(covariate_src).reset_index(drop=True)
    implied = implied.assign(
        TIME=t_implied,
        DV=np.nan,
        EVID=np.int64(1),
        MDV=np.int64(1),
        SS=np.int64(0),
        ADDL=np.int64(0),
        IMPLIED=True,
    )
    events = pd.concat([source_part, implied], ignore_index=True)
    is_implied = np.r_[np.zeros(n, dtype=bool), np.ones(src.size, dtype=bool)]
    order = np.lexsort(
        (np.arange(n + src.size), is_implied, np.r_[time, t_implied], np.r_[period, period[src]])
    )
    return events.iloc[order].reset_index(drop=True)


def _next_record(
    period: np.ndarray,
    time: np.ndarray,
    subject: np.ndarray,
    query_period: np.ndarray,
    query_time: np.ndarray,
    query_subject: np.ndarray,
) -> np.ndarray:
    """Index of the first source record at or after each query time (in its period).

    Source records are sorted by (period, time) already; a query past the end of its
    subject falls back to the subject's last record.
    """
    n = period.size
    keys_period = np.r_[period, query_period]
    keys_time = np.r_[time, query_time]
    is_source = np.r_[np.ones(n, dtype=bool), np.zeros(query_period.size, dtype=bool)]
    order = np.lexsort((is_source, keys_time, keys_period))  # queries before ties
    position = np.arange(order.size)
    candidate = np.where(is_source[order], position, order.size)
    next_position = np.minimum.accumulate(candidate[::-1])[::-1]
    query_positions = np.empty(query_period.size, dtype=np.int64)
    query_positions[order[~is_source[order]] - n] = np.flatnonzero(~is_source[order])
    found_position = next_position[query_positions]
    padded = np.r_[order, -1]
    found = padded[np.minimum(found_position, order.size)]
    last_of_subject = np.r_[np.flatnonzero(subject[1:] != subject[:-1]), n - 1]
    fallback = last_of_subject[query_subject]
    bad = (found < 0) | (subject[np.maximum(found, 0)] != query_subject)
    return np.where(bad, fallback, found)
