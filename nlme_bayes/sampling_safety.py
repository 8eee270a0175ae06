"""Keeping a sampling run safe: interruptions, non-finite log densities, bad chain starts.

Used by :func:`nlme_bayes.inference.fit`; the functions work on plain PyMC / ArviZ objects.

- :func:`watch_interrupt` notes a Ctrl-C (SIGINT) while the samplers run.  PyMC's NUTS and
  nutpie both catch the ``KeyboardInterrupt`` themselves and return what they have *without
  saying so*: PyMC cuts the chains to the shortest, nutpie pads the unfinished draws with
  NaN.
- :func:`keep_complete_draws` turns either into a clean posterior: every kept chain cut to
  the draws that all kept chains completed, chains without a draw dropped, no NaN; and says
  what happened (``None`` when the run was complete).
- :func:`nonfinite_transitions` counts the transitions that ended on a non-finite log
  density or energy (NaN or infinite: overflow in ``exp(eta)``, a predicted concentration
  of 0 under proportional error, a failed ODE step).  Both samplers reject such a proposal
  -- it ends the trajectory as a divergence and never becomes a draw -- which is Stan's
  semantics for a log density that cannot be evaluated.
- :func:`finite_starts` draws the jittered chain starts again until their log density is
  finite, falling back to the un-jittered start with a warning.

Example
-------
>>> import numpy as np, xarray as xr
>>> stats = xr.Dataset({"diverging": (("chain", "draw"), [[False, True, True]]),
...                     "max_energy_error": (("chain", "draw"), [[0.1, np.inf, 1500.0]])})
>>> nonfinite_transitions(stats)
1
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from .compile_mode import lean_mode
from .errors import InterruptedWarning, SamplingError, SpecificationError, StartWarning

__all__ = [
    "MAX_START_TRIES",
    "InterruptWatch",
    "check_fit_arguments",
    "finite_starts",
    "keep_complete_draws",
    "nonfinite_transitions",
    "report_interruption",
    "sample_with_fresh_starts",
    "watch_interrupt",
]

MAX_START_TRIES = 20
"""How many jittered starts a chain may draw before it falls back to the un-jittered one."""


@dataclass
class InterruptWatch:
    """``fired`` becomes True when SIGINT arrives inside :func:`watch_interrupt`.

    Examples
    --------
    >>> with watch_interrupt() as watch:
    ...     pass  # sampling; Ctrl-C here sets watch.fired, then raises as usual
    >>> watch.fired
    False
    """

    fired: bool = False


@contextlib.contextmanager
def watch_interrupt() -> Iterator[InterruptWatch]:
    """Note SIGINT (Ctrl-C) while the block runs, then hand it on unchanged.

    The previous handler still runs (by default it raises ``KeyboardInterrupt``, which the
    samplers catch to stop early).  Outside the main thread signals cannot be watched, and
    ``fired`` stays False; :func:`keep_complete_draws` still sees a short run.

    Examples
    --------
    >>> with watch_interrupt() as watch:
    ...     pass
    >>> watch.fired
    False
    """
    watch = InterruptWatch()
    if threading.current_thread() is not threading.main_thread():
        yield watch
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if previous is signal.SIG_IGN:
            return
        watch.fired = True
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL or a handler installed from C: behave as Python's default
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield watch
    finally:
        signal.signal(signal.SIGINT, previous)


def keep_complete_draws(
    tree: xr.DataTree, requested: int, free_names: Sequence[str], *, interrupted: bool
) -> tuple[xr.DataTree, dict[str, Any] | None]:
    """The draws every kept chain completed, and what was cut (``None``: nothing was).

    Parameters
    ----------
    tree : xarray.DataTree
        What ``pm.sample`` returned (``posterior`` and ``sample_stats`` with chain, draw).
    requested : int
        Draws per chain asked for.
    free_names : sequence of str
        The model's free variables: a draw is complete when all of them are finite
        (nutpie pads an unfinished draw with NaN).
    interrupted : bool
        Whether SIGINT was seen (only changes the ``reason`` given).

    Returns
    -------
    tree : xarray.DataTree
        Every group with ``chain``/``draw`` dims cut to the kept chains and draws.
    interruption : dict or None
        ``reason``, ``requested``, ``draws_per_chain`` (completed), ``kept``,
        ``chains_kept``; None when every chain completed every draw.

    Raises
    ------
    KeyboardInterrupt
        Interrupted before any chain completed a draw after warm-up (nothing to keep).
    SamplingError
        The sampler returned no complete draw without being interrupted.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> x = np.array([[1.0, 2.0, 3.0], [4.0, np.nan, np.nan]])  # chain 2 stopped after 1
    >>> tree = xr.DataTree.from_dict({
    ...     "posterior": xr.Dataset({"x": (("chain", "draw"), x)}),
    ...     "sample_stats": xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, 3), bool))})})
    >>> cut, info = keep_complete_draws(tree, 3, ["x"], interrupted=True)
    >>> cut["posterior"]["x"].values.tolist(), info["draws_per_chain"], info["kept"]
    ([[1.0], [4.0]], [3, 1], 1)
    """
    post = tree["posterior"].dataset
    names = [n for n in free_names if n in post.data_vars] or list(post.data_vars)
    n_chains, n_draws = post.sizes.get("chain", 0), post.sizes.get("draw", 0)
    complete = np.ones((n_chains, n_draws), dtype=bool)
    for name in names:
        values = post[name].transpose("chain", "draw", ...).values
        complete &= np.isfinite(values.reshape(n_chains, n_draws, -1)).all(axis=2)
    done = np.cumprod(complete, axis=1).sum(axis=1) if n_draws else np.zeros(n_chains, int)
    if n_draws == requested and np.all(done == requested):
        return tree, None
    reason = "Ctrl-C / SIGINT" if interrupted else "the sampler stopped early"
    chains = np.flatnonzero(done > 0)
    if chains.size == 0:
        if interrupted:
            raise KeyboardInterrupt(
                "sampling was interrupted before any chain finished its warm-up: there are "
                "no posterior draws to keep"
            )
        raise SamplingError(
            f"the sampler returned no complete draw ({reason}); nothing to keep. Check the "
            "model's starting values and priors."
        )
    kept = int(done[chains].min())
    for node in tree.subtree:
        ds = node.dataset
        if "chain" in ds.dims and "draw" in ds.dims and node.name != "warmup_posterior":
            node.dataset = ds.isel(chain=chains, draw=slice(0, kept))
    info = {
        "reason": reason,
        "requested": int(requested),
        "draws_per_chain": [int(d) for d in done],
        "kept": kept,
        "chains_kept": [int(c) for c in chains],
    }
    return tree, info


def nonfinite_transitions(stats: xr.Dataset) -> int:
    """Transitions that ended on a non-finite log density or energy (rejected proposals).

    PyMC and nutpie both record ``max_energy_error``; it is infinite or NaN exactly when
    the trajectory reached a point whose log density (or gradient) could not be evaluated
    as a finite number.  Such a transition is also counted in ``diverging``.

    Parameters
    ----------
    stats : xarray.Dataset
        The ``sample_stats`` group.

    Returns
    -------
    int
        0 when the statistics are not recorded.

    Examples
    --------
    >>> import numpy as np
    >>> import xarray as xr
    >>> stats = xr.Dataset({"max_energy_error": (("chain", "draw"), np.array([[0.1, np.inf, 0.2]])),
    ...                     "diverging": (("chain", "draw"), np.array([[False, True, False]]))})
    >>> nonfinite_transitions(stats)
    1
    """
    if "max_energy_error" not in stats or "diverging" not in stats:
        return 0
    energy = np.asarray(stats["max_energy_error"].values, dtype=float)
    diverging = np.asarray(stats["diverging"].values).astype(bool)
    return int(np.sum(diverging & ~np.isfinite(energy)))


def nutpie_jitter(built: Any) -> tuple[str, ...]:
    """Free variables whose start nutpie jitters: the population level and Omega's Cholesky factor.

    Subjects start at the typical values (``z = 0``), as with the other backends. The packed
    Cholesky factor is jittered too because nutpie initialises its mass matrix from the
    gradient at the start, and at zero off-diagonal entries that gradient is exactly 0.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> built = SimpleNamespace(jitter_vars=("CL_pop", "sigma_add"),
    ...                         offset_vars=("chol_omega_CL_V", "z_eta_CL_V"))
    >>> nutpie_jitter(built)
    ('CL_pop', 'sigma_add', 'chol_omega_CL_V')
    """
    chol = tuple(n for n in built.offset_vars if n.startswith("chol_"))
    return tuple(built.jitter_vars) + chol


Z_START = 0.01
"""|z| of nutpie's starts of the non-centred offsets (see :func:`nutpie_initvals`)."""


