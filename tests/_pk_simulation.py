"""Simulated studies with known truth for the recovery tests (closed-form predictions).

The closed forms are checked against ``scipy.integrate.solve_ivp`` in
``test_closed_form.py``; here they only generate data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def predict(structure, frame, params, occasions=None):
    """Concentrations at the observation records of ``frame`` (schedule order).

    ``params`` are per subject, or per (subject, occasion) unit with ``occasions``.
    """
    import pytensor
    import pytensor.tensor as pt

    import nlme_bayes as nb
    from nlme_bayes.events import build_schedule
    from nlme_bayes.occasions import occasion_design, unit_schedule

    data = nb.read_nonmem(frame)
    schedule, obs = build_schedule(data, structure)
    if occasions is not None:
        schedule = unit_schedule(schedule, occasion_design(data, occasions, obs, schedule))
    inputs = {n: pt.dvector(n) for n in structure.parameters}
    f = pytensor.function(list(inputs.values()), structure.predict(inputs, schedule))
    return f(*[np.asarray(params[n], dtype=float) for n in structure.parameters])


def design(n_subjects, times, *, amt=100.0, cmt_obs=None, occasions=1, extra=None):
    """One dose at 0 (per occasion; later occasions start with EVID 4, a reset) + samples."""
    rows = []
    for i in range(1, n_subjects + 1):
        for occ in range(1, occasions + 1):
            dose = dict(ID=i, TIME=0.0, AMT=amt, DV=np.nan, EVID=1 if occ == 1 else 4, MDV=1)
            if cmt_obs is not None:
                dose["CMT"] = 1
            if occasions > 1:
                dose["OCC"] = occ
            rows.append(dose)
            for t in times:
                rec = dict(ID=i, TIME=float(t), AMT=0.0, DV=0.0, EVID=0, MDV=0)
                if cmt_obs is not None:
                    rec["CMT"] = cmt_obs
                if occasions > 1:
                    rec["OCC"] = occ
                rows.append(rec)
    frame = pd.DataFrame(rows)
    for name, values in (extra or {}).items():
        frame[name] = frame["ID"].map(dict(enumerate(values, start=1)))
    return frame


def set_dv(frame, dv):
    out = frame.copy()
    out.loc[out["EVID"] == 0, "DV"] = dv  # observation order == file order in these designs
    return out
