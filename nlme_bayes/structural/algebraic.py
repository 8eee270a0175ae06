r"""Models without dosing events: a structural function ``f(x, covariates, params)``.

Growth curves, dose-response and exposure-response data have no dosing history: the
prediction of each observation is an explicit function of an independent variable ``x``
(``TIME`` by default, or any column such as ``DOSE``), of observation-level covariates and
of the subject's individual parameters,

.. math::

    \mathrm{IPRED}_{ij} = f\big(x_{ij},\ \mathrm{cov}_{ij},\ \theta_i\big),

written with PyTensor math so that NUTS gets exact gradients.  Everything else -- typical
values, covariate effects on parameters, random effects, residual error, diagnostics,
save/load -- is the same builder as for the compartment models.

Functions are referred to by name, which is what a saved fit stores: the built-in ones
(:data:`FUNCTIONS`: ``logistic``, ``gompertz``, ``asymptotic``, ``emax``, ``sigmoid_emax``),
functions registered with :func:`register_function`, or an importable
``"package.module:function"``.

Examples
--------
>>> import nlme_bayes as nb
>>> from nlme_bayes.structural.algebraic import Algebraic
>>> Algebraic("logistic").parameters
('Asym', 'xmid', 'scal')
>>> Algebraic("emax", x="DOSE").describe()
'Algebraic model emax(DOSE): E0 + Emax*x/(ED50 + x); parameters E0, Emax, ED50'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytensor.tensor as pt
from pytensor.tensor.variable import TensorVariable

from ..errors import DatasetError, SpecificationError
from ..events import describe_rows

__all__ = [
    "Algebraic",
    "AlgebraicFunction",
    "AlgebraicSchedule",
    "FUNCTIONS",
    "register_function",
]

StructuralFunction = Callable[[Any, Mapping[str, Any], Mapping[str, Any]], Any]


@dataclass(frozen=True)
class AlgebraicFunction:
    """A named structural function and the parameter names it reads.

    Attributes
    ----------
    name : str
        Registry key (what a saved model stores).
    function : callable
        ``function(x, covariates, params) -> prediction``; ``x`` and every entry of the
        mappings are PyTensor vectors with one element per observation.
    parameters : tuple of str
        The individual parameters ``params`` holds, in canonical order.
    equation : str
        A short plain-text formula (for ``describe()``).

    Examples
    --------
    >>> f = FUNCTIONS["logistic"]
    >>> f.parameters, f.equation
    (('Asym', 'xmid', 'scal'), 'Asym/(1 + exp((xmid - x)/scal))')
    """

    name: str
    function: StructuralFunction = field(repr=False)
    parameters: tuple[str, ...]
    equation: str = ""


#: Registered structural functions by name (built-ins first).
FUNCTIONS: dict[str, AlgebraicFunction] = {}


def register_function(
    name: str,
    function: StructuralFunction,
    *,
    parameters: tuple[str, ...] | list[str],
    equation: str = "",
    replace: bool = False,
) -> AlgebraicFunction:
    """Register ``function`` under ``name`` so that models (and saved fits) can name it.

    A fit saved with a registered function is restored in a new session once the same
    function has been registered again (e.g. by importing the module that registers it).

    Parameters
    ----------
    name : str
        An identifier such as ``"my_growth"``.
    function : callable
        ``function(x, covariates, params)`` written with PyTensor (or NumPy-compatible)
        operations, elementwise over observations.
    parameters : sequence of str
        The names of the individual parameters it reads from ``params``.
    equation : str, optional
        A short formula shown by ``describe()``.
    replace : bool
        Allow replacing an existing registration of ``name`` by a different function.

    Returns
    -------
    AlgebraicFunction

    Raises
    ------
    SpecificationError
        Invalid name or parameter names, a non-callable, or ``name`` already registered
        to another function (without ``replace=True``).

    Examples
    --------
    >>> import pytensor.tensor as pt
    >>> def monomolecular(x, cov, p):
    ...     return p["A"] * (1 - pt.exp(-p["k"] * x))
    >>> entry = register_function("monomolecular", monomolecular, parameters=("A", "k"),
    ...                           equation="A*(1 - exp(-k*x))")
    >>> Algebraic("monomolecular").parameters
    ('A', 'k')
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise SpecificationError(
            f"register_function: name must be an identifier such as 'my_growth', got {name!r}."
        )
    if not callable(function):
        raise SpecificationError(
            f"register_function({name!r}): function must be callable, got {function!r}."
        )
    params = _parameter_names(parameters, f"register_function({name!r})")
    old = FUNCTIONS.get(name)
    if old is not None and old.function is not function and not replace:
        raise SpecificationError(
            f"register_function: {name!r} is already registered to another function; "
            "choose another name or pass replace=True."
        )
    entry = AlgebraicFunction(name, function, params, equation)
    FUNCTIONS[name] = entry
    return entry


