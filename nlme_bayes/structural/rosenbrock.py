r"""A linearly implicit (Rosenbrock) ODE integrator in PyTensor, vectorised over subjects.

One step of an ``s``-stage Rosenbrock method for :math:`y' = f(t, y)` with step
:math:`h`, Jacobian :math:`J = \partial f/\partial y` and
:math:`G = I/(h\gamma) - J` reads (Hairer & Wanner, *Solving ODEs II*, IV.7, in
the form used by KPP, Sandu et al. 1997)

.. math::

    G\,K_i = f\Big(t + \alpha_i h,\; y + \sum_{j<i} a_{ij} K_j\Big)
             + \sum_{j<i} \frac{c_{ij}}{h} K_j + h\,\gamma_i\,\partial_t f,
    \qquad y_{n+1} = y_n + \sum_i m_i K_i,
    \qquad \widehat{err} = \sum_i e_i K_i .

Why this method
    Pharmacometric systems are often *stiff*: a fast absorption or binding rate
    next to a slow elimination (``ka/k = 1e3``; TMDD with a large ``kon``).  An
    explicit scheme is then stable only for steps below ``~3/ka`` and blows up
    (``inf``/``nan``, a divergence in NUTS) when warm-up proposes extreme rates.
    RODAS3 (order 3, 4 stages) and RODAS4 (order 4, 6 stages) are *L-stable* and
    *stiffly accurate*: any step size is stable, and fast modes are damped the way
    the exact solution damps them.  Being linearly implicit, a step costs one
    Jacobian (by automatic differentiation of the right-hand side), one small LU
    factorisation and ``s`` triangular solves, with no Newton iteration whose
    convergence could fail, so the cost and the gradient are fixed.

Why a fixed grid
    The grid is chosen from the data (event times) before compilation, so the
    computation has the same shape for every draw: the scan has a fixed length,
    NUTS sees a smooth function of the parameters (no step-size control branches),
    and the reverse-mode gradient is exact for the discrete solution.  Accuracy is
    monitored instead of controlled: the embedded error estimate is accumulated
    and returned, and :class:`~nlme_bayes.structural.ode.ODEModel` reports it.

The small dense systems ``G x = b`` (a few states) are solved by Gaussian
elimination unrolled symbolically over the state index and vectorised over
subjects; :math:`G` has diagonal :math:`1/(h\gamma) - J_{ii}`, which dominates
for the step sizes used here, so no pivoting is done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.traversal import ancestors
from pytensor.tensor.variable import TensorVariable

from .explicit_rk import DOPRI5, ExplicitTableau, explicit_step

__all__ = ["Tableau", "RODAS3", "RODAS4", "METHODS", "rosenbrock_step", "integrate"]


@dataclass(frozen=True)
class Tableau:
    """Coefficients of a Rosenbrock method (KPP convention, see the module docstring).

    Examples
    --------
    >>> METHODS["rodas3"].name, METHODS["rodas3"].order, METHODS["rodas4"].order
    ('rodas3', 3, 4)
    """

    name: str
    order: int
    gamma: float
    a: tuple[tuple[float, ...], ...]  # a[i][j], j < i
    c: tuple[tuple[float, ...], ...]  # c[i][j], j < i
    m: tuple[float, ...]
    e: tuple[float, ...]
    alpha: tuple[float, ...]
    gammas: tuple[float, ...]

    @property
    def stages(self) -> int:
        """Number of stages (linear solves per step).

        Examples
        --------
        >>> RODAS3.stages, RODAS4.stages
        (4, 6)
        """
        return len(self.m)


def _lower(flat: Sequence[float], s: int) -> tuple[tuple[float, ...], ...]:
    """Row-wise strictly lower triangular storage -> rows."""
    rows, k = [], 0
    for i in range(s):
        rows.append(tuple(flat[k : k + i]))
        k += i
    return tuple(rows)


#: RODAS3: Sandu et al., Atmos. Environ. 31 (1997) 3459; order 3, L-stable, stiffly accurate.
RODAS3 = Tableau(
    name="rodas3",
    order=3,
    gamma=0.5,
    a=_lower([0.0, 2.0, 0.0, 2.0, 0.0, 1.0], 4),
    c=_lower([4.0, 1.0, -1.0, 1.0, -1.0, -8.0 / 3.0], 4),
    m=(2.0, 0.0, 1.0, 1.0),
    e=(0.0, 0.0, 0.0, 1.0),
    alpha=(0.0, 0.0, 1.0, 1.0),
    gammas=(0.5, 1.5, 0.0, 0.0),
)

_R4A = [
    1.544,
    0.9466785280815826,
    0.2557011698983284,
    3.314825187068521,
    2.896124015972201,
    0.9986419139977817,
    1.221224509226641,
    6.019134481288629,
    12.53708332932087,
    -0.6878860361058950,
]
#: RODAS4: Hairer & Wanner, Solving ODEs II (1996), IV.7; order 4, L-stable, stiffly accurate.
RODAS4 = Tableau(
    name="rodas4",
    order=4,
    gamma=0.25,
    a=_lower(_R4A + _R4A[6:10] + [1.0], 6),
    c=_lower(
        [
            -5.6688,
            -2.430093356833875,
            -0.2063599157091915,
            -0.1073529058151375,
            -9.594562251023355,
            -20.47028614809616,
            7.496443313967647,
            -10.24680431464352,
            -33.99990352819905,
            11.70890893206160,
            8.083246795921522,
            -7.981132988064893,
            -31.52159432874371,
            16.31930543123136,
            -6.058818238834054,
        ],
        6,
    ),
    m=(*_R4A[6:10], 1.0, 1.0),
    e=(0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
    alpha=(0.0, 0.386, 0.21, 0.63, 1.0, 1.0),
    gammas=(0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0),
)

#: Rosenbrock schemes (stiff systems) and the explicit DOPRI5 (non-stiff systems, cheaper
#: gradients: :mod:`~nlme_bayes.structural.explicit_rk`).
METHODS: dict[str, Tableau | ExplicitTableau] = {
    "rodas3": RODAS3,
    "rodas4": RODAS4,
    "dopri5": DOPRI5,
}

# f(t, y, args) -> dy/dt; y is a list of (n,) tensors (one per state), t is (n,)
RHS = Callable[[TensorVariable, list[TensorVariable]], list[TensorVariable]]


def _lu(g: list[list[TensorVariable]]) -> list[list[TensorVariable]]:
    """In-place-style Doolittle LU of a small matrix of (n,) tensors (no pivoting)."""
    s = len(g)
    a = [row[:] for row in g]
    for k in range(s):
        for i in range(k + 1, s):
            a[i][k] = a[i][k] / a[k][k]
            for j in range(k + 1, s):
                a[i][j] = a[i][j] - a[i][k] * a[k][j]
    return a


def _lu_solve(lu: list[list[TensorVariable]], b: list[TensorVariable]) -> list[TensorVariable]:
    s = len(b)
    y = list(b)
    for i in range(s):
        for j in range(i):
            y[i] = y[i] - lu[i][j] * y[j]
    x = [None] * s
    for i in reversed(range(s)):
        acc = y[i]
        for j in range(i + 1, s):
            acc = acc - lu[i][j] * x[j]
        x[i] = acc / lu[i][i]
    return x  # type: ignore[return-value]


def _depends_on(outputs: Sequence[TensorVariable], var: TensorVariable) -> bool:
    return any(v is var for v in ancestors(list(outputs)))


def rosenbrock_step(
    f: RHS, t: TensorVariable, y: list[TensorVariable], h: TensorVariable, tab: Tableau
) -> tuple[list[TensorVariable], TensorVariable]:
    """One step of ``tab`` for all subjects; returns ``(y_next, err)``.

    ``y`` is a list of ``(n,)`` state tensors, ``t`` and ``h`` are ``(n,)``; ``h`` must be
    ``> 0`` (callers substitute a dummy step where no step is taken).  ``err`` is the
    ``(n, n_states)`` embedded local error estimate (absolute).

    Examples
    --------
    One step of ``dy/dt = -0.5 y`` from ``y = 1``:

    >>> import numpy as np
    >>> import pytensor.tensor as pt
    >>> f = lambda t, y: [-0.5 * y[0]]
    >>> y1, err = rosenbrock_step(f, pt.as_tensor(np.zeros(1)), [pt.as_tensor(np.ones(1))],
    ...                           pt.as_tensor(np.full(1, 0.1)), METHODS["rodas3"])
    >>> bool(abs(y1[0].eval()[0] - np.exp(-0.05)) < 1e-6)
    True
    """
    s = len(y)
    f0 = f(t, y)
    jac = []
    for i in range(s):
        row = pytensor.grad(
            f0[i].sum(), y, disconnected_inputs="ignore", return_disconnected="zero"
        )
        jac.append(row)
    uses_t = _depends_on(f0, t)
    dfdt = (
        [pytensor.grad(fi.sum(), t, disconnected_inputs="ignore") for fi in f0] if uses_t else None
    )
    # Scaled form (multiplied through by h*gamma): no division by h, so h == 0 is a no-op
    # step (K_i = 0) and padded steps need no switch.
    hg = h * tab.gamma
    g = [[(1.0 if i == j else 0.0) - hg * jac[i][j] for j in range(s)] for i in range(s)]
    lu = _lu(g)
    ks: list[list[TensorVariable]] = []
    fi = f0
    for stage in range(tab.stages):
        if stage > 0:
            a_row = tab.a[stage]
            if any(a_row) or tab.alpha[stage] != 0.0:
                yi = [
                    y[q] + sum((a_row[j] * ks[j][q] for j in range(stage) if a_row[j]), 0.0)
                    for q in range(s)
                ]
                fi = f(t + tab.alpha[stage] * h, yi)
            else:
                fi = f0
        c_row = tab.c[stage]
        rhs = [
            hg * fi[q]
            + sum((tab.gamma * c_row[j] * ks[j][q] for j in range(stage) if c_row[j]), 0.0)
            for q in range(s)
        ]
        if dfdt is not None and tab.gammas[stage] != 0.0:
            rhs = [rhs[q] + hg * h * tab.gammas[stage] * dfdt[q] for q in range(s)]
        ks.append(_lu_solve(lu, rhs))
    y_next = [
        y[q] + sum((tab.m[i] * ks[i][q] for i in range(tab.stages) if tab.m[i]), 0.0)
        for q in range(s)
    ]
    err = pt.stack(
        [sum((tab.e[i] * ks[i][q] for i in range(tab.stages) if tab.e[i]), 0.0) for q in range(s)],
        axis=-1,
    )
    return y_next, err


def integrate(
    f: Callable[[TensorVariable, list[TensorVariable], TensorVariable], list[TensorVariable]],
    y0: TensorVariable,
    t_start: TensorVariable,
    h: TensorVariable,
    bolus: TensorVariable,
    rate_delta: TensorVariable | None,
    reset: TensorVariable | None,
    y_reset: TensorVariable,
    *,
    method: str = "rodas3",
    non_sequences: Sequence[TensorVariable] = (),
) -> TensorVariable:
    """Integrate all subjects over a fixed step grid, applying events after steps.

    Parameters
    ----------
    f : callable
        ``f(t, y, rate, *non_sequences) -> list of (n,) derivatives``; ``y`` is a list of
        ``(n,)`` tensors, ``rate`` the ``(n, n_states)`` zero-order input in force (None
        when ``rate_delta`` is None: no infusions).
    y0 : (n, S) tensor
        State at each subject's first event time.
    t_start, h : (n_steps, n) tensors
        Start time and length of every step (``h == 0``: no step).
    bolus, rate_delta : (n_steps, n, S) tensors
        Added to the state / to the infusion rate *after* the step (``rate_delta`` None:
        no infusions).
    reset : (n_steps, n) tensor
        1 where the state is reset to ``y_reset`` (and infusions stopped) *before* the
        step's bolus is added (the step's own result is discarded); 0 elsewhere.  None:
        no resets.
    y_reset : (n, S) tensor
        The state after a reset (the initial conditions).

    Returns
    -------
    states : (n_steps, n, S) tensor
        The state after each step and its events.

    Examples
    --------
    ``dy/dt = -0.5 y`` over 20 steps of 0.1 for one subject, no events:

    >>> import numpy as np
    >>> import pytensor.tensor as pt
    >>> t_start = pt.as_tensor(np.arange(20.0)[:, None] * 0.1)
    >>> h = pt.as_tensor(np.full((20, 1), 0.1))
    >>> y0 = pt.as_tensor(np.ones((1, 1)))
    >>> states = integrate(lambda t, y, rate: [-0.5 * y[0]], y0, t_start, h,
    ...                    pt.as_tensor(np.zeros((20, 1, 1))), None, None, y0)
    >>> bool(abs(states.eval()[-1, 0, 0] - np.exp(-1.0)) < 1e-5)
    True
    """
    tab = METHODS[method]
    n_states = int(y0.type.shape[-1]) if y0.type.shape[-1] is not None else None
    if n_states is None:
        raise ValueError("integrate needs a static number of states")

    # Only the features the schedule uses enter the graph: every extra term in the scan's
    # inner graph is differentiated again (second order) by the gradient of the scan.
    has_rate = rate_delta is not None
    has_reset = reset is not None
    seqs = [t_start, h, bolus] + ([rate_delta] if has_rate else []) + ([reset] if has_reset else [])
    n_seq = len(seqs)
    n_out = 2 if has_rate else 1
    extra = [y_reset] if has_reset else []

    def step(*args):
        t0, hh, b = args[:3]
        dr = args[3] if has_rate else None
        rs = args[n_seq - 1] if has_reset else None
        y = args[n_seq]
        rate = args[n_seq + 1] if has_rate else None
        rest = args[n_seq + n_out :]
        y_res = rest[0] if has_reset else None
        user = rest[1:] if has_reset else rest
        ys = [y[:, q] for q in range(n_states)]

        def rhs(tt, yy):
            return f(tt, yy, rate, *user)

        if isinstance(tab, ExplicitTableau):
            y_next, _err = explicit_step(rhs, t0, ys, hh, tab)
        else:
            y_next, _err = rosenbrock_step(rhs, t0, ys, hh, tab)
        y_new = pt.stack(y_next, axis=-1)
        if has_reset:
            keep = (1.0 - rs)[:, None]  # 0/1 data: a blend, cheaper to differentiate than switch
            y_new = keep * y_new + rs[:, None] * y_res
        # keep the carried states' static shapes (e.g. one subject: (1, S))
        y_new = pt.specify_shape(y_new + b, y.type.shape)
        if not has_rate:
            return y_new
        rate_new = pt.specify_shape((keep * rate if has_reset else rate) + dr, rate.type.shape)
        return y_new, rate_new

    outputs_info = [y0] + ([pt.zeros_like(y0)] if has_rate else [])
    out, _ = pytensor.scan(
        step,
        sequences=seqs,
        outputs_info=outputs_info,
        non_sequences=[*extra, *non_sequences],
        strict=False,
        return_updates=True,
    )
    return out[0] if has_rate else out


def _self_check() -> None:  # pragma: no cover - used interactively
    """Order check on y' = -y (run as ``python -m nlme_bayes.structural.rosenbrock``)."""
    for name in ("rodas3", "rodas4"):
        errs = []
        for n in (10, 20, 40):
            y = pt.dvector("y")
            t = pt.dvector("t")
            h = pt.dvector("h")
            out, _ = rosenbrock_step(lambda tt, yy: [-yy[0] + pt.sin(tt)], t, [y], h, METHODS[name])
            fn = pytensor.function([t, y, h], out[0])
            yy, tt, hh = np.array([1.0]), np.array([0.0]), np.array([1.0 / n])
            for _ in range(n):
                yy = fn(tt, yy, hh)
                tt = tt + hh
            exact = 1.5 * np.exp(-1.0) + 0.5 * (np.sin(1.0) - np.cos(1.0))
            errs.append(abs(yy[0] - exact))
        print(name, errs, np.log2(np.array(errs[:-1]) / np.array(errs[1:])))


if __name__ == "__main__":  # pragma: no cover
    _self_check()
