"""Sampling: build the PyMC model, run NUTS, and assemble the ArviZ results.

Samplers: ``"pymc"`` (PyMC's own NUTS, C backend), ``"nutpie"`` (Rust NUTS on a Numba-compiled
log density), ``"numpyro"`` (JAX; needs ``jax``). ``"auto"`` picks the fastest measured here
(see ``benchmarks/bench_samplers.py`` and the README); the choice is recorded in the results.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pymc as pm
import pytensor
import xarray as xr

from . import deterministics, provenance
from .builder import build
from .compile_mode import lean_compilation, skip_step_assignment
from .errors import SamplingError, SpecificationError
from .sampling_safety import (
    check_fit_arguments,
    keep_complete_draws,
    nonfinite_transitions,
    nutpie_initvals,
    nutpie_jitter,
    report_interruption,
    sample_with_fresh_starts,
    watch_interrupt,
)
from .starts import DEFAULT_START_JITTER, start_functions

if TYPE_CHECKING:
    from .compiled import CompileCache
    from .data import NonmemDataset
    from .model import Model
    from .results import Fit

__all__ = ["fit", "choose_sampler", "SAMPLERS"]

SAMPLERS = ("auto", "nutpie", "numpyro", "pymc")
OFFSETS_GROUP = "posterior_internal"

#: PyTensor settings of every compile done while sampling. Numba without fast-math (IEEE
#: arithmetic): PyTensor's default lets LLVM reassociate sums, and then a log density
#: compiled in this process and the same one loaded from PyTensor's on-disk cache differed
#: in the last bit (1 ulp at 7 of 20 random points of the Theophylline model), so a seeded
#: fit gave other draws on the first run on a machine than on every later one. Measured
#: cost: 4-6 % per log-density+gradient (Theophylline 15.1 -> 15.7 us; 1000 subjects
#: 667 -> 693 us).
REPRODUCIBLE_COMPILE = {"numba__fastmath": False}


def pymc_nuts(
    pm_model: pm.Model,
    starts: list[dict[str, np.ndarray]],
    *,
    dense: bool,
    seed: int,
    target_accept: float,
    max_treedepth: int,
) -> Any:
    """PyMC's NUTS step with the mass-matrix adaptation of ``init="adapt_diag"`` (or
    ``"adapt_full"``), started at the mean of the chains' ``starts``, as ``pm.sample`` would
    build it.

    Built here because ``pm.sample``, given no step, first checks that each free variable has
    a gradient by taking the symbolic gradient of the log density with respect to every one
    of them, then throws those graphs away: for an ODE model each is a gradient through the
    solver's scan -- 105 s of the 366 s warfarin's RODAS4 turnover model took to compile
    (6 subjects, profiled 2026-12-07). With the step given, only the sampler's own log density
    and gradient are compiled.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.builder import build
    >>> from nlme_bayes.examples import theophylline_model
    >>> built = build(theophylline_model(), nb.datasets.theophylline())
    >>> step = pymc_nuts(built.pm_model, [{}], dense=False, seed=1, target_accept=0.8,
    ...                  max_treedepth=10)
    >>> type(step).__name__, step.max_treedepth, type(step.potential).__name__
    ('NUTS', 10, 'QuadPotentialDiagAdapt')
    """
    from pymc.blocking import DictToArrayBijection
    from pymc.initial_point import make_initial_point_fn
    from pymc.step_methods.hmc import quadpotential

    points = [
        DictToArrayBijection.map(
            make_initial_point_fn(model=pm_model, overrides=s, return_transformed=True)(0)
        ).data
        for s in starts
    ]
    mean = np.mean(points, axis=0)
    n = len(mean)
    rng = np.random.default_rng(seed)
    if dense:
        potential = quadpotential.QuadPotentialFullAdapt(n, mean, np.eye(n), 10, rng=rng)
    else:
        potential = quadpotential.QuadPotentialDiagAdapt(n, mean, np.ones(n), 10, rng=rng)
    return pm.NUTS(
        vars=pm_model.value_vars,
        model=pm_model,
        potential=potential,
        target_accept=target_accept,
        max_treedepth=max_treedepth,
        rng=rng,
    )


def _slow_for_numba(structure: Any) -> bool:
    """An ODE model with a Rosenbrock scheme and three or more states (see choose_sampler)."""
    from .structural.rosenbrock import METHODS, Tableau

    scheme = METHODS.get(getattr(structure, "method", None))
    return isinstance(scheme, Tableau) and len(getattr(structure, "states", ())) >= 3


def choose_sampler(
    sampler: str, structure: Any = None, mass_matrix: str = "diag", reuse: Any = None
) -> str:
    """Resolve ``"auto"`` and check that the requested backend is installed.

    ``"auto"`` is nutpie, except for ODE models integrated by a Rosenbrock scheme with three or
    more states: Numba compiles their second-order gradient graph far more slowly than the C
    backend (warfarin's 3-state turnover model, RODAS4 on a 2-h grid: C ~2 min, Numba not done
    after 9 min), so ``"auto"`` gives PyMC's NUTS there -- unless ``mass_matrix="low_rank"``
    or ``reuse=`` (a compile cache) is asked for, which only nutpie has.

    Examples
    --------
    >>> choose_sampler("auto")
    'nutpie'
    >>> choose_sampler("pymc")
    'pymc'
    >>> from nlme_bayes.structural import ode_templates
    >>> choose_sampler("auto", ode_templates.load("turnover_oral"))
    'pymc'
    >>> choose_sampler("auto", ode_templates.load("turnover_oral", method="dopri5"))
    'nutpie'
    """
    if sampler not in SAMPLERS:
        raise SpecificationError(
            f"sampler={sampler!r} is not valid; choose one of {', '.join(sorted(SAMPLERS))}."
        )
    if sampler == "auto":
        # Measured on Theophylline (benchmarks/bench_samplers.py, figures in the README): nutpie
        # reaches the converged posterior first -- ~4x the ESS per second of sampling of PyMC's
        # NUTS, which outweighs its longer Numba compilation. Without nutpie: PyMC's NUTS.
        has_nutpie = importlib.util.find_spec("nutpie") is not None
        nutpie_only = mass_matrix == "low_rank" or reuse is not None
        if has_nutpie and not nutpie_only and _slow_for_numba(structure):
            return "pymc"
        return "nutpie" if has_nutpie else "pymc"
    if sampler == "nutpie" and importlib.util.find_spec("nutpie") is None:
        raise SpecificationError("sampler='nutpie' needs the nutpie package: pip install nutpie")
    if sampler == "numpyro" and (
        importlib.util.find_spec("numpyro") is None or importlib.util.find_spec("jax") is None
    ):
        raise SpecificationError("sampler='numpyro' needs numpyro and jax: pip install numpyro jax")
    return sampler


def _seed(random_seed: int | None) -> int:
    if random_seed is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if not isinstance(random_seed, (int, np.integer)) or random_seed < 0:
        raise SpecificationError(f"random_seed must be a non-negative int, got {random_seed!r}.")
    return int(random_seed)


def _attach_obs_coords(tree: xr.DataTree, observations: Any) -> xr.DataTree:
    """Give every ``obs`` dimension the ID / TIME / DVID of its record."""
    coords = {
        "ID": ("obs", observations["ID"].to_numpy()),
        "TIME": ("obs", observations["TIME"].to_numpy(dtype=float)),
        "DVID": ("obs", observations["DVID"].to_numpy().astype(int)),
    }
    for node in tree.subtree:
        ds = node.dataset
        if "obs" in ds.dims:
            node.dataset = ds.assign_coords(coords)
    return tree


def fit(
    model: Model,
    data: NonmemDataset,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int | None = None,
    random_seed: int | None = None,
    sampler: Literal["auto", "pymc", "nutpie", "numpyro"] = "auto",
    target_accept: float = 0.9,
    max_treedepth: int = 10,
    mass_matrix: Literal["diag", "low_rank", "dense"] = "diag",
    progressbar: bool = True,
    prior_predictive: bool = False,
    posterior_predictive: bool = False,
    store_predictions: bool = True,
    check: bool = True,
    reuse: CompileCache | None = None,
    save_on_interrupt: str | os.PathLike[str] | None = None,
    start_jitter: float = DEFAULT_START_JITTER,
) -> Fit:
    """Sample the posterior of ``model`` on ``data`` with NUTS.

    Parameters
    ----------
    model : Model
    data : NonmemDataset
        From :func:`nlme_bayes.read_nonmem` or :mod:`nlme_bayes.datasets`.
    draws, tune, chains : int
        Kept draws per chain, warm-up iterations per chain, number of chains.
    cores : int, optional
        Chains run in parallel on this many cores (default: all, at most ``chains``).
    random_seed : int, optional
        Same seed, same data and same model give identical draws. ``None`` draws a seed,
        which is recorded in the results so the run can be repeated.
    sampler : {"auto", "pymc", "nutpie", "numpyro"}
        NUTS backend; ``"auto"`` is the fastest measured on this project's benchmarks: nutpie,
        or PyMC's NUTS for ODE models with a Rosenbrock scheme and three or more states
        (see :func:`choose_sampler`).
    target_accept : float
        NUTS target acceptance rate (raise towards 0.99 if there are divergences).
    max_treedepth : int
        Maximum NUTS tree depth.
    mass_matrix : {"diag", "low_rank", "dense"}
        Mass-matrix adaptation. ``"low_rank"`` (nutpie) or ``"dense"`` (PyMC) adapt to
        correlated population parameters (e.g. V, Q, V2 and ka of a two-compartment oral
        model) at a higher cost per gradient; ``"diag"`` is the default.
    progressbar : bool
        Show progress bars while sampling.
    prior_predictive, posterior_predictive : bool
        Also draw from the prior (and prior predictive) / the posterior predictive.
    store_predictions : bool
        Keep ``IPRED`` and ``PRED`` per draw in the posterior.
    check : bool
        Warn (:class:`~nlme_bayes.errors.ConvergenceWarning`) when diagnostics fail.
    reuse : CompileCache, optional
        With the nutpie backend, keep the compiled log density in this
        :class:`~nlme_bayes.compiled.CompileCache` and reuse it for later fits of the same
        model on data that differ only in ``DV`` (see :mod:`nlme_bayes.compiled`). Ignored
        by the other backends.
    save_on_interrupt : str or os.PathLike, optional
        Where to save the draws so far (atomically, as :meth:`Fit.save`) if sampling is
        interrupted (Ctrl-C).
    start_jitter : float
        Each chain starts from the typical values (``typical=``), omegas and sigmas
        jittered by ``U(-start_jitter, start_jitter)`` on the unconstrained (log) scale;
        the subjects' random effects start at 0. The default, 1, is PyMC's and nutpie's
        own jitter (a factor of up to 2.7 either way). Use 0.5 (a factor of 1.65) when a
        wide start can land a chain in another mode -- e.g. the flip-flop mode of an oral
        model, where ``ka`` and the elimination rate swap -- and the typical values given
        are trustworthy. Over-dispersed starts are what makes R-hat meaningful: do not
        go to 0.

    Returns
    -------
    Fit
        Holds the ArviZ ``DataTree`` (``fit.results``) and the inputs.

    Notes
    -----
    *Interruption.* Ctrl-C (SIGINT) during sampling does not lose the draws.  With
    ``"nutpie"`` and ``"pymc"`` the fit returns with the draws that every kept chain
    completed (longer chains cut to the shortest, chains without a draw dropped: no padding,
    no NaN); ``fit.interrupted`` is True, ``fit.info["interruption"]`` says how far each
    chain got, an :class:`~nlme_bayes.errors.InterruptedWarning` is issued, and the
    convergence report lists the interruption as a problem.  Ctrl-C during compilation or
    warm-up (no posterior draw yet), or with ``"numpyro"``, raises ``KeyboardInterrupt``.

    *Numerical failures.* A proposal whose log density is not finite (``exp(eta)``
    overflowing, a predicted concentration of 0 under proportional error, a failed ODE
    step) is rejected by the sampler: the transition ends as a divergence and no such point
    becomes a draw.  Their number is ``fit.info["nonfinite_transitions"]``, also in the
    convergence report.  If sampling fails from chain starts with a non-finite log density,
    they are drawn again (:func:`~nlme_bayes.sampling_safety.finite_starts`) and sampling
    is retried once; nutpie re-draws its own starts.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.examples import theophylline_model
    >>> fit = theophylline_model().fit(nb.datasets.theophylline(), draws=300, tune=300,
    ...                                chains=2, random_seed=1, progressbar=False)  # doctest: +SKIP
    >>> fit.summary()  # doctest: +SKIP
                       kind        mean  ...
    parameter ...
    CL_pop        typical value    0.0...
    ...
    sigma_add    residual error    0...
    """
    from . import __version__
    from .results import Fit

    for name, value in (("draws", draws), ("chains", chains)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise SpecificationError(f"{name} must be a positive int, got {value!r}.")
    if not isinstance(tune, (int, np.integer)) or tune < 0:
        raise SpecificationError(f"tune must be a non-negative int, got {tune!r}.")
    if not 0 < target_accept < 1:
        raise SpecificationError(f"target_accept must be in (0, 1), got {target_accept!r}.")
    if not (isinstance(start_jitter, (int, float)) and 0 < start_jitter <= 2):
        raise SpecificationError(f"start_jitter must be in (0, 2], got {start_jitter!r}.")
    check_fit_arguments(data, cores=cores, max_treedepth=max_treedepth, mass_matrix=mass_matrix)
    backend = choose_sampler(sampler, model.structure, mass_matrix, reuse)
    seed = _seed(random_seed)

    t0 = time.perf_counter()
    built = build(model, data, store_predictions=store_predictions)
    model, data = built.model, built.data  # covariate references resolved / imputed, if asked
    t_build = time.perf_counter() - t0
    pm_model = built.pm_model

    start = start_functions(
        pm_model, built.initvals, built.jitter_vars, width=float(start_jitter)
    ).natural
    seeds = np.random.SeedSequence(seed).generate_state(int(chains))
    chain_starts = [start(int(s)) for s in seeds]
    kwargs: dict[str, Any] = dict(
        draws=int(draws),
        tune=int(tune),
        chains=int(chains),
        cores=cores if cores is not None else min(int(chains), os.cpu_count() or 1),
        random_seed=seed,
        progressbar=progressbar,
        model=pm_model,
        nuts_sampler=backend,
        initvals=built.initvals or None,
        compute_convergence_checks=False,
    )
    if mass_matrix not in ("diag", "low_rank", "dense"):
        raise SpecificationError(
            f"mass_matrix={mass_matrix!r} is not valid; choose one of 'dense', 'diag', 'low_rank'."
        )
    if backend == "pymc":
        if mass_matrix == "low_rank":
            raise SpecificationError(
                "mass_matrix='low_rank' needs sampler='nutpie'; PyMC's NUTS offers 'dense'."
            )
        # our own per-chain starts (population level jittered); PyMC adds no jitter on top
        kwargs["initvals"] = chain_starts
        nuts_step = {
            "dense": mass_matrix == "dense",
            "seed": seed,
            "target_accept": target_accept,
            "max_treedepth": max_treedepth,
        }
    elif backend == "nutpie":
        if mass_matrix == "dense":
            raise SpecificationError(
                "mass_matrix='dense' needs sampler='pymc'; nutpie offers 'low_rank'."
            )
        kwargs["nuts"] = {
            "target_accept": target_accept,
            "maxdepth": max_treedepth,
            "adaptation": "low_rank" if mass_matrix == "low_rank" else "diag",
        }
        # Jitter the population level only, as for the other backends: nutpie's default
        # jitters every free variable by U(-1, 1) on the unconstrained scale -- every
        # subject's z offset too -- and on a sparse ODE study that left chains stuck for the
        # whole warm-up (sigma ~1, R-hat 3). The packed Omega Cholesky factor is jittered
        # as well: nutpie initialises its mass matrix from the gradient, which is exactly 0
        # for zero off-diagonal entries, and then refuses every start.
        kwargs["compile_kwargs"] = {"jitter_rvs": {pm_model[n] for n in nutpie_jitter(built)}}
        kwargs["initvals"] = nutpie_initvals(built)  # z at +-0.01: no zero gradient entry
    else:
        kwargs["nuts"] = {
            "target_accept": target_accept,
            "max_tree_depth": max_treedepth,
            "jitter": False,
        }
        kwargs["initvals"] = chain_starts
    # Deterministics (eta, Omega, individual parameters, IPRED, PRED) of a loop-free graph are
    # computed after sampling, vectorised over draws: their compiled copy inside the sampler
    # costs more compile time than they cost to evaluate (nlme_bayes.deterministics)
    if backend in ("nutpie", "pymc") and deterministics.vectorizable(pm_model):
        kwargs["var_names"] = [rv.name for rv in pm_model.free_RVs]
    t1 = time.perf_counter()
    with (
        warnings.catch_warnings(),
        watch_interrupt() as interrupt,
        pytensor.config.change_flags(**REPRODUCIBLE_COMPILE),
        lean_compilation(),
        skip_step_assignment(pm_model),
    ):
        warnings.filterwarnings("ignore", message=".*compute_log_likelihood.*")
        try:
            if backend == "nutpie" and (reuse is not None or start_jitter != 1):
                # our own nutpie compile: it takes our start function (pm.sample's
                # nutpie path only takes PyMC's U(-1, 1) jitter)
                from .compiled import CompileCache

                cache = reuse if reuse is not None else CompileCache(max_entries=1)
                kwargs["start_jitter"] = float(start_jitter)
                tree, cache_status = cache.sample(built, model, data, kwargs)
                cache_status = cache_status if reuse is not None else "off"
            else:
                if backend == "pymc":
                    kwargs["step"] = pymc_nuts(pm_model, chain_starts, **nuts_step)
                # a start with a non-finite density: re-drawn (finite_starts), tried again
                tree = sample_with_fresh_starts(pm.sample, kwargs, built, start, seeds)
                cache_status = "off"
        except (pm.exceptions.SamplingError, ValueError, RuntimeError) as exc:
            if interrupt.fired:  # e.g. PyMC's "Not enough samples" when stopped in warm-up
                raise KeyboardInterrupt(
                    "sampling was interrupted before any chain finished its warm-up: there "
                    "are no posterior draws to keep"
                ) from exc
            # checked only now: compiling the per-variable log densities costs seconds (an
            # ODE model's ~9 s) that a fit whose starts are fine need not wait for
            _check_initial_point(built)
            raise SamplingError(
                f"NUTS ({backend}) failed: {exc}. Check the initial values (typical=) and priors."
            ) from exc
    free = [rv.name for rv in pm_model.free_RVs]
    tree, interruption = keep_complete_draws(tree, int(draws), free, interrupted=interrupt.fired)
    t_sample_total = time.perf_counter() - t1
    sampling_time = float(tree["posterior"].attrs.get("sampling_time", t_sample_total))

    t2 = time.perf_counter()
    if "var_names" in kwargs and not set(d.name for d in pm_model.deterministics) <= set(
        tree["posterior"].data_vars
    ):
        post = tree["posterior"].dataset
        tree["posterior"] = xr.DataTree(
            xr.merge([post, deterministics.compute(pm_model, post)], combine_attrs="override")
        )
    tree = pm.compute_log_likelihood(
        tree, model=pm_model, extend_inferencedata=True, progressbar=False
    )
    # Non-centred offsets and packed Cholesky factors are sampler internals: keep them (the
    # posterior predictive needs them) in their own group, out of the users' posterior.
    post = tree["posterior"].dataset
    offsets = [v for v in built.offset_vars if v in post]
    if offsets:
        tree[OFFSETS_GROUP] = xr.DataTree(post[offsets])
        tree["posterior"] = xr.DataTree(post.drop_vars(offsets))
    if prior_predictive:
        prior = pm.sample_prior_predictive(draws=int(draws), model=pm_model, random_seed=seed)
        for group in ("prior", "prior_predictive"):
            if group in prior.children:
                tree[group] = xr.DataTree(prior[group].dataset)
    t_post = time.perf_counter() - t2

    tree = _attach_obs_coords(tree, built.observations)
    timings = {
        "build_s": t_build,
        "compile_s": max(t_sample_total - sampling_time, 0.0),
        "sampling_s": sampling_time,
        "postprocess_s": t_post,
        "total_s": time.perf_counter() - t0,
    }
    tree.attrs.update(
        {
            "nlme_bayes_version": __version__,
            "nlme_bayes_model": json.dumps(model.to_dict()),
            "sampler": backend,
            "random_seed": seed,
            "draws": int(tree["posterior"].sizes["draw"]),  # kept (fewer if interrupted)
            "draws_requested": int(draws),
            "interruption": json.dumps(interruption) if interruption else "",
            "nonfinite_transitions": nonfinite_transitions(tree["sample_stats"].dataset),
            "tune": int(tune),
            "chains": int(tree["posterior"].sizes["chain"]),  # kept (fewer if interrupted)
            "target_accept": float(target_accept),
            "mass_matrix": mass_matrix,
            "max_treedepth": int(max_treedepth),
            "cores": int(kwargs["cores"]),
            "compile_cache": cache_status,
            "start_jitter": float(start_jitter),
            "centering": built.centering.to_json() if built.centering is not None else "",
            "timings": json.dumps(timings),
            "versions": json.dumps(provenance.versions()),
            "data_sha256": provenance.data_hash(data),
            "host": provenance.host(),
            "platform": provenance.platform_name(),
        }
    )
    result = Fit(model=model, data=data, results=tree, built=built)
    if interruption:
        report_interruption(result, interruption, save_on_interrupt)
    if posterior_predictive:
        result.sample_posterior_predictive(random_seed=seed)
    if check:
        result.check_convergence(warn=True)
    return result


def _check_initial_point(built: Any) -> None:
    """A clear error, naming the culprits, when the start point has no finite density.

    Run when sampling fails (a start the sampler cannot leave), not before every fit.
    """
    from pymc.initial_point import make_initial_point_fn

    m = built.pm_model
    point = make_initial_point_fn(model=m, overrides=built.initvals, return_transformed=True)(0)
    logps = m.point_logps(point)
    bad = {k: v for k, v in logps.items() if not np.isfinite(v)}
    if bad:
        raise SamplingError(
            "The starting point has zero density for: "
            + ", ".join(f"{k} (logp={v})" for k, v in bad.items())
            + ". Check typical= values, priors, and that predictions are positive where the "
            "error model needs it."
        )