def _parameter_names(names: Any, what: str) -> tuple[str, ...]:
    if isinstance(names, str) or not names:
        raise SpecificationError(
            f"{what}: parameters must be a non-empty sequence of names such as ('A', 'k'), "
            f"got {names!r}."
        )
    out = tuple(names)
    bad = [n for n in out if not (isinstance(n, str) and n.isidentifier())]
    if bad:
        raise SpecificationError(f"{what}: parameter names must be identifiers, got {bad}.")
    dups = sorted({n for n in out if out.count(n) > 1})
    if dups:
        raise SpecificationError(f"{what}: parameter(s) {', '.join(dups)} given twice.")
    return out


def _import(reference: str) -> Any:
    """The object at ``"package.module:qualname"`` (ImportError/AttributeError if none)."""
    module, _, qualname = reference.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _import_path(function: Any) -> str | None:
    """``"module:qualname"`` for a function importable by that path, else None."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        return None
    try:
        found = _import(f"{module}:{qualname}")
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qualname}" if found is function else None


def _same_definition(a: Any, b: Any) -> bool:
    """Two function objects from the same definition (a notebook cell run twice)."""
    return all(getattr(a, k, None) == getattr(b, k, None) for k in ("__module__", "__qualname__"))


def _resolve(reference: str) -> AlgebraicFunction | None:
    if reference in FUNCTIONS:
        return FUNCTIONS[reference]
    if ":" not in reference:
        return None
    try:
        obj = _import(reference)
    except (ImportError, AttributeError) as exc:
        raise SpecificationError(
            f"Algebraic: cannot import the structural function {reference!r} ({exc})."
        ) from exc
    if not callable(obj):
        raise SpecificationError(f"Algebraic: {reference!r} is not callable.")
    return AlgebraicFunction(reference, obj, getattr(obj, "parameters", ()))


# --------------------------------------------------------------------------- schedule
@dataclass(frozen=True, eq=False)
class AlgebraicSchedule:
    """The observations an :class:`Algebraic` model predicts, as NumPy arrays.

    Attributes
    ----------
    n_subjects, n_obs : int
    obs_subject : numpy.ndarray
        ``int64 (n_obs,)``: subject index of each observation.
    obs_time : numpy.ndarray
        ``float64 (n_obs,)``: ``TIME`` of each observation.
    x : numpy.ndarray
        ``float64 (n_obs,)``: the independent variable of each observation.
    covariates : dict of str to numpy.ndarray
        Observation-level covariate values, ``float64 (n_obs,)`` each.

    Examples
    --------
    >>> s = AlgebraicSchedule(n_subjects=1, n_obs=2, obs_subject=np.array([0, 0]),
    ...                       obs_time=np.array([1.0, 2.0]), x=np.array([1.0, 2.0]))
    >>> s.tile(3).n_subjects, s.tile(3).obs_subject.tolist()
    (3, [0, 0, 1, 1, 2, 2])
    """

    n_subjects: int
    n_obs: int
    obs_subject: np.ndarray
    obs_time: np.ndarray
    x: np.ndarray
    covariates: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("obs_subject", "obs_time", "x"):
            value = np.asarray(getattr(self, name))
            if value.shape != (self.n_obs,):
                raise DatasetError(
                    f"AlgebraicSchedule.{name} must have shape ({self.n_obs},), got {value.shape}."
                )

    def tile(self, t: int) -> AlgebraicSchedule:
        """``t`` independent copies (copy ``r`` has subjects ``r*n .. r*n + n - 1``).

        Examples
        --------
        >>> s = AlgebraicSchedule(n_subjects=1, n_obs=2, obs_subject=np.array([0, 0]),
        ...                       obs_time=np.array([1.0, 2.0]), x=np.array([1.0, 2.0]))
        >>> s.tile(2).obs_subject.tolist()
        [0, 0, 1, 1]
        """
        reps = np.arange(t)[:, None]
        return AlgebraicSchedule(
            n_subjects=self.n_subjects * t,
            n_obs=self.n_obs * t,
            obs_subject=(self.obs_subject[None] + reps * self.n_subjects).ravel(),
            obs_time=np.tile(self.obs_time, t),
            x=np.tile(self.x, t),
            covariates={k: np.tile(v, t) for k, v in self.covariates.items()},
        )


# --------------------------------------------------------------------------- structure
@dataclass(frozen=True)
class Algebraic:
    r"""Structural model given by an explicit function of ``x``, covariates and parameters.

    .. math::

        \mathrm{IPRED}_{ij} = f(x_{ij}, \mathrm{cov}_{ij}, \theta_i)

    Parameters
    ----------
    function : str or callable
        A registered name (:data:`FUNCTIONS`, :func:`register_function`), an importable
        ``"package.module:function"``, or a callable ``f(x, covariates, params)``.  A
        callable is stored by reference: as ``"module:function"`` when it can be imported
        that way, otherwise it is registered under its ``__name__`` (a lambda is refused:
        give it a name with ``def``).
    parameters : sequence of str, optional
        Individual parameter names ``f`` reads; default: those of the registered function.
    x : str
        Data column holding the independent variable (default ``"TIME"``; e.g. ``"DOSE"``).
    covariates : sequence of str
        Observation-level data columns passed to ``f`` in ``covariates`` (values may change
        from record to record; the value on the observation record is used).

    Notes
    -----
    The data must have no dose records (an algebraic model has no dosing history) and a
    single ``DVID``.  ``x`` and the covariates must be present on every observation record.

    Examples
    --------
    >>> import pytensor.tensor as pt
    >>> def linear_decline(x, cov, p):
    ...     return p["S0"] - p["slope"] * x
    >>> model = Algebraic(linear_decline, parameters=("S0", "slope"))
    >>> model.function, model.parameters
    ('linear_decline', ('S0', 'slope'))
    >>> sched = AlgebraicSchedule(n_subjects=2, n_obs=3, obs_subject=np.array([0, 0, 1]),
    ...                           obs_time=np.array([0.0, 1.0, 1.0]), x=np.array([0.0, 1.0, 1.0]))
    >>> model.predict({"S0": np.array([10.0, 20.0]), "slope": np.array([1.0, 2.0])},
    ...               sched).eval().tolist()
    [10.0, 9.0, 18.0]
    """

    function: str | StructuralFunction
    parameters: tuple[str, ...] = ()
    x: str = "TIME"
    covariates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        fn = self.function
        if callable(fn):
            registered = next((e for e in FUNCTIONS.values() if e.function is fn), None)
            if registered is not None:
                ref = registered.name
            else:
                ref = _import_path(fn)
                if ref is None:
                    name = getattr(fn, "__name__", "")
                    if not name.isidentifier():
                        raise SpecificationError(
                            f"Algebraic: cannot refer to {fn!r} by name; define it with "
                            "`def name(x, covariates, params): ...` or register it with "
                            "nlme_bayes.structural.algebraic.register_function(name, f, ...)."
                        )
                    if not self.parameters:
                        raise SpecificationError(
                            f"Algebraic({name}): give parameters=(...), the names of the "
                            "individual parameters the function reads."
                        )
                    old = FUNCTIONS.get(name)
                    redefined = old is not None and _same_definition(old.function, fn)
                    register_function(name, fn, parameters=self.parameters, replace=redefined)
                    ref = name
            object.__setattr__(self, "function", ref)
        elif not isinstance(fn, str):
            raise SpecificationError(
                f"Algebraic: function must be a name or a callable, got {fn!r}."
            )
        entry = self._entry()
        params = tuple(self.parameters) if self.parameters else entry.parameters
        params = _parameter_names(params, f"Algebraic({self.function})")
        object.__setattr__(self, "parameters", params)
        if not (isinstance(self.x, str) and self.x):
            raise SpecificationError(f"Algebraic: x must be a column name, got {self.x!r}.")
        covs = (self.covariates,) if isinstance(self.covariates, str) else self.covariates
        covs = tuple(covs)
        bad = [c for c in covs if not (isinstance(c, str) and c)]
        if bad:
            raise SpecificationError(f"Algebraic: covariates must be column names, got {bad}.")
        object.__setattr__(self, "covariates", covs)

    # ------------------------------------------------------------------ description
    def _entry(self) -> AlgebraicFunction:
        entry = _resolve(str(self.function))
        if entry is None:
            raise SpecificationError(
                f"Algebraic: unknown structural function {self.function!r}. Registered: "
                f"{', '.join(sorted(FUNCTIONS))}; register yours with "
                "nlme_bayes.structural.algebraic.register_function(name, f, parameters=...) "
                "(a saved fit needs the same registration before it is loaded), or give an "
                "importable 'package.module:function'."
            )
        return entry

    def describe(self) -> str:
        """One line: function, independent variable, formula and parameters.

        Examples
        --------
        >>> print(Algebraic("logistic").describe())
        Algebraic model logistic(TIME): Asym/(1 + exp((xmid - x)/scal)); parameters Asym, xmid, scal
        """
        entry = self._entry()
        eq = f": {entry.equation}" if entry.equation else ""
        cov = f", covariates {', '.join(self.covariates)}" if self.covariates else ""
        return (
            f"Algebraic model {self.function}({self.x}){eq}{cov}; "
            f"parameters {', '.join(self.parameters)}"
        )

    @property
    def data_columns(self) -> tuple[str, ...]:
        """Observation-level columns the model reads (``x`` and the covariates).

        Examples
        --------
        >>> Algebraic("logistic").data_columns
        ('TIME',)
        >>> Algebraic("emax", x="DOSE").data_columns
        ('DOSE',)
        """
        return tuple(dict.fromkeys((self.x, *self.covariates)))

    # ------------------------------------------------------------------ events
    def build_schedule(self, data: Any) -> tuple[AlgebraicSchedule, pd.DataFrame]:
        """The observations of ``data`` and their ``x``/covariate values.

        Parameters
        ----------
        data : NonmemDataset

        Returns
        -------
        schedule : AlgebraicSchedule
        observations : DataFrame
            ``ID, TIME, DV, DVID, ROW, subject`` per observation, in event order.

        Raises
        ------
        DatasetError
            Dose records in the data, several DVIDs, a missing column, or a missing value
            of ``x`` or a covariate on an observation record (rows and IDs named).

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> schedule, obs = Algebraic("logistic").build_schedule(nb.datasets.orange())
        >>> schedule.n_subjects, schedule.n_obs, schedule.x[:3].tolist()
        (5, 35, [118.0, 484.0, 664.0])
        """
        ev = data.events()
        subject_ids = list(data.subject_ids)
        subj_index = {sid: i for i, sid in enumerate(subject_ids)}
        evid = ev["EVID"].to_numpy()
        problems = []
        doses = np.isin(evid, (1, 4))
        if doses.any():
            problems.append(
                f"EVID: dose records at {describe_rows(ev[doses])}, but {self.describe()} has "
                "no dosing events; drop the dose records or use a compartment (or ODE) model"
            )
        is_obs = (evid == 0) & (ev["MDV"].to_numpy() == 0)
        obs_rows = ev[is_obs]
        dvids = sorted(pd.unique(obs_rows["DVID"]).tolist())
        if len(dvids) > 1:
            problems.append(
                f"DVID: the observations have DVIDs {dvids}, but {self.describe()} predicts "
                "one output; fit one DVID at a time"
            )
        missing = [c for c in self.data_columns if c not in ev.columns]
        if missing:
            problems.append(
                f"{', '.join(missing)}: column(s) needed by {self.describe()} are not in the "
                f"data (columns: {', '.join(map(str, ev.columns))})"
            )
        values: dict[str, np.ndarray] = {}
        for c in self.data_columns:
            if c in missing:
                continue
            col = pd.to_numeric(obs_rows[c], errors="coerce").to_numpy(dtype=float)
            bad = ~np.isfinite(col)
            if bad.any():
                problems.append(
                    f"{c}: missing or non-numeric value on observation records at "
                    f"{describe_rows(obs_rows[bad])}; {self.describe()} needs it on every "
                    "observation (fill it in, or set MDV=1 on those records)"
                )
            values[c] = col
        if problems:
            raise DatasetError("\n".join(problems), problems)
        subj = obs_rows["ID"].map(subj_index).to_numpy(dtype=np.int64)
        schedule = AlgebraicSchedule(
            n_subjects=len(subject_ids),
            n_obs=int(is_obs.sum()),
            obs_subject=subj,
            obs_time=obs_rows["TIME"].to_numpy(dtype=float),
            x=values[self.x],
            covariates={c: values[c] for c in self.covariates},
        )
        obs = obs_rows[["ID", "TIME", "DV", "DVID", "ROW"]].reset_index(drop=True)
        obs["subject"] = subj
        obs["n_doses_before"] = 0
        return schedule, obs

    # ------------------------------------------------------------------ prediction
    def predict(self, params: Mapping[str, Any], schedule: AlgebraicSchedule) -> TensorVariable:
        """The prediction at every observation, shape ``(n_obs,)``.

        Parameters
        ----------
        params : mapping of str to tensor
            Individual parameters by name, each of shape ``(n_subjects,)`` (a scalar is
            used for every subject).  Extra keys are ignored.
        schedule : AlgebraicSchedule

        Returns
        -------
        TensorVariable

        Examples
        --------
        >>> sched = AlgebraicSchedule(n_subjects=1, n_obs=2, obs_subject=np.array([0, 0]),
        ...                           obs_time=np.array([0.0, 9.0]), x=np.array([0.0, 9.0]))
        >>> Algebraic("emax").predict({"E0": 1.0, "Emax": 10.0, "ED50": 1.0},
        ...                           sched).eval().tolist()
        [1.0, 10.0]
        """
        if not isinstance(schedule, AlgebraicSchedule):
            raise SpecificationError(
                f"{self.describe()} needs the schedule from its own build_schedule(data), "
                f"got {type(schedule).__name__}."
            )
        missing = [n for n in self.parameters if n not in params]
        if missing:
            raise SpecificationError(
                f"Algebraic({self.function}) needs individual parameters "
                f"{', '.join(self.parameters)}; missing {', '.join(missing)}."
            )
        index = pt.constant(schedule.obs_subject)
        per_obs = {}
        for n in self.parameters:
            value = pt.as_tensor_variable(params[n]).astype("float64")
            per_obs[n] = value[index] if value.ndim == 1 else value
        x = pt.constant(schedule.x)
        cov = {c: pt.constant(schedule.covariates[c]) for c in self.covariates}
        out = pt.as_tensor_variable(self._entry().function(x, cov, per_obs))
        return pt.broadcast_to(out.astype("float64"), (schedule.n_obs,))


# --------------------------------------------------------------------------- built-ins
def logistic(x: Any, covariates: Mapping[str, Any], p: Mapping[str, Any]) -> Any:
    """Three-parameter logistic (R ``SSlogis``): ``Asym / (1 + exp((xmid - x)/scal))``."""
    return p["Asym"] * pt.sigmoid((x - p["xmid"]) / p["scal"])


def gompertz(x: Any, covariates: Mapping[str, Any], p: Mapping[str, Any]) -> Any:
    """Gompertz growth: ``Asym * exp(-b * exp(-k*x))``."""
    return p["Asym"] * pt.exp(-p["b"] * pt.exp(-p["k"] * x))


def asymptotic(x: Any, covariates: Mapping[str, Any], p: Mapping[str, Any]) -> Any:
    """Asymptotic regression (R ``SSasymp``): ``Asym + (R0 - Asym) * exp(-k*x)``."""
    return p["Asym"] + (p["R0"] - p["Asym"]) * pt.exp(-p["k"] * x)


def emax(x: Any, covariates: Mapping[str, Any], p: Mapping[str, Any]) -> Any:
    """Hyperbolic Emax: ``E0 + Emax*x/(ED50 + x)``."""
    return p["E0"] + p["Emax"] * x / (p["ED50"] + x)


def sigmoid_emax(x: Any, covariates: Mapping[str, Any], p: Mapping[str, Any]) -> Any:
    """Sigmoid Emax (Hill): ``E0 + Emax*x^gamma/(ED50^gamma + x^gamma)``.

    Written as ``Emax * sigmoid(gamma * (log x - log ED50))`` for ``x > 0`` and ``E0`` at
    ``x = 0``: finite values and gradients (also in ``gamma``) at ``x = 0``.
    """
    positive = pt.gt(x, 0.0)
    log_x = pt.log(pt.switch(positive, x, 1.0))
    frac = pt.switch(positive, pt.sigmoid(p["gamma"] * (log_x - pt.log(p["ED50"]))), 0.0)
    return p["E0"] + p["Emax"] * frac


for _name, _fn, _params, _eq in (
    ("logistic", logistic, ("Asym", "xmid", "scal"), "Asym/(1 + exp((xmid - x)/scal))"),
    ("gompertz", gompertz, ("Asym", "b", "k"), "Asym*exp(-b*exp(-k*x))"),
    ("asymptotic", asymptotic, ("Asym", "R0", "k"), "Asym + (R0 - Asym)*exp(-k*x)"),
    ("emax", emax, ("E0", "Emax", "ED50"), "E0 + Emax*x/(ED50 + x)"),
    (
        "sigmoid_emax",
        sigmoid_emax,
        ("E0", "Emax", "ED50", "gamma"),
        "E0 + Emax*x^gamma/(ED50^gamma + x^gamma)",
    ),
):
    register_function(_name, _fn, parameters=_params, equation=_eq)
