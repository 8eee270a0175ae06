"""Model predictions at arbitrary times for the subjects of a fit (dense curves for plots).

The dosing history of each subject is kept; observation records are replaced by a time
grid; the structural model is compiled once and evaluated for a thinned set of posterior
draws (vectorised over subjects).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["individual_curves", "typical_parameters"]


def typical_parameters(fit: Any) -> dict[str, np.ndarray]:
    """Per-draw, per-subject typical values (eta = 0, covariates included), from P_i and eta_i.

    Examples
    --------
    >>> typical_parameters(fit)["CL"].shape  # (chain, draw, subject)  # doctest: +SKIP
    (2, 200, 12)
    """
    post = fit.posterior
    out: dict[str, np.ndarray] = {}
    for p in fit.model.parameters:
        ind = post[p.name].transpose("chain", "draw", "subject").values
        if p.iiv is None:
            out[p.name] = ind
            continue
        eta = post["eta"].sel(param=p.name).transpose("chain", "draw", "subject").values
        if p.iiv == "normal":
            out[p.name] = ind - eta
        elif p.iiv == "logit":
            logit = np.log(ind) - np.log1p(-ind)
            out[p.name] = 1.0 / (1.0 + np.exp(-(logit - eta)))
        else:
            out[p.name] = ind * np.exp(-eta)
    return out


def _grid_dataset(fit: Any, n_points: int) -> Any:
    from .data import read_nonmem

    rec = fit.data.records.drop(columns=["ROW"])
    is_obs = (rec["EVID"] == 0) & (rec["MDV"] == 0)
    base = rec.loc[~is_obs].copy()
    firsts = rec.groupby("ID", sort=False).head(1).set_index("ID")
    span = rec.groupby("ID", sort=False)["TIME"].agg(["min", "max"])
    # one grid per output (DVID) that has observations: PK and PD curves of a joint model
    dvids = sorted(rec.loc[is_obs, "DVID"].unique()) if "DVID" in rec else [None]
    rows = []
    for sid, (t0, t1) in span.iterrows():
        grid = np.linspace(t0, t1 if t1 > t0 else t0 + 1.0, n_points)
        for dvid in dvids:
            g = pd.DataFrame({c: [firsts.loc[sid, c]] * n_points for c in firsts.columns})
            g.insert(0, "ID", sid)
            g["TIME"] = grid
            g["DV"], g["AMT"], g["EVID"], g["MDV"], g["CMT"] = 0.0, 0.0, 0, 0, 0
            g["RATE"], g["II"], g["ADDL"], g["SS"] = 0.0, 0.0, 0, 0
            if dvid is not None:
                g["DVID"] = dvid
            rows.append(g[rec.columns])
    grid = pd.concat(rows, ignore_index=True)
    base["_k"], grid["_k"] = 0, 1
    order = {sid: i for i, sid in enumerate(fit.data.subject_ids)}
    allrec = pd.concat([base, grid], ignore_index=True)
    allrec["_s"] = allrec["ID"].map(order)
    allrec = allrec.sort_values(["_s", "TIME", "_k"], kind="stable").drop(columns=["_s", "_k"])
    return read_nonmem(allrec.reset_index(drop=True))


def individual_curves(
    fit: Any,
    *,
    n_points: int = 100,
    n_draws: int = 200,
    ci_prob: float = 0.9,
    random_seed: int = 0,
) -> pd.DataFrame:
    """IPRED (median and credible band) and PRED (median) on a time grid per subject.

    Returns a DataFrame with columns ``ID, TIME, IPRED, IPRED_lo, IPRED_hi, PRED``, and
    ``DVID`` when the data have several outputs (a grid per observed output: a joint PK/PD
    model gets concentration and response curves).

    Examples
    --------
    >>> individual_curves(fit, n_points=50).head(2)  # doctest: +SKIP
       ID      TIME     IPRED  IPRED_lo   IPRED_hi      PRED
    0   1  0.000000  0.000000  0.000000   0.000000  0.000000
    1   1  0.497347  ...
    """
    import pytensor
    import pytensor.tensor as pt

    from .events import build_schedule

    data = _grid_dataset(fit, n_points)
    schedule, obs = build_schedule(data, fit.model.structure)
    names = fit.model.parameter_names
    inputs = {n: pt.dvector(n) for n in names}
    from .simulation import HELPER_MODE

    f = pytensor.function(
        list(inputs.values()), fit.model.structure.predict(inputs, schedule), mode=HELPER_MODE
    )
    post = fit.posterior
    ind = {n: post[n].transpose("chain", "draw", "subject").values for n in names}
    typ = typical_parameters(fit)
    n_total = next(iter(ind.values())).shape[0] * next(iter(ind.values())).shape[1]
    rng = np.random.default_rng(random_seed)
    pick = rng.choice(n_total, size=min(n_draws, n_total), replace=False)
    flat = {n: v.reshape(n_total, -1)[pick] for n, v in ind.items()}
    flat_t = {n: v.reshape(n_total, -1)[pick] for n, v in typ.items()}
    ipred = np.stack([f(*[flat[n][k] for n in names]) for k in range(len(pick))])
    pred = np.stack([f(*[flat_t[n][k] for n in names]) for k in range(len(pick))])
    lo, hi = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
    several = "DVID" in obs and obs["DVID"].nunique() > 1
    out = obs[["ID", "TIME"] + (["DVID"] if several else [])].copy()
    out["IPRED"] = np.median(ipred, axis=0)
    out["IPRED_lo"] = np.quantile(ipred, lo, axis=0)
    out["IPRED_hi"] = np.quantile(ipred, hi, axis=0)
    out["PRED"] = np.median(pred, axis=0)
    return out
