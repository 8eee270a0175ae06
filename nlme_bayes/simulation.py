"""Posterior draws, compiled predictions and the residual-error model, in NumPy.

The building blocks that diagnostics (VPC, NPDE), model comparison (integrated
leave-one-subject-out) and simulation share:

- :func:`posterior_draws`: per-draw typical values per subject (eta = 0, covariates
  included), individual parameters, etas, the Omega covariance and the residual SDs;
- :func:`apply_iiv`: typical values + etas -> individual parameters, per the model;
- :class:`Predictor`: the structural model compiled once for a schedule, evaluated on
  arrays of parameters with any leading (draw, replicate) dimensions;
- :func:`residual_sd`, :func:`obs_logpdf`, :func:`sample_dv`: the error model;
- :func:`simulate_replicates`: replicated datasets (same design) from the posterior, with
  new subjects' random effects or the fitted ones.

New subjects under any design and trial-style exposure summaries (:func:`simulate`,
:func:`simulate_exposure`, ...) live in :mod:`nlme_bayes.trial_simulation` and are served
from here as well.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .compile_mode import lean_mode
from .priors import Prior
from .residual_family import is_residual_parameter
from .spec import Additive, Combined, LogAdditive, Proportional

__all__ = [
    "PosteriorDraws",
    "posterior_draws",
    "apply_iiv",
    "Predictor",
    "error_models_by_dvid",
    "residual_sd",
    "residual_nu",
    "is_residual_parameter",
    "obs_logpdf",
    "sample_dv",
    "simulate_replicates",
]

#: PyTensor mode for our NumPy-facing helpers: compiled, cached on disk, ~14 µs per call
#: (PyTensor's FAST_RUN less the rewrites of :mod:`nlme_bayes.compile_mode`).
HELPER_MODE = lean_mode("FAST_RUN")


def error_models_by_dvid(model: Any, dvids: Any) -> dict[int, tuple[Any, str]]:
    """``{DVID: (error model, suffix of its sigma_* names)}`` as the builder names them.

    Examples
    --------
    >>> from nlme_bayes.examples import pheno_model
    >>> error_models_by_dvid(pheno_model(), [1])
    {1: (Proportional(sigma=Prior('HalfNormal', sigma=0.5)), '')}
    """
    present = sorted({int(d) for d in np.unique(np.asarray(dvids))})
    if isinstance(model.error, dict):
        errs = {k: model.error[k] for k in present}
    else:
        errs = {k: model.error for k in present}
    return {k: (e, "" if len(errs) == 1 else f"_DVID{k}") for k, e in errs.items()}


@dataclass(frozen=True)
class PosteriorDraws:
    """A thinned set of ``S`` posterior draws, as NumPy arrays.

    Attributes
    ----------
    typical : dict name -> (S, n_subjects)
        Typical values per subject (eta = 0, covariate effects included).
    individual : dict name -> (S, n_subjects)
    eta : (S, n_subjects, k)
        Random effects, columns in ``iiv_names`` order (k may be 0).
    omega_cov : (S, k, k)
        Omega (covariance of eta) per draw.
    sigma : dict name -> (S,)
        Residual-error parameters: SDs (``sigma_add``, ``sigma_prop``, ``sigma_log`` with DVID
        suffixes) and estimated Student-t degrees of freedom (``nu``, ``nu_DVID<k>``).
    iiv_names : tuple of str
    index : (S,) flat (chain*draw) index of each draw.

    Examples
    --------
    >>> draws = posterior_draws(fit, n_draws=200, random_seed=1)  # doctest: +SKIP
    >>> draws.n_draws, draws.eta.shape  # (draws, subjects, random effects)  # doctest: +SKIP
    (200, (200, 12, 3))
    """

    typical: dict[str, np.ndarray]
    individual: dict[str, np.ndarray]
    eta: np.ndarray
    omega_cov: np.ndarray
    sigma: dict[str, np.ndarray]
    iiv_names: tuple[str, ...]
    index: np.ndarray

    @property
    def n_draws(self) -> int:
        """Number of draws ``S``.

        Examples
        --------
        >>> draws = posterior_draws(fit, n_draws=100, random_seed=1)  # doctest: +SKIP
        >>> draws.n_draws, draws.individual["CL"].shape  # doctest: +SKIP
        (100, (100, 12))
        """
        return len(self.index)


def _flat(da: xr.DataArray, *rest: str) -> np.ndarray:
    da = da.transpose("chain", "draw", *rest)
    return da.values.reshape((-1,) + da.shape[2:])


def posterior_draws(
    fit: Any, *, n_draws: int | None = None, random_seed: int = 0
) -> PosteriorDraws:
    """``n_draws`` posterior draws picked at random without replacement (all if None).

    Examples
    --------
    >>> draws = posterior_draws(fit, n_draws=200, random_seed=1)  # doctest: +SKIP
    >>> sorted(draws.typical)  # doctest: +SKIP
    ['CL', 'V', 'ka']
    """
    from .predictions import typical_parameters

    post = fit.posterior
    model = fit.model
    n_total = post.sizes["chain"] * post.sizes["draw"]
    if n_draws is None or n_draws >= n_total:
        index = np.arange(n_total)
    else:
        index = np.sort(np.random.default_rng(random_seed).choice(n_total, n_draws, replace=False))
    typ_all = typical_parameters(fit)
    typical = {n: v.reshape(n_total, -1)[index] for n, v in typ_all.items()}
    individual = {p: _flat(post[p], "subject")[index] for p in model.parameter_names}
    names = tuple(model.iiv_names)
    n_sub = len(post["subject"])
    if names:
        eta = _flat(post["eta"], "subject", "param")[index]
        sd = _flat(post["omega"], "param")[index]
        corr = _flat(post["omega_corr"], "param", "param_bis")[index]
        omega_cov = sd[:, :, None] * corr * sd[:, None, :]
    else:
        eta = np.zeros((len(index), n_sub, 0))
        omega_cov = np.zeros((len(index), 0, 0))
    sigma = {str(v): _flat(post[v])[index] for v in post.data_vars if is_residual_parameter(v)}
    return PosteriorDraws(typical, individual, eta, omega_cov, sigma, names, index)


def apply_iiv(model: Any, typical: dict[str, np.ndarray], eta: np.ndarray) -> dict[str, Any]:
    """Individual parameters from typical values (..., n) and etas (..., n, k).

    Examples
    --------
    >>> import numpy as np
    >>> from nlme_bayes.examples import theophylline_model
    >>> typical = {"CL": np.array([0.04]), "V": np.array([0.5]), "ka": np.array([1.5])}
    >>> out = apply_iiv(theophylline_model(), typical, np.array([[0.1, 0.0, -0.2]]))
    >>> {name: round(float(v[0]), 4) for name, v in out.items()}
    {'CL': 0.0442, 'V': 0.5, 'ka': 1.2281}
    """
    out = {}
    names = tuple(model.iiv_names)
    for p in model.parameters:
        t = typical[p.name]
        if p.iiv is None:
            out[p.name] = np.broadcast_to(t, eta.shape[:-1]) if eta.ndim > 1 else t
            continue
        e = eta[..., names.index(p.name)]
        if p.iiv == "normal":
            out[p.name] = t + e
        elif p.iiv == "logit":
            logit = np.log(t) - np.log1p(-t)
            out[p.name] = 1.0 / (1.0 + np.exp(-(logit + e)))
        else:
            out[p.name] = t * np.exp(e)
    return out


class Predictor:
    """The structural model compiled once for ``schedule``.

    ``predictor(params)`` takes a dict name -> array of shape ``(..., n_subjects)`` and
    returns the concentrations, shape ``(..., n_obs)``; leading dimensions are looped over
    in compiled code calls (about 15 µs each for a dozen subjects).

    Examples
    --------
    >>> import numpy as np
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.events import build_schedule
    >>> oral = nb.OneCompartment(route="oral")
    >>> schedule, obs = build_schedule(nb.datasets.theophylline(), oral)
    >>> predict = Predictor(oral, schedule)
    >>> conc = predict({"CL": np.full(12, 0.04), "V": np.full(12, 0.5), "ka": np.full(12, 1.5)})
    >>> conc.shape
    (132,)
    """

    def __init__(self, structure: Any, schedule: Any) -> None:
        self.structure = structure
        self.schedule = schedule
        self.names = tuple(structure.parameters)
        self._f, self._lock = _compiled_prediction(structure, schedule, self.names)

    def __call__(self, params: dict[str, np.ndarray]) -> np.ndarray:
        arrays = [np.asarray(params[n], dtype=float) for n in self.names]
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        lead = shape[:-1]
        flat = [np.broadcast_to(a, shape).reshape(-1, shape[-1]) for a in arrays]
        out = np.empty((flat[0].shape[0], self.schedule.n_obs))
        with self._lock:  # one compiled function may serve several Predictors (threads)
            for i in range(flat[0].shape[0]):
                out[i] = self._f(*[a[i] for a in flat])
        return out.reshape(lead + (self.schedule.n_obs,))


#: Compiled predictions kept for reuse, most recent last (see :func:`_compiled_prediction`).
_PREDICTIONS: OrderedDict[tuple, tuple[Any, Any, Any]] = OrderedDict()
_PREDICTIONS_MAX = 8
_predictions_lock = threading.Lock()


def _compiled_prediction(structure: Any, schedule: Any, names: tuple[str, ...]) -> tuple:
    """The compiled ``structure.predict`` for ``schedule`` and its call lock, compiled once.

    The goodness-of-fit panels, NPDE, VPC and the HTML report each simulate from the same fit,
    and each used to compile the same prediction again -- on an ODE model 5-15 s apiece
    (rewriting and loading the solver's graph). Entries are keyed by the structure object
    (kept alive by the entry, so its ``id`` is not reused) and by the schedule's contents;
    the last :data:`_PREDICTIONS_MAX` are kept.
    """
    import pytensor
    import pytensor.tensor as pt

    key = (id(structure), names, _fingerprint(schedule))
    with _predictions_lock:
        hit = _PREDICTIONS.get(key)
        if hit is not None:
            _PREDICTIONS.move_to_end(key)
            return hit[1], hit[2]
    inputs = [pt.dvector(n) for n in names]
    out = structure.predict(dict(zip(names, inputs, strict=True)), schedule)
    # on_unused_input: a schedule without dose-observation pairs predicts 0 everywhere
    f = pytensor.function(inputs, out, mode=HELPER_MODE, on_unused_input="ignore")
    entry = (structure, f, threading.Lock())
    with _predictions_lock:
        _PREDICTIONS[key] = entry
        while len(_PREDICTIONS) > _PREDICTIONS_MAX:
            _PREDICTIONS.popitem(last=False)
    return entry[1], entry[2]


def _fingerprint(obj: Any) -> Any:
    """A hashable summary of a schedule's contents (arrays by digest); unknown objects by id."""
    import dataclasses
    import hashlib

    if isinstance(obj, np.ndarray):
        data = np.ascontiguousarray(obj)
        digest = hashlib.sha1(data.view(np.uint8).ravel() if data.size else b"").hexdigest()
        return ("array", data.shape, data.dtype.str, digest)
    if isinstance(obj, bool | int | float | str | bytes | type(None) | np.generic):
        return (type(obj).__name__, obj)
    if isinstance(obj, list | tuple):
        return (type(obj).__name__, tuple(_fingerprint(v) for v in obj))
    if isinstance(obj, dict):
        return ("dict", tuple(sorted((str(k), _fingerprint(v)) for k, v in obj.items())))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = tuple(
            (f.name, _fingerprint(getattr(obj, f.name))) for f in dataclasses.fields(obj)
        )
        return (type(obj).__qualname__, fields)
    return ("id", id(obj))


def residual_sd(
    model: Any, ipred: np.ndarray, dvid: np.ndarray, sigma: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Residual SD of each observation and whether its error model is log-scale.

    ``ipred`` has shape ``(S, ..., n_obs)`` and each ``sigma[name]`` shape ``(S,)``.
    For log-scale observations the SD is that of ``log DV``.

    Examples
    --------
    >>> import numpy as np
    >>> from nlme_bayes.examples import pheno_model
    >>> sd, is_log = residual_sd(pheno_model(), np.array([[10.0, 20.0]]), np.array([1, 1]),
    ...                          {"sigma_prop": np.array([0.1])})
    >>> sd.tolist(), is_log.tolist()
    ([[1.0, 2.0]], [False, False])
    """
    ipred = np.asarray(ipred, dtype=float)
    sd = np.empty_like(ipred)
    is_log = np.zeros(ipred.shape[-1], dtype=bool)
    extra = (1,) * (ipred.ndim - 1)

    def s(name: str) -> np.ndarray:
        return np.asarray(sigma[name], dtype=float).reshape((-1,) + extra)

    for k, (err, sfx) in error_models_by_dvid(model, dvid).items():
        m = np.asarray(dvid) == k
        x = ipred[..., m]
        if isinstance(err, Additive):
            sd[..., m] = s(f"sigma_add{sfx}") * np.ones_like(x)
        elif isinstance(err, Proportional):
            sd[..., m] = s(f"sigma_prop{sfx}") * x
        elif isinstance(err, Combined):
            sd[..., m] = np.sqrt(s(f"sigma_add{sfx}") ** 2 + (s(f"sigma_prop{sfx}") * x) ** 2)
        elif isinstance(err, LogAdditive):
            sd[..., m] = s(f"sigma_log{sfx}") * np.ones_like(x)
            is_log[m] = True
    return sd, is_log


def residual_nu(
    model: Any, dvid: np.ndarray, sigma: dict[str, np.ndarray], ndim: int = 2
) -> np.ndarray | None:
    """Student-t degrees of freedom of each observation (``inf``: normal), or None if none.

    Shape ``(S, 1, ..., n_obs)`` (``ndim`` dimensions, as ``ipred`` in :func:`residual_sd`)
    when some ``nu`` is estimated (``sigma["nu"]``, ``sigma["nu_DVID<k>"]`` of shape
    ``(S,)``), else ``(n_obs,)``.

    Examples
    --------
    >>> import numpy as np
    >>> from nlme_bayes import Additive, Model, OneCompartment, Parameter
    >>> m = Model(OneCompartment(route="iv"), [Parameter("CL", 1.0), Parameter("V", 10.0)],
    ...           error=Additive(nu=4))
    >>> residual_nu(m, np.array([1, 1]), {}).tolist()
    [4.0, 4.0]
    >>> residual_nu(m.replace(error=Additive()), np.array([1, 1]), {}) is None
    True
    """
    pairs = error_models_by_dvid(model, dvid)
    if all(err.nu is None for err, _ in pairs.values()):
        return None
    dvid = np.asarray(dvid)
    lead = (1,) * (ndim - 1)
    estimated = [np.asarray(sigma[f"nu{sfx}"], dtype=float).reshape((-1,) + lead)
                 for err, sfx in pairs.values() if isinstance(err.nu, Prior)]  # fmt: skip
    nu = np.full((len(estimated[0]),) + lead[1:] + (len(dvid),) if estimated else len(dvid), np.inf)
    for k, (err, sfx) in pairs.items():
        if isinstance(err.nu, Prior):
            nu[..., dvid == k] = np.asarray(sigma[f"nu{sfx}"], dtype=float).reshape((-1,) + lead)
        elif err.nu is not None:
            nu[..., dvid == k] = float(err.nu)
    return nu


def obs_logpdf(
    dv: np.ndarray, ipred: np.ndarray, sd: np.ndarray, is_log: np.ndarray, nu: Any = None
) -> Any:
    """Log-density of each observation (Normal or Student-t; on the DV scale for log errors).

    ``nu``: Student-t degrees of freedom (:func:`residual_nu`; ``inf`` or ``None``: normal).

    Examples
    --------
    >>> import numpy as np
    >>> obs_logpdf(np.array([1.0]), np.array([1.0]), np.array([1.0]), np.array([False])).round(4)
    array([-0.9189])
    """
    from .residual_family import logpdf_numpy

    dv = np.asarray(dv, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(is_log, np.log(ipred), ipred)
        y = np.where(is_log, np.log(np.where(dv > 0, dv, np.nan)), dv)
        lp = logpdf_numpy(y, mu, sd, nu)
        lp = np.where(is_log, lp - y, lp)  # Jacobian of log DV
    return np.where(np.isnan(lp), -np.inf, lp)


def sample_dv(
    ipred: np.ndarray,
    sd: np.ndarray,
    is_log: np.ndarray,
    rng: np.random.Generator,
    nu: Any = None,
) -> np.ndarray:
    """Draw observations from the residual-error model (Student-t where ``nu`` is finite).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ipred, sd, is_log = np.array([10.0, 20.0]), np.array([1.0, 2.0]), np.array([False, False])
    >>> sample_dv(ipred, sd, is_log, rng).round(3)
    array([10.126, 19.736])
    """
    from .residual_family import standard_draws

    eps = standard_draws(rng, np.shape(ipred), nu)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(is_log, np.exp(np.log(ipred) + sd * eps), ipred + sd * eps)


def simulate_replicates(
    fit: Any,
    *,
    n_draws: int = 200,
    new_subjects: bool = True,
    new_occasions: bool | None = None,
    random_seed: int = 0,
) -> xr.Dataset:
    """Replicate the study design from ``n_draws`` posterior draws.

    For each draw: new subjects' random effects ``eta ~ N(0, Omega_draw)`` (default; what a
    VPC needs) or the fitted etas (``new_subjects=False``; a posterior predictive check of
    these subjects), individual predictions, and residual noise.

    With inter-occasion variability, ``new_occasions`` (default: as ``new_subjects``) draws
    new ``kappa ~ N(0, omega_iov)`` for every occasion, else the fitted ones are kept:
    ``new_subjects=False, new_occasions=True`` simulates the fitted subjects on new occasions.

    Returns
    -------
    xarray.Dataset
        ``DV_sim``, ``IPRED_sim`` and ``PRED`` with dims ``(draw, obs)`` and ``obs`` coordinates
        ``ID``, ``TIME``, ``DVID``; ``DV`` (observed) with dim ``obs``.

    Examples
    --------
    >>> reps = simulate_replicates(fit, n_draws=100, random_seed=1)  # doctest: +SKIP
    >>> reps["DV_sim"].dims  # doctest: +SKIP
    ('draw', 'obs')
    """
    from .events import build_schedule

    rng = np.random.default_rng(random_seed)
    draws = posterior_draws(fit, n_draws=n_draws, random_seed=random_seed)
    schedule, obs = build_schedule(fit.data, fit.model.structure)
    k = len(draws.iiv_names)
    if new_subjects and k:
        chol = np.linalg.cholesky(draws.omega_cov + 1e-12 * np.eye(k))
        z = rng.standard_normal(draws.eta.shape)
        eta = np.einsum("sij,snj->sni", chol, z)
    else:
        eta = draws.eta
    params = apply_iiv(fit.model, draws.typical, eta)
    typical = draws.typical
    if getattr(fit.model, "occasions", None) is not None:
        from . import occasions as occ

        design = occ.occasion_design(fit.data, fit.model.occasions, obs, schedule)
        new = new_subjects if new_occasions is None else new_occasions
        kappa = occ.occasion_draws(fit, draws.index, new_occasions=new, rng=rng)
        params, typical = occ.unit_parameters(fit.model, design, draws.typical, eta, kappa)
        schedule = occ.unit_schedule(schedule, design)
    predictor = Predictor(fit.model.structure, schedule)
    ipred = predictor(params)
    pred = predictor(typical)
    dvid = obs["DVID"].to_numpy().astype(int)
    sd, is_log = residual_sd(fit.model, ipred, dvid, draws.sigma)
    nu = residual_nu(fit.model, dvid, draws.sigma, ipred.ndim)
    dv_sim = sample_dv(ipred, sd, is_log, rng, nu)
    coords = {
        "draw": draws.index,
        "obs": np.arange(len(obs)),
        "ID": ("obs", obs["ID"].to_numpy()),
        "TIME": ("obs", obs["TIME"].to_numpy(dtype=float)),
        "DVID": ("obs", dvid),
    }
    return xr.Dataset(
        {
            "DV_sim": (("draw", "obs"), dv_sim),
            "IPRED_sim": (("draw", "obs"), ipred),
            "PRED": (("draw", "obs"), pred),
            "DV": ("obs", obs["DV"].to_numpy(dtype=float)),
        },
        coords=coords,
        attrs={
            "new_subjects": int(bool(new_subjects)),
            "new_occasions": int(bool(new_subjects if new_occasions is None else new_occasions)),
            "random_seed": random_seed,
        },
    )


def observation_table(fit: Any) -> pd.DataFrame:
    """The observation records in model order (ID, TIME, DV, DVID, ROW, subject)."""
    from .events import build_schedule

    return build_schedule(fit.data, fit.model.structure)[1]


#: Served from :mod:`nlme_bayes.trial_simulation` (``nb.simulation.simulate(...)`` works).
_TRIAL_SIMULATION = (
    "simulate",
    "simulation_table",
    "prediction_intervals",
    "simulate_exposure",
    "sigma_for_dvids",
)


def __getattr__(name: str) -> Any:
    if name in _TRIAL_SIMULATION:
        from . import trial_simulation

        return getattr(trial_simulation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
