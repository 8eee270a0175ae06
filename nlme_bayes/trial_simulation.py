"""Simulation of new subjects under any design, and clinical-trial-style exposure summaries.

- :func:`simulate`: new subjects (random effects drawn from Omega) under any dosing and
  sampling design -- NONMEM-style records or a :class:`~nlme_bayes.regimen.Regimen` --
  with covariates given or resampled from the fitted subjects, with parameter uncertainty
  (posterior draws) or at a point (posterior medians, or any population parameters for a
  :class:`~nlme_bayes.Model` that was never fitted); IPRED is exactly
  ``structure.predict`` at each subject's parameters.
- :func:`simulation_table`, :func:`prediction_intervals`: tidy pandas views of it.
- :func:`simulate_exposure`: Cmax, Cmin, trough, AUC, Cavg and time above a threshold over
  a dosing interval per simulated subject (see :mod:`nlme_bayes.dosing` for the metrics and
  the probability of target attainment).

Everything here uses only the public structural interface
(:func:`nlme_bayes.events.build_schedule` and :class:`~nlme_bayes.simulation.Predictor`), so
it serves closed-form and ODE models alike. The names are also available from
:mod:`nlme_bayes.simulation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .errors import SpecificationError
from .priors import Prior
from .simulation import (
    Predictor,
    apply_iiv,
    error_models_by_dvid,
    residual_nu,
    residual_sd,
    sample_dv,
)

__all__ = [
    "simulate",
    "simulation_table",
    "prediction_intervals",
    "simulate_exposure",
    "sigma_for_dvids",
]


_SIGMA_PARTS = {
    "Additive": ("add",),
    "Proportional": ("prop",),
    "Combined": ("add", "prop"),
    "LogAdditive": ("log",),
}


def sigma_for_dvids(
    model: Any, fit_dvids: Any, dvids: Any, sigma: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Residual SDs renamed for a dataset with DVIDs ``dvids`` (a subset of ``fit_dvids``).

    The builder suffixes ``sigma_*`` with ``_DVID<k>`` only when the fitted data hold more
    than one DVID, and :func:`residual_sd` follows the DVIDs it is given; so a new patient
    with levels of one DVID of a multi-DVID fit needs the fit's names translated.

    Raises
    ------
    SpecificationError
        A DVID that the fit did not have.

    Examples
    --------
    >>> import numpy as np
    >>> import nlme_bayes as nb
    >>> m = nb.Model(structure=nb.OneCompartment(route="iv"),
    ...              parameters=[nb.Parameter("CL", 1.0), nb.Parameter("V", 10.0)],
    ...              error={1: nb.Proportional(), 2: nb.Additive()})
    >>> sigma = {"sigma_prop_DVID1": np.array([0.1]), "sigma_add_DVID2": np.array([2.0])}
    >>> sigma_for_dvids(m, [1, 2], [2], sigma)
    {'sigma_add': array([2.])}
    """
    fit_set = sorted({int(d) for d in np.unique(np.asarray(fit_dvids))})
    new_set = sorted({int(d) for d in np.unique(np.asarray(dvids))})
    unknown = [d for d in new_set if d not in fit_set]
    if unknown:
        raise SpecificationError(
            f"DVID {unknown} has no residual error model: the model was fitted to DVID "
            f"{fit_set}. Use one of those DVIDs."
        )
    if not new_set:
        return {}
    fitted = error_models_by_dvid(model, fit_set)
    out = {}
    for k, (err, sfx) in error_models_by_dvid(model, new_set).items():
        for part in _SIGMA_PARTS[type(err).__name__]:
            out[f"sigma_{part}{sfx}"] = np.asarray(sigma[f"sigma_{part}{fitted[k][1]}"])
        if isinstance(err.nu, Prior):  # estimated Student-t degrees of freedom
            out[f"nu{sfx}"] = np.asarray(sigma[f"nu{fitted[k][1]}"])
    return out


@dataclass(frozen=True)
class _Population:
    """``S`` sets of population parameters and where they came from."""

    model: Any
    pop: Any  # marginal._Pop with S entries
    index: np.ndarray  # flat posterior index of each set (-1: a point estimate)
    fit_dvids: tuple[int, ...]
    data: Any  # the fitted data (covariates="resample"), or None


