r"""User-defined ODE structural models, integrated through the dosing history.

An :class:`ODEModel` is declared in Python: named states, named parameters, a
right-hand side written with PyTensor math, and one or more outputs.  For every
subject the system

.. math::

    \frac{dA}{dt} = f(t, A, \theta_i) + r(t), \qquad A(t_0) = A_0(\theta_i),

is integrated from event to event (:mod:`nlme_bayes.events_ode`): boluses are added
to their state at their time, zero-order infusions add :math:`r(t)`, piecewise
constant, EVID 3/4 reset the state to :math:`A_0`, and observations record an
output such as :math:`C = A_{central}/V`.  The solver is the L-stable Rosenbrock
scheme of :mod:`nlme_bayes.structural.rosenbrock`, vectorised over subjects
inside one :func:`pytensor.scan`, so one compiled graph evaluates all subjects and
PyTensor differentiates it for NUTS.

Lag time (``tlag``) and bioavailability (``F``) act, as NONMEM's ALAG1/F1, on doses
into the default dose state (or the states named in ``dose_modifier_states``).
With a lag time (or F on an infusion, whose duration becomes ``F*AMT/RATE``) event
times depend on the parameters: the events are then re-sorted at run time (the
number of steps per event interval stays as planned from the data times).

Failed integrations are contained: a non-finite state (e.g. a rate of ``1e300``
proposed in warm-up) makes :meth:`ODEModel.predict` return a finite placeholder and
flag the subject in ``predict(...).tag.ode_ok``; the builder turns a failed draw
into a log density of ``-inf`` (the proposal is rejected) and counts it.
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

from .. import events_ode as E
from ..compile_mode import lean_mode
from ..errors import SpecificationError
from .rosenbrock import METHODS, integrate

__all__ = ["ODEModel"]

TensorLike = TensorVariable | np.ndarray | float
Fn = Callable[..., Any]


def _as_list(value: Any, names: tuple[str, ...], what: str, model: str) -> list[Any]:
    if isinstance(value, Mapping):
        missing = [s for s in names if s not in value]
        extra = [k for k in value if k not in names]
        if missing or extra:
            raise SpecificationError(
                f"{model}: {what} must give every state {', '.join(names)}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(map(str, extra))}" if extra else "")
                + "."
            )
        return [value[s] for s in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise SpecificationError(
                f"{model}: {what} returned {len(value)} values for {len(names)} states "
                f"({', '.join(names)}); return one derivative per state (a dict keyed by state "
                "name is clearest)."
            )
        return list(value)
    raise SpecificationError(
        f"{model}: {what} must return a dict keyed by state name or a sequence, "
        f"got {type(value).__name__}."
    )


def _callable_ref(fn: Fn | None) -> str | None:
    if fn is None:
        return None
    mod, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not mod or "<" in qual:
        return None
    return f"{mod}:{qual}"


def _resolve_ref(ref: str | None) -> Fn | None:
    if ref is None:
        return None
    mod, _, qual = ref.partition(":")
    try:
        obj: Any = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise SpecificationError(
            f"Cannot restore the ODE function {ref!r}: {exc}. Import the module that defines "
            "it (it must be importable by that name) before loading the results."
        ) from exc
    return obj


def _stable_argsort(key: Any, n_ev: int) -> Any:
    """Row-wise stable argsort of ``key`` (n_subjects, n_events), on every backend.

    Events at the same time must keep their record order (an observation recorded before a
    dose at the same time sees the pre-dose state), but Numba's ``argsort`` has no stable
    kind: it falls back to quicksort, which swapped such pairs (nutpie and every
    Numba-compiled helper). Each event's rank -- how many keys are smaller, then its
    position -- is a unique integer, so any sort of it is the stable order.
    """
    smaller = pt.sum(pt.lt(key[:, None, :], key[:, :, None]), axis=2)
    return pt.argsort(smaller * n_ev + np.arange(n_ev), axis=1)


@dataclass(frozen=True, eq=False)
class ODEModel:
    r"""A structural model given by an ODE system.

    Parameters
    ----------
    states : tuple of str
        State names, e.g. ``("depot", "central")``.  ``CMT`` numbers follow this order
        (1, 2, ...) unless ``compartments`` says otherwise.
    parameters : tuple of str
        Individual parameter names the right-hand side and outputs use (``CL``, ``V``...).
        Add ``"tlag"`` / ``"F"`` through ``lag=True`` / ``bioavailability=True``.
    rhs : callable
        ``rhs(t, A, p) -> {state: dA/dt}``; ``A`` and ``p`` map names to tensors of
        shape ``(n_subjects,)``; ``t`` is ``(n_subjects,)``.  PyTensor math only
        (``pytensor.tensor`` functions or operators).  Infusions are added for you.
    outputs : callable or dict
        ``output(A, p) -> tensor``, or ``{"C": f, "E": g}`` for several outputs.
        Default: ``A[observed] / p["V"]`` is *not* assumed; give it explicitly.
    dvid : dict, optional
        ``{DVID: output name}``; default: DVID 1 (and a missing DVID) -> the first output.
    default_dose : str, optional
        The state a dose record with ``CMT`` 0 or missing goes to (default: first state).
    compartments : dict, optional
        ``{CMT number: state name}``; default numbers the states 1..n in order.
    initial : callable, optional
        ``initial(p) -> {state: A0}`` (e.g. a PD baseline ``kin/kout``); default all 0.
    lag, bioavailability : bool
        Estimate ``tlag`` / ``F`` for doses into ``dose_modifier_states``.
    dose_modifier_states : tuple of str, optional
        Default ``(default_dose,)``.
    method : {"rodas4", "rodas3", "dopri5"}
        Rosenbrock scheme: RODAS4 (order 4, 6 stages; default) or RODAS3 (order 3,
        4 stages: cheaper per step, needs more steps for the same accuracy); both are
        L-stable, for stiff systems.  ``"dopri5"``: the explicit Dormand-Prince 5(4) for
        *non-stiff* systems: no Jacobian, so the gradient graph is first order and
        compiles much faster for three or more states, but a step is stable only for
        ``max_step * fastest rate < ~3.3`` (see :mod:`~nlme_bayes.structural.explicit_rk`).
    max_step : float, optional
        Largest step between events (time units); default 1/40 of the median subject's
        time span.  The steps after a dose are graded (finer at the dose).
    min_steps : int
        Fewest steps between two distinct event times.
    name : str
        Shown by :meth:`describe`.
    template : str, optional
        Set by :mod:`~nlme_bayes.structural.ode_templates`; lets saved results restore
        the model by name.

    Examples
    --------
    A one-compartment oral model with Michaelis-Menten elimination:

    >>> import nlme_bayes as nb
    >>> def rhs(t, A, p):
    ...     C = A["central"] / p["V"]
    ...     return {"depot": -p["ka"] * A["depot"],
    ...             "central": p["ka"] * A["depot"] - p["Vmax"] * C / (p["Km"] + C)}
    >>> mm = nb.ODEModel(states=("depot", "central"), parameters=("Vmax", "Km", "V", "ka"),
    ...                  rhs=rhs, outputs=lambda A, p: A["central"] / p["V"], name="MM oral")
    >>> print(mm.describe())
    ODE model 'MM oral': states depot, central; parameters Vmax, Km, V, ka; outputs C
    """

    states: tuple[str, ...]
    parameters_: tuple[str, ...] = field(metadata={"alias": "parameters"})
    rhs: Fn
    outputs: Fn | Mapping[str, Fn]
    dvid: Mapping[int, str] | None = None
    default_dose: str | None = None
    compartments_: Mapping[int, str] | None = None
    initial: Fn | None = None
    lag: bool = False
    bioavailability: bool = False
    dose_modifier_states: tuple[str, ...] | None = None
    method: str = "rodas4"
    max_step: float | None = None
    min_steps: int = 2
    name: str = "ODE"
    template: str | None = None
    template_options: Mapping[str, Any] | None = None

    def __init__(
        self,
        states: tuple[str, ...] | list[str],
        parameters: tuple[str, ...] | list[str],
        rhs: Fn,
        outputs: Fn | Mapping[str, Fn],
        *,
        dvid: Mapping[int, str] | None = None,
        default_dose: str | None = None,
        compartments: Mapping[int, str] | None = None,
        initial: Fn | None = None,
        lag: bool = False,
        bioavailability: bool = False,
        dose_modifier_states: tuple[str, ...] | list[str] | None = None,
        method: str = "rodas4",
        max_step: float | None = None,
        min_steps: int = 2,
        name: str = "ODE",
        template: str | None = None,
        template_options: Mapping[str, Any] | None = None,
    ) -> None:
        sets = object.__setattr__
        sets(self, "states", tuple(states))
        sets(self, "parameters_", tuple(parameters))
        sets(self, "rhs", rhs)
        sets(self, "outputs", outputs if callable(outputs) else dict(outputs))
        sets(self, "dvid", None if dvid is None else {int(k): str(v) for k, v in dvid.items()})
        sets(self, "default_dose", default_dose)
        sets(self, "compartments_", None if compartments is None else dict(compartments))
        sets(self, "initial", initial)
        sets(self, "lag", lag)
        sets(self, "bioavailability", bioavailability)
        sets(
            self,
            "dose_modifier_states",
            None if dose_modifier_states is None else tuple(dose_modifier_states),
        )
        sets(self, "method", method)
        sets(self, "max_step", max_step)
        sets(self, "min_steps", int(min_steps))
        sets(self, "name", name)
        sets(self, "template", template)
        sets(self, "template_options", None if template_options is None else dict(template_options))
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        who = f"ODEModel {self.name!r}"
        if not self.states or len(set(self.states)) != len(self.states):
            raise SpecificationError(f"{who}: states must be distinct names, got {self.states}.")
        if len(set(self.parameters_)) != len(self.parameters_):
            raise SpecificationError(f"{who}: parameter names repeat: {self.parameters_}.")
        reserved = {"tlag", "F"} & set(self.parameters_)
        if reserved:
            raise SpecificationError(
                f"{who}: {', '.join(sorted(reserved))} are added by lag=True / "
                "bioavailability=True; remove them from parameters."
            )
        if not callable(self.rhs):
            raise SpecificationError(f"{who}: rhs must be a function rhs(t, A, p).")
        outs = self.outputs if isinstance(self.outputs, dict) else {"C": self.outputs}
        bad_out = [k for k, f in outs.items() if not callable(f)]
        if not outs or bad_out:
            raise SpecificationError(f"{who}: outputs must be functions output(A, p).")
        for flag in ("lag", "bioavailability"):
            if not isinstance(getattr(self, flag), bool):
                raise SpecificationError(f"{who}: {flag} must be True or False.")
        if self.method not in METHODS:
            raise SpecificationError(
                f"{who}: unknown method {self.method!r}; valid choices are "
                f"{', '.join(sorted(METHODS))}."
            )
        if self.default_dose is not None and self.default_dose not in self.states:
            raise SpecificationError(
                f"{who}: default_dose {self.default_dose!r} is not a state "
                f"({', '.join(self.states)})."
            )
        for cmt, s in self.compartments.items():
            if s not in self.states:
                raise SpecificationError(
                    f"{who}: compartment {cmt} maps to unknown state {s!r}; states are "
                    f"{', '.join(self.states)}."
                )
        for s in self.dose_modifier_states or ():
            if s not in self.states:
                raise SpecificationError(f"{who}: dose_modifier_states has unknown state {s!r}.")
        for k, out in (self.dvid or {}).items():
            if out not in self.output_names:
                raise SpecificationError(
                    f"{who}: DVID {k} maps to unknown output {out!r}; outputs are "
                    f"{', '.join(self.output_names)}."
                )
        if self.max_step is not None and not (self.max_step > 0):
            raise SpecificationError(f"{who}: max_step must be > 0, got {self.max_step}.")
        if self.min_steps < 1:
            raise SpecificationError(f"{who}: min_steps must be >= 1, got {self.min_steps}.")

    # ------------------------------------------------------------------ description
    @property
    def parameters(self) -> tuple[str, ...]:
        """Individual parameter names, with ``tlag`` / ``F`` when enabled.

        Examples
        --------
        >>> from nlme_bayes.structural import ode_templates
        >>> ode_templates.load("one_cmt_oral_linear").parameters
        ('CL', 'V', 'ka')
        >>> ode_templates.load("one_cmt_oral_linear", lag=True, bioavailability=True).parameters
        ('CL', 'V', 'ka', 'tlag', 'F')
        """
        extra = (("tlag",) if self.lag else ()) + (("F",) if self.bioavailability else ())
        return self.parameters_ + extra

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the outputs (``("C",)`` for a single unnamed output).

        Examples
        --------
        >>> from nlme_bayes.structural import ode_templates
        >>> ode_templates.load("one_cmt_oral_linear").output_names
        ('C',)
        >>> ode_templates.load("turnover_oral").output_names  # concentration and response
        ('C', 'E')
        """
        return tuple(self.outputs) if isinstance(self.outputs, dict) else ("C",)

    @property
    def compartments(self) -> dict[int, str]:
        """``CMT`` number -> state name (by default the states in order, from CMT 1).

        Examples
        --------
        >>> from nlme_bayes.structural import ode_templates
        >>> ode_templates.load("two_cmt_oral_linear").compartments
        {1: 'depot', 2: 'central', 3: 'peripheral'}
        """
        if self.compartments_ is not None:
            return dict(self.compartments_)
        return {i + 1: s for i, s in enumerate(self.states)}

    @property
    def dose_state(self) -> str:
        """The state a dose goes into when its record does not say (``default_dose``).

        Examples
        --------
        >>> from nlme_bayes.structural import ode_templates
        >>> ode_templates.load("one_cmt_oral_linear").dose_state
        'depot'
        >>> ode_templates.load("two_cmt_iv_linear").dose_state
        'central'
        """
        return self.default_dose or self.states[0]

    @property
    def modifier_states(self) -> tuple[str, ...]:
        """States whose doses get the lag time / bioavailability (none without them).

        Examples
        --------
        >>> from nlme_bayes.structural import ode_templates
        >>> ode_templates.load("one_cmt_oral_linear").modifier_states
        ()
        >>> ode_templates.load("one_cmt_oral_linear", lag=True).modifier_states
        ('depot',)
        """
        if not (self.lag or self.bioavailability):
            return ()
        return self.dose_modifier_states or (self.dose_state,)

    def output_for_dvid(self, dvid: int) -> str | None:
        """The output an observation with this ``DVID`` measures (None: unknown).

        Examples
        --------
        >>> from nlme_bayes.structural import ode_templates
        >>> model = ode_templates.load("one_cmt_oral_linear")
        >>> model.output_for_dvid(1), model.output_for_dvid(2)
        ('C', None)
        """
        if self.dvid is None:
            return self.output_names[0] if dvid in (0, 1) else None
        if dvid in self.dvid:
            return self.dvid[dvid]
        return self.output_names[0] if dvid == 0 and 1 in self.dvid else None

    def dvid_map_text(self) -> str:
        """Which output each ``DVID`` measures, as text (for messages and reports).

        Examples
        --------
        >>> from nlme_bayes.structural import ode_templates
        >>> ode_templates.load("one_cmt_oral_linear").dvid_map_text()
        'DVID 1 -> C'
        """
        mapping = self.dvid or {1: self.output_names[0]}
        return ", ".join(f"DVID {k} -> {v}" for k, v in sorted(mapping.items()))

    def describe(self) -> str:
        """One-line description.

        Examples
        --------
        >>> from nlme_bayes.structural import ode_templates
        >>> print(ode_templates.load("one_cmt_oral_linear").describe())
        ODE model 'one_cmt_oral_linear': states depot, central; parameters CL, V, ka; outputs C
        """
        return (
            f"ODE model {self.name!r}: states {', '.join(self.states)}; parameters "
            f"{', '.join(self.parameters)}; outputs {', '.join(self.output_names)}"
        )

    def __repr__(self) -> str:
        return f"ODEModel({self.describe()})"

    # ------------------------------------------------------------------ serialisation
    def to_spec_dict(self) -> dict[str, Any]:
        """JSON-able description: the template and its options, or importable references.

        Examples
        --------
        >>> from nlme_bayes.structural import ode_templates
        >>> ode_templates.load("one_cmt_oral_linear").to_spec_dict()["template"]
        'one_cmt_oral_linear'
        """
        if self.template is not None:
            return {
                "__type__": "ODEModel",
                "template": self.template,
                "options": dict(self.template_options or {}),
            }
        refs = {"rhs": _callable_ref(self.rhs), "initial": _callable_ref(self.initial)}
        outs = self.outputs if isinstance(self.outputs, dict) else {"C": self.outputs}
        out_refs = {k: _callable_ref(f) for k, f in outs.items()}
        return {
            "__type__": "ODEModel",
            "states": list(self.states),
            "parameters": list(self.parameters_),
            "rhs": refs["rhs"],
            "outputs": out_refs if isinstance(self.outputs, dict) else out_refs["C"],
            "initial": refs["initial"],
            "dvid": None if self.dvid is None else {str(k): v for k, v in self.dvid.items()},
            "default_dose": self.default_dose,
            "compartments": None
            if self.compartments_ is None
            else {str(k): v for k, v in self.compartments_.items()},
            "lag": self.lag,
            "bioavailability": self.bioavailability,
            "dose_modifier_states": None
            if self.dose_modifier_states is None
            else list(self.dose_modifier_states),
            "method": self.method,
            "max_step": self.max_step,
            "min_steps": self.min_steps,
            "name": self.name,
        }

    @classmethod
    def from_spec_dict(cls, d: Mapping[str, Any]) -> ODEModel:
        """Inverse of :meth:`to_spec_dict`.

        Examples
        --------
        >>> from nlme_bayes.structural import ode_templates
        >>> model = ode_templates.load("one_cmt_oral_linear")
        >>> ODEModel.from_spec_dict(model.to_spec_dict()).parameters
        ('CL', 'V', 'ka')
        """
        if d.get("template") is not None:
            from . import ode_templates

            return ode_templates.load(d["template"], **dict(d.get("options") or {}))
        outs = d["outputs"]
        outputs = (
            {k: _resolve_ref(v) for k, v in outs.items()}
            if isinstance(outs, dict)
            else _resolve_ref(outs)
        )
        if d["rhs"] is None or outputs is None:
            raise SpecificationError(
                "This ODE model was defined with anonymous functions (lambda or nested), which "
                "cannot be restored from a file; define them at module level."
            )
        return cls(
            states=tuple(d["states"]),
            parameters=tuple(d["parameters"]),
            rhs=_resolve_ref(d["rhs"]),
            outputs=outputs,
            initial=_resolve_ref(d.get("initial")),
            dvid=None if d.get("dvid") is None else {int(k): v for k, v in d["dvid"].items()},
            default_dose=d.get("default_dose"),
            compartments=None
            if d.get("compartments") is None
            else {int(k): v for k, v in d["compartments"].items()},
            lag=bool(d.get("lag", False)),
            bioavailability=bool(d.get("bioavailability", False)),
            dose_modifier_states=d.get("dose_modifier_states"),
            method=d.get("method", "rodas4"),
            max_step=d.get("max_step"),
            min_steps=int(d.get("min_steps", 2)),
            name=d.get("name", "ODE"),
        )

    # ------------------------------------------------------------------ schedule
    def build_schedule(self, data: Any) -> tuple[E.OdeSchedule, Any]:
        """The :class:`~nlme_bayes.events_ode.OdeSchedule` of ``data`` (see there).

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> from nlme_bayes.structural import ode_templates
        >>> schedule, obs = ode_templates.load("one_cmt_oral_linear").build_schedule(
        ...     nb.datasets.theophylline())
        >>> schedule.n_subjects, len(obs)
        (12, 132)
        """
        return E.build_ode_schedule(data, self, max_step=self.max_step, min_steps=self.min_steps)

    # ------------------------------------------------------------------ prediction
    def _individual(self, params: Mapping[str, TensorLike], n: int) -> dict[str, TensorVariable]:
        missing = [p for p in self.parameters if p not in params]
        if missing:
            raise SpecificationError(
                f"{self.describe()} needs individual parameters {', '.join(self.parameters)}; "
                f"missing {', '.join(missing)}."
            )
        out = {}
        for name in self.parameters:
            v = pt.as_tensor_variable(params[name]).astype("float64")
            if v.ndim == 0:
                v = pt.alloc(v, n)
            out[name] = v
        return out

    def _rhs_list(self, t: Any, y: list[Any], p: Mapping[str, Any]) -> list[Any]:
        A = dict(zip(self.states, y, strict=True))
        dy = _as_list(self.rhs(t, A, p), self.states, "rhs", f"ODEModel {self.name!r}")
        return [pt.as_tensor_variable(d).astype("float64") + pt.zeros_like(y[0]) for d in dy]

    def _initial(self, p: Mapping[str, Any], n: int) -> TensorVariable:
        if self.initial is None:
            return pt.zeros((n, len(self.states)))
        init = _as_list(self.initial(p), self.states, "initial", f"ODEModel {self.name!r}")
        return pt.stack(
            [pt.as_tensor_variable(v).astype("float64") + pt.zeros((n,)) for v in init], axis=-1
        )

    def predict(self, params: Mapping[str, TensorLike], schedule: Any) -> TensorVariable:
        """Return each observation's output, shape ``(n_obs,)``.

        ``predict(...).tag.ode_ok`` is a ``(n_subjects,)`` boolean tensor (False where the
        integration produced a non-finite state).

        Examples
        --------
        >>> import pandas as pd
        >>> import nlme_bayes as nb
        >>> from nlme_bayes.structural import ode_templates
        >>> model = ode_templates.load("one_cmt_oral_linear")
        >>> data = nb.read_nonmem(pd.DataFrame({"ID": [1, 1, 1], "TIME": [0.0, 1.0, 4.0],
        ...     "AMT": [100.0, 0, 0], "DV": [0, 1, 1], "EVID": [1, 0, 0]}))
        >>> schedule, _ = model.build_schedule(data)
        >>> c = model.predict({"CL": 2.0, "V": 20.0, "ka": 1.0}, schedule)
        >>> c.eval().round(4).tolist()
        [2.9831, 3.6222]
        """
        if not isinstance(schedule, E.OdeSchedule):
            raise SpecificationError(
                f"{self.describe()} needs an ODE schedule (from build_schedule(data)), got "
                f"{type(schedule).__name__}."
            )
        sc = schedule
        n, n_ev = sc.n_subjects, sc.n_events
        p = self._individual(params, n)
        names = list(p)
        y_reset = self._initial(p, n)

        # --- event times (parameter-dependent with lag / F on infusions)
        time: Any = sc.time
        lag_mask = sc.lagged & np.isin(sc.kind, (E.BOLUS, E.INF_START, E.INF_END))
        dynamic = False
        if self.lag and lag_mask.any():
            time = pt.as_tensor_variable(time) + pt.where(lag_mask, p["tlag"][:, None], 0.0)
            dynamic = True
        inf_f = self.bioavailability and (lag_mask & (sc.kind == E.INF_END)).any()
        if inf_f:
            rows = np.arange(n)[:, None]
            partner = np.where(sc.partner >= 0, sc.partner, 0)
            t_start = pt.as_tensor_variable(time)[rows, partner]
            dur = sc.amt / np.where(sc.rate > 0, sc.rate, 1.0)
            end = t_start + p["F"][:, None] * dur
            time = pt.where(lag_mask & (sc.kind == E.INF_END), end, time)
            dynamic = True
        rows2 = np.arange(n)[:, None]
        if dynamic:
            span = float(np.ptp(sc.time)) + 1.0
            key = pt.as_tensor_variable(time) + sc.period * (1e3 * span)
            perm = _stable_argsort(key, n_ev)
            ts = pt.as_tensor_variable(time)[rows2, perm]
            kind_sorted = pt.as_tensor_variable(sc.kind)[rows2, perm]
            period_sorted = pt.as_tensor_variable(sc.period)[rows2, perm]
        else:
            perm = np.broadcast_to(np.arange(n_ev), (n, n_ev))
            ts = pt.as_tensor_variable(np.asarray(time))
            kind_sorted = sc.kind
            period_sorted = sc.period

        prev = pt.concatenate([ts[:, :1], ts[:, :-1]], axis=1)
        seg = ts - prev
        same_period = pt.eq(
            period_sorted,
            pt.concatenate([period_sorted[:, :1], period_sorted[:, :-1]], axis=1),
        )
        seg = pt.where(pt.eq(kind_sorted, E.RESET) | ~same_period, 0.0, pt.maximum(seg, 0.0))

        cols = np.broadcast_to(np.arange(n), sc.step_pos.shape)
        pos = sc.step_pos
        seg_s = seg[cols, pos]
        t0 = prev[cols, pos] + sc.step_w0 * seg_s
        h = (sc.step_w1 - sc.step_w0) * seg_s

        # --- event payloads after each step
        ev_id = perm[cols, pos] if dynamic else np.asarray(perm)[cols, pos]
        kind_ev = pt.as_tensor_variable(sc.kind)[cols, ev_id] if dynamic else sc.kind[cols, ev_id]
        state_ev = (
            sc.state[cols, ev_id] if not dynamic else pt.as_tensor_variable(sc.state)[cols, ev_id]
        )
        amt_ev = sc.amt[cols, ev_id] if not dynamic else pt.as_tensor_variable(sc.amt)[cols, ev_id]
        rate_ev = (
            sc.rate[cols, ev_id] if not dynamic else pt.as_tensor_variable(sc.rate)[cols, ev_id]
        )
        lag_ev = (
            lag_mask[cols, ev_id] if not dynamic else pt.as_tensor_variable(lag_mask)[cols, ev_id]
        )
        apply = sc.step_apply
        onehot = pt.eq(
            pt.as_tensor_variable(state_ev)[..., None], np.arange(len(self.states))
        ).astype("float64")
        bolus_amt = pt.where(pt.eq(kind_ev, E.BOLUS), amt_ev, 0.0) * apply
        if self.bioavailability:
            bolus_amt = bolus_amt * pt.where(lag_ev, p["F"][cols], 1.0)
        sign = pt.where(
            pt.eq(kind_ev, E.INF_START), 1.0, pt.where(pt.eq(kind_ev, E.INF_END), -1.0, 0.0)
        )
        rate_d = sign * rate_ev * apply
        reset = pt.where(pt.eq(kind_ev, E.RESET), 1.0, 0.0) * apply
        bolus = onehot * bolus_amt[..., None]
        rate_delta = onehot * rate_d[..., None]

        n_p = len(names)

        has_rate = bool(np.isin(sc.kind, (E.INF_START, E.INF_END)).any())
        has_reset = bool((sc.kind == E.RESET).any())

        def f(t, y, rate, *args):
            pp = dict(zip(names, args[:n_p], strict=True))
            dy = self._rhs_list(t, y, pp)
            return dy if rate is None else [dy[q] + rate[:, q] for q in range(len(dy))]

        states = integrate(
            f,
            y_reset,
            pt.as_tensor_variable(t0),
            pt.as_tensor_variable(h),
            bolus,
            rate_delta if has_rate else None,
            pt.as_tensor_variable(reset) if has_reset else None,
            y_reset,
            method=self.method,
            non_sequences=[p[k] for k in names],
        )

        # --- observations
        obs_i = sc.obs_subject
        k_orig = np.zeros(sc.n_obs, np.int64)
        ii, kk = np.nonzero(sc.obs >= 0)
        k_orig[sc.obs[ii, kk]] = kk
        if dynamic:
            inv = pt.argsort(perm, axis=1)
            k_sorted = inv[obs_i, k_orig]
            step = pt.as_tensor_variable(sc.last_step)[obs_i, k_sorted]
        else:
            step = sc.last_step[obs_i, k_orig]
        y_obs = states[step, obs_i, :]
        A_obs = {s: y_obs[:, q] for q, s in enumerate(self.states)}
        p_obs = {k: v[obs_i] for k, v in p.items()}
        outs = self.outputs if isinstance(self.outputs, dict) else {"C": self.outputs}
        values = [pt.as_tensor_variable(f(A_obs, p_obs)).astype("float64") for f in outs.values()]
        if len(values) == 1:
            pred = values[0] + pt.zeros((sc.n_obs,))
        else:
            stacked = pt.stack([v + pt.zeros((sc.n_obs,)) for v in values], axis=-1)
            pred = stacked[np.arange(sc.n_obs), sc.obs_output]
        ok_subj = pt.all(pt.isfinite(states), axis=(0, 2))
        ok_obs = pt.isfinite(pred) & ok_subj[obs_i]
        safe = pt.where(ok_obs, pred, 1.0)
        safe.tag.ode_ok = ok_subj
        return safe

    # ------------------------------------------------------------------ accuracy
    def solver_error(self, data: Any, params: Any, *, refine: int = 8) -> pd.DataFrame:
        """How far this model's solution is from a reference solution of the same system.

        The reference is RODAS4 (L-stable, order 4) on a grid ``refine`` times finer
        (``max_step / refine``, ``min_steps * refine``), on the same dosing history.  Run
        it before a fit at the parameter values the sampler will visit -- the typical
        values *and* the tails of the random effects (e.g. ``ka * exp(2 omega)``): an
        explicit scheme (``method="dopri5"``) whose step is too long for a fast rate does
        not fail, it returns finite, wrong values (and the sampler then crawls through a
        rugged posterior).

        Parameters
        ----------
        data : NonmemDataset
            The dosing and observation schedule.
        params : mapping or pandas.DataFrame
            Individual parameter values: a mapping ``{name: scalar or (n_subjects,)
            array}`` (one parameter set), or a DataFrame with one parameter set per row
            (scalars, applied to every subject).
        refine : int
            How much finer the reference grid is (default 8).

        Returns
        -------
        pandas.DataFrame
            One row per parameter set and output: ``max_abs_error``, ``scale`` (the
            largest absolute reference value of that output), ``rel_error``
            (``max_abs_error / scale``; ``inf`` where this solution is not finite), and
            the ``ID`` and ``TIME`` of the largest error.

        Examples
        --------
        A one-compartment oral model on Theophylline's schedule, with an absorption rate
        of 20/h: the explicit scheme's 1-h steps are unstable there, RODAS4's are not.

        >>> import nlme_bayes as nb
        >>> from nlme_bayes.structural import ode_templates
        >>> data = nb.datasets.theophylline()
        >>> fast = {"CL": 0.04, "V": 0.5, "ka": 20.0}
        >>> for method in ("dopri5", "rodas4"):
        ...     model = ode_templates.load("one_cmt_oral_linear", method=method, max_step=1.0)
        ...     err = model.solver_error(data, fast)
        ...     print(method, bool(err["rel_error"].max() < 0.01))  # within 1 % of the peak
        dopri5 False
        rodas4 True
        """
        import copy

        import pytensor

        if int(refine) < 1:
            raise SpecificationError(f"solver_error: refine must be >= 1, got {refine}.")
        if isinstance(params, pd.DataFrame):
            sets = [{k: float(v) for k, v in row.items()} for _, row in params.iterrows()]
            labels = list(params.index)
        elif isinstance(params, Mapping):
            sets, labels = [dict(params)], [0]
        else:
            raise SpecificationError(
                "solver_error: params must be a mapping {name: value} or a DataFrame with one "
                f"parameter set per row, got {type(params).__name__}."
            )
        schedule, obs = self.build_schedule(data)
        reference = copy.copy(self)
        object.__setattr__(reference, "method", "rodas4")
        object.__setattr__(reference, "max_step", schedule.max_step / int(refine))
        object.__setattr__(reference, "min_steps", self.min_steps * int(refine))
        ref_schedule, _ = reference.build_schedule(data)
        n = schedule.n_subjects
        inputs = {k: pt.dvector(k) for k in self.parameters}
        mine = self.predict(inputs, schedule)
        ref = reference.predict(inputs, ref_schedule)
        fn = pytensor.function(
            list(inputs.values()),
            [mine, mine.tag.ode_ok, ref, ref.tag.ode_ok],
            on_unused_input="ignore",
            mode=lean_mode(),
        )
        outputs = np.asarray(self.output_names)[schedule.obs_output]
        rows = []
        for label, values in zip(labels, sets, strict=True):
            missing = [k for k in self.parameters if k not in values]
            if missing:
                raise SpecificationError(
                    f"solver_error: parameter set {label!r} lacks {', '.join(missing)} "
                    f"(the model's parameters are {', '.join(self.parameters)})."
                )
            args = [np.broadcast_to(np.asarray(values[k], float), (n,)).copy()
                    for k in self.parameters]  # fmt: skip
            y, ok, r, ok_ref = fn(*args)
            if not np.all(ok_ref):
                raise SpecificationError(
                    f"solver_error: the reference solution is not finite for parameter set "
                    f"{label!r}; the parameters themselves are implausible."
                )
            err = np.where(ok[schedule.obs_subject], np.abs(y - r), np.inf)
            for out in self.output_names:
                m = outputs == out
                if not m.any():
                    continue
                k = int(np.argmax(np.where(m, err, -1.0)))
                scale = float(np.max(np.abs(r[m])))
                rows.append({
                    "set": label, "output": out, "max_abs_error": float(err[k]),
                    "scale": scale,
                    "rel_error": float(err[k]) / scale if scale > 0 else float(err[k]),
                    "ID": obs["ID"].iloc[k], "TIME": float(obs["TIME"].iloc[k]),
                })  # fmt: skip
        return pd.DataFrame(rows).set_index(["set", "output"])