def nutpie_initvals(built: Any) -> dict[str, Any]:
    """``built.initvals`` plus starts of the offsets ``z`` at ``±Z_START`` (alternating signs).

    Every subject starts within 1 % of an SD of its typical values, as ``z = 0`` would
    put it, but no component of the gradient is exactly 0: nutpie initialises its mass
    matrix from the gradient at the start and refuses a start where a component is 0 (a
    subject whose data do not involve one of its random effects, zero off-diagonals of the
    Cholesky factor).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import numpy as np
    >>> class M(dict):
    ...     def initial_point(self):
    ...         return {"z_eta_CL": np.zeros(4), "CL_pop_log__": 0.0}
    >>> built = SimpleNamespace(initvals={"CL_pop": 2.0}, offset_vars=("z_eta_CL",),
    ...                         pm_model=M())
    >>> nutpie_initvals(built)["z_eta_CL"]
    array([ 0.01, -0.01,  0.01, -0.01])
    """
    point = built.pm_model.initial_point()
    out = dict(built.initvals or {})
    for name in built.offset_vars:
        if name.startswith("z_") and name in point:
            shape = np.shape(point[name])
            signs = 1.0 - 2.0 * (np.arange(int(np.prod(shape))) % 2)
            out[name] = (Z_START * signs).reshape(shape)
    return out


