r"""An explicit Runge-Kutta step (Dormand-Prince 5(4)) in PyTensor, vectorised over subjects.

One step of an explicit ``s``-stage method for :math:`y' = f(t, y)` with step :math:`h`:

.. math::

    k_i = f\Big(t + c_i h,\; y + h \sum_{j<i} a_{ij} k_j\Big), \qquad
    y_{n+1} = y_n + h \sum_i b_i k_i, \qquad
    \widehat{err} = h \sum_i (b_i - \hat b_i)\, k_i .

When to use it instead of the Rosenbrock default
    A step of DOPRI5 costs 7 evaluations of the right-hand side and nothing else: no
    Jacobian, no linear solve.  The gradient NUTS needs is then a *first*-order
    derivative of the right-hand side, where a Rosenbrock step's gradient differentiates
    the Jacobian again (second order).  For larger non-stiff systems (a PK model driving
    a turnover response: three states or more) this makes the compiled graph several
    times smaller and compilation minutes shorter.

    The price is stability: on the fixed grid an explicit step is stable only while
    ``h * |lambda| < ~3.3`` for the fastest rate ``lambda`` of the system (e.g.
    ``ka``, ``kon * R``).  Outside that region the solution grows without bound, the
    log density becomes non-finite and NUTS rejects the draw (a divergence): no
    silent garbage, but stiff systems belong to ``rodas4``.  Choose ``max_step``
    below ``3 / (fastest plausible rate)``.

Coefficients: J. R. Dormand and P. J. Prince, *J. Comput. Appl. Math.* 6 (1980) 19-26
(the 5th-order solution is propagated; the difference to the 4th-order one is the error
estimate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytensor.tensor as pt
from pytensor.tensor.variable import TensorVariable

__all__ = ["ExplicitTableau", "DOPRI5", "explicit_step"]


@dataclass(frozen=True)
class ExplicitTableau:
    """Butcher tableau of an explicit method with an embedded error estimate.

    Examples
    --------
    >>> DOPRI5.name, DOPRI5.order, DOPRI5.stages
    ('dopri5', 5, 7)
    >>> abs(sum(DOPRI5.b) - 1.0) < 1e-15 and abs(sum(DOPRI5.b_hat) - 1.0) < 1e-15
    True
    """

    name: str
    order: int
    a: tuple[tuple[float, ...], ...]  # a[i][j], j < i
    b: tuple[float, ...]
    b_hat: tuple[float, ...]
    c: tuple[float, ...]

    @property
    def stages(self) -> int:
        """Number of stages (right-hand-side evaluations per step).

        Examples
        --------
        >>> DOPRI5.stages, len(DOPRI5.c)
        (7, 7)
        """
        return len(self.b)


#: Dormand-Prince 5(4): order 5, 7 stages (the 7th only feeds the error estimate).
DOPRI5 = ExplicitTableau(
    name="dopri5",
    order=5,
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    ),
    b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0),
    b_hat=(5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40),
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
)


def explicit_step(
    f: Callable[[TensorVariable, list[TensorVariable]], list[TensorVariable]],
    t: TensorVariable,
    y: list[TensorVariable],
    h: TensorVariable,
    tab: ExplicitTableau,
) -> tuple[list[TensorVariable], TensorVariable]:
    """One step of ``tab`` for all subjects; returns ``(y_next, err)``.

    Same contract as :func:`~nlme_bayes.structural.rosenbrock.rosenbrock_step`: ``y`` is a
    list of ``(n,)`` state tensors, ``t`` and ``h`` are ``(n,)`` (``h == 0`` is a no-op
    step), ``err`` the ``(n, n_states)`` embedded local error estimate.

    Examples
    --------
    One step of ``dy/dt = -0.5 y`` from ``y = 1``:

    >>> import numpy as np
    >>> import pytensor.tensor as pt
    >>> f = lambda t, y: [-0.5 * y[0]]
    >>> y1, err = explicit_step(f, pt.as_tensor(np.zeros(1)), [pt.as_tensor(np.ones(1))],
    ...                         pt.as_tensor(np.full(1, 0.1)), DOPRI5)
    >>> bool(abs(y1[0].eval()[0] - np.exp(-0.05)) < 1e-10)
    True
    """
    s = len(y)
    # The last DOPRI5 stage only feeds ``err``: where the caller drops ``err`` (as
    # :func:`~nlme_bayes.structural.rosenbrock.integrate` does), PyTensor prunes it.
    ks: list[list[TensorVariable]] = []
    for stage in range(tab.stages):
        a_row = tab.a[stage]
        yi = [
            y[q] + h * sum((a_row[j] * ks[j][q] for j in range(stage) if a_row[j]), 0.0)
            for q in range(s)
        ]
        ks.append(f(t + tab.c[stage] * h, yi))
    y_next = [
        y[q] + h * sum((tab.b[i] * ks[i][q] for i in range(len(ks)) if tab.b[i]), 0.0)
        for q in range(s)
    ]
    d = [tab.b[i] - tab.b_hat[i] for i in range(len(ks))]
    err = pt.stack(
        [h * sum((d[i] * ks[i][q] for i in range(len(ks)) if d[i]), 0.0) for q in range(s)],
        axis=-1,
    )
    return y_next, err
