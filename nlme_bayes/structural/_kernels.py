r"""Numerically safe kernels of the closed-form compartment models.

The macro constants (``macro_one/two/three``, math in
:func:`nlme_bayes.structural.closed_form.macro_constants`) give the exponents
:math:`\lambda_i` and coefficients :math:`A_i` of the unit-bolus response.

Every concentration of a linear compartment model is a sum over disposition
exponents :math:`\lambda_i` of one of four responses to a dose.  They are all
built from two smooth special functions,

.. math::

    \varphi(x) = \frac{1 - e^{-x}}{x} = e^{-z}[0, x]\cdot(-1),
    \qquad
    \varphi_2(p, q) = e^{-z}[0, p, q],

the first and second divided differences of :math:`z \mapsto e^{-z}`
(:math:`\varphi(0) = 1`, :math:`\varphi_2(0, 0) = 1/2`).  Both are evaluated
with a Taylor branch near the removable singularity and written with the *safe
switch* pattern: the argument of the branch that is not taken is replaced by a
harmless constant, so neither branch produces ``nan``/``inf`` in the value or
in the gradient (PyTensor differentiates both branches of a switch and
multiplies the unused one by zero; ``0 * nan`` would still be ``nan``).

Functions that are symmetric in two rates (:func:`bateman`,
:func:`bateman_integral`) order the rates as ``lo = (a+b)/2 - |a-b|/2`` and
``d = |a-b|`` instead of ``minimum``/``maximum``: PyTensor's gradient of
``maximum(a, b)`` at a tie goes entirely to ``a``, which would give a wrong
split of the gradient between ``ka`` and an elimination rate when they are
exactly equal, whereas ``|a-b|`` has zero gradient there and ``lo`` splits it
evenly, which is exact for a symmetric function.

All functions take and return PyTensor tensors and broadcast elementwise.
Inputs are assumed to lie in the valid domain: rates ``> 0`` and times ``>= 0``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.basic import Variable
from pytensor.tensor.variable import TensorVariable

__all__ = [
    "as_float_tensor",
    "macro_one",
    "macro_two",
    "macro_three",
    "phi",
    "phi2",
    "bateman",
    "bateman_integral",
    "bolus_response",
    "infusion_response",
    "absorption_response",
    "depot_infusion_response",
]

#: Below this ``|x|`` :func:`phi` uses its Taylor series (truncation error < 2e-18).
PHI_TAYLOR_BELOW = 1e-3
#: Below this ``max(p, q)`` :func:`phi2` uses its Taylor series (truncation error < 2e-14).
PHI2_TAYLOR_BELOW = 1e-3


def as_float_tensor(x: object) -> TensorVariable:
    """Return ``x`` as a tensor; plain numbers become ``floatX`` (never float32 by accident)."""
    if isinstance(x, Variable):
        x = pt.as_tensor_variable(x)
        return x if x.dtype.startswith("float") else pt.cast(x, pytensor.config.floatX)
    return pt.as_tensor_variable(np.asarray(x, dtype=pytensor.config.floatX))


def phi(x: TensorVariable) -> TensorVariable:
    r"""Return :math:`\varphi(x) = (1 - e^{-x})/x`, smooth through ``x = 0``.

    .. math::

        \varphi(x) = -\operatorname{expm1}(-x)/x
        \quad (|x| \ge 10^{-3}),\qquad
        \varphi(x) \approx 1 - \tfrac{x}{2} + \tfrac{x^2}{6} - \tfrac{x^3}{24}
        + \tfrac{x^4}{120} \quad (|x| < 10^{-3}).

    Parameters
    ----------
    x : TensorVariable
        Any real tensor (in the models ``x >= 0``).

    Returns
    -------
    TensorVariable
        Same shape as ``x``; ``phi(0) == 1`` and ``phi'(0) == -1/2`` exactly.

    Examples
    --------
    >>> float(phi(0.0).eval()), float(phi(1.0).eval())
    (1.0, 0.6321205588285577)
    """
    x = as_float_tensor(x)
    small = pt.lt(pt.abs(x), PHI_TAYLOR_BELOW)
    x_big = pt.switch(small, 1.0, x)
    direct = -pt.expm1(-x_big) / x_big
    x_small = pt.switch(small, x, 0.0)
    series = 1.0 + x_small * (
        -1.0 / 2.0 + x_small * (1.0 / 6.0 + x_small * (-1.0 / 24.0 + x_small / 120.0))
    )
    return pt.switch(small, series, direct)


def _ordered(a: TensorVariable, b: TensorVariable) -> tuple[TensorVariable, TensorVariable]:
    """Return ``(lo, d)`` = (min(a, b), |a - b|) with a tie-symmetric gradient."""
    d = pt.abs(a - b)
    lo = 0.5 * (a + b) - 0.5 * d
    return lo, d


def phi2(p: TensorVariable, q: TensorVariable) -> TensorVariable:
    r"""Return the second divided difference :math:`e^{-z}[0, p, q]` for ``p, q >= 0``.

    Symmetric in ``p`` and ``q``, positive, and equal to
    :math:`\int_0^1\!\int_0^{1-s} e^{-(s p + r q)}\,dr\,ds`.  With ``lo = min(p, q)``,
    ``hi = max(p, q)``:

    .. math::

        \varphi_2(p, q) = \frac{\varphi(lo) - e^{-lo}\,\varphi(hi - lo)}{hi}
        \quad (hi \ge 10^{-3}),

    and for ``hi < 1e-3`` the series
    :math:`\sum_k (-1)^k h_k(p, q)/(k+2)!` up to :math:`k = 3`, where
    :math:`h_k` is the complete homogeneous symmetric polynomial
    (:math:`h_1 = p+q`, :math:`h_2 = p^2+pq+q^2`, ...).  The direct branch
    loses at most ``eps/hi`` relative accuracy (< 5e-13).

    Parameters
    ----------
    p, q : TensorVariable
        Non-negative tensors (broadcast).

    Returns
    -------
    TensorVariable
        ``phi2(0, 0) == 0.5``; ``phi2(p, 0) == (1 - phi(p)) / p``.

    Examples
    --------
    >>> float(phi2(0.0, 0.0).eval())
    0.5
    """
    return _phi2_ordered(*_ordered(as_float_tensor(p), as_float_tensor(q)))


def _phi2_ordered(lo: TensorVariable, d: TensorVariable) -> TensorVariable:
    """:func:`phi2` of ``(lo, lo + d)`` for ``lo, d >= 0`` (see :func:`_ordered`)."""
    hi = lo + d
    small = pt.lt(hi, PHI2_TAYLOR_BELOW)
    hi_big = pt.switch(small, 1.0, hi)
    lo_big = pt.switch(small, 0.5, lo)
    d_big = pt.switch(small, 0.5, d)
    direct = (phi(lo_big) - pt.exp(-lo_big) * phi(d_big)) / hi_big
    lo_s = pt.switch(small, lo, 0.0)
    hi_s = pt.switch(small, hi, 0.0)
    h1 = lo_s + hi_s
    h2 = lo_s * lo_s + lo_s * hi_s + hi_s * hi_s
    h3 = h1 * (lo_s * lo_s + hi_s * hi_s)
    series = 0.5 - h1 / 6.0 + h2 / 24.0 - h3 / 120.0
    return pt.switch(small, series, direct)


def _bateman_ordered(lo: TensorVariable, d: TensorVariable, t: TensorVariable) -> TensorVariable:
    """:func:`bateman` from the ordered rates ``lo = min(a, b)``, ``d = |a - b|``."""
    return pt.exp(-lo * t) * t * phi(d * t)


def bateman(a: TensorVariable, b: TensorVariable, t: TensorVariable) -> TensorVariable:
    r"""Return :math:`E(a, b, t) = (e^{-a t} - e^{-b t})/(b - a)`, symmetric in ``a, b``.

    .. math::

        E(a, b, t) = e^{-m t}\; t\; \varphi\big((M - m)\,t\big),
        \qquad m = \min(a, b),\ M = \max(a, b),

    which is exact and smooth through ``a == b`` (where :math:`E = t e^{-a t}`)
    and never overflows.  ``ka * E(lambda, ka, t)`` is the amount-normalised
    input of first-order absorption seen by a disposition exponent ``lambda``.

    Parameters
    ----------
    a, b : TensorVariable
        Positive rates (broadcast).
    t : TensorVariable
        Non-negative times.

    Returns
    -------
    TensorVariable
        The broadcast shape of the inputs.

    Examples
    --------
    >>> round(float(bateman(1.0, 1.0, 2.0).eval()), 12)
    0.270670566473
    """
    t = as_float_tensor(t)
    return _bateman_ordered(*_ordered(as_float_tensor(a), as_float_tensor(b)), t)


def bateman_integral(a: TensorVariable, b: TensorVariable, t: TensorVariable) -> TensorVariable:
    r"""Return :math:`G(a, b, t) = \int_0^t E(a, b, s)\,ds = t^2\,\varphi_2(a t, b t)`.

    Equivalently :math:`G = \big[(1 - e^{-a t})/a - (1 - e^{-b t})/b\big]/(b - a)`;
    the :func:`phi2` form stays exact when ``a == b`` and when ``a t`` or ``b t``
    is tiny.

    Parameters
    ----------
    a, b : TensorVariable
        Positive rates (broadcast).
    t : TensorVariable
        Non-negative times.

    Returns
    -------
    TensorVariable
        The broadcast shape of the inputs.

    Examples
    --------
    >>> float(bateman_integral(1.0, 2.0, 0.0).eval())
    0.0
    """
    t = as_float_tensor(t)
    lo, d = _ordered(as_float_tensor(a), as_float_tensor(b))
    return t * t * _phi2_ordered(lo * t, d * t)


# --------------------------------------------------------------------------- macro constants
# Each returns (A, lam) of a unit IV bolus with a trailing exponent axis (the math is in
# closed_form.macro_constants).  Everything that can be is written once over that axis,
# not once per exponent: it keeps the gradient graph, and PyTensor's compile time, small.
#: Margin keeping the acos argument of the cubic off +-1 (its derivative is infinite there).
_ACOS_MARGIN = 1e-14
#: Newton polishing of the largest cubic root only where P'(l1) > this * l1^2.
_NEWTON_MIN_SLOPE = 1e-6
#: Floor of (l2 - l3) / (l2 + l3): keeps sqrt finite for (numerically) coincident roots.
_MIN_GAP = 1e-12


def _col(x: TensorVariable) -> TensorVariable:
    return pt.shape_padright(x, 1)


def macro_one(p: Mapping[str, TensorVariable]) -> tuple[TensorVariable, TensorVariable]:
    return _col(1.0 / p["V"]), _col(p["CL"] / p["V"])


def macro_two(p: Mapping[str, TensorVariable]) -> tuple[TensorVariable, TensorVariable]:
    v = p["V"]
    k10, k12, k21 = p["CL"] / v, p["Q"] / v, p["Q"] / p["V2"]
    x = k10 + k12 - k21
    sq = pt.sqrt(x * x + 4.0 * k12 * k21)  # = alpha - beta > 0
    alpha = 0.5 * (k10 + k12 + k21 + sq)
    beta = k10 * k21 / alpha  # Vieta: no cancellation
    # alpha - k21 = (sq + x)/2 and k21 - beta = (sq - x)/2, with (sq + x)(sq - x) = 4 k12 k21:
    # take the cancellation-free form of each (both branches are finite everywhere).
    gap = _col(sq) + _col(x) * np.array([1.0, -1.0])  # [sq + x, sq - x]
    numer = pt.switch(pt.gt(gap, _col(sq)), 0.5 * gap, 2.0 * _col(k12 * k21) / gap[..., ::-1])
    return numer / _col(v * sq), pt.stack([alpha, beta], axis=-1)


def macro_three(p: Mapping[str, TensorVariable]) -> tuple[TensorVariable, TensorVariable]:
    v = p["V"]
    k10, k12, k13 = p["CL"] / v, p["Q"] / v, p["Q3"] / v
    k21, k31 = p["Q"] / p["V2"], p["Q3"] / p["V3"]
    # Coefficients of P(l) = l^3 - a2 l^2 + a1 l - a0: sums of positive terms, exact to eps.
    a2 = k10 + k12 + k13 + k21 + k31
    a1 = k10 * k21 + k10 * k31 + k12 * k31 + k13 * k21 + k21 * k31
    a0 = k10 * k21 * k31
    # Largest root by the trigonometric method (l = y + a2/3, y^3 + pp y + qq = 0) ...
    pp = a1 - a2 * a2 / 3.0
    qq = -2.0 * a2**3 / 27.0 + a2 * a1 / 3.0 - a0
    r = pt.sqrt(-pp / 3.0)
    arg = pt.clip(-qq / (2.0 * r**3), -1.0 + _ACOS_MARGIN, 1.0 - _ACOS_MARGIN)
    lam1 = a2 / 3.0 + 2.0 * r * pt.cos(pt.arccos(arg) / 3.0)
    # ... polished by one Newton step (the trig roots lose digits when the two smaller
    # roots are close on the scale of a2; skipped if lam1 is a near-double root) ...
    slope = (3.0 * lam1 - 2.0 * a2) * lam1 + a1
    ok = pt.gt(slope, _NEWTON_MIN_SLOPE * lam1 * lam1)
    value = ((lam1 - a2) * lam1 + a1) * lam1 - a0
    lam1 = lam1 - pt.switch(ok, value / pt.switch(ok, slope, 1.0), 0.0)
    # ... then deflation: lam2 + lam3 and lam2 * lam3 without cancellation.
    prod23 = a0 / lam1
    sum23 = (a1 - prod23) / lam1
    gap23 = pt.sqrt(pt.maximum(sum23 * sum23 - 4.0 * prod23, (_MIN_GAP * sum23) ** 2))
    lam2 = 0.5 * (sum23 + gap23)
    lam3 = prod23 / lam2
    gap12, gap13 = lam1 - lam2, lam1 - lam3
    lam = pt.stack([lam1, lam2, lam3], axis=-1)
    # A_i = (k21 - l_i)(k31 - l_i) / ((l_j - l_i)(l_k - l_i) V)
    denom = pt.stack([gap12 * gap13, -gap12 * gap23, gap13 * gap23], axis=-1) * _col(v)
    return (_col(k21) - lam) * (_col(k31) - lam) / denom, lam


# --------------------------------------------------------------------------- responses
def bolus_response(
    coef: TensorVariable, lam: TensorVariable, dose: TensorVariable, t: TensorVariable
) -> TensorVariable:
    r"""Return :math:`A D e^{-\lambda t}` for a bolus ``D`` into the central compartment.

    Examples
    --------
    >>> float(bolus_response(0.1, 0.0, 100.0, 5.0).eval())
    10.0
    """
    coef, lam, dose, t = (as_float_tensor(v) for v in (coef, lam, dose, t))
    return coef * dose * pt.exp(-lam * t)


def infusion_response(
    coef: TensorVariable,
    lam: TensorVariable,
    rate: TensorVariable,
    duration: TensorVariable,
    t: TensorVariable,
) -> TensorVariable:
    r"""Return the response to a zero-order infusion into the central compartment.

    With rate :math:`R`, duration :math:`T`, :math:`\tau = \min(t, T)`:

    .. math::

        A\,R\,\tau\,\varphi(\lambda\tau)\,e^{-\lambda (t - \tau)}
        = A\,R\,\frac{1 - e^{-\lambda \tau}}{\lambda}\,e^{-\lambda (t - \tau)}.

    Examples
    --------
    >>> c = infusion_response(1.0, 0.0, 2.0, 3.0, 10.0)
    >>> float(c.eval())
    6.0
    """
    coef, lam, rate, duration, t = (as_float_tensor(v) for v in (coef, lam, rate, duration, t))
    tau = pt.minimum(t, duration)
    return coef * rate * tau * phi(lam * tau) * pt.exp(-lam * (t - tau))


def absorption_response(
    coef: TensorVariable,
    lam: TensorVariable,
    ka: TensorVariable,
    dose: TensorVariable,
    t: TensorVariable,
) -> TensorVariable:
    r"""Return the response to a bolus ``D`` into a first-order absorption depot.

    .. math::

        D\,k_a\,A\,E(\lambda, k_a, t),\qquad E \text{ as in } :func:`bateman`.

    Examples
    --------
    >>> c = absorption_response(1.0, 0.5, 0.5, 1.0, 2.0)
    >>> round(float(c.eval()), 12)
    0.367879441171
    """
    coef, lam, ka, dose, t = (as_float_tensor(v) for v in (coef, lam, ka, dose, t))
    return dose * ka * coef * bateman(lam, ka, t)


def depot_infusion_response(
    coef: TensorVariable,
    lam: TensorVariable,
    ka: TensorVariable,
    rate: TensorVariable,
    duration: TensorVariable,
    t: TensorVariable,
) -> TensorVariable:
    r"""Return the response to a zero-order input (rate ``R`` for ``T``) into the depot.

    With :math:`\tau = \min(t, T)` and :math:`u = t - \tau` (time since the end of
    the input, 0 while it runs), the disposition mode :math:`\lambda` has received
    :math:`R k_a A\, G(\lambda, k_a, \tau)` at the end of the input and the depot
    still holds :math:`R\,\tau\,\varphi(k_a \tau)`; both then evolve freely:

    .. math::

        R\,k_a\,A\Big[G(\lambda, k_a, \tau)\,e^{-\lambda u}
        + \tau\,\varphi(k_a\tau)\,E(\lambda, k_a, u)\Big].

    Every term is non-negative, so there is no cancellation at late times, and
    the limits ``ka -> lambda``, ``T -> 0`` (oral bolus) are exact.

    Examples
    --------
    >>> c = depot_infusion_response(1.0, 0.2, 1.0,
    ...                             1.0, 0.0, 0.0)
    >>> float(c.eval())
    0.0
    """
    coef, lam, ka, rate, duration, t = (
        as_float_tensor(v) for v in (coef, lam, ka, rate, duration, t)
    )
    tau = pt.minimum(t, duration)
    u = t - tau
    lo, d = _ordered(lam, ka)
    during = tau * tau * _phi2_ordered(lo * tau, d * tau) * pt.exp(-lam * u)
    after = tau * phi(ka * tau) * _bateman_ordered(lo, d, u)
    return rate * ka * coef * (during + after)
