"""The only place that creates PyMC variables: specification + dataset -> ``pm.Model``.

Names in the emitted model (what a pharmacometrician reads in the posterior):

=====================  ==================  ==============================================
name                   dims                meaning
=====================  ==================  ==============================================
``CL_pop``             --                  typical value (fixed effect), natural scale
``CL_WT``              -- / (WT_level)     covariate coefficient / exponent of CL on WT
``omega``              (param)             SD of each random effect (log scale if log-normal)
``omega_corr``         (param, param_bis)  correlation matrix of the random effects
``eta``                (subject, param)    individual random effects
``CL``                 (subject)           individual parameter
``IPRED``, ``PRED``    (obs)               individual / population (eta = 0) prediction
``sigma_add`` ...      --                  residual error SDs (``sigma_prop``, ``sigma_log``)
``omega_iov``          (param_iov)         between-occasion SD of each parameter with IOV
``kappa``              (subject_occasion,  inter-occasion random effects (``"ID/OCC"``
                       param_iov)          labels); ``CL_occ`` (subject_occasion): the
                                           parameter per occasion
``DV``                 (obs)               the observed data (likelihood; censored
                                           observations enter by ``Model(blq=...)``)
=====================  ==================  ==============================================

With inter-occasion variability, the individual parameter ``CL`` (subject) is the subject's
value at ``kappa = 0``; predictions use ``CL_occ`` of each observation's occasion.

Sampler internals -- non-centred offsets ``z_eta_*``, centred individual parameters on the
random-effect scale ``phi_*`` (the posterior holds them as ``eta`` and the individual
parameters) and packed Cholesky factors ``chol_omega_*`` -- are sampled but kept out of the
user's posterior (group ``posterior_internal``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from . import residual_family
from .censoring import CensoringInfo, censoring_info
from .censoring import logp as censored_logp
from .centering import resolve_centering
from .covariates import prepare
from .errors import DatasetError, DatasetWarning, SpecificationError
from .events import build_schedule, describe_rows
from .events_types import EventSchedule
from .occasions import OccasionDesign, occasion_design, unit_schedule
from .preflight import check_specification
from .spec import (
    Additive,
    Categorical,
    Combined,
    Exponential,
    Linear,
    LogAdditive,
    Power,
    Prior,
    Proportional,
)

__all__ = ["BuiltModel", "additive_prior_scale", "build"]


@dataclass(frozen=True, eq=False)
class BuiltModel:
    """A built PyMC model with what the rest of the pipeline needs to know about it.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.examples import theophylline_model
    >>> built = build(theophylline_model(), nb.datasets.theophylline())
    >>> len(built.subject_ids), built.offset_vars
    (12, ('chol_omega_CL_V_ka', 'z_eta_CL_V_ka'))
    """

    pm_model: pm.Model
    schedule: EventSchedule
    observations: pd.DataFrame
    subject_ids: tuple[Any, ...]
    offset_vars: tuple[str, ...]  # sampler internals kept out of the posterior
    jitter_vars: tuple[str, ...]  # population-level free RVs: the only ones jittered at start
    initvals: dict[str, Any]
    covariates: pd.DataFrame
    model: Any = None  # the model as built: data-derived covariate references resolved
    data: Any = None  # the data as built: covariates imputed where the model asks for it
    occasions: OccasionDesign | None = None
    censoring: CensoringInfo | None = None
    prediction_schedule: EventSchedule | None = None  # by (subject, occasion) with IOV
    ipred: Any = None  # IPRED (obs,) as a PyTensor variable of the free RVs
    residual_sd: Any = None  # each observation's residual SD (on the log scale if log_scale)
    log_scale: bool = False  # the residual error is normal on the log scale
    nu: Any = None  # Student-t degrees of freedom of each observation (inf: normal), or None
    centering: Any = None  # CenteringChoice for centered="auto" parameters (None if none)


def _error_models(model: Any, dvids: list[int]) -> dict[int, Any]:
    if isinstance(model.error, Mapping):
        errs = {int(k): v for k, v in model.error.items()}
        missing = sorted(set(dvids) - set(errs))
        if missing:
            raise SpecificationError(
                f"Model: the data have DVID {missing} but error models are given only for "
                f"DVID {sorted(errs)}. Add them to error={{...}}."
            )
        return {k: errs[k] for k in dvids}
    return {k: model.error for k in dvids}


def _covariate_factor(effect: Any, values: pd.Series, name: str, log_scale: bool) -> Any:
    """log of the multiplicative factor (log_scale) or the factor itself, per subject."""

    def coef(prior_or_value: Prior | float, cname: str, **kw: Any) -> Any:
        if isinstance(prior_or_value, Prior):
            prior_or_value.validate(f"covariate coefficient {cname}")
            return prior_or_value.to_pymc(cname, **kw)
        return pt.constant(prior_or_value)

    cov = effect.covariate
    if isinstance(effect, Categorical):
        levels = sorted(pd.unique(values).tolist(), key=str)
        if effect.reference not in levels:
            raise SpecificationError(
                f"Categorical({cov!r}): reference level {effect.reference!r} is not in the data; "
                f"levels are {levels}."
            )
        others = [lv for lv in levels if lv != effect.reference]
        if not others:
            raise SpecificationError(
                f"Categorical({cov!r}): only the reference level {effect.reference!r} occurs."
            )
        dim = f"{cov}_level"
        pm.modelcontext(None).add_coord(dim, [str(o) for o in others])
        theta = coef(effect.coefficient, f"{name}_{cov}", dims=dim)
        idx = np.array([others.index(v) if v != effect.reference else -1 for v in values])
        theta_full = pt.concatenate([theta, pt.zeros(1)])[idx]
        log_f = theta_full
    else:
        x = values.to_numpy(dtype=float)
        if isinstance(effect, Power):
            if np.any(x <= 0):
                bad = values.index[x <= 0].tolist()
                raise SpecificationError(
                    f"Power({cov!r}) on {name}: covariate values must be > 0, got "
                    f"{x.min()} for ID {', '.join(map(str, bad[:8]))}"
                    f"{' ...' if len(bad) > 8 else ''}; use Exponential or Linear for "
                    "covariates that can be 0 or negative."
                )
            theta = coef(effect.exponent, f"{name}_{cov}")
            log_f = theta * np.log(x / effect.reference)
        elif isinstance(effect, Exponential):
            theta = coef(effect.coefficient, f"{name}_{cov}")
            log_f = theta * (x - effect.reference)
        elif isinstance(effect, Linear):
            theta = coef(effect.coefficient, f"{name}_{cov}")
            factor = 1.0 + theta * (x - effect.reference)
            if effect.estimated:
                # a non-positive factor means a non-positive parameter: zero posterior density
                pm.Potential(f"{name}_{cov}_positive", pt.switch(pt.all(factor > 0), 0.0, -np.inf))
            log_f = pt.log(pt.maximum(factor, 1e-300))
        else:  # pragma: no cover - guarded by spec validation
            raise SpecificationError(f"Unknown covariate effect {effect!r}.")
    return log_f if log_scale else pt.exp(log_f)


def _omega_start(p: Any) -> float:
    """Starting SD of a random effect: 30 % for log-normal/logit, 30 % of |typical| for normal."""
    if p.iiv == "normal" and p.typical:
        return 0.3 * abs(float(p.typical))
    return 0.3


def _random_effects(
    model: Any, n_subjects: int, typical: dict[str, Any]
) -> tuple[Any, list[str], dict[str, Any]]:
    """eta (subject, param), the offset variable names, and init values.

    Non-centred: ``eta = z * omega`` (``z @ L.T`` in a block), ``z ~ N(0, 1)``. Centred: the
    individual parameter on the scale of its random effect (Monolix's ``phi_i``: log CL_i for
    a log-normal CL) is the sampled variable, ``phi ~ N(typical_i, Omega)``, and
    ``eta = phi - typical_i``. Sampling ``eta ~ N(0, Omega)`` instead would leave the typical
    value and every subject's eta on a ridge (the data fix only their sum), which a diagonal
    mass matrix crosses slowly.
    """
    initvals: dict[str, Any] = {}
    names = model.iiv_names
    blocks = model.omega.resolve(names)
    columns: dict[str, Any] = {}
    sds: dict[str, Any] = {}
    corr_blocks: list[tuple[tuple[str, ...], Any]] = []
    offsets: list[str] = []
    for block in blocks:
        label = "_".join(block)
        priors = [model.parameter(n).omega_prior or model.omega.sd_prior for n in block]
        for n, pr in zip(block, priors, strict=True):
            pr.validate(f"omega prior of {n}")
        centered = model.parameter(block[0]).centered
        starts = [_omega_start(model.parameter(n)) for n in block]
        if len(block) == 1:
            n = block[0]
            sd = priors[0].to_pymc(f"omega_{n}")
            initvals[f"omega_{n}"] = starts[0]
            if centered:
                phi = pm.Normal(f"phi_{n}", typical[n], sd, dims="subject")
                offsets.append(phi.name)
                eta = phi - typical[n]
            else:
                z = pm.Normal(f"z_eta_{n}", 0.0, 1.0, dims="subject")
                offsets.append(z.name)
                eta = z * sd
            columns[n] = eta
            sds[n] = sd
            continue
        families = {p.dist for p in priors}
        if len(families) > 1:
            raise SpecificationError(
                f"Omega block {block}: all SD priors in a block must be the same distribution "
                f"family, got {sorted(families)}."
            )
        stacked = {
            k: np.array([dict(p.params)[k] for p in priors], dtype=float)
            for k, _ in priors[0].params
        }
        sd_dist = priors[0].pymc_class().dist(**stacked, shape=len(block))
        dim = f"param_{label}"
        pm.modelcontext(None).add_coord(dim, list(block))
        chol, corr, stds = pm.LKJCholeskyCov(
            f"chol_omega_{label}",
            n=len(block),
            eta=model.omega.lkj_eta,
            sd_dist=sd_dist,
            compute_corr=True,
            store_in_trace=False,
        )
        offsets.append(f"chol_omega_{label}")  # packed Cholesky factor: a sampler internal
        # start: SDs `starts`, no correlation (packed lower triangle, row by row)
        packed = np.zeros(len(block) * (len(block) + 1) // 2)
        packed[[i * (i + 1) // 2 + i for i in range(len(block))]] = starts
        initvals[f"chol_omega_{label}"] = packed
        if centered:
            mu = pt.stack([typical[n] for n in block], axis=1)
            phi_blk = pm.MvNormal(f"phi_{label}", mu=mu, chol=chol, dims=("subject", dim))
            offsets.append(phi_blk.name)
            eta_blk = phi_blk - mu
        else:
            z = pm.Normal(f"z_eta_{label}", 0.0, 1.0, dims=("subject", dim))
            offsets.append(z.name)
            eta_blk = z @ chol.T
        for j, n in enumerate(block):
            columns[n] = eta_blk[:, j]
            sds[n] = stds[j]
        corr_blocks.append((block, corr))
    if not names:
        return None, offsets, initvals
    eta = pm.Deterministic(
        "eta", pt.stack([columns[n] for n in names], axis=1), dims=("subject", "param")
    )
    pm.Deterministic("omega", pt.stack([sds[n] for n in names]), dims="param")
    k = len(names)
    corr_full = pt.eye(k)
    for block, corr in corr_blocks:
        idx = np.array([names.index(n) for n in block])
        corr_full = pt.set_subtensor(corr_full[idx[:, None], idx[None, :]], corr)
    pm.Deterministic("omega_corr", corr_full, dims=("param", "param_bis"))
    return eta, offsets, initvals


#: Proportional error's SD is ``sigma * sqrt(IPRED^2 + floor^2)`` with ``floor`` this fraction
#: of the output's median positive DV: 1e-12 relative change for predictions above 1e-3 of
#: the median, but a prediction that underflows (an ODE 48 h after a small dose: 1e-21, or a
#: tiny negative undershoot) no longer gives an SD of ~0 (log density -1e24, gradients 1e26:
#: a NUTS chain stuck with every transition divergent) or a negative SD (NaN).
PROPORTIONAL_FLOOR = 1e-6


def additive_prior_scale(dv: np.ndarray) -> float:
    """The scale of the default additive-error prior, ``HalfNormal(sigma = SD of DV)``.

    The SD of one output's observed ``DV`` (1 when it is undefined or 0). Data-derived:
    whoever needs the prior fixed across data sets (e.g. :mod:`nlme_bayes.sbc`) pins it.

    Examples
    --------
    >>> additive_prior_scale(np.array([1.0, 3.0]))
    1.0
    >>> additive_prior_scale(np.array([2.0]))
    1.0
    """
    scale = float(np.std(dv)) if len(dv) > 1 else 1.0
    return scale if scale > 0 and math.isfinite(scale) else 1.0


def _residual_sd(
    err: Any, ipred: Any, dv_scale: float, suffix: str, dv_level: float = 1.0
) -> tuple[Any, bool]:
    """SD of each observation under ``err`` and whether it is a log-scale model."""

    def prior(p: Prior | None, default: Prior, name: str) -> Any:
        pr = p or default
        pr.validate(f"residual error {name}")
        return pr.to_pymc(name)

    add_default = Prior("HalfNormal", sigma=float(dv_scale))
    prop_default = Prior("HalfNormal", sigma=0.5)
    if isinstance(err, Additive):
        return prior(err.sigma, add_default, f"sigma_add{suffix}") * pt.ones_like(ipred), False
    if isinstance(err, Proportional):
        floor = PROPORTIONAL_FLOOR * dv_level
        sigma = prior(err.sigma, prop_default, f"sigma_prop{suffix}")
        return sigma * pt.sqrt(ipred**2 + floor**2), False
    if isinstance(err, Combined):
        a = prior(err.additive, add_default, f"sigma_add{suffix}")
        b = prior(err.proportional, prop_default, f"sigma_prop{suffix}")
        return pt.sqrt(a**2 + (b * ipred) ** 2), False
    if isinstance(err, LogAdditive):
        return prior(err.sigma, prop_default, f"sigma_log{suffix}") * pt.ones_like(ipred), True
    raise SpecificationError(f"Unknown error model {err!r}.")  # pragma: no cover


def _check_error_domain(
    obs: pd.DataFrame,
    errs: dict[int, Any],
    schedule: EventSchedule,
    structure: Any,
    censored: np.ndarray | None = None,
) -> None:
    """Observations whose prediction is structurally 0 cannot have proportional/log error."""
    needs_positive_pred = {k for k, e in errs.items() if isinstance(e, (Proportional, LogAdditive))}
    if not needs_positive_pred:
        return
    in_scope = obs["DVID"].isin(needs_positive_pred).to_numpy()
    # A prediction is positive iff some dose precedes the observation by dt > 0 (oral/infusion
    # give 0 at dt = 0; a lag time can only make it later, which is checked at run time).
    if not isinstance(schedule, EventSchedule):
        # ODE / algebraic schedules answer for themselves (None: cannot tell, check at run time)
        known = getattr(schedule, "structurally_positive", lambda _s: None)(structure)
        if known is None:
            return
        positive = np.asarray(known, bool)
    else:
        positive = np.zeros(len(obs), bool)
        for route in ("iv_bolus", "iv_infusion", "oral", "oral_infusion"):
            pairs = getattr(schedule, route)
            ok = pairs.dt >= 0 if route == "iv_bolus" else pairs.dt > 0
            positive[pairs.obs[ok]] = True
    bad = in_scope & ~positive
    if bad.any():
        raise SpecificationError(
            f"Observations at {describe_rows(obs[bad])} have a predicted concentration of 0 "
            "(no dose before them, or taken at the time of an oral dose) but their error model "
            "is proportional or log-scale, whose likelihood is undefined at 0. Use Combined() "
            "error, or exclude those records (e.g. set MDV=1)."
        )
    log_models = {k for k, e in errs.items() if isinstance(e, LogAdditive)}
    nonpos = obs["DVID"].isin(log_models).to_numpy() & (obs["DV"].to_numpy() <= 0)
    if censored is not None:
        nonpos &= ~censored  # a censored record's DV is replaced by its LLOQ
    if nonpos.any():
        raise DatasetError(
            f"DV: LogAdditive error needs DV > 0, but DV <= 0 at {describe_rows(obs[nonpos])}. "
            "Use Combined() error, or treat them as below the limit of quantification."
        )


def build(model: Any, data: Any, *, store_predictions: bool = True) -> BuiltModel:
    """Build the PyMC model of ``model`` on ``data``.

    Parameters
    ----------
    model : nlme_bayes.Model
    data : nlme_bayes.NonmemDataset
    store_predictions : bool
        Add ``IPRED`` and ``PRED`` as deterministics (stored with each draw).

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.examples import pheno_model
    >>> built = build(pheno_model(), nb.datasets.phenobarbital())
    >>> [v.name for v in built.pm_model.free_RVs][:3]
    ['CL_pop', 'V_pop', 'V_APGAR_LT5']
    """
    structure = model.structure
    model, data = prepare(model, data)
    check_specification(model, data)  # before anything is built or compiled
    model, centering = resolve_centering(model, data)
    data_obs = data.observations()
    if len(data_obs) == 0:
        raise DatasetError("The dataset has no observation records (EVID=0, MDV=0) to fit.")
    dvids = sorted(pd.unique(data_obs["DVID"]).astype(int).tolist())
    errs = _error_models(model, dvids)
    schedule, obs = build_schedule(data, structure)
    censoring = censoring_info(data, model.blq, obs)
    _check_error_domain(
        obs, errs, schedule, structure, None if censoring is None else censoring.censored
    )
    design = None
    predict_schedule = schedule
    if model.occasions is not None:
        design = occasion_design(data, model.occasions, obs, schedule)
        predict_schedule = unit_schedule(schedule, design)
        if design.carry_over:
            warnings.warn(
                f"Occasions: {design.carry_over} dose contribution(s) to observations come from "
                "an earlier occasion of the same subject and are computed with the later "
                "occasion's parameters (see nlme_bayes.Occasions); separate occasions with a "
                "reset record (EVID 3/4) when they are washed out.",
                DatasetWarning,
                stacklevel=2,
            )

    cov_table = (
        data.covariate_table(
            list(model.covariate_names), time_varying=model.time_varying_covariates
        )
        if model.covariate_names
        else (pd.DataFrame(index=pd.Index(data.subject_ids, name="ID")))
    )
    subject_ids = tuple(data.subject_ids)
    coords = {
        "subject": list(subject_ids),
        "obs": np.arange(schedule.n_obs),
        "param": list(model.iiv_names),
        "param_bis": list(model.iiv_names),
    }
    if design is not None:
        coords["subject_occasion"] = list(design.labels)
        coords["param_iov"] = list(model.iov_names)
    initvals: dict[str, Any] = {}
    with pm.Model(coords=coords, name="") as pm_model:
        for c in model.covariate_names:
            col = cov_table[c]
            if pd.api.types.is_numeric_dtype(col):
                pm.Data(c, col.to_numpy(dtype=float), dims="subject")
        pm.Data("TIME", obs["TIME"].to_numpy(dtype=float), dims="obs")
        pm.Data("subject_index", obs["subject"].to_numpy(dtype=np.int64), dims="obs")

        # --- typical values and covariate effects (per subject, transformed scale)
        typical: dict[str, Any] = {}
        for p in model.parameters:
            if p.fixed:
                pop = pt.constant(float(p.typical))
            else:
                prior = p.effective_prior
                prior.validate(f"prior of {p.name}")
                pop = prior.to_pymc(f"{p.name}_pop")
                if p.typical is not None:
                    initvals[f"{p.name}_pop"] = float(p.typical)
            log_scale = p.iiv in ("lognormal", "logit", None)
            if p.iiv == "logit":
                base = pt.log(pop) - pt.log1p(-pop)
            elif p.iiv == "normal":
                base = pop
            else:
                base = pt.log(pop)
            value = base * pt.ones(len(subject_ids))
            for eff in p.covariates:
                f = _covariate_factor(eff, cov_table[eff.covariate], p.name, log_scale)
                value = value + f if log_scale else value * f
            typical[p.name] = value

        # --- random effects
        eta, offsets, omega_starts = _random_effects(model, len(subject_ids), typical)
        initvals.update(omega_starts)
        individual: dict[str, Any] = {}
        population: dict[str, Any] = {}
        for p in model.parameters:
            t = typical[p.name]
            e = eta[:, model.iiv_names.index(p.name)] if p.iiv is not None else 0.0
            if p.iiv == "normal":
                ind, popv = t + e, t
            elif p.iiv == "logit":
                ind, popv = pt.sigmoid(t + e), pt.sigmoid(t)
            else:
                ind, popv = pt.exp(t + e), pt.exp(t)
            individual[p.name] = pm.Deterministic(p.name, ind, dims="subject")
            population[p.name] = popv
        if design is not None:
            individual, population = _occasion_parameters(
                model, design, typical, eta, individual, population, offsets, initvals
            )

        # --- structural model and residual error
        ipred = structure.predict(individual, predict_schedule)
        ode_ok = getattr(ipred.tag, "ode_ok", None)
        if ode_ok is not None:
            # An integration that produced a non-finite state rejects the proposal (-inf)
            # instead of handing NaN to the sampler.
            pm.Potential("ode_failure", pt.switch(pt.all(ode_ok), 0.0, -np.inf))
        if store_predictions:
            ipred = pm.Deterministic("IPRED", ipred, dims="obs")
            pm.Deterministic("PRED", structure.predict(population, predict_schedule), dims="obs")
        dvid = obs["DVID"].to_numpy().astype(int)
        dv = obs["DV"].to_numpy(dtype=float)
        sd = pt.zeros(schedule.n_obs)
        is_log = False
        for k, err in errs.items():
            mask = dvid == k
            scale = additive_prior_scale(dv[mask])
            suffix = "" if len(errs) == 1 else f"_DVID{k}"
            positive = np.abs(dv[mask])[np.abs(dv[mask]) > 0]
            level = float(np.median(positive)) if positive.size else 1.0
            sd_k, is_log = _residual_sd(err, ipred, scale, suffix, level)
            sd = pt.where(mask, sd_k, sd) if len(errs) > 1 else sd_k
        nu = _residual_nu(errs, dvid)
        pieces = {"ipred": ipred, "residual_sd": sd, "log_scale": is_log, "nu": nu}
        if censoring is not None:
            _censored_likelihood(ipred, sd, is_log, censoring, nu)
        elif nu is not None:
            _student_t_likelihood(ipred, sd, is_log, nu, dv)
        elif is_log:
            pm.LogNormal("DV", mu=pt.log(ipred), sigma=sd, observed=dv, dims="obs")
        else:
            pm.Normal("DV", mu=ipred, sigma=sd, observed=dv, dims="obs")

    return BuiltModel(
        pm_model=pm_model,
        schedule=schedule,
        observations=obs,
        subject_ids=subject_ids,
        offset_vars=tuple(offsets),
        # Chains start with every subject at the typical values (z = 0 / eta = 0) and only the
        # population level jittered: jittering the offsets scatters individuals of a
        # one-compartment oral model into the flip-flop mode (ka_i < k_i), where they stay.
        jitter_vars=tuple(
            rv.name
            for rv in pm_model.free_RVs
            if rv.name not in offsets and not rv.name.startswith("eta_")
        ),
        initvals=initvals,
        covariates=cov_table,
        model=model,
        data=data,
        occasions=design,
        censoring=censoring,
        centering=centering,
        **pieces,
        prediction_schedule=predict_schedule,
    )


def _occasion_parameters(
    model: Any,
    design: OccasionDesign,
    typical: dict[str, Any],
    eta: Any,
    individual: dict[str, Any],
    population: dict[str, Any],
    offsets: list[str],
    initvals: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-(subject, occasion) parameters ``P_ij = g^-1(t_i + eta_i + kappa_ij)``.

    ``kappa = z * omega_iov`` (non-centred); one SD per parameter, independent kappas.
    """
    names = model.iov_names
    sds = []
    for n in names:
        p = model.parameter(n)
        prior = p.iov_prior or model.occasions.sd_prior
        prior.validate(f"IOV prior of {n}")
        sds.append(prior.to_pymc(f"omega_iov_{n}"))
        initvals[f"omega_iov_{n}"] = 0.1
    omega_iov = pm.Deterministic("omega_iov", pt.stack(sds), dims="param_iov")
    z = pm.Normal("z_kappa", 0.0, 1.0, dims=("subject_occasion", "param_iov"))
    offsets.append("z_kappa")
    kappa = pm.Deterministic("kappa", z * omega_iov, dims=("subject_occasion", "param_iov"))
    unit = design.unit_subject
    per_unit: dict[str, Any] = {}
    for p in model.parameters:
        if not p.iov:
            per_unit[p.name] = individual[p.name][unit]
            continue
        t = typical[p.name][unit]
        e = eta[unit, model.iiv_names.index(p.name)] if p.iiv is not None else 0.0
        x = t + e + kappa[:, names.index(p.name)]
        if p.iiv == "normal":
            value = x
        elif p.iiv == "logit":
            value = pt.sigmoid(x)
        else:
            value = pt.exp(x)
        per_unit[p.name] = pm.Deterministic(f"{p.name}_occ", value, dims="subject_occasion")
    return per_unit, {n: v[unit] for n, v in population.items()}