def _is_fit(source: Any) -> bool:
    return hasattr(source, "posterior") and hasattr(source, "model")


def _model_of(source: Any) -> Any:
    if _is_fit(source):
        model = source.model
    elif hasattr(source, "parameter_names") and hasattr(source, "structure"):
        model = source
    else:
        raise SpecificationError(
            f"expected a Fit or a Model, got {type(source).__name__}: {source!r}."
        )
    if getattr(model, "occasions", None) is not None:
        raise SpecificationError(
            "New subjects of a model with inter-occasion variability: their occasion effects "
            "(kappa) are not simulated or forecast yet, and leaving them out would understate "
            "the variability. Use simulate_replicates for the fitted design, or a model "
            "without iov=True."
        )
    return model


def _pop_take(pop: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of a ``marginal._Pop`` (repeats allowed)."""
    from .marginal import _Pop

    def take(v: Any) -> Any:
        return {k: np.asarray(a)[idx] for k, a in v.items()} if isinstance(v, dict) else v[idx]

    return _Pop(
        {n: take(v) for n, v in pop.typical.items()},
        {n: take(v) for n, v in pop.coef.items()},
        pop.omega_sd[idx],
        pop.omega_corr[idx],
        {n: take(v) for n, v in pop.sigma.items()},
    )


def _fit_dvids(fit: Any) -> tuple[int, ...]:
    return tuple(sorted({int(d) for d in fit.data.observations()["DVID"]}))


def _population(
    source: Any,
    *,
    uncertainty: Any,
    n_draws: int,
    random_seed: int,
    dvids: Any = (1,),
    index: np.ndarray | None = None,
) -> _Population:
    """Population parameters for simulation or forecasting (see :func:`simulate`)."""
    from .marginal import _pop_from_mapping, _pop_from_posterior, _sigma_names
    from .marginal import population_parameters as point_of

    model = _model_of(source)
    fit = source if _is_fit(source) else None
    if fit is not None:
        fit_dvids = _fit_dvids(fit)
    elif isinstance(model.error, dict):
        fit_dvids = tuple(sorted(int(k) for k in model.error))
    else:
        fit_dvids = tuple(sorted({int(d) for d in np.asarray(dvids)})) or (1,)
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
        raise SpecificationError(f"n_draws must be a positive int, got {n_draws!r}.")
    if isinstance(uncertainty, dict) or (
        not isinstance(uncertainty, bool) and hasattr(uncertainty, "keys")
    ):
        pop = _pop_from_mapping(model, uncertainty, _sigma_names(model, np.asarray(fit_dvids)))
        return _Population(
            model, _pop_take(pop, np.zeros(n_draws, int)), np.full(n_draws, -1), fit_dvids,
            fit.data if fit is not None else None,
        )  # fmt: skip
    if not isinstance(uncertainty, bool):
        raise SpecificationError(
            f"uncertainty must be True (posterior draws), False (posterior medians) or a "
            f"mapping of population parameters, got {uncertainty!r}."
        )
    if fit is None:
        raise SpecificationError(
            "A Model has no posterior: give uncertainty={population parameters} (keys as "
            "nlme_bayes.marginal.population_parameters returns them), or simulate from a Fit."
        )
    if not uncertainty:
        pop = _pop_from_mapping(model, point_of(fit), _sigma_names(model, np.asarray(fit_dvids)))
        return _Population(
            model, _pop_take(pop, np.zeros(n_draws, int)), np.full(n_draws, -1), fit_dvids,
            fit.data,
        )  # fmt: skip
    if index is None:
        post = fit.posterior
        n_total = post.sizes["chain"] * post.sizes["draw"]
        rng = np.random.default_rng(random_seed)
        index = np.sort(rng.choice(n_total, n_draws, replace=n_draws > n_total))
    return _Population(model, _pop_from_posterior(fit, index), index, fit_dvids, fit.data)


def _as_dataset(design: Any, structure: Any, times: Any, before_dose: Any, dvid: int) -> Any:
    """The design as a dataset with observation records (see :func:`simulate`)."""
    from .data import NonmemDataset, read_nonmem
    from .regimen import Regimen, dose_records, prediction_dataset

    is_regimen = isinstance(design, Regimen) or (
        isinstance(design, (list, tuple)) and design and all(isinstance(r, Regimen) for r in design)
    )
    if is_regimen:
        if times is None:
            raise SpecificationError(
                "A Regimen design needs times= (the sampling times of the simulated subjects)."
            )
        design = NonmemDataset.from_records(dose_records(design, structure=structure))
    elif isinstance(design, pd.DataFrame):
        design = read_nonmem(design)
    elif not isinstance(design, NonmemDataset):
        raise SpecificationError(
            "design must be a Regimen (or a list of them), NONMEM-style records (DataFrame) or "
            f"a NonmemDataset, got {type(design).__name__}."
        )
    if times is not None:
        design, _ = prediction_dataset(design, times, before_dose=before_dose, dvid=dvid)
    elif design.n_observations == 0:
        raise SpecificationError(
            "The design has no observation records: give times= (sampling times)."
        )
    return design


def _replicate_subjects(ds: Any, n_subjects: int | None) -> Any:
    """``n_subjects`` subjects numbered 1..n; subject j follows design subject j mod n_design."""
    from .data import NonmemDataset

    if n_subjects is None:
        return ds
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)):
        raise SpecificationError(f"n_subjects must be a positive int, got {n_subjects!r}.")
    if n_subjects < 1:
        raise SpecificationError(f"n_subjects must be a positive int, got {n_subjects!r}.")
    ids = list(ds.subject_ids)
    groups = {sid: g for sid, g in ds.records.groupby("ID", sort=False)}
    frames = [groups[ids[j % len(ids)]].assign(ID=j + 1) for j in range(int(n_subjects))]
    rec = pd.concat(frames, ignore_index=True).drop(columns="ROW")
    return NonmemDataset.from_records(rec, covariates=list(ds.covariates), source=ds.source)


def _covariate_tables(
    popn: _Population, ds: Any, covariates: Any, n_draws: int, rng: np.random.Generator
) -> tuple[pd.DataFrame | None, list[pd.DataFrame] | None]:
    """One covariate table for all draws, or one per draw (``covariates="resample"``)."""
    from .marginal import _cov_table

    model = popn.model
    names = list(model.covariate_names)
    ids = pd.Index(ds.subject_ids, name="ID")
    if not names:
        return pd.DataFrame(index=ids), None
    if covariates is None:
        missing = [c for c in names if c not in ds.covariates]
        if missing:
            raise SpecificationError(
                f"The model needs covariate(s) {', '.join(missing)}, which the design does not "
                "give. Add them as columns of the records, pass covariates={name: value} or a "
                "DataFrame, or covariates='resample' to draw them from the fitted subjects."
            )
        return _cov_table(model, ds), None
    if isinstance(covariates, str):
        if covariates != "resample":
            raise SpecificationError(
                f"covariates={covariates!r} is not valid; choose 'resample', a mapping, a "
                "DataFrame or None (from the design's records)."
            )
        if popn.data is None:
            raise SpecificationError(
                "covariates='resample' needs the fitted data: simulate from a Fit, or give "
                "the covariates."
            )
        base = _cov_table(model, popn.data).reset_index(drop=True)
        picks = rng.integers(0, len(base), size=(n_draws, len(ids)))
        return None, [base.iloc[p].set_index(ids) for p in picks]
    if isinstance(covariates, dict):
        covariates = pd.DataFrame({k: [v] for k, v in covariates.items()})
    if not isinstance(covariates, pd.DataFrame):
        raise SpecificationError(
            f"covariates must be None, 'resample', a mapping or a DataFrame, got "
            f"{type(covariates).__name__}."
        )
    missing = [c for c in names if c not in covariates.columns]
    if missing:
        raise SpecificationError(
            f"covariates: column(s) {', '.join(missing)} missing; the model needs "
            f"{', '.join(names)}."
        )
    if len(covariates) not in (1, len(ids)):
        raise SpecificationError(
            f"covariates: {len(covariates)} rows for {len(ids)} simulated subjects; give one "
            "row (for all) or one per subject."
        )
    table = covariates[names].reset_index(drop=True)
    if len(table) == 1:
        table = table.loc[[0] * len(ids)].reset_index(drop=True)
    if table.isna().any().any():
        raise SpecificationError("covariates: missing values are not allowed.")
    return table.set_index(ids), None


def _typical_for(popn: _Population, table: Any, tables: Any) -> np.ndarray | dict:
    """Typical values (S, n_subjects) per parameter for fixed or per-draw covariates."""
    from .marginal import _typical_values

    if tables is None:
        typical, valid = _typical_values(popn.model, table, popn.pop)
    else:
        parts, valid = [], np.ones(len(tables), bool)
        for s, tab in enumerate(tables):
            t, v = _typical_values(popn.model, tab, _pop_take(popn.pop, np.array([s])))
            parts.append(t)
            valid[s] = v[0]
        typical = {n: np.concatenate([p[n] for p in parts]) for n in parts[0]}
    if not valid.all():
        raise SpecificationError(
            "A Linear covariate factor (1 + coefficient * (COV - reference)) is <= 0 for "
            "some simulated subject: the parameter would be <= 0. Check the covariate values "
            "against the range of the fitted data."
        )
    return typical


def simulate(
    source: Any,
    design: Any,
    *,
    times: Any = None,
    before_dose: Any = True,
    n_subjects: int | None = None,
    covariates: Any = None,
    n_draws: int = 100,
    uncertainty: Any = True,
    residual_error: bool = True,
    dvid: int = 1,
    random_seed: int = 0,
) -> xr.Dataset:
    """Simulate new subjects under any design, from a fit or from a model at a point.

    For each of ``n_draws`` sets of population parameters, ``n_subjects`` new subjects get
    random effects ``eta ~ N(0, Omega)``, their covariates' typical values, the structural
    prediction (IPRED, exactly ``structure.predict`` at their individual parameters) and,
    with ``residual_error``, observations drawn from the error model.

    Parameters
    ----------
    source : Fit or Model
    design : Regimen, list of Regimen, DataFrame of NONMEM records, or NonmemDataset
        Dosing (and, for records, sampling) of each design subject.
    times : array or mapping ID -> array, optional
        Sampling times (required for a Regimen; for records they replace the records'
        observation times).
    before_dose : bool or array like ``times``
        A time equal to a dose time samples just before that dose (a trough; default) or
        just after it (a peak after a bolus).
    n_subjects : int, optional
        Number of new subjects per draw (default: one per design subject); subject ``j``
        follows design subject ``j mod n_design``. IDs are 1..n_subjects.
    covariates : None, "resample", mapping or DataFrame
        ``None``: from the design's records; ``"resample"``: each draw takes the covariate
        vectors of ``n_subjects`` fitted subjects, with replacement (whole vectors, so their
        correlation is kept); a mapping ``{name: value}`` for all subjects, or a DataFrame
        with one row per subject.
    n_draws : int
        Number of replicates (population parameter sets).
    uncertainty : True, False or mapping
        ``True``: each replicate is a posterior draw (parameter uncertainty);
        ``False``: every replicate uses the posterior medians; a mapping: these population
        parameters (keys as :func:`nlme_bayes.marginal.population_parameters` returns).
    residual_error : bool
        Add residual error (variable ``DV``).
    dvid : int
        DVID of the records made from ``times``.
    random_seed : int

    Returns
    -------
    xarray.Dataset
        ``IPRED``, ``PRED`` and ``DV`` ``(draw, obs)``; individual parameters, their typical
        values ``<name>_TV`` and covariates ``(draw, subject)``; ``eta (draw, subject,
        param)``. ``obs`` carries ``ID, TIME, DVID, subject, before_dose``; ``draw`` carries
        ``posterior_index`` (-1 for a point).

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.regimen import Regimen
    >>> from nlme_bayes.examples import pheno_model
    >>> point = {"CL_pop": 0.0047, "V_pop": 0.96, "V_APGAR_LT5": 0.17,
    ...          "omega": {"CL": 0.2, "V": 0.17}, "sigma_prop": 0.12}
    >>> sim = simulate(pheno_model(), Regimen(20.0, interval=12.0, n_doses=4),
    ...                times=[12.0, 48.0], n_subjects=50, n_draws=20,
    ...                covariates={"WT": 1.3, "APGAR_LT5": 0}, uncertainty=point)
    >>> sim["IPRED"].shape, sim["CL"].shape
    ((20, 100), (20, 50))
    """
    from .events import build_schedule

    rng = np.random.default_rng(random_seed)
    model = _model_of(source)
    ds = _replicate_subjects(
        _as_dataset(design, model.structure, times, before_dose, dvid), n_subjects
    )
    schedule, obs = build_schedule(ds, model.structure)
    obs_dvid = obs["DVID"].to_numpy().astype(int)
    popn = _population(
        source, uncertainty=uncertainty, n_draws=n_draws, random_seed=random_seed, dvids=obs_dvid
    )
    n_sub = schedule.n_subjects
    table, tables = _covariate_tables(popn, ds, covariates, n_draws, rng)
    typical = _typical_for(popn, table, tables)
    k = len(model.iiv_names)
    chol = popn.pop.chol()
    eta = np.einsum("sij,snj->sni", chol, rng.standard_normal((n_draws, n_sub, k)))
    individual = apply_iiv(model, typical, eta)
    predictor = Predictor(model.structure, schedule)
    ipred = predictor(individual)
    pred = predictor(typical)
    data_vars: dict[str, Any] = {
        "IPRED": (("draw", "obs"), ipred),
        "PRED": (("draw", "obs"), pred),
    }
    if residual_error:
        sigma = sigma_for_dvids(model, popn.fit_dvids, obs_dvid, popn.pop.sigma)
        sd, is_log = residual_sd(model, ipred, obs_dvid, sigma)
        nu = residual_nu(model, obs_dvid, sigma, ipred.ndim)
        data_vars["DV"] = (("draw", "obs"), sample_dv(ipred, sd, is_log, rng, nu))
    for name in model.parameter_names:
        data_vars[name] = (("draw", "subject"), np.broadcast_to(individual[name], (n_draws, n_sub)))
        data_vars[f"{name}_TV"] = (("draw", "subject"), typical[name])
    data_vars["eta"] = (("draw", "subject", "param"), eta)
    for c in model.covariate_names:
        if tables is None:
            values = np.broadcast_to(table[c].to_numpy(), (n_draws, n_sub))
        else:
            values = np.stack([t[c].to_numpy() for t in tables])
        data_vars[c] = (("draw", "subject"), values)
    before = obs["before_dose"].to_numpy(bool) if "before_dose" in obs else None
    coords = {
        "draw": np.arange(n_draws),
        "posterior_index": ("draw", popn.index),
        "subject": list(ds.subject_ids),
        "param": list(model.iiv_names),
        "obs": np.arange(len(obs)),
        "ID": ("obs", obs["ID"].to_numpy()),
        "TIME": ("obs", obs["TIME"].to_numpy(dtype=float)),
        "DVID": ("obs", obs_dvid),
        "subject_index": ("obs", obs["subject"].to_numpy()),
        "before_dose": ("obs", _before_flags(ds, obs) if before is None else before),
    }
    return xr.Dataset(
        data_vars,
        coords=coords,
        attrs={
            "uncertainty": "posterior" if (popn.index >= 0).all() else "point",
            "residual_error": int(bool(residual_error)),
            "covariates": "resampled" if tables is not None else "given",
            "random_seed": int(random_seed),
        },
    )


def _before_flags(ds: Any, obs: pd.DataFrame) -> np.ndarray:
    """Whether each observation precedes a dose record at the same time (pre-dose sample)."""
    ev = ds.events()
    rev = ev.iloc[::-1]
    is_dose = rev["EVID"].isin((1, 4)).astype(int)
    later = is_dose.groupby([rev["ID"], rev["TIME"]], sort=False).cumsum().iloc[::-1] > 0
    is_obs = (ev["EVID"] == 0) & (ev["MDV"] == 0)
    return later.to_numpy()[is_obs.to_numpy()]


def simulation_table(sim: xr.Dataset) -> pd.DataFrame:
    """A simulation as a long table: one row per draw and observation.

    Columns ``draw, ID, TIME, DVID, before_dose, IPRED, PRED`` (and ``DV``).

    Examples
    --------
    >>> from nlme_bayes.regimen import Regimen
    >>> sim = simulate(pheno_fit, Regimen(20.0), times=[1.0, 12.0, 24.0], n_draws=50,
    ...                covariates={"WT": 1.2, "APGAR_LT5": 0})  # doctest: +SKIP
    >>> simulation_table(sim).head(2)  # doctest: +SKIP
       draw  ID  TIME  DVID  before_dose      IPRED       PRED         DV
    0     0   1   1.0     1        False  ...
    1     0   1  12.0     1        False  ...
    """
    cols = [v for v in ("IPRED", "PRED", "DV") if v in sim]
    frame = sim[cols].to_dataframe().reset_index()
    keep = ["draw", "ID", "TIME", "DVID", "before_dose", *cols]
    return frame[keep]


def prediction_intervals(
    sim: xr.Dataset,
    *,
    var: str = "DV",
    probs: Any = (0.05, 0.5, 0.95),
) -> pd.DataFrame:
    """Quantiles of a simulated variable at each sampling time, over draws and subjects.

    With parameter uncertainty the quantiles are those of the posterior predictive
    distribution of a new subject (a prediction interval); at a point they show the
    between-subject (and residual) spread only.

    Returns
    -------
    pandas.DataFrame
        ``DVID, TIME, before_dose, n`` and one column per probability (``q0.05`` ...).

    Examples
    --------
    >>> from nlme_bayes.regimen import Regimen
    >>> sim = simulate(pheno_fit, Regimen(20.0), times=[1.0, 12.0, 24.0], n_draws=50,
    ...                covariates={"WT": 1.2, "APGAR_LT5": 0})  # doctest: +SKIP
    >>> prediction_intervals(sim, var="IPRED", probs=(0.05, 0.5, 0.95))  # doctest: +SKIP
       DVID  TIME  before_dose   n      q0.05       q0.5      q0.95
    0     1   1.0        False  50  ...
    1     1  12.0        False  50  ...
    2     1  24.0        False  50  ...
    """
    if var not in sim:
        raise SpecificationError(
            f"var={var!r} is not in the simulation; choose one of "
            + ", ".join(sorted(v for v in ("DV", "IPRED", "PRED") if v in sim))
            + "."
        )
    probs = np.atleast_1d(np.asarray(probs, dtype=float))
    if probs.size == 0 or np.any((probs < 0) | (probs > 1)):
        raise SpecificationError(f"probs must lie in [0, 1], got {probs.tolist()}.")
    values = sim[var].transpose("draw", "obs").values
    keys = pd.DataFrame(
        {
            "DVID": sim["DVID"].values,
            "TIME": sim["TIME"].values,
            "before_dose": sim["before_dose"].values,
        }
    )
    rows = []
    for key, idx in keys.groupby(["DVID", "TIME", "before_dose"], sort=True).indices.items():
        v = values[:, idx].ravel()
        v = v[np.isfinite(v)]
        q = np.quantile(v, probs) if v.size else np.full(probs.size, np.nan)
        rows.append((*key, v.size, *q))
    names = [f"q{p:g}" for p in probs]
    return pd.DataFrame(rows, columns=["DVID", "TIME", "before_dose", "n", *names])


def exposure_grid(t0: float, t1: float, n_grid: int, extra: Any = ()) -> np.ndarray:
    """``n_grid`` evenly spaced times on ``[t0, t1]`` plus ``extra`` times inside it."""
    if not (np.isfinite(t0) and np.isfinite(t1) and t1 > t0):
        raise SpecificationError(f"interval ({t0}, {t1}) must have t1 > t0.")
    if isinstance(n_grid, bool) or not isinstance(n_grid, (int, np.integer)) or n_grid < 3:
        raise SpecificationError(f"n_grid must be an int >= 3, got {n_grid!r}.")
    extra = np.asarray(list(extra), dtype=float)
    extra = extra[(extra > t0) & (extra < t1)]
    return np.unique(np.concatenate([np.linspace(t0, t1, int(n_grid)), extra]))


def regimen_interval(regimens: Any, interval: Any) -> tuple[float, float, np.ndarray]:
    """``(t0, t1)`` of the evaluation window and the dose/infusion-end times inside it."""
    from .regimen import Regimen, _as_regimens

    items = _as_regimens(regimens)
    if isinstance(interval, tuple):
        if len(interval) != 2:
            raise SpecificationError(f"interval must be (t0, t1), got {interval!r}.")
        t0, t1 = (float(interval[0]), float(interval[1]))
    else:
        t0, t1 = items[-1].interval_bounds(interval)
    changes = []
    for r in items:
        assert isinstance(r, Regimen)
        changes += list(r.dose_times) + list(r.dose_times + r.duration)
    return t0, t1, np.asarray(changes, dtype=float)


def simulate_exposure(
    source: Any,
    regimens: Any,
    *,
    interval: Any = "last",
    threshold: float | None = None,
    n_grid: int = 97,
    n_subjects: int = 100,
    covariates: Any = None,
    n_draws: int = 100,
    uncertainty: Any = True,
    dvid: int = 1,
    random_seed: int = 0,
) -> xr.Dataset:
    """Exposure of simulated new subjects over one dosing interval (a trial-style summary).

    Concentrations (IPRED, no residual error) on a grid of ``n_grid`` times over the
    interval, plus every dose and infusion-end time inside it; the first grid time is just
    after the dose that opens the interval, the last just before the next one. Metrics per
    :func:`nlme_bayes.dosing.exposure_metrics`.

    Parameters
    ----------
    source : Fit or Model
    regimens : Regimen or list of Regimen
    interval : "last", "first", int or (t0, t1)
        Dosing interval of the last regimen, or an explicit window.
    threshold : float, optional
        For the time above it (e.g. an MIC), as a fraction of the window.
    n_grid, n_subjects, covariates, n_draws, uncertainty, dvid, random_seed
        As in :func:`simulate`.

    Returns
    -------
    xarray.Dataset
        ``cmax, tmax, cmin, trough, auc, cavg`` (and ``time_above``), individual parameters
        and covariates, ``(draw, subject)``; attributes ``t0``, ``t1``, ``threshold``.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.regimen import Regimen
    >>> from nlme_bayes.examples import pheno_model
    >>> point = {"CL_pop": 0.0047, "V_pop": 0.96, "V_APGAR_LT5": 0.17,
    ...          "omega": {"CL": 0.2, "V": 0.17}, "sigma_prop": 0.12}
    >>> ex = simulate_exposure(pheno_model(), Regimen(5.0, interval=12.0, n_doses=20),
    ...                        covariates={"WT": 1.3, "APGAR_LT5": 0}, uncertainty=point,
    ...                        n_subjects=200, n_draws=5)
    >>> float((ex["trough"] > 15).mean()) > 0.5
    True
    """
    from .dosing import exposure_metrics

    model = _model_of(source)
    t0, t1, changes = regimen_interval(regimens, interval)
    grid = exposure_grid(t0, t1, n_grid, changes)
    sim = simulate(
        source,
        regimens,
        times=grid,
        before_dose=grid == t1,
        n_subjects=n_subjects,
        covariates=covariates,
        n_draws=n_draws,
        uncertainty=uncertainty,
        residual_error=False,
        dvid=dvid,
        random_seed=random_seed,
    )
    n_sub = sim.sizes["subject"]
    conc = sim["IPRED"].values.reshape(n_draws, n_sub, len(grid))
    metrics = exposure_metrics(grid, conc, threshold=threshold)
    out = xr.Dataset(
        {name: (("draw", "subject"), v) for name, v in metrics.items()},
        coords={"draw": sim["draw"].values, "subject": sim["subject"].values},
    )
    keep = list(model.parameter_names) + list(model.covariate_names)
    out = out.merge(sim[keep])
    out.attrs.update(
        {"t0": t0, "t1": t1, "threshold": float("nan") if threshold is None else threshold}
    )
    return out