def finite_starts(
    built: Any,
    start: Callable[[int], dict[str, np.ndarray]],
    seeds: Sequence[int],
    *,
    tries: int = MAX_START_TRIES,
) -> list[dict[str, np.ndarray]]:
    """One start per chain whose log density and gradient are finite.

    A start outside the model's support is drawn again with a new seed, up to ``tries``
    times; a chain that never finds one starts at the un-jittered point (the typical values),
    with a :class:`~nlme_bayes.errors.StartWarning` saying so; if sampling fails from there
    too, :func:`nlme_bayes.inference.fit` names the variables with zero density at it.  The
    check compiles the same log density function as PyMC's NUTS (a compile-cache hit later).

    Parameters
    ----------
    built : BuiltModel
        ``pm_model``, ``initvals`` and ``jitter_vars`` of the model.
    start : callable
        Seed -> start point (untransformed values), as ``make_initial_point_fn`` gives.
    seeds : sequence of int
        One seed per chain.
    tries : int
        Draws per chain before the fallback.

    Returns
    -------
    list of dict
        Untransformed start points, one per chain.

    Examples
    --------
    Used by :func:`nlme_bayes.inference.fit` before sampling:

    >>> starts = finite_starts(built, start, seeds=[1, 2, 3, 4])  # doctest: +SKIP
    """
    from pymc.blocking import DictToArrayBijection
    from pymc.initial_point import make_initial_point_fn

    model = built.pm_model
    logp_dlogp = model.logp_dlogp_function(ravel_inputs=True, mode=lean_mode())
    logp_dlogp.trust_input = True
    names = [v.name for v in model.value_vars]

    def finite(transformed: dict[str, np.ndarray]) -> bool:
        q, _ = DictToArrayBijection.map({n: transformed[n] for n in names})
        with np.errstate(all="ignore"):
            logp, grad = logp_dlogp([q], extra_vars={})
        return bool(np.isfinite(logp) and np.all(np.isfinite(grad)))

    fallback = make_initial_point_fn(
        model=model, overrides=built.initvals, return_transformed=False
    )(0)
    starts = []
    for chain, seed in enumerate(seeds):
        candidates = [int(seed)]
        candidates += [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(tries - 1)]
        for candidate in candidates:
            point = start(candidate)
            if finite(_transform(model, point)):
                starts.append(point)
                break
        else:
            warnings.warn(
                f"chain {chain}: none of {tries} jittered starts has a finite log density "
                "(the jitter leaves the prior's support or makes a prediction non-positive); "
                "it starts at the typical values instead. Check the priors' supports and "
                "typical= values.",
                StartWarning,
                stacklevel=3,
            )
            starts.append(fallback)
    return starts


def _transform(model: Any, point: dict[str, np.ndarray]) -> dict[str, Any]:
    """Untransformed start values -> the model's value variables (log, interval, ...)."""
    import pytensor.tensor as pt

    out = {}
    for rv in model.free_RVs:
        value = model.rvs_to_values[rv]
        transform = model.rvs_to_transforms.get(rv)
        x = np.asarray(point[rv.name])
        if transform is None:
            out[value.name] = x
        else:
            # a tensor, not an array: some transforms (the LKJ Cholesky's) index it symbolically
            x = pt.as_tensor_variable(x)
            out[value.name] = transform.forward(x, *rv.owner.inputs).eval()
    return out


