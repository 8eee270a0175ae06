"""How nlme_bayes compiles PyTensor graphs: PyTensor's rewrites, less those too slow for ours.

PyTensor canonicalises every graph before compiling it. One of its rewrites,
``local_greedy_distributor``, distributes products over sums (``a * (b + c) / d``) and
re-simplifies the constants of each candidate. On the step graph of an ODE solver -- and
still more on its gradient, a reverse scan of the same size -- it is tried on hundreds of
thousands of nodes: on the warfarin turnover model (6 subjects, RODAS4, 2-h steps) it took
100 of the 102 s that PyTensor spent rewriting the log-density and its gradient. Without it
the rewrite took 40 s, the compiled gradient was as fast (2.4 ms against 2.8 ms per
evaluation) and the log-density the same to the last printed digit. Michaelis-Menten oral
(8 subjects, DOPRI5): 45 s -> 18 s. On closed-form models it saves 0-3 s of compilation and
changes nothing at run time (one, two and three compartments: same log-density, same speed).

:func:`lean_mode` is the mode for our own ``pytensor.function`` calls;
:func:`lean_compilation` makes every compilation inside it lean -- PyMC's (``pm.sample``,
``sample_posterior_predictive``) and nutpie's, which names its mode (``"NUMBA"``) itself.

Examples
--------
>>> from nlme_bayes.compile_mode import SKIPPED_REWRITES, lean_compilation, lean_mode
>>> SKIPPED_REWRITES
('local_greedy_distributor',)
>>> import pytensor, pytensor.tensor as pt
>>> x = pt.dvector("x")
>>> f = pytensor.function([x], (2 * (x + 1)).sum(), mode=lean_mode())
>>> float(f([1.0, 2.0]))
10.0
>>> with lean_compilation():
...     g = pytensor.function([x], x.exp().sum())
>>> round(float(g([0.0, 0.0])), 6)
2.0
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: PyTensor rewrites nlme_bayes compiles without (see the module docstring for why).
SKIPPED_REWRITES: tuple[str, ...] = ("local_greedy_distributor",)

#: PyTensor's named modes that :func:`lean_compilation` makes lean while it is active.
_NAMED_MODES = ("NUMBA", "C", "CVM", "JAX")

_lock = threading.RLock()
_depth = 0
_saved: dict[str, Any] = {}


def lean_mode(mode: Any = None) -> Any:
    """PyTensor's ``mode`` (default: the configured one) without :data:`SKIPPED_REWRITES`.

    Examples
    --------
    >>> from nlme_bayes.compile_mode import lean_mode
    >>> mode = lean_mode("FAST_RUN")
    >>> "local_greedy_distributor" in mode.provided_optimizer.exclude
    True
    """
    from pytensor.compile.mode import get_mode

    return get_mode(mode).excluding(*SKIPPED_REWRITES)


@contextmanager
def lean_compilation() -> Iterator[None]:
    """Within this block, every PyTensor compilation skips :data:`SKIPPED_REWRITES`.

    It swaps PyTensor's default mode and its named modes (``"NUMBA"``, ``"C"``, ``"CVM"``,
    ``"JAX"``) for lean copies and puts them back on leaving; nested and concurrent blocks
    share one swap (the originals return when the last block ends). Graphs compiled inside
    it compute the same values.

    Examples
    --------
    >>> from pytensor.compile.mode import get_mode
    >>> from nlme_bayes.compile_mode import lean_compilation
    >>> with lean_compilation():
    ...     "local_greedy_distributor" in get_mode("NUMBA").provided_optimizer.exclude
    True
    >>> "local_greedy_distributor" in get_mode("NUMBA").provided_optimizer.exclude
    False
    """
    global _depth
    import pytensor
    from pytensor.compile.mode import predefined_modes

    with _lock:
        if _depth == 0:
            _saved.clear()
            _saved.update({k: predefined_modes[k] for k in _NAMED_MODES if k in predefined_modes})
            default = lean_mode()
            _saved["__config_mode__"] = pytensor.config.mode
            for k, mode in list(_saved.items()):
                if k != "__config_mode__":
                    predefined_modes[k] = mode.excluding(*SKIPPED_REWRITES)
            pytensor.config.mode = default
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                pytensor.config.mode = _saved.pop("__config_mode__")
                predefined_modes.update(_saved)
                _saved.clear()


# --------------------------------------------------------------------------- step assignment
_models_without_steps: weakref.WeakSet[Any] = weakref.WeakSet()
_original_assign: Any = None


@contextmanager
def skip_step_assignment(pm_model: Any) -> Iterator[None]:
    """Within this block, ``pm.sample`` on ``pm_model`` assigns NUTS without probing gradients.

    ``pm.sample`` chooses a PyMC step method for every value variable -- by building the
    symbolic gradient of the model's log density with respect to each one -- before it hands
    the model to an external sampler (nutpie, numpyro) that uses none of them. On an ODE model
    each gradient goes through the solver's reverse scan: 35 of the 84 s that a
    Michaelis-Menten fit (8 subjects, DOPRI5) spent before its first draw; about 1 s on
    Theophylline. nlme_bayes models have only continuous, differentiable free variables, so
    the answer is known: NUTS for all. The first use installs a wrapper of PyMC's
    ``assign_step_methods`` that stays and hands every other call -- other models, calls
    given steps, ``pm_model`` after the block -- to PyMC's own.

    Examples
    --------
    >>> import pymc as pm
    >>> from pymc.sampling import mcmc
    >>> from nlme_bayes.compile_mode import skip_step_assignment
    >>> with pm.Model() as m:
    ...     _ = pm.Normal("x")
    >>> with skip_step_assignment(m):
    ...     provided, selected = mcmc.assign_step_methods(m, None, methods=mcmc.STEP_METHODS)
    >>> provided, {cls.__name__: [v.name for v in vs] for cls, vs in selected.items()}
    ([], {'NUTS': ['x']})
    """
    global _original_assign
    from pymc.sampling import mcmc

    with _lock:
        if _original_assign is None:
            _original_assign = mcmc.assign_step_methods
            original = _original_assign

            def assign(model: Any, step: Any = None, methods: Any = None) -> Any:
                if step is None and model in _models_without_steps:
                    return [], {mcmc.NUTS: list(model.value_vars)}
                return original(model, step, methods=methods)

            mcmc.assign_step_methods = assign
        _models_without_steps.add(pm_model)
    try:
        yield
    finally:
        with _lock:
            _models_without_steps.discard(pm_model)