def _residual_nu(errs: dict[int, Any], dvid: np.ndarray) -> Any:
    """Degrees of freedom of each observation's Student-t error (``inf``: normal), or None.

    ``nu`` of an error model: a number is fixed; a Prior creates the variable ``nu`` (one
    output) or ``nu_DVID<k>``.
    """
    if not any(e.nu is not None for e in errs.values()):
        return None
    nu = pt.as_tensor_variable(np.full(len(dvid), np.inf))
    for k, err in errs.items():
        if err.nu is None:
            continue
        if isinstance(err.nu, Prior):
            name = "nu" if len(errs) == 1 else f"nu_DVID{k}"
            err.nu.validate(f"residual error {name}")
            value = err.nu.to_pymc(name)
        else:
            value = pt.constant(float(err.nu))
        nu = value * pt.ones(len(dvid)) if len(errs) == 1 else pt.where(dvid == k, value, nu)
    return nu


def _draw_dv(
    mu: np.ndarray, sigma: np.ndarray, nu: Any, is_log: bool, rng: Any, size: Any
) -> np.ndarray:
    """Replicated DV (natural scale) for PyMC's posterior predictive."""
    rng = rng if rng is not None else np.random.default_rng()
    mu, sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
    shape = size if size is not None else np.broadcast_shapes(mu.shape, sigma.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        loc = np.log(mu) if is_log else mu
        y = loc + sigma * residual_family.standard_draws(rng, tuple(shape), nu)
    return np.exp(y) if is_log else y


def _student_t_likelihood(ipred: Any, sd: Any, is_log: bool, nu: Any, dv: np.ndarray) -> Any:
    """``DV`` with Student-t residuals (``inf`` degrees of freedom: normal), over ``obs``.

    On the log scale the density is that of ``DV`` (log-t density of ``log DV`` minus
    ``log DV``), like ``LogNormal`` for normal errors, so LOO compares it with the others.
    """

    def logp(value: Any, mu: Any, sigma: Any, df: Any) -> Any:
        if is_log:
            y = pt.log(value)
            return residual_family.logpdf(y, pt.log(mu), sigma, df) - y
        return residual_family.logpdf(value, mu, sigma, df)

    def random(mu: Any, sigma: Any, df: Any, rng: Any = None, size: Any = None) -> Any:
        return _draw_dv(mu, sigma, np.asarray(df, dtype=float), is_log, rng, size)

    return pm.CustomDist("DV", ipred, sd, nu, logp=logp, random=random, observed=dv, dims="obs")


def _censored_likelihood(
    ipred: Any, sd: Any, is_log: bool, info: CensoringInfo, nu: Any = None
) -> Any:
    """``DV`` with censored observations (M3/M4/M1), as one observed variable over ``obs``."""
    lloq = np.where(np.isfinite(info.lloq), info.lloq, -np.inf)
    method = info.method

    def random(mu: Any, sigma: Any, *df: Any, rng: Any = None, size: Any = None) -> Any:
        """Replicated DV: values below their LLOQ are reported at the LLOQ (censored)."""
        rng = rng if rng is not None else np.random.default_rng()
        nu_ = np.asarray(df[0], dtype=float) if df else None
        if method == "M4" and not is_log:  # positive by nature: truncated at 0
            from scipy import stats

            mu, sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
            shape = size if size is not None else np.broadcast_shapes(mu.shape, sigma.shape)
            p0 = np.exp(residual_family.logcdf_numpy(0.0, mu, sigma, nu_))
            u = np.clip(p0 + (1 - p0) * rng.uniform(size=shape), 1e-300, 1 - 1e-16)
            if nu_ is None:
                z = stats.norm.ppf(u)
            else:
                finite = np.isfinite(nu_)
                z = np.where(finite, stats.t.ppf(u, np.where(finite, nu_, 1.0)), stats.norm.ppf(u))
            y = mu + sigma * z
        else:
            y = _draw_dv(mu, sigma, nu_, is_log, rng, size)
        return np.where(y < lloq, lloq, y)

    if nu is None:

        def logp(value: Any, mu: Any, sigma: Any) -> Any:
            return censored_logp(value, mu, sigma, is_log, info)

        return pm.CustomDist(
            "DV", ipred, sd, logp=logp, random=random, observed=info.dv, dims="obs"
        )

    def logp_t(value: Any, mu: Any, sigma: Any, df: Any) -> Any:
        return censored_logp(value, mu, sigma, is_log, info, nu=df)

    return pm.CustomDist(
        "DV", ipred, sd, nu, logp=logp_t, random=random, observed=info.dv, dims="obs"
    )
