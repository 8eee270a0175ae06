"""Dosing regimens as NONMEM-style event records, and prediction grids laid over a history.

A :class:`Regimen` is ``n_doses`` doses of ``amount`` every ``interval`` from ``start``, as
boluses or as zero-order infusions of ``duration``, by a route. A loading dose followed by
maintenance is a sequence of regimens. :func:`dose_records` writes them as the dose records a
NONMEM dataset holds; :func:`patient_records` adds measured levels and covariates, giving
the records of a new patient that :func:`nlme_bayes.forecast.forecast` reads.

Same-time convention
    A level measured at the time of a dose is a *pre-dose* (trough) sample: its record is
    written before the dose record, as NONMEM orders records that share a time.

:func:`prediction_dataset` (used by simulation, forecasting and dosing) lays observation
records at chosen times over any dose history, each one either just before or just after a
dose given at the same time, so that a trough (before) and a peak after a bolus (after) are
both expressible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from .data import NonmemDataset
from .data_validation import STANDARD_COLUMNS
from .errors import SpecificationError

__all__ = ["Regimen", "dose_records", "patient_records", "prediction_dataset"]

ROUTES = ("iv", "oral")


def _positive(value: Any, what: str, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and math.isfinite(float(value)) and (value >= 0 if allow_zero else value > 0):
        return float(value)
    bound = ">= 0" if allow_zero else "> 0"
    raise SpecificationError(f"Regimen: {what} must be a finite number {bound}, got {value!r}.")


@dataclass(frozen=True)
class Regimen:
    """``n_doses`` doses of ``amount`` every ``interval``, from ``start``.

    Parameters
    ----------
    amount : float
        Dose (the dataset's AMT units, e.g. mg).
    interval : float
        Dosing interval (II, e.g. h); needed when ``n_doses > 1``.
    n_doses : int
        Number of doses.
    duration : float
        Infusion duration; 0 (default) for a bolus. ``RATE = amount / duration``.
    route : {"iv", "oral"}, int or None
        ``None``: the model's default dose compartment (CMT 0: the depot of an oral model,
        the central compartment of an IV model); ``"iv"``: the central compartment;
        ``"oral"``: the depot; an int: that CMT.
    start : float
        Time of the first dose.

    Examples
    --------
    >>> from nlme_bayes.regimen import Regimen
    >>> maintenance = Regimen(amount=5.0, interval=12.0, n_doses=3, start=12.0)
    >>> maintenance.dose_times.tolist(), maintenance.end
    ([12.0, 24.0, 36.0], 48.0)
    >>> Regimen(amount=100.0, duration=0.5).rate
    200.0
    """

    amount: float
    interval: float = 0.0
    n_doses: int = 1
    duration: float = 0.0
    route: str | int | None = None
    start: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount", _positive(self.amount, "amount"))
        object.__setattr__(self, "duration", _positive(self.duration, "duration", allow_zero=True))
        object.__setattr__(self, "start", _positive(self.start, "start", allow_zero=True))
        n = self.n_doses
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise SpecificationError(f"Regimen: n_doses must be an int >= 1, got {n!r}.")
        object.__setattr__(self, "n_doses", int(n))
        if self.n_doses > 1:
            object.__setattr__(self, "interval", _positive(self.interval, "interval"))
        else:
            object.__setattr__(
                self, "interval", _positive(self.interval, "interval", allow_zero=True)
            )
        r = self.route
        if not (
            r is None
            or r in ROUTES
            or (isinstance(r, (int, np.integer)) and not isinstance(r, bool) and r >= 1)
        ):
            raise SpecificationError(
                f"Regimen: route={r!r} is not valid; choose 'iv', 'oral', None (the model's "
                "default dose compartment) or a CMT number >= 1."
            )

    @property
    def dose_times(self) -> np.ndarray:
        """Times of the doses.

        Examples
        --------
        >>> Regimen(amount=100.0, interval=8.0, n_doses=4, start=2.0).dose_times.tolist()
        [2.0, 10.0, 18.0, 26.0]
        """
        return self.start + self.interval * np.arange(self.n_doses)

    @property
    def end(self) -> float:
        """When the next dose would be due: ``start + n_doses * interval``.

        Examples
        --------
        >>> loading = Regimen(amount=20.0, interval=12.0)
        >>> maintenance = Regimen(amount=2.5, interval=12.0, n_doses=8, start=loading.end)
        >>> loading.end, maintenance.end
        (12.0, 108.0)
        """
        return self.start + self.n_doses * self.interval

    @property
    def rate(self) -> float:
        """``RATE`` of each dose record (0 for a bolus).

        Examples
        --------
        >>> Regimen(amount=500.0, duration=2.0).rate, Regimen(amount=500.0).rate
        (250.0, 0.0)
        """
        return self.amount / self.duration if self.duration > 0 else 0.0

    def replace(self, **changes: Any) -> Regimen:
        """A copy with some fields changed.

        Examples
        --------
        >>> Regimen(amount=100.0, interval=12.0, n_doses=3).replace(amount=150.0).amount
        150.0
        """
        return replace(self, **changes)

    def interval_bounds(self, which: int | str = "last") -> tuple[float, float]:
        """``(t0, t1)`` of a dosing interval: ``"first"``, ``"last"`` or a 0-based index.

        Examples
        --------
        >>> Regimen(amount=5.0, interval=12.0, n_doses=3).interval_bounds("last")
        (24.0, 36.0)
        """
        if self.interval <= 0:
            raise SpecificationError(
                "Regimen: a single dose without an interval has no dosing interval; give "
                "interval= (the length of the window to evaluate)."
            )
        index = {"first": 0, "last": self.n_doses - 1}.get(which, which)  # type: ignore[arg-type]
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise SpecificationError(
                f"interval {which!r} is not valid; choose 'first', 'last' or an index."
            )
        if not -self.n_doses <= index < self.n_doses:
            raise SpecificationError(
                f"interval {which!r}: the regimen has {self.n_doses} dosing intervals."
            )
        t0 = float(self.dose_times[index])
        return t0, t0 + self.interval

    def cmt(self, structure: Any = None) -> int:
        """The ``CMT`` of this regimen's dose records for ``structure``.

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> Regimen(amount=1.0, route="iv").cmt(nb.OneCompartment(route="oral"))
        2
        """
        if self.route is None:
            return 0
        if not isinstance(self.route, str):
            return int(self.route)
        if structure is None:
            raise SpecificationError(
                f"Regimen: route={self.route!r} needs the structural model to find the "
                "compartment number; pass structure= (e.g. fit.model.structure)."
            )
        if self.route == "iv":
            return int(structure.central_compartment)
        names = getattr(structure, "compartments", {})
        depots = [c for c, name in names.items() if name == "depot"]
        if not depots:
            raise SpecificationError(
                f"Regimen: route='oral' but {structure.describe()} has no depot compartment; "
                "use route='iv' or an oral model."
            )
        return int(depots[0])


def _as_regimens(regimens: Regimen | Sequence[Regimen]) -> list[Regimen]:
    items = [regimens] if isinstance(regimens, Regimen) else list(regimens)
    bad = [r for r in items if not isinstance(r, Regimen)]
    if bad or not items:
        raise SpecificationError(
            f"expected a Regimen or a sequence of Regimen objects, got {regimens!r}."
        )
    return items


def _blank(n: int) -> dict[str, Any]:
    return {
        "DV": np.zeros(n),
        "AMT": np.zeros(n),
        "EVID": np.zeros(n, dtype=np.int64),
        "MDV": np.zeros(n, dtype=np.int64),
        "CMT": np.zeros(n, dtype=np.int64),
        "RATE": np.zeros(n),
        "II": np.zeros(n),
        "ADDL": np.zeros(n, dtype=np.int64),
        "SS": np.zeros(n, dtype=np.int64),
        "DVID": np.ones(n, dtype=np.int64),
    }


def dose_records(
    regimens: Regimen | Sequence[Regimen],
    *,
    structure: Any = None,
    id: Any = 1,
    compact: bool = False,
) -> pd.DataFrame:
    """The dose records of one or more regimens, NONMEM style.

    Parameters
    ----------
    regimens : Regimen or sequence of Regimen
    structure : structural model, optional
        Needed for ``route="iv"``/``"oral"`` (to number the compartment).
    id : any
        The ``ID`` of the records.
    compact : bool
        One record per regimen with ``ADDL``/``II`` instead of one record per dose.

    Returns
    -------
    pandas.DataFrame
        Columns ``ID, TIME, DV, AMT, EVID, MDV, CMT, RATE, II, ADDL, SS, DVID``, by time.

    Examples
    --------
    >>> from nlme_bayes.regimen import Regimen, dose_records
    >>> load, keep = Regimen(20.0), Regimen(5.0, interval=12.0, n_doses=2, start=12.0)
    >>> dose_records([load, keep])[["TIME", "AMT", "EVID", "II", "ADDL"]]
       TIME   AMT  EVID    II  ADDL
    0   0.0  20.0     1   0.0     0
    1  12.0   5.0     1  12.0     0
    2  24.0   5.0     1  12.0     0
    """
    parts = []
    for r in _as_regimens(regimens):
        times = r.dose_times[:1] if compact else r.dose_times
        n = len(times)
        parts.append(
            {
                "TIME": times,
                "AMT": np.full(n, r.amount),
                "CMT": np.full(n, r.cmt(structure), dtype=np.int64),
                "RATE": np.full(n, r.rate),
                "II": np.full(n, r.interval),
                "ADDL": np.full(n, r.n_doses - 1 if compact else 0, dtype=np.int64),
            }
        )
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(cols["TIME"], kind="stable")
    n = len(order)
    out = _blank(n)
    out.update({k: v[order] for k, v in cols.items()})
    out["EVID"] = np.ones(n, dtype=np.int64)
    out["MDV"] = np.ones(n, dtype=np.int64)
    frame = pd.DataFrame({"ID": [id] * n, **out})
    return frame[list(STANDARD_COLUMNS)]


def patient_records(
    regimens: Regimen | Sequence[Regimen],
    *,
    observations: Any = None,
    covariates: Mapping[str, Any] | None = None,
    structure: Any = None,
    id: Any = 1,
    dvid: int = 1,
) -> pd.DataFrame:
    """A new patient's records: dose history, measured levels and covariates.

    Parameters
    ----------
    regimens : Regimen or sequence of Regimen
        The doses given (and, if you like, those planned: only past doses matter for levels).
    observations : DataFrame with TIME, DV (and DVID), mapping {TIME: DV}, or pairs
        Measured levels. A level at the time of a dose is taken before that dose.
    covariates : mapping, optional
        Covariate values, e.g. ``{"WT": 1.2, "APGAR_LT5": 0}`` (one value each).
    structure, id, dvid
        As in :func:`dose_records`; ``dvid`` is the DVID of levels given without one.

    Returns
    -------
    pandas.DataFrame
        Records :func:`nlme_bayes.read_nonmem` reads.

    Examples
    --------
    >>> from nlme_bayes.regimen import Regimen, patient_records
    >>> rec = patient_records(Regimen(10.0, interval=12.0, n_doses=2),
    ...                       observations={12.0: 7.5}, covariates={"WT": 1.1})
    >>> rec[["TIME", "AMT", "DV", "EVID", "WT"]]
       TIME   AMT   DV  EVID  WT
    0   0.0  10.0  0.0     1  1.1
    1  12.0   0.0  7.5     0  1.1
    2  12.0  10.0  0.0     1  1.1
    """
    doses = dose_records(regimens, structure=structure, id=id)
    obs = _observation_frame(observations, dvid)
    cols = _blank(len(obs))
    cols.update(DV=obs["DV"].to_numpy(float), DVID=obs["DVID"].to_numpy(np.int64))
    cols["TIME"] = obs["TIME"].to_numpy(float)
    both = {c: np.concatenate([cols[c], doses[c].to_numpy()]) for c in cols}
    # levels first at equal times (pre-dose samples)
    order = np.lexsort((np.r_[np.zeros(len(obs)), np.ones(len(doses))], both["TIME"]))
    both = pd.DataFrame({"ID": [id] * len(order), **{c: v[order] for c, v in both.items()}})
    both = both[list(STANDARD_COLUMNS)]
    for name, value in (covariates or {}).items():
        if name.upper() in STANDARD_COLUMNS:
            raise SpecificationError(
                f"covariates: {name!r} is a standard NONMEM column, not a covariate."
            )
        if np.ndim(value) != 0:
            raise SpecificationError(
                f"covariates: {name!r} must be one value, got {value!r}; give time-varying "
                "covariates as records instead."
            )
        both[name] = value
    return both


def _observation_frame(observations: Any, dvid: int) -> pd.DataFrame:
    if observations is None:
        return pd.DataFrame({"TIME": [], "DV": [], "DVID": []})
    if isinstance(observations, pd.DataFrame):
        cols = {c.upper(): c for c in observations.columns}
        missing = [c for c in ("TIME", "DV") if c not in cols]
        if missing:
            raise SpecificationError(
                f"observations: column(s) {', '.join(missing)} missing; give TIME and DV "
                "(and optionally DVID)."
            )
        out = pd.DataFrame(
            {
                "TIME": observations[cols["TIME"]].to_numpy(float),
                "DV": observations[cols["DV"]].to_numpy(float),
            }
        )
        out["DVID"] = observations[cols["DVID"]].to_numpy() if "DVID" in cols else dvid
        return out
    pairs = list(observations.items()) if isinstance(observations, Mapping) else observations
    try:
        arr = np.asarray(pairs, dtype=float).reshape(-1, 2)
    except (TypeError, ValueError) as exc:
        raise SpecificationError(
            "observations must be a DataFrame with TIME and DV, a mapping {TIME: DV} or "
            f"(TIME, DV) pairs; got {observations!r}."
        ) from exc
    return pd.DataFrame({"TIME": arr[:, 0], "DV": arr[:, 1], "DVID": dvid})


# --------------------------------------------------------------------------- prediction grids
def prediction_dataset(
    history: NonmemDataset,
    times: Mapping[Any, Any] | Any,
    *,
    before_dose: Mapping[Any, Any] | Any = False,
    dvid: int = 1,
    extra_doses: Mapping[Any, pd.DataFrame] | pd.DataFrame | None = None,
) -> tuple[NonmemDataset, pd.DataFrame]:
    """Observation records at ``times`` laid over each subject's dose history.

    The history's own observation records are dropped (``ADDL`` doses are written out), and
    for every subject one observation record (``DV`` 0) is added per time. A time equal to a
    dose time is placed just after that dose, or just before it where ``before_dose`` is
    True (a trough). After a reset (EVID 3/4) the new records go to the last period.

    Parameters
    ----------
    history : NonmemDataset
        Dose (and reset) records and covariates of each subject.
    times : array or mapping ID -> array
        Times for every subject, or per subject.
    before_dose : bool, array or mapping ID -> array
        Same shape as ``times``.
    dvid : int
        DVID of the new records.
    extra_doses : DataFrame, or mapping ID -> DataFrame, optional
        Further dose records (e.g. from :func:`dose_records`) added to subjects' histories
        (by their ``ID`` column, or the mapping's keys).

    Returns
    -------
    dataset : NonmemDataset
    rows : DataFrame
        One row per new record, in schedule order: ``ID, TIME, before_dose``.

    Examples
    --------
    >>> import pandas as pd
    >>> from nlme_bayes import read_nonmem
    >>> from nlme_bayes.regimen import Regimen, patient_records, prediction_dataset
    >>> hist = read_nonmem(patient_records(Regimen(10.0, interval=12.0, n_doses=2)))
    >>> ds, rows = prediction_dataset(hist, [12.0, 12.0], before_dose=[True, False])
    >>> ds.events()[["TIME", "EVID"]].values.tolist()
    [[0.0, 1.0], [12.0, 0.0], [12.0, 1.0], [12.0, 0.0]]
    """
    ev = history.events().drop(columns=["IMPLIED", "ROW"])
    ev = ev[ev["EVID"] != 0].assign(ADDL=np.int64(0))
    ids = list(history.subject_ids)
    if extra_doses is not None:
        if isinstance(extra_doses, Mapping):
            frames = [f[list(STANDARD_COLUMNS)].assign(ID=sid) for sid, f in extra_doses.items()]
            extra = pd.concat(frames, ignore_index=True) if frames else None
        else:
            extra = extra_doses[list(STANDARD_COLUMNS)]
        if extra is not None:
            unknown = sorted(set(extra["ID"]) - set(ids), key=str)
            if unknown:
                raise SpecificationError(f"extra_doses: unknown subject ID(s) {unknown}.")
            ev = pd.concat([ev, extra], ignore_index=True)
    covs = list(history.covariates)
    t_parts, b_parts = [], []
    for sid in ids:
        t = np.atleast_1d(np.asarray(times[sid] if isinstance(times, Mapping) else times, float))
        b = before_dose[sid] if isinstance(before_dose, Mapping) else before_dose
        t_parts.append(t)
        b_parts.append(np.broadcast_to(np.asarray(b, dtype=bool), t.shape))
    counts = [len(t) for t in t_parts]
    t_all, b_all = np.concatenate(t_parts), np.concatenate(b_parts)
    cols = _blank(len(t_all))
    cols["DVID"] = np.full(len(t_all), dvid, dtype=np.int64)
    obs = pd.DataFrame({"ID": pd.Series(ids).repeat(counts).to_numpy(), "TIME": t_all, **cols})
    obs["_k"] = np.where(b_all, 0, 2)
    order = {sid: i for i, sid in enumerate(ids)}
    ev = ev.assign(_k=1, _s=ev["ID"].map(order), _seq=np.arange(len(ev)))
    ev = ev.sort_values(["_s", "_seq"], kind="stable")
    # reset periods: a reset (EVID 3/4) opens a new one; a new record joins the last period
    # opened at or before its time (after a reset that restarts the clock: the new period)
    ev["_p"] = ev["EVID"].isin((3, 4)).astype(int).groupby(ev["_s"]).cumsum()
    obs = obs.assign(_s=obs["ID"].map(order), _seq=len(ev) + np.arange(len(obs)), _p=0)
    resets = ev[ev["EVID"].isin((3, 4))]
    for s_idx, r in resets.groupby("_s"):
        sel = (obs["_s"] == s_idx).to_numpy()
        t = obs.loc[sel, "TIME"].to_numpy()
        pre = (obs.loc[sel, "_k"] == 0).to_numpy()
        starts = r["TIME"].to_numpy()
        periods = r["_p"].to_numpy()
        opened = np.where(pre[:, None], starts[None] < t[:, None], starts[None] <= t[:, None])
        obs.loc[sel, "_p"] = np.where(opened, periods[None], 0).max(axis=1)
    allrec = pd.concat([ev, obs], ignore_index=True)
    allrec = allrec.sort_values(["_s", "_p", "TIME", "_k", "_seq"], kind="stable")
    if covs:
        allrec[covs] = allrec.groupby("_s")[covs].ffill()
        allrec[covs] = allrec.groupby("_s")[covs].bfill()
    rows = allrec[allrec["_k"] != 1][["ID", "TIME"]].assign(before_dose=allrec["_k"] == 0)
    allrec = allrec.drop(columns=["_s", "_k", "_seq", "_p"]).reset_index(drop=True)
    ds = NonmemDataset.from_records(
        allrec[list(STANDARD_COLUMNS) + covs], covariates=covs, source="<prediction grid>"
    )
    return ds, rows.reset_index(drop=True)
