r"""Closed-form (analytical) linear compartment models, written in PyTensor.

A linear mammillary model with central volume :math:`V` has, for a unit IV
bolus, the central concentration

.. math::

    C(t) = \sum_{i=1}^{n} A_i\, e^{-\lambda_i t},\qquad \sum_i A_i = 1/V,

(the *macro constants*, :func:`macro_constants`).  Every other input is a
convolution of this impulse response, evaluated with the safe kernels of
:mod:`nlme_bayes.structural._kernels`, and doses superpose: ``predict`` sums one
term per (observation, dose) pair of an :class:`~nlme_bayes.events_types.EventSchedule`.

Dose-compartment conventions follow NONMEM: the lag time ``tlag`` (ALAG1) and
bioavailability ``F`` (F1) act on doses into the default dose compartment (the
depot for ``route="oral"``, the central compartment for ``route="iv"``).  A
lagged pair contributes exactly 0 (with a zero, finite gradient) while
``dt - tlag < 0``; at ``dt - tlag == 0`` the dose counts as given, as a dose at
the observation time does without a lag (this only matters for a bolus into the
central compartment: every other response is 0 at that instant).  For zero-order
inputs ``F`` scales the amount at fixed rate, so the duration becomes
``F * AMT / RATE`` (NONMEM's rule for ``RATE > 0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pytensor.tensor as pt
from pytensor.tensor.variable import TensorVariable

from ..errors import SpecificationError
from ..events_types import DosePairs, EventSchedule
from . import _kernels as K

__all__ = [
    "ROUTES",
    "OneCompartment",
    "TwoCompartment",
    "ThreeCompartment",
    "macro_constants",
]

Route = Literal["iv", "oral"]
ROUTES: tuple[str, ...] = ("iv", "oral")
TensorLike = TensorVariable | np.ndarray | float

_MACRO = {1: K.macro_one, 2: K.macro_two, 3: K.macro_three}


def macro_constants(
    model: _CompartmentModel, params: Mapping[str, TensorLike]
) -> tuple[TensorVariable, TensorVariable]:
    r"""Return the unit-impulse response ``(A, lam)`` of the central concentration.

    :math:`C(t) = \sum_i A_i e^{-\lambda_i t}` per unit IV bolus, with
    :math:`k_{10} = CL/V`, :math:`k_{12} = Q/V`, :math:`k_{21} = Q/V_2`,
    :math:`k_{13} = Q_3/V`, :math:`k_{31} = Q_3/V_3`:

    * one compartment: :math:`A = 1/V`, :math:`\lambda = k_{10}`;
    * two compartments: :math:`\alpha, \beta` are the roots of
      :math:`\lambda^2 - (k_{10}+k_{12}+k_{21})\lambda + k_{10}k_{21}`; with
      :math:`s = \sqrt{(k_{10}+k_{12}-k_{21})^2 + 4k_{12}k_{21}} = \alpha - \beta`,
      :math:`\alpha = (k_{10}+k_{12}+k_{21}+s)/2`, :math:`\beta = k_{10}k_{21}/\alpha`,
      :math:`A_1 = (\alpha - k_{21})/(V s)`, :math:`A_2 = (k_{21} - \beta)/(V s)`;
    * three compartments: the roots of
      :math:`\lambda^3 - a_2\lambda^2 + a_1\lambda - a_0` with
      :math:`a_2 = k_{10}+k_{12}+k_{13}+k_{21}+k_{31}`,
      :math:`a_1 = k_{10}k_{21}+k_{10}k_{31}+k_{12}k_{31}+k_{13}k_{21}+k_{21}k_{31}`,
      :math:`a_0 = k_{10}k_{21}k_{31}` (sums of positive terms, so exact to
      rounding).  The largest root comes from the trigonometric method
      (:math:`p = a_1 - a_2^2/3`, :math:`q = -2a_2^3/27 + a_1a_2/3 - a_0`,
      :math:`r = \sqrt{-p/3}`,
      :math:`\lambda_1 = a_2/3 + 2r\cos(\arccos(-q/(2r^3))/3)`, the ``acos``
      argument clipped into :math:`[-1, 1]`), polished by one Newton step on
      the cubic; the other two by cancellation-free deflation,
      :math:`\pi = a_0/\lambda_1 = \lambda_2\lambda_3`,
      :math:`\sigma = (a_1 - \pi)/\lambda_1 = \lambda_2 + \lambda_3`,
      :math:`\lambda_2 = (\sigma + \sqrt{\sigma^2 - 4\pi})/2`,
      :math:`\lambda_3 = \pi/\lambda_2`.  Then
      :math:`A_i = \frac{(k_{21}-\lambda_i)(k_{31}-\lambda_i)}
      {(\lambda_j-\lambda_i)(\lambda_k-\lambda_i)\,V}`.  (The plain trigonometric
      roots lose up to half the digits of the two smaller exponents when they
      are close on the scale of the largest; this scheme keeps ~1e-14 relative
      accuracy over many decades of parameters.)

    The roots are real, positive and distinct for positive parameters (the rate
    matrix is similar to a symmetric arrowhead matrix, whose eigenvalues
    interlace ``k21`` and ``k31``), so every denominator is non-zero.

    Parameters
    ----------
    model : OneCompartment | TwoCompartment | ThreeCompartment
        The structural model (only its number of compartments matters).
    params : Mapping[str, TensorLike]
        At least the disposition parameters (``CL, V[, Q, V2[, Q3, V3]]``),
        all of one broadcastable shape ``S``.

    Returns
    -------
    A, lam : TensorVariable
        Shape ``S + (n_compartments,)``; ``lam`` is sorted in decreasing order.

    Examples
    --------
    >>> model = TwoCompartment(route="iv")
    >>> A, lam = macro_constants(model, {"CL": 1.0, "V": 10.0, "Q": 2.0, "V2": 20.0})
    >>> round(float(A.sum().eval()), 12)
    0.1
    """
    p = {name: K.as_float_tensor(params[name]) for name in model.disposition_parameters}
    return _MACRO[model.n_compartments](p)


# --------------------------------------------------------------------------- models
_DEPOT_GROUPS = ("oral", "oral_infusion")


@dataclass(frozen=True)
class _CompartmentModel:
    """Shared behaviour of the closed-form models (see the concrete classes)."""

    route: Route = "oral"
    lag: bool = False
    bioavailability: bool = False

    n_compartments: ClassVar[int] = 0
    disposition_parameters: ClassVar[tuple[str, ...]] = ()
    _advan: ClassVar[dict[str, int]] = {}
    _title: ClassVar[str] = ""

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.route not in ROUTES:
            raise SpecificationError(
                f"{name}: unknown route {self.route!r}; valid choices are "
                f"{', '.join(repr(r) for r in sorted(ROUTES))}."
            )
        for flag in ("lag", "bioavailability"):
            if not isinstance(getattr(self, flag), bool):
                raise SpecificationError(
                    f"{name}: {flag} must be True or False, got {getattr(self, flag)!r}."
                )

    # ------------------------------------------------------------------ description
    @property
    def parameters(self) -> tuple[str, ...]:
        """Names of the individual parameters ``predict`` needs, in canonical order."""
        names = self.disposition_parameters + (("ka",) if self.route == "oral" else ())
        return names + (("tlag",) if self.lag else ()) + (("F",) if self.bioavailability else ())

    @property
    def compartments(self) -> dict[int, str]:
        """NONMEM ADVAN compartment numbering (``CMT`` value -> name)."""
        names = ["central", "peripheral", "peripheral2"][: self.n_compartments]
        if self.route == "oral":
            names = ["depot", *names]
        return {i + 1: name for i, name in enumerate(names)}

    @property
    def central_compartment(self) -> int:
        """``CMT`` number of the central (observed) compartment."""
        return 2 if self.route == "oral" else 1

    @property
    def default_dose_compartment(self) -> int:
        """``CMT`` of a dose record without one: depot (oral) or central (iv)."""
        return 1

    @property
    def dose_compartments(self) -> tuple[int, ...]:
        """``CMT`` numbers that may receive doses (oral: depot and central)."""
        return (1, 2) if self.route == "oral" else (1,)

    @property
    def supports_depot_infusion(self) -> bool:
        """Whether zero-order input (``RATE > 0``) into a depot is supported (oral models)."""
        return self.route == "oral"

    @property
    def advan(self) -> int:
        """The equivalent NONMEM ``ADVAN`` subroutine number."""
        return self._advan[self.route]

    def describe(self) -> str:
        """Return a one-line human description.

        Examples
        --------
        >>> print(OneCompartment(route="iv", lag=True).describe())
        One-compartment model, IV input (ADVAN1), lag time; parameters CL, V, tlag
        """
        route = "first-order absorption" if self.route == "oral" else "IV input"
        extras = [
            e for e, on in (("lag time", self.lag), ("bioavailability", self.bioavailability)) if on
        ]
        extra = "".join(f", {e}" for e in extras)
        return (
            f"{self._title} model, {route} (ADVAN{self.advan}){extra}; "
            f"parameters {', '.join(self.parameters)}"
        )

    def macro_constants(
        self, params: Mapping[str, TensorLike]
    ) -> tuple[TensorVariable, TensorVariable]:
        """Return ``(A, lam)``; see :func:`macro_constants`."""
        return macro_constants(self, params)

    # ------------------------------------------------------------------ prediction
    def _individual(
        self, params: Mapping[str, TensorLike], n_subjects: int
    ) -> dict[str, TensorVariable]:
        missing = [name for name in self.parameters if name not in params]
        if missing:
            raise SpecificationError(
                f"{type(self).__name__}(route={self.route!r}) needs individual parameters "
                f"{', '.join(self.parameters)}; missing {', '.join(missing)}."
            )
        out = {}
        for name in self.parameters:
            value = K.as_float_tensor(params[name])
            if value.ndim == 0:
                value = pt.alloc(value, n_subjects)
            static = value.type.shape
            if value.ndim != 1 or (static[0] is not None and static[0] != n_subjects):
                raise SpecificationError(
                    f"individual parameter {name} must have shape (n_subjects,) = "
                    f"({n_subjects},), got {static}."
                )
            out[name] = value
        return out

    def _check_schedule(self, schedule: EventSchedule) -> None:
        name = f"{type(self).__name__}(route={self.route!r})"
        for group in _DEPOT_GROUPS:
            n = getattr(schedule, group).n_pairs
            if n and self.route != "oral":
                raise SpecificationError(
                    f"{name} has no depot compartment, but the schedule has {n} "
                    f"'{group}' dose-observation pairs; use route='oral' or dose into CMT 1."
                )
        for group in ("iv_infusion", "oral_infusion"):
            pairs: DosePairs = getattr(schedule, group)
            if pairs.n_pairs and not np.all(pairs.duration > 0):
                raise SpecificationError(
                    f"{name}: every '{group}' pair needs duration > 0 (AMT/RATE)."
                )

    def predict(self, params: Mapping[str, TensorLike], schedule: EventSchedule) -> TensorVariable:
        r"""Return the central concentration at every observation, shape ``(n_obs,)``.

        .. math::

            C_j = \sum_{d \le j} \sum_i A_i\, r_i(d, t_j - t_d - t_{lag})

        where the response :math:`r_i` depends on the route of dose ``d``:
        bolus :math:`F D e^{-\lambda_i t}`, central infusion
        :math:`R\tau\varphi(\lambda_i\tau)e^{-\lambda_i(t-\tau)}`, depot bolus
        :math:`F D k_a E(\lambda_i, k_a, t)`, or depot infusion
        (:func:`~nlme_bayes.structural._kernels.depot_infusion_response`), with
        ``F`` and ``tlag`` applied to the default dose compartment only.

        Parameters
        ----------
        params : Mapping[str, TensorLike]
            Individual parameters by name (see :attr:`parameters`), each of
            shape ``(n_subjects,)`` (a scalar is broadcast to all subjects).
            Extra keys are ignored.
        schedule : EventSchedule
            The dose-observation pairs.

        Returns
        -------
        TensorVariable
            Concentrations, shape ``(n_obs,)``, in amount/volume units.

        Examples
        --------
        >>> from nlme_bayes.events_types import DosePairs, EventSchedule
        >>> pairs = DosePairs(obs=[0, 1], subject=[0, 0], dt=[1.0, 4.0], amt=[100.0, 100.0],
        ...                   duration=[0.0, 0.0])
        >>> schedule = EventSchedule(n_subjects=1, n_obs=2, obs_subject=[0, 0],
        ...                          obs_time=[1.0, 4.0], oral=pairs)
        >>> conc = OneCompartment().predict({"CL": 2.0, "V": 20.0, "ka": 1.0}, schedule)
        >>> conc.eval().round(4).tolist()
        [2.9831, 3.6222]
        """
        self._check_schedule(schedule)
        p = self._individual(params, schedule.n_subjects)
        coef, lam = macro_constants(self, p)
        out = pt.zeros((schedule.n_obs,), dtype=coef.dtype)
        dosed = _DEPOT_GROUPS if self.route == "oral" else ("iv_bolus", "iv_infusion")
        for group, pairs in schedule.groups().items():
            if pairs.n_pairs == 0:
                continue
            contrib = self._group_response(group, pairs, p, coef, lam, group in dosed)
            out = pt.inc_subtensor(out[pt.constant(pairs.obs)], contrib)
        return out

    def _group_response(
        self,
        group: str,
        pairs: DosePairs,
        p: Mapping[str, TensorVariable],
        coef: TensorVariable,
        lam: TensorVariable,
        dosed: bool,
    ) -> TensorVariable:
        """Return the (n_pairs,) contributions of one route group."""
        subject = pt.constant(pairs.subject)
        coef_p, lam_p = coef[subject], lam[subject]  # (n_pairs, n_exp)

        def column(values: TensorLike) -> TensorVariable:
            return pt.shape_padright(pt.as_tensor_variable(values), 1)

        t = column(pairs.dt)
        amt = column(pairs.amt)
        on = None
        if dosed and self.lag:
            t = t - column(p["tlag"][subject])
            on = pt.ge(t, 0.0)
            t = pt.maximum(t, 0.0)
        f = column(p["F"][subject]) if dosed and self.bioavailability else None

        if group in ("iv_infusion", "oral_infusion"):
            duration = column(pairs.duration)
            rate = column(pairs.amt / pairs.duration)
            if f is not None:
                duration = f * duration  # F scales the amount at fixed rate
            if group == "iv_infusion":
                resp = K.infusion_response(coef_p, lam_p, rate, duration, t)
            else:
                ka = column(p["ka"][subject])
                resp = K.depot_infusion_response(coef_p, lam_p, ka, rate, duration, t)
        else:
            dose = amt if f is None else f * amt
            if group == "iv_bolus":
                resp = K.bolus_response(coef_p, lam_p, dose, t)
            else:
                ka = column(p["ka"][subject])
                resp = K.absorption_response(coef_p, lam_p, ka, dose, t)
        if on is not None:
            resp = pt.switch(on, resp, 0.0)
        return resp.sum(axis=-1)


@dataclass(frozen=True)
class OneCompartment(_CompartmentModel):
    r"""One-compartment model (NONMEM ADVAN1 for ``route="iv"``, ADVAN2 for ``"oral"``).

    .. math::

        \frac{dA_d}{dt} = -k_a A_d,\qquad
        \frac{dA_c}{dt} = k_a A_d - \frac{CL}{V} A_c,\qquad C = A_c / V.

    Unit-bolus response :math:`C(t) = e^{-(CL/V)t}/V`.

    Parameters
    ----------
    route : {"iv", "oral"}
        ``"oral"`` adds a first-order absorption depot (CMT 1) and ``ka``.
    lag : bool
        Add an absorption lag time ``tlag`` (ALAG1) on the default dose compartment.
    bioavailability : bool
        Add a bioavailability ``F`` (F1) on the default dose compartment.

    Examples
    --------
    >>> model = OneCompartment(route="oral", bioavailability=True)
    >>> model.parameters, model.compartments
    (('CL', 'V', 'ka', 'F'), {1: 'depot', 2: 'central'})
    """

    n_compartments: ClassVar[int] = 1
    disposition_parameters: ClassVar[tuple[str, ...]] = ("CL", "V")
    _advan: ClassVar[dict[str, int]] = {"iv": 1, "oral": 2}
    _title: ClassVar[str] = "One-compartment"


@dataclass(frozen=True)
class TwoCompartment(_CompartmentModel):
    r"""Two-compartment model (NONMEM ADVAN3 for ``route="iv"``, ADVAN4 for ``"oral"``).

    .. math::

        \frac{dA_c}{dt} = k_a A_d - (k_{10} + k_{12}) A_c + k_{21} A_p,\qquad
        \frac{dA_p}{dt} = k_{12} A_c - k_{21} A_p,

    with :math:`k_{10} = CL/V`, :math:`k_{12} = Q/V`, :math:`k_{21} = Q/V_2`;
    :math:`C(t) = A_1 e^{-\alpha t} + A_2 e^{-\beta t}` per unit bolus
    (see :func:`macro_constants`).

    Parameters
    ----------
    route : {"iv", "oral"}
        ``"oral"`` adds a first-order absorption depot (CMT 1) and ``ka``.
    lag, bioavailability : bool
        Add ``tlag`` / ``F`` on the default dose compartment.

    Examples
    --------
    >>> TwoCompartment(route="iv").compartments
    {1: 'central', 2: 'peripheral'}
    """

    n_compartments: ClassVar[int] = 2
    disposition_parameters: ClassVar[tuple[str, ...]] = ("CL", "V", "Q", "V2")
    _advan: ClassVar[dict[str, int]] = {"iv": 3, "oral": 4}
    _title: ClassVar[str] = "Two-compartment"


@dataclass(frozen=True)
class ThreeCompartment(_CompartmentModel):
    r"""Three-compartment model (NONMEM ADVAN11 for ``route="iv"``, ADVAN12 for ``"oral"``).

    .. math::

        \frac{dA_c}{dt} = k_a A_d - (k_{10} + k_{12} + k_{13}) A_c + k_{21} A_p + k_{31} A_{p2},

    :math:`dA_p/dt = k_{12}A_c - k_{21}A_p`, :math:`dA_{p2}/dt = k_{13}A_c - k_{31}A_{p2}`,
    with :math:`k_{13} = Q_3/V`, :math:`k_{31} = Q_3/V_3`; the three exponents
    are the roots of a cubic (see :func:`macro_constants`).

    Parameters
    ----------
    route : {"iv", "oral"}
        ``"oral"`` adds a first-order absorption depot (CMT 1) and ``ka``.
    lag, bioavailability : bool
        Add ``tlag`` / ``F`` on the default dose compartment.

    Examples
    --------
    >>> ThreeCompartment(route="oral").parameters
    ('CL', 'V', 'Q', 'V2', 'Q3', 'V3', 'ka')
    """

    n_compartments: ClassVar[int] = 3
    disposition_parameters: ClassVar[tuple[str, ...]] = ("CL", "V", "Q", "V2", "Q3", "V3")
    _advan: ClassVar[dict[str, int]] = {"iv": 11, "oral": 12}
    _title: ClassVar[str] = "Three-compartment"
