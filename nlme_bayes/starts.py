"""Chain starts with a chosen jitter width on the population level.

PyMC (and nutpie through PyMC) jitter a start by ``U(-1, 1)`` on the unconstrained scale:
for a typical value on the log scale that is a factor of up to ``e = 2.7`` either way from
the value the user gave. That is wide enough to start a chain in the other mode of a
flip-flop model (one-compartment oral: ``ka`` and the elimination rate swap; a
Michaelis-Menten template with ``ka = 1`` and ``Vmax/(Km V) = 0.33`` can start with
``ka < k``), where it stays. :func:`start_functions` gives the same starts with the jitter
scaled to ``U(-w, w)``: ``w = 1`` reproduces PyMC's starts exactly, ``w = 0.5`` keeps every
typical value within a factor ``e^0.5 = 1.65`` of the user's value.

Only the variables PyMC would jitter move (``jitter_vars``: the population level); the
subject-level offsets stay where the overrides put them.

Example
-------
>>> import pymc as pm
>>> with pm.Model() as m:
...     cl = pm.LogNormal("CL_pop", 0.0, 1.0)
>>> starts = start_functions(m, {"CL_pop": 2.0}, ["CL_pop"], width=0.5)
>>> bool(abs(float(np.log(starts.natural(1)["CL_pop"] / 2.0))) <= 0.5)
True
>>> starts.flat(1).shape
(1,)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DEFAULT_START_JITTER", "StartFunctions", "start_functions"]

DEFAULT_START_JITTER = 1.0
"""Half-width of the start jitter on the unconstrained scale (PyMC's and nutpie's own)."""


@dataclass(frozen=True)
class StartFunctions:
    """Seed -> start point, in the forms the samplers take.

    Attributes
    ----------
    natural : callable
        ``seed -> {rv name: value}`` on the natural (constrained) scale, as PyMC's
        ``initvals`` take it.
    transformed : callable
        ``seed -> {value-variable name: value}`` on the unconstrained scale.
    flat : callable
        ``seed -> 1-d array``: the unconstrained point concatenated in the order of
        ``model.free_RVs``. A compiled nutpie model may order its variables otherwise: lay a
        start out for nutpie by name (``nlme_bayes.compiled.with_start_jitter``).

    Examples
    --------
    Made by :func:`start_functions`; without jitter every seed gives the override:

    >>> import pymc as pm
    >>> with pm.Model() as m:
    ...     v = pm.LogNormal("V_pop", 3.0, 1.0)
    >>> starts = start_functions(m, {"V_pop": 20.0}, ["V_pop"], width=0.0)
    >>> round(float(starts.natural(1)["V_pop"]), 6)  # natural scale, for PyMC's initvals
    20.0
    >>> round(float(starts.transformed(1)["V_pop_log__"]), 6)  # log(20)
    2.995732
    >>> starts.flat(1).round(6).tolist()
    [2.995732]
    """

    natural: Callable[[int], dict[str, np.ndarray]]
    transformed: Callable[[int], dict[str, np.ndarray]]
    flat: Callable[[int], np.ndarray]


def start_functions(
    pm_model: Any,
    overrides: dict[str, Any] | None,
    jitter_vars: Sequence[str],
    *,
    width: float = DEFAULT_START_JITTER,
) -> StartFunctions:
    """Start functions whose jitter is ``U(-width, width)`` on the unconstrained scale.

    Parameters
    ----------
    pm_model : pymc.Model
    overrides : dict, optional
        Start values by variable name (natural scale), as for PyMC's ``initvals``.
    jitter_vars : sequence of str
        Free variables to jitter; the others start at their override or support point.
    width : float
        Half-width of the uniform jitter; ``1`` is PyMC's, ``0`` no jitter.

    Returns
    -------
    StartFunctions

    Examples
    --------
    >>> import pymc as pm
    >>> with pm.Model() as m:
    ...     v = pm.LogNormal("V_pop", 3.0, 1.0)
    >>> s = start_functions(m, {"V_pop": 20.0}, ["V_pop"], width=0.0)
    >>> round(float(s.natural(7)["V_pop"]), 9)
    20.0
    """
    from pymc.initial_point import make_initial_point_fn
    from pytensor import function

    if not (np.isfinite(width) and width >= 0):
        raise ValueError(f"width must be a finite number >= 0, got {width!r}")
    overrides = dict(overrides or {})
    jitter = {pm_model[n] for n in jitter_vars}
    jittered = make_initial_point_fn(
        model=pm_model, overrides=overrides, jitter_rvs=jitter, return_transformed=True
    )
    base = make_initial_point_fn(
        model=pm_model, overrides=overrides, jitter_rvs=set(), return_transformed=True
    )(0)
    natural_pymc = make_initial_point_fn(
        model=pm_model, overrides=overrides, jitter_rvs=jitter, return_transformed=False
    )
    value_vars = [pm_model.rvs_to_values[rv] for rv in pm_model.free_RVs]
    compiled: list[Any] = []  # the back-transform, compiled on first use (width != 1 only)

    def to_natural(*values: np.ndarray) -> list[np.ndarray]:
        if not compiled:
            graphs = pm_model.replace_rvs_by_values(list(pm_model.free_RVs))
            compiled.append(function(value_vars, graphs, on_unused_input="ignore"))
        return compiled[0](*values)

    names = [v.name for v in value_vars]

    lock = threading.Lock()  # nutpie may ask for starts from several threads

    def transformed(seed: int) -> dict[str, np.ndarray]:
        with lock:
            point = jittered(seed)
        if width == 1.0:  # PyMC's own starts, bit for bit
            return {n: np.asarray(point[n], dtype=float) for n in names}
        return {
            n: np.asarray(base[n] + width * (np.asarray(point[n]) - base[n]), dtype=float)
            for n in names
        }

    def natural(seed: int) -> dict[str, np.ndarray]:
        if width == 1.0:
            with lock:
                return natural_pymc(seed)
        point = transformed(seed)
        with lock:
            values = to_natural(*[point[n] for n in names])
        return {rv.name: np.asarray(v) for rv, v in zip(pm_model.free_RVs, values, strict=True)}

    def flat(seed: int) -> np.ndarray:
        point = transformed(seed)
        return np.concatenate([np.ravel(point[n]) for n in names]).astype(np.float64)

    return StartFunctions(natural=natural, transformed=transformed, flat=flat)
