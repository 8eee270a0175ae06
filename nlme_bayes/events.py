"""From a validated dataset to the frozen event schedule a structural model consumes.

Superposition over dose-observation pairs: every observation is paired with every dose
of the same subject that comes before it in event order (NONMEM record order; the
ADDL-implied doses are placed by :meth:`NonmemDataset.events`) and after the last reset
(EVID 3 or 4).  Pairs are grouped by route (IV bolus, IV infusion, oral bolus, oral
zero-order input) so that each route's kernel is evaluated only where it applies.
Everything here is NumPy: no per-subject Python loops.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .data_validation import format_where
from .errors import DatasetError
from .events_types import DosePairs, EventSchedule

__all__ = ["build_schedule", "describe_rows"]


def describe_rows(frame: pd.DataFrame) -> str:
    """``rows 3, 7 (IDs 1, 2)`` for the records of ``frame`` (uses its ROW and ID columns).

    Examples
    --------
    >>> import pandas as pd
    >>> describe_rows(pd.DataFrame({"ROW": [2, 3], "ID": [1, 1]}))
    'rows 2, 3 (ID 1)'
    """
    return format_where(frame["ROW"].to_numpy(), frame["ID"].to_numpy())


def build_schedule(data: Any, structure: Any) -> tuple[EventSchedule, pd.DataFrame]:
    """The event schedule of ``data`` for ``structure`` and the observation table.

    Returns
    -------
    schedule : EventSchedule
    observations : DataFrame
        One row per observation in schedule order with columns ``ID, TIME, DV, DVID, ROW``
        and ``subject`` (0-based subject index).

    A structure that plans its own schedule (ODE and algebraic models define
    ``build_schedule(data)``) is asked for it instead.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> schedule, obs = build_schedule(nb.datasets.theophylline(), nb.OneCompartment(route="oral"))
    >>> schedule.n_subjects, schedule.n_obs, list(obs.columns[:4])
    (12, 132, ['ID', 'TIME', 'DV', 'DVID'])
    """
    if hasattr(structure, "build_schedule"):
        return structure.build_schedule(data)
    ev = data.events()
    subject_ids = list(data.subject_ids)
    subj_index = {sid: i for i, sid in enumerate(subject_ids)}
    subj = ev["ID"].map(subj_index).to_numpy(dtype=np.int64)
    evid = ev["EVID"].to_numpy()
    is_dose = np.isin(evid, (1, 4))
    is_obs = (evid == 0) & (ev["MDV"].to_numpy() == 0)

    ss = ev["SS"].to_numpy()
    bad_ss = is_dose & (ss > 0)
    if bad_ss.any():
        raise DatasetError(
            "SS: steady-state doses (SS=1/2) are not supported yet by the closed-form models "
            f"and would be wrong if ignored: {describe_rows(ev[bad_ss])}. Expand the dosing "
            "history explicitly (ADDL/II from the first dose) instead."
        )

    cmt = ev["CMT"].to_numpy().astype(np.int64)
    cmt = np.where(
        cmt == 0,
        np.where(is_dose, structure.default_dose_compartment, structure.central_compartment),
        cmt,
    )
    names = structure.compartments
    dose_cmts = tuple(structure.dose_compartments)
    bad_dose = is_dose & ~np.isin(cmt, dose_cmts)
    bad_obs = is_obs & (cmt != structure.central_compartment)
    problems = []
    if bad_dose.any():
        got = sorted(set(cmt[bad_dose].tolist()))
        problems.append(
            f"CMT: doses into compartment(s) {got} at {describe_rows(ev[bad_dose])}; "
            f"{structure.describe()} takes doses in "
            + ", ".join(f"{c} ({names[c]})" for c in dose_cmts)
        )
    if bad_obs.any():
        got = sorted(set(cmt[bad_obs].tolist()))
        problems.append(
            f"CMT: observations in compartment(s) {got} at {describe_rows(ev[bad_obs])}; "
            f"{structure.describe()} predicts the central compartment, CMT "
            f"{structure.central_compartment} (or 0)"
        )
    if problems:
        raise DatasetError("\n".join(problems), problems)

    # Reset epochs: a record's epoch counts the resets (EVID 3/4) up to and including it.
    is_reset = np.isin(evid, (3, 4)).astype(np.int64)
    new_subject = np.r_[True, subj[1:] != subj[:-1]]
    epoch_global = np.cumsum(is_reset + new_subject)  # unique per (subject, epoch)

    pos = np.arange(len(ev))
    obs_pos = pos[is_obs]
    obs_group = epoch_global[is_obs]
    dose_pos = pos[is_dose]
    dose_group = epoch_global[is_dose]
    start = np.searchsorted(obs_pos, dose_pos, side="right")
    end = np.searchsorted(obs_group, dose_group, side="right")
    counts = np.maximum(end - start, 0)
    total = int(counts.sum())
    dose_of_pair = np.repeat(np.arange(len(dose_pos)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    obs_of_pair = np.repeat(start, counts) + offsets

    time = ev["TIME"].to_numpy(dtype=float)
    amt = ev["AMT"].to_numpy(dtype=float)[is_dose]
    rate = ev["RATE"].to_numpy(dtype=float)[is_dose]
    dcmt = cmt[is_dose]
    dt = time[obs_pos][obs_of_pair] - time[dose_pos][dose_of_pair]
    pair_subject = subj[obs_pos][obs_of_pair]
    duration = np.where(rate > 0, amt / np.where(rate > 0, rate, 1.0), 0.0)

    depot = next((c for c, n in names.items() if n == "depot"), None)
    is_depot = dcmt == depot if depot is not None else np.zeros(len(dcmt), bool)
    infusion = rate > 0
    if (is_depot & infusion).any() and not getattr(structure, "supports_depot_infusion", False):
        rows = ev[is_dose][is_depot & infusion]
        raise DatasetError(
            f"RATE: zero-order input into the depot at {describe_rows(rows)} is not supported by "
            f"{structure.describe()}; give infusions into the central compartment "
            f"(CMT {structure.central_compartment}) or use an ODE model."
        )

    def pairs(mask_dose: np.ndarray) -> DosePairs:
        sel = mask_dose[dose_of_pair]
        d = dose_of_pair[sel]
        return DosePairs(
            obs=obs_of_pair[sel].astype(np.int64),
            subject=pair_subject[sel].astype(np.int64),
            dt=dt[sel].astype(float),
            amt=amt[d].astype(float),
            duration=duration[d].astype(float),
        )

    schedule = EventSchedule(
        n_subjects=len(subject_ids),
        n_obs=int(is_obs.sum()),
        obs_subject=subj[is_obs].astype(np.int64),
        obs_time=time[is_obs].astype(float),
        iv_bolus=pairs(~is_depot & ~infusion),
        iv_infusion=pairs(~is_depot & infusion),
        oral=pairs(is_depot & ~infusion),
        oral_infusion=pairs(is_depot & infusion),
    )
    obs = ev.loc[is_obs, ["ID", "TIME", "DV", "DVID", "ROW"]].reset_index(drop=True)
    obs["subject"] = subj[is_obs]
    obs["n_doses_before"] = np.bincount(obs_of_pair, minlength=len(obs))
    return schedule, obs
