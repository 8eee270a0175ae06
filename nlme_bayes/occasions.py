"""Occasions for inter-occasion variability (IOV): which occasion each observation is in.

With IOV a parameter takes one value per *unit*, a (subject, occasion) pair:
``P_ij = P_typ,i * exp(eta_i + kappa_ij)``. The closed-form models evaluate parameters per
"subject" of an :class:`~nlme_bayes.events_types.EventSchedule`; :func:`unit_schedule`
re-indexes the schedule by unit, so that every observation (and every dose contribution
to it) is computed with the parameters of the observation's occasion.

That is exact when occasions are separated by a reset (``EVID`` 3/4, which already cuts
the earlier doses out of the schedule) or by a washout. Otherwise a dose given in an
earlier occasion contributes with the later occasion's parameters (NONMEM switches the
parameters at the boundary instead): :func:`occasion_design` counts these *carry-over*
contributions, and the build warns when there are any.

Examples
--------
>>> import pandas as pd
>>> import nlme_bayes as nb
>>> from nlme_bayes.events import build_schedule
>>> ds = nb.read_nonmem(pd.DataFrame({
...     "ID": [1, 1, 1, 1], "TIME": [0, 2, 0, 2], "AMT": [10, 0, 10, 0],
...     "DV": [".", 1.0, ".", 1.2], "EVID": [1, 0, 4, 0], "OCC": [1, 1, 2, 2]}))
>>> schedule, obs = build_schedule(ds, nb.OneCompartment(route="iv"))
>>> design = occasion_design(ds, nb.Occasions(), obs, schedule)
>>> design.labels, design.obs_unit.tolist(), design.carry_over
(('1/1', '1/2'), [0, 1], 0)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import DatasetError, SpecificationError
from .events import describe_rows

__all__ = [
    "OccasionDesign",
    "occasion_design",
    "observation_occasions",
    "occasion_draws",
    "unit_parameters",
    "unit_schedule",
]


@dataclass(frozen=True)
class OccasionDesign:
    """Units (subject, occasion) and which unit each observation belongs to.

    Attributes
    ----------
    unit_subject : numpy.ndarray
        ``int64 (n_units,)``: subject index of each unit.
    unit_occasion : tuple
        The occasion label of each unit (the ``OCC`` value, or 1, 2, ... from the doses).
    labels : tuple of str
        ``"ID/OCC"`` per unit (the coordinate of the ``subject_occasion`` dimension).
    obs_unit : numpy.ndarray
        ``int64 (n_obs,)``: unit of each observation.
    carry_over : int
        Dose contributions to an observation that come from an earlier occasion of the same
        subject (computed with the later occasion's parameters; 0 for separated occasions).

    Examples
    --------
    Built by :func:`occasion_design` (see there for one from data); by hand, one subject
    observed once on each of two occasions:

    >>> import numpy as np
    >>> design = OccasionDesign(unit_subject=np.array([0, 0]), unit_occasion=(1, 2),
    ...                         labels=("1/1", "1/2"), obs_unit=np.array([0, 1]), carry_over=0)
    >>> design.n_units, design.labels  # labels: "subject/occasion"
    (2, ('1/1', '1/2'))
    """

    unit_subject: np.ndarray
    unit_occasion: tuple[Any, ...]
    labels: tuple[str, ...]
    obs_unit: np.ndarray
    carry_over: int

    @property
    def n_units(self) -> int:
        """Number of units (subject, occasion).

        Examples
        --------
        >>> import numpy as np
        >>> design = OccasionDesign(unit_subject=np.array([0, 0, 1]), unit_occasion=(1, 2, 1),
        ...                         labels=("1/1", "1/2", "2/1"), obs_unit=np.array([0, 1, 2]),
        ...                         carry_over=0)
        >>> design.n_units  # subject 1 on two occasions, subject 2 on one
        3
        """
        return int(self.unit_subject.shape[0])


def _event_occasions(data: Any, occasions: Any) -> pd.DataFrame:
    """The event table (ADDL written out) with the occasion of every record, ``_OCC``."""
    ev = data.events()
    if occasions.from_doses:
        is_dose = ev["EVID"].isin((1, 4)).to_numpy() & ~ev["IMPLIED"].to_numpy()
        count = pd.Series(is_dose.astype(np.int64)).groupby(ev["ID"].to_numpy(), sort=False)
        return ev.assign(_OCC=np.maximum(count.cumsum().to_numpy(), 1))
    column = occasions.column
    if column not in ev.columns:
        available = [c for c in data.records.columns if c != "ROW"]
        raise DatasetError(
            f"{column}: the occasion column is not in the data (Occasions(column={column!r})); "
            f"columns are {', '.join(available)}. Name the right column, or derive the "
            "occasions from the doses with Occasions(from_doses=True)."
        )
    return ev.assign(_OCC=ev[column])


def observation_occasions(
    data: Any, occasions: Any, obs: pd.DataFrame, events: pd.DataFrame | None = None
) -> np.ndarray:
    """The occasion label of every observation (rows of ``obs``, the schedule's order).

    Raises
    ------
    DatasetError
        The occasion column is missing from the data or has no value on observation records.

    Examples
    --------
    Two occasions separated by a reset-and-dose record (EVID 4):

    >>> import pandas as pd
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.events import build_schedule
    >>> ds = nb.read_nonmem(pd.DataFrame({"ID": [1] * 4, "TIME": [0.0, 1.0, 24.0, 25.0],
    ...     "AMT": [100.0, 0, 100.0, 0], "DV": [0, 2.5, 0, 2.0], "EVID": [1, 0, 4, 0],
    ...     "OCC": [1, 1, 2, 2]}))
    >>> _, obs = build_schedule(ds, nb.OneCompartment(route="iv"))
    >>> observation_occasions(ds, nb.Occasions(), obs).tolist()
    [1.0, 2.0]
    """
    ev = _event_occasions(data, occasions) if events is None else events
    is_obs = ((ev["EVID"] == 0) & (ev["MDV"] == 0)).to_numpy()
    values = pd.Series(ev.loc[is_obs, "_OCC"].to_numpy(), index=ev.loc[is_obs, "ROW"].to_numpy())
    values = values.loc[obs["ROW"].to_numpy()]
    missing = values.isna().to_numpy()
    if missing.any():
        raise DatasetError(
            f"{occasions.column}: missing occasion at {describe_rows(obs[missing])} "
            "(observation records); every observation needs its occasion."
        )
    return values.to_numpy()


def _label(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def occasion_design(data: Any, occasions: Any, obs: pd.DataFrame, schedule: Any) -> OccasionDesign:
    """Units and the observation -> unit map for ``schedule`` (from :func:`build_schedule`).

    Units are numbered by subject (in subject order) then by first appearance of the
    occasion among the subject's observations.

    Examples
    --------
    >>> import pandas as pd
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.events import build_schedule
    >>> ds = nb.read_nonmem(pd.DataFrame({"ID": [1] * 4, "TIME": [0.0, 1.0, 24.0, 25.0],
    ...     "AMT": [100.0, 0, 100.0, 0], "DV": [0, 2.5, 0, 2.0], "EVID": [1, 0, 4, 0],
    ...     "OCC": [1, 1, 2, 2]}))
    >>> schedule, obs = build_schedule(ds, nb.OneCompartment(route="iv"))
    >>> design = occasion_design(ds, nb.Occasions(), obs, schedule)
    >>> design.labels, design.obs_unit.tolist(), design.carry_over
    (('1/1', '1/2'), [0, 1], 0)
    """
    ev = _event_occasions(data, occasions)
    occ = observation_occasions(data, occasions, obs, ev)
    subj = obs["subject"].to_numpy(dtype=np.int64)
    keys = pd.DataFrame({"s": subj, "o": [_label(v) for v in occ]})
    first = keys.drop_duplicates().reset_index(drop=True)
    first["_order"] = np.arange(len(first))
    first = first.sort_values(["s", "_order"], kind="stable").reset_index(drop=True)
    pairs_so = list(zip(first["s"], first["o"], strict=True))
    unit_of = {key: i for i, key in enumerate(pairs_so)}
    obs_unit = np.array([unit_of[k] for k in zip(keys["s"], keys["o"], strict=True)], np.int64)
    raw = {(s, _label(v)): v for s, v in zip(subj, occ, strict=True)}
    ids = list(data.subject_ids)
    # each unit starts at the earliest record (dose or observation) of its occasion
    subj_index = {sid: i for i, sid in enumerate(ids)}
    labelled = ev[ev["_OCC"].notna()]
    starts: dict[tuple[int, str], float] = {}
    for s_, o_, t_ in zip(
        labelled["ID"].map(subj_index), labelled["_OCC"].map(_label), labelled["TIME"], strict=True
    ):
        key = (int(s_), o_)
        starts[key] = min(starts.get(key, np.inf), float(t_))
    start = np.array([starts.get((int(s_), o_), -np.inf) for s_, o_ in pairs_so], dtype=float)
    obs_time = obs["TIME"].to_numpy(dtype=float)
    carry = 0
    for pairs in schedule.groups().values():
        if pairs.n_pairs:
            t_dose = obs_time[pairs.obs] - pairs.dt
            carry += int((t_dose < start[obs_unit[pairs.obs]] - 1e-9).sum())
    return OccasionDesign(
        unit_subject=first["s"].to_numpy(dtype=np.int64),
        unit_occasion=tuple(raw[k] for k in pairs_so),
        labels=tuple(f"{ids[s]}/{o}" for s, o in pairs_so),
        obs_unit=obs_unit,
        carry_over=carry,
    )


def unit_schedule(schedule: Any, design: OccasionDesign) -> Any:
    """``schedule`` re-indexed by unit: one "subject" per (subject, occasion).

    Examples
    --------
    >>> from nlme_bayes.events_types import DosePairs, EventSchedule
    >>> pairs = DosePairs(obs=[0, 1], subject=[0, 0], dt=[1.0, 1.0], amt=[1.0, 1.0],
    ...                   duration=[0.0, 0.0])
    >>> s = EventSchedule(n_subjects=1, n_obs=2, obs_subject=[0, 0], obs_time=[1.0, 1.0],
    ...                   iv_bolus=pairs)
    >>> d = OccasionDesign(np.array([0, 0]), (1, 2), ("1/1", "1/2"), np.array([0, 1]), 0)
    >>> unit_schedule(s, d).iv_bolus.subject.tolist()
    [0, 1]
    """
    groups = {
        name: dataclasses.replace(pairs, subject=design.obs_unit[pairs.obs])
        for name, pairs in schedule.groups().items()
    }
    try:
        return dataclasses.replace(
            schedule, n_subjects=design.n_units, obs_subject=design.obs_unit, **groups
        )
    except TypeError as exc:  # pragma: no cover - a schedule type without these fields
        raise SpecificationError(
            f"Inter-occasion variability is not supported with this structural model's event "
            f"schedule ({type(schedule).__name__}): {exc}"
        ) from None


def occasion_draws(
    fit: Any, index: np.ndarray, *, new_occasions: bool, rng: np.random.Generator
) -> np.ndarray:
    """``kappa`` for posterior draws ``index``: fitted, or new occasions ``N(0, omega_iov)``.

    Returns an array ``(S, n_units, k_iov)`` in the order of the fitted
    ``subject_occasion`` and ``param_iov`` coordinates.

    Examples
    --------
    >>> import numpy as np
    >>> kappa = occasion_draws(fit, np.arange(100), new_occasions=True,
    ...                        rng=np.random.default_rng(0))  # doctest: +SKIP
    """
    post = fit.posterior
    omega = post["omega_iov"].transpose("chain", "draw", "param_iov").values
    omega = omega.reshape(-1, omega.shape[-1])[index]
    n_units = post.sizes["subject_occasion"]
    if new_occasions:
        return rng.standard_normal((len(index), n_units, omega.shape[-1])) * omega[:, None, :]
    kappa = post["kappa"].transpose("chain", "draw", "subject_occasion", "param_iov").values
    return kappa.reshape((-1,) + kappa.shape[2:])[index]


def unit_parameters(
    model: Any,
    design: OccasionDesign,
    typical: dict[str, np.ndarray],
    eta: np.ndarray,
    kappa: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Individual and typical parameters per unit, ``(S, n_units)`` (mirrors the builder).

    ``typical`` and ``eta`` are per subject, ``(S, n_subjects)`` and ``(S, n_subjects, k)``;
    ``kappa`` is ``(S, n_units, k_iov)``.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> m = nb.Model(structure=nb.OneCompartment(route="iv"), occasions=nb.Occasions(),
    ...              parameters=[nb.Parameter("CL", 1.0, iov=True), nb.Parameter("V", 10.0)])
    >>> d = OccasionDesign(np.array([0, 0]), (1, 2), ("1/1", "1/2"), np.array([0, 1]), 0)
    >>> ind, typ = unit_parameters(m, d, {"CL": np.ones((1, 1)), "V": np.full((1, 1), 10.0)},
    ...                            np.zeros((1, 1, 2)), np.log([[[2.0], [0.5]]]))
    >>> ind["CL"].round(3).tolist(), typ["CL"].tolist()
    ([[2.0, 0.5]], [[1.0, 1.0]])
    """
    unit = design.unit_subject
    iiv, iov = tuple(model.iiv_names), tuple(model.iov_names)
    individual, typ_units = {}, {}
    for p in model.parameters:
        t = np.asarray(typical[p.name])[..., unit]
        typ_units[p.name] = t
        e = eta[..., unit, iiv.index(p.name)] if p.iiv is not None else 0.0
        k = kappa[..., iov.index(p.name)] if p.iov else 0.0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if p.iiv == "normal":
                individual[p.name] = t + e + k
            elif p.iiv == "logit":
                x = np.log(t) - np.log1p(-t) + e + k
                individual[p.name] = 1.0 / (1.0 + np.exp(-x))
            else:
                individual[p.name] = t * np.exp(e + k)
    return individual, typ_units
