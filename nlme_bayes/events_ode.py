"""From a validated dataset to the per-subject event timeline an ODE model integrates.

Where the closed forms superpose dose-observation pairs, an ODE model has to be
*integrated through* its dosing history, because superposition does not hold for a
nonlinear system.  :func:`build_ode_schedule` turns the event table of a
:class:`~nlme_bayes.data.NonmemDataset` (ADDL already expanded, NONMEM record order)
into, for every subject, a padded list of *events*:

=============  ===============================================================
kind           effect at the event time
=============  ===============================================================
``BOLUS``      ``AMT`` (times ``F`` where it applies) added to the dose state
``INF_START``  ``RATE`` added to the zero-order input of the dose state
``INF_END``    ``RATE`` removed again, ``AMT/RATE`` later (``F*AMT/RATE`` with F)
``RESET``      every state back to its initial condition, inputs stopped (EVID 3/4)
``OBS``        the state is recorded for observation ``obs``
``PAD``        nothing (pads subjects to the same number of events)
=============  ===============================================================

and a fixed grid of integration steps between consecutive events (no step ever
crosses an event, so the solver never steps over a discontinuity).  The grid is
built from the data times; with a lag time or bioavailability acting on infusion
durations the event *times* depend on parameters, and the ODE model re-sorts them
at run time (see :class:`~nlme_bayes.structural.ode.ODEModel`), keeping the grid's
step counts.  Everything here is NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import DatasetError
from .events import describe_rows

__all__ = [
    "OdeSchedule",
    "build_ode_schedule",
    "PAD",
    "BOLUS",
    "INF_START",
    "INF_END",
    "RESET",
    "OBS",
]

PAD, BOLUS, INF_START, INF_END, RESET, OBS = 0, 1, 2, 3, 4, 5


@dataclass(frozen=True, eq=False)
class OdeSchedule:
    """Per-subject event timelines and the integration grid (all NumPy arrays).

    Attributes
    ----------
    n_subjects, n_obs : int
    obs_subject, obs_time : numpy.ndarray
        Subject index and time of each observation (schedule order).
    obs_output : numpy.ndarray
        Index of the model output each observation measures (from ``DVID``).
    kind, state, time, amt, rate, period, obs, partner : numpy.ndarray
        ``(n_subjects, n_events)`` event arrays: kind (module constants), state index
        of a dose, data time, amount, rate, reset period, observation index (-1 if
        none) and, for ``INF_END``, the position of its ``INF_START`` (else -1).
    lagged : numpy.ndarray
        ``(n_subjects, n_events)`` bool: the event is a dose (or infusion end) into a
        state with lag time / bioavailability.
    step_pos, step_w0, step_w1, step_apply : numpy.ndarray
        ``(n_steps, n_subjects)`` grid: the event position whose preceding segment the
        step belongs to, the step's start/end as fractions of that segment, and 1 on
        the segment's last step (the event is applied after it).
    last_step : numpy.ndarray
        ``(n_subjects, n_events)`` the step after which each event position applies.
    max_step : float
        The largest step the grid was built with (the structure's ``max_step`` or the
        default, 1/40 of the median subject's time span).

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.structural import ode_templates
    >>> schedule, obs = build_ode_schedule(nb.datasets.theophylline(),
    ...                                    ode_templates.load("one_cmt_oral_linear"))
    >>> schedule.n_subjects, schedule.n_events
    (12, 12)
    """

    n_subjects: int
    n_obs: int
    obs_subject: np.ndarray
    obs_time: np.ndarray
    obs_output: np.ndarray
    kind: np.ndarray
    state: np.ndarray
    time: np.ndarray
    amt: np.ndarray
    rate: np.ndarray
    period: np.ndarray
    obs: np.ndarray
    partner: np.ndarray
    lagged: np.ndarray
    step_pos: np.ndarray
    step_w0: np.ndarray
    step_w1: np.ndarray
    step_apply: np.ndarray
    last_step: np.ndarray
    max_step: float = float("nan")

    def structurally_positive(self, structure: Any) -> np.ndarray | None:
        """Which observations can have a prediction > 0: those after a dose (same period).

        None when the model has initial conditions (a baseline), which we cannot judge.

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> from nlme_bayes.structural import ode_templates
        >>> model = ode_templates.load("one_cmt_oral_linear")
        >>> schedule, obs = build_ode_schedule(nb.datasets.theophylline(), model)
        >>> int(schedule.structurally_positive(model).sum())  # every observation follows a dose
        132
        """
        if getattr(structure, "initial", None) is not None:
            return None
        dosed = np.isin(self.kind, (BOLUS, INF_START))
        out = np.zeros(self.n_obs, bool)
        for i in range(self.n_subjects):
            seen = -1
            for k in range(self.n_events):
                if self.kind[i, k] == RESET:
                    seen = -1
                elif dosed[i, k] and self.time[i, k] >= 0:
                    seen = self.period[i, k]
                elif self.kind[i, k] == OBS and seen == self.period[i, k]:
                    # a bolus into an observed state at the same time counts; a depot dose
                    # at the very same time gives 0 - left to the run-time check
                    out[self.obs[i, k]] = True
        return out

    def tile(self, t: int) -> OdeSchedule:
        """``t`` independent copies (copy ``r`` has subjects ``r*n .. r*n + n - 1``).

        Used by the marginal likelihood and forecasting, which evaluate many copies of a
        subject at once.

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> from nlme_bayes.structural import ode_templates
        >>> schedule, obs = build_ode_schedule(nb.datasets.theophylline(),
        ...                                    ode_templates.load("one_cmt_oral_linear"))
        >>> copies = schedule.tile(3)
        >>> copies.n_subjects, copies.n_obs, copies.n_events
        (36, 396, 12)
        >>> int(copies.obs_subject[schedule.n_obs])  # copy 1 starts at subject 12
        12
        """
        reps = np.arange(t)
        n, n_obs = self.n_subjects, self.n_obs
        rows = lambda a: np.tile(a, (t, 1))  # noqa: E731 - (n, K) arrays: copies stacked
        cols = lambda a: np.tile(a, (1, t))  # noqa: E731 - (n_steps, n) arrays
        obs = np.where(self.obs >= 0, self.obs[None] + (reps * n_obs)[:, None, None], -1)
        return OdeSchedule(
            n_subjects=n * t,
            n_obs=n_obs * t,
            obs_subject=(self.obs_subject[None] + (reps * n)[:, None]).ravel(),
            obs_time=np.tile(self.obs_time, t),
            obs_output=np.tile(self.obs_output, t),
            kind=rows(self.kind),
            state=rows(self.state),
            time=rows(self.time),
            amt=rows(self.amt),
            rate=rows(self.rate),
            period=rows(self.period),
            obs=obs.reshape(n * t, -1),
            partner=rows(self.partner),
            lagged=rows(self.lagged),
            step_pos=cols(self.step_pos),
            step_w0=cols(self.step_w0),
            step_w1=cols(self.step_w1),
            step_apply=cols(self.step_apply),
            last_step=rows(self.last_step),
            max_step=self.max_step,
        )

    @property
    def n_events(self) -> int:
        """Number of event positions per subject (columns of the event arrays).

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> from nlme_bayes.structural import ode_templates
        >>> schedule, obs = build_ode_schedule(nb.datasets.theophylline(),
        ...                                    ode_templates.load("one_cmt_oral_linear"))
        >>> schedule.n_events, schedule.kind.shape
        (12, (12, 12))
        """
        return int(self.kind.shape[1])

    @property
    def n_steps(self) -> int:
        """Number of integration steps of the common grid (rows of the step arrays).

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> from nlme_bayes.structural import ode_templates
        >>> schedule, obs = build_ode_schedule(nb.datasets.theophylline(),
        ...                                    ode_templates.load("one_cmt_oral_linear"))
        >>> schedule.n_steps, schedule.step_pos.shape
        (51, (51, 12))
        """
        return int(self.step_pos.shape[0])


def _grid_fractions(n: int, graded: bool) -> np.ndarray:
    """``n + 1`` increasing fractions of a segment, quadratically graded after a dose."""
    u = np.linspace(0.0, 1.0, n + 1)
    return u**2 if graded else u


def build_ode_schedule(
    data: Any,
    structure: Any,
    *,
    max_step: float | None = None,
    min_steps: int = 2,
) -> tuple[OdeSchedule, pd.DataFrame]:
    """The ODE event schedule of ``data`` for the ODE model ``structure``.

    Parameters
    ----------
    data : NonmemDataset
    structure : ODEModel
        Supplies ``states``, ``compartments`` (``CMT`` number -> state name),
        ``default_dose``, ``modifier_states`` (states whose
        doses get lag time / bioavailability) and ``output_for_dvid``.
    max_step : float, optional
        Largest integration step (time units); default ``structure.max_step`` or, if
        that is None, 1/40 of the median subject's time span.
    min_steps : int
        Fewest steps between two events that are apart in time.

    Returns
    -------
    schedule : OdeSchedule
    observations : DataFrame
        One row per observation with ``ID, TIME, DV, DVID, ROW, subject``.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.structural import ode_templates
    >>> schedule, obs = build_ode_schedule(nb.datasets.theophylline(),
    ...                                    ode_templates.load("one_cmt_oral_linear"))
    >>> len(obs)
    132
    """
    ev = data.events().reset_index(drop=True)
    subject_ids = list(data.subject_ids)
    subj_index = {sid: i for i, sid in enumerate(subject_ids)}
    subj = ev["ID"].map(subj_index).to_numpy(dtype=np.int64)
    evid = ev["EVID"].to_numpy()
    is_dose = np.isin(evid, (1, 4))
    is_obs = (evid == 0) & (ev["MDV"].to_numpy() == 0)
    is_reset = np.isin(evid, (3, 4))

    ss = ev["SS"].to_numpy()
    if (is_dose & (ss > 0)).any():
        raise DatasetError(
            "SS: steady-state doses (SS=1/2) are not supported by the ODE models yet: "
            f"{describe_rows(ev[is_dose & (ss > 0)])}. Expand the dosing history explicitly "
            "(ADDL/II from the first dose) instead."
        )

    states = list(structure.states)
    cmt_map: dict[int, str] = structure.compartments
    cmt = ev["CMT"].to_numpy().astype(np.int64)
    problems = []
    dose_state = np.full(len(ev), -1, np.int64)
    for r in np.flatnonzero(is_dose):
        c = int(cmt[r])
        name = structure.dose_state if c == 0 else cmt_map.get(c)
        if name is None:
            dose_state[r] = -2
        else:
            dose_state[r] = states.index(name)
    bad = is_dose & (dose_state == -2)
    if bad.any():
        got = sorted(set(cmt[bad].tolist()))
        problems.append(
            f"CMT: doses into unknown compartment(s) {got} at {describe_rows(ev[bad])}; "
            f"{structure.describe()} has compartments "
            + ", ".join(f"{k} ({v})" for k, v in sorted(cmt_map.items()))
        )
    dvid = ev["DVID"].to_numpy().astype(np.int64)
    out_index = np.full(len(ev), -1, np.int64)
    outputs = list(structure.output_names)
    for r in np.flatnonzero(is_obs):
        name = structure.output_for_dvid(int(dvid[r]))
        out_index[r] = -2 if name is None else outputs.index(name)
    bad = is_obs & (out_index == -2)
    if bad.any():
        got = sorted(set(dvid[bad].tolist()))
        problems.append(
            f"DVID: observations of output(s) {got} at {describe_rows(ev[bad])}; "
            f"{structure.describe()} maps DVID to outputs as {structure.dvid_map_text()}"
        )
    if problems:
        raise DatasetError("\n".join(problems), problems)

    time = ev["TIME"].to_numpy(dtype=float)
    amt = ev["AMT"].to_numpy(dtype=float)
    rate = ev["RATE"].to_numpy(dtype=float)
    modified = {states.index(s) for s in structure.modifier_states}
    obs_pos = np.flatnonzero(is_obs)
    obs_number = np.full(len(ev), -1, np.int64)
    obs_number[obs_pos] = np.arange(len(obs_pos))

    # Per subject event lists (python loop over records is fine: build time, not run time).
    n = len(subject_ids)
    per: list[list[tuple]] = [[] for _ in range(n)]
    period = np.zeros(n, np.int64)
    last_period_time: list[float | None] = [None] * n
    for r in range(len(ev)):
        i = int(subj[r])
        if is_reset[r]:
            period[i] += 1
            per[i].append((RESET, -1, time[r], 0.0, 0.0, period[i], -1, -1, False))
        if is_dose[r]:
            s = int(dose_state[r])
            lag = s in modified
            if rate[r] > 0:
                k_start = len(per[i])
                per[i].append((INF_START, s, time[r], amt[r], rate[r], period[i], -1, -1, lag))
                per[i].append(
                    (
                        INF_END,
                        s,
                        time[r] + amt[r] / rate[r],
                        amt[r],
                        rate[r],
                        period[i],
                        -1,
                        k_start,
                        lag,
                    )
                )
            else:
                per[i].append((BOLUS, s, time[r], amt[r], 0.0, period[i], -1, -1, lag))
        if is_obs[r]:
            per[i].append((OBS, -1, time[r], 0.0, 0.0, period[i], int(obs_number[r]), -1, False))
        last_period_time[i] = time[r]

    # Infusion ends are placed by time (stable after records at the same time); then
    # order each subject's events by (period, time), stable.
    for i in range(n):
        evs = per[i]
        order = sorted(range(len(evs)), key=lambda k: (evs[k][5], evs[k][2], k))
        remap = {old: new for new, old in enumerate(order)}
        per[i] = [
            evs[k][:7] + ((remap[evs[k][7]] if evs[k][7] >= 0 else -1),) + evs[k][8:] for k in order
        ]

    n_ev = max(1, max(len(e) for e in per))
    shape = (n, n_ev)
    kind = np.full(shape, PAD, np.int64)
    st = np.full(shape, 0, np.int64)
    tm = np.zeros(shape)
    am = np.zeros(shape)
    rt = np.zeros(shape)
    pr = np.zeros(shape, np.int64)
    ob = np.full(shape, -1, np.int64)
    pa = np.full(shape, -1, np.int64)
    lg = np.zeros(shape, bool)
    for i, evs in enumerate(per):
        for k, e in enumerate(evs):
            kind[i, k], st[i, k], tm[i, k], am[i, k], rt[i, k] = max(e[0], 0), max(e[1], 0), *e[2:5]
            pr[i, k], ob[i, k], pa[i, k], lg[i, k] = e[5], e[6], e[7], e[8]
        if evs:
            k_last = len(evs)
            tm[i, k_last:] = evs[-1][2]
            pr[i, k_last:] = evs[-1][5]

    # --- the step grid (from data times)
    seg = np.diff(tm, axis=1, prepend=tm[:, :1])
    seg = np.where(kind == RESET, 0.0, seg)  # integrating up to a reset is pointless
    seg = np.where(np.diff(pr, axis=1, prepend=pr[:, :1]) != 0, 0.0, seg)
    seg = np.maximum(seg, 0.0)
    if max_step is None:
        max_step = getattr(structure, "max_step", None)
    if max_step is None:
        spans = [(tm[i, len(per[i]) - 1] - tm[i, 0]) if per[i] else 0.0 for i in range(n)]
        span = float(np.median(spans)) if spans else 1.0
        max_step = span / 40.0 if span > 0 else 1.0
    max_step = float(max_step)
    after_dose = np.zeros(shape, bool)
    after_dose[:, 1:] = np.isin(kind[:, :-1], (BOLUS, INF_START, INF_END, RESET))
    counts = np.where(
        seg > 0,
        np.maximum(min_steps, np.ceil(seg / max_step * np.where(after_dose, 2.0, 1.0))),
        1,
    ).astype(np.int64)
    if getattr(structure, "lag", False) and lg.any():
        # A lag time moves doses past neighbouring events at run time, so the position that
        # follows a dose is not known here: grade every segment and give each position the
        # step count of its busiest neighbour (two positions either side).
        after_dose[:] = True
        padded = np.pad(counts, ((0, 0), (2, 2)), constant_values=1)
        counts = np.max(np.stack([padded[:, j : j + n_ev] for j in range(5)]), axis=0)
        counts = np.maximum(counts, 2 * min_steps)
    total = counts.sum(axis=1)
    n_steps = int(total.max())
    step_pos = np.full((n_steps, n), n_ev - 1, np.int64)
    w0 = np.ones((n_steps, n))
    w1 = np.ones((n_steps, n))
    apply = np.zeros((n_steps, n))
    last = np.zeros(shape, np.int64)
    for i in range(n):
        s = 0
        for k in range(n_ev):
            c = int(counts[i, k])
            u = _grid_fractions(c, bool(after_dose[i, k]))
            step_pos[s : s + c, i] = k
            w0[s : s + c, i] = u[:-1]
            w1[s : s + c, i] = u[1:]
            apply[s + c - 1, i] = 1.0
            last[i, k] = s + c - 1
            s += c

    obs_tbl = ev.loc[is_obs, ["ID", "TIME", "DV", "DVID", "ROW"]].reset_index(drop=True)
    obs_tbl["subject"] = subj[is_obs]
    schedule = OdeSchedule(
        n_subjects=n,
        n_obs=int(is_obs.sum()),
        obs_subject=subj[is_obs].astype(np.int64),
        obs_time=time[is_obs].astype(float),
        obs_output=out_index[is_obs].astype(np.int64),
        kind=kind,
        state=st,
        time=tm,
        amt=am,
        rate=rt,
        period=pr,
        obs=ob,
        partner=pa,
        lagged=lg,
        step_pos=step_pos,
        step_w0=w0,
        step_w1=w1,
        step_apply=apply,
        last_step=last,
        max_step=max_step,
    )
    return schedule, obs_tbl