def sample_with_fresh_starts(
    sample: Callable[..., Any],
    kwargs: dict[str, Any],
    built: Any,
    start: Callable[[int], dict[str, np.ndarray]],
    seeds: Sequence[int],
) -> Any:
    """``sample(**kwargs)``; if our chain starts make it fail, draw finite ones and retry once.

    Only for backends that take our per-chain starts (``kwargs["initvals"]`` a list).

    Examples
    --------
    With the Theophylline model built (``built``) and its start function (``start``), a
    sampler that refuses the first starts is run again from re-drawn, finite ones:

    >>> calls = []
    >>> def sample(**kwargs):
    ...     calls.append(kwargs["initvals"])
    ...     if len(calls) == 1:
    ...         raise RuntimeError("Bad initial energy: the starting point is not finite")
    ...     return "draws"
    >>> sample_with_fresh_starts(sample, {"initvals": [{}, {}]}, built, start,
    ...                          seeds=[1, 2])  # doctest: +SKIP
    'draws'
    >>> sorted(calls[1][0])  # the retry's start of chain 1  # doctest: +SKIP
    ['CL_pop', 'V_pop', 'chol_omega_CL_V_ka', 'ka_pop', 'sigma_add', 'z_eta_CL_V_ka']
    """
    try:
        return sample(**kwargs)
    except (ValueError, RuntimeError) as first:  # PyMC's SamplingError is a RuntimeError
        text = str(first).lower()
        if not isinstance(kwargs.get("initvals"), list) or not (
            "initial" in text or "energy" in text or "starting" in text
        ):
            raise
        starts = finite_starts(built, start, seeds)
        try:
            return sample(**{**kwargs, "initvals": starts})
        except (ValueError, RuntimeError) as second:
            raise SamplingError(
                f"NUTS failed from the chain starts ({first}) and again from re-drawn starts "
                f"with a finite log density ({second}). Check the priors and typical= values."
            ) from second


def report_interruption(
    fit: Any, interruption: dict[str, Any], path: str | os.PathLike[str] | None
) -> None:
    """Warn that ``fit`` holds the draws so far; save it to ``path`` first when given.

    Examples
    --------
    After Ctrl-C, ``fit.info["interruption"]`` says what was kept; with ``path=None`` the
    fit is not saved (and not used):

    >>> import warnings
    >>> info = {"reason": "KeyboardInterrupt", "kept": 120, "chains_kept": [0, 1],
    ...         "draws_per_chain": [120, 135], "requested": 1000}
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     report_interruption(None, info, None)
    >>> print(caught[0].message)  # doctest: +ELLIPSIS
    Sampling was interrupted (KeyboardInterrupt): the fit holds the 120 draws per chain
    that all 2 kept chain(s) completed (draws per chain: 120, 135; 1000 requested);
    fit.interrupted is True. Do not report it as converged: ...
    """
    where = ""
    if path is not None:
        fit.save(path)
        where = f" They were saved to {os.fspath(path)!r}."
    done = ", ".join(str(n) for n in interruption["draws_per_chain"])
    warnings.warn(
        f"Sampling was interrupted ({interruption['reason']}): the fit holds the "
        f"{interruption['kept']} draws per chain that all {len(interruption['chains_kept'])} "
        f"kept chain(s) completed (draws per chain: {done}; {interruption['requested']} "
        f"requested); fit.interrupted is True.{where} Do not report it as converged: check "
        "the convergence report, or run the fit again to the end.",
        InterruptedWarning,
        stacklevel=3,
    )


def check_fit_arguments(data: Any, *, cores: Any, max_treedepth: Any, mass_matrix: Any) -> None:
    """Sampler options and the data argument, checked before anything is built.

    Raises
    ------
    SpecificationError
        ``data`` is not a ``NonmemDataset`` (e.g. a DataFrame or a path), ``cores`` or
        ``max_treedepth`` is not a positive int, or ``mass_matrix`` is unknown.

    Examples
    --------
    >>> check_fit_arguments([1, 2], cores=None, max_treedepth=10, mass_matrix="diag")
    Traceback (most recent call last):
    ...
    nlme_bayes.errors.SpecificationError: fit: data must be a NonmemDataset, got list; ...
    """
    from .data import NonmemDataset

    if not isinstance(data, NonmemDataset):
        raise SpecificationError(
            f"fit: data must be a NonmemDataset, got {type(data).__name__}; read it with "
            "nlme_bayes.read_nonmem(path_or_dataframe) first (which validates it)."
        )
    if cores is not None and (not isinstance(cores, (int, np.integer)) or cores < 1):
        raise SpecificationError(f"fit: cores must be a positive int or None, got {cores!r}.")
    if not isinstance(max_treedepth, (int, np.integer)) or max_treedepth < 1:
        raise SpecificationError(
            f"fit: max_treedepth must be a positive int, got {max_treedepth!r}."
        )
    if mass_matrix not in ("diag", "low_rank", "dense"):
        raise SpecificationError(
            f"mass_matrix={mass_matrix!r} is not valid; choose one of 'dense', 'diag', 'low_rank'."
        )
