"""Reuse compiled log densities across fits of one model on new data (nutpie backend).

Compiling the log density and its gradient takes most of the time of a small fit (about
7 of the 9 seconds of a 2 x 200-draw Theophylline fit with nutpie on 2 cores). A
simulation-estimation study, replicate seeds, or one model fitted to many simulated data
sets of one design compile the *same* function again and again. :class:`CompileCache`
compiles it once and swaps in the new data.

How it works
    The built PyMC model embeds the data as constants. The cache builds the model a second
    time on a copy of the data whose ``DV`` is scaled (``DV * 1.2345``) and compares the
    two graphs constant by constant; the constants that differ are those derived from the
    observations (``DV`` itself, and e.g. the data-scaled default prior of an additive
    residual SD). Those, and only those, become shared inputs of the graph, which nutpie
    compiles once. The next fit looks for a cached graph that computes the same thing
    (same operations in the same order, same remaining constants -- design, doses, times,
    covariates, priors -- same variable names and types, same initial values) and, if it
    finds one, samples it with the new values (nutpie's ``with_data``).
Determinism
    A fit with a cache always samples the lifted graph, whether it was just compiled or
    found in the cache, so its draws depend only on the model, the data, the settings and
    the seed -- not on which fits ran before in the same process. They are *not* bitwise
    identical to a fit without a cache (the lifted graph orders its variables differently);
    the results record ``compile_cache`` (``"hit"``, ``"miss"``) so the two paths are told
    apart.
Scope
    Only the nutpie backend. PyMC's own NUTS keeps PyTensor's on-disk cache of compiled C
    code, which already saves most of its (shorter) compile time. A change of design --
    other subjects, times, doses or covariate values -- compiles anew (a cache miss).

Examples
--------
>>> from nlme_bayes.compiled import CompileCache
>>> cache = CompileCache(max_entries=2)
>>> cache.stats()
{'hits': 0, 'misses': 0, 'entries': 0}
>>> fit = model.fit(data, sampler="nutpie", reuse=cache)  # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from .compile_mode import lean_compilation
from .sampling_safety import nutpie_jitter
from .starts import DEFAULT_START_JITTER, start_functions

__all__ = ["CompileCache", "DV_SCALE"]

#: Factor applied to ``DV`` in the probe build that finds the data-derived constants.
DV_SCALE = 1.2345


@dataclass
class _Entry:
    compiled: Any  # nutpie CompiledPyMCModel
    shared: dict[str, Any]  # name -> pytensor shared variable of the compiled template model
    lock: threading.Lock


def _constants(fgraph: Any) -> list[Any]:
    from pytensor.graph import Constant

    out: list[Any] = []
    seen: set[int] = set()
    for node in fgraph.toposort():
        for v in node.inputs:
            if isinstance(v, Constant) and id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


def _dv_scaled(data: Any) -> Any:
    records = data.records.copy()
    records["DV"] = records["DV"] * DV_SCALE
    return type(data).from_records(
        records, covariates=data.covariates, source=data.source, column_map=data.column_map
    )


def _lifted_fgraph(built: Any, model: Any, data: Any, store_predictions: bool) -> Any:
    """The model's FunctionGraph with its DV-derived constants turned into shared inputs."""
    import pytensor
    from pymc.model.fgraph import fgraph_from_model
    from pytensor.graph import FunctionGraph
    from pytensor.graph.replace import clone_replace

    from .builder import build

    probe = build(model, _dv_scaled(data), store_predictions=store_predictions)
    fg, _ = fgraph_from_model(built.pm_model)
    fg_probe, _ = fgraph_from_model(probe.pm_model)
    c_fit, c_probe = _constants(fg), _constants(fg_probe)
    replace = {}
    if len(c_fit) == len(c_probe):
        for a, b in zip(c_fit, c_probe, strict=True):
            if a.type == b.type and not a.equals(b):
                value = np.array(a.data, copy=True)
                replace[a] = pytensor.shared(
                    value, name=f"_data_{len(replace)}", shape=a.type.shape
                )
    outs = clone_replace(fg.outputs, replace=replace, rebuild_strict=False) if replace else None
    lifted = FunctionGraph(outputs=outs, clone=False) if replace else fg
    lifted._coords = fg._coords  # type: ignore[attr-defined]
    lifted._dim_lengths = fg._dim_lengths  # type: ignore[attr-defined]
    return lifted


def _op_key(op: Any) -> Any:
    """A comparable stand-in for ``op``: PyMC's model-variable ops hold their transform,
    which compares by identity, so those are keyed by class, name, dims and the transform's
    class and settings."""
    from pymc.model.fgraph import ModelVar

    if isinstance(op, ModelVar):
        transform = getattr(op, "transform", None)
        settings = (
            tuple(sorted((k, repr(v)) for k, v in vars(transform).items()))
            if transform is not None
            else ()
        )
        return (
            type(op).__name__,
            getattr(op, "name", None),
            getattr(op, "dims", None),
            type(transform).__name__,
            settings,
        )
    return op


def _signature(fgraph: Any) -> tuple:
    """The computation of ``fgraph`` as a tuple: equal tuples, equal computations.

    Nodes in topological order, each as its operation and the positions of its inputs;
    root inputs as name and type; constants as type and value.
    """
    from pytensor.graph import Constant

    index: dict[int, int] = {}
    items: list[Any] = []
    for v in fgraph.inputs:
        index[id(v)] = len(index)
        items.append(("input", v.name, v.type))

    def ref(v: Any) -> Any:
        if isinstance(v, Constant):
            data = np.asarray(v.data)
            return ("const", v.type, data.dtype.str, data.shape, data.tobytes())
        return index[id(v)]

    for node in fgraph.toposort():
        items.append((_op_key(node.op), tuple(ref(v) for v in node.inputs)))
        for out in node.outputs:
            index[id(out)] = len(index)
    items.append(("outputs", tuple((o.name, index[id(o)]) for o in fgraph.outputs)))
    items.append(("coords", tuple(fgraph._coords)))  # type: ignore[attr-defined]
    return tuple(items)


def _initvals_key(initvals: dict[str, Any]) -> tuple:
    return tuple(
        (k, np.asarray(v).dtype.str, np.shape(v), np.asarray(v).tobytes())
        for k, v in sorted(initvals.items())
    )


def _shared_values(fgraph: Any) -> dict[str, Any] | None:
    """Name -> value of the data shared variables of ``fgraph`` (None if names collide)."""
    from pytensor.compile import SharedVariable
    from pytensor.tensor.random.type import RandomType

    out: dict[str, Any] = {}
    for v in fgraph.inputs:
        if isinstance(v, SharedVariable) and not isinstance(v.type, RandomType):
            if v.name is None or v.name in out:
                return None
            out[v.name] = v.get_value(borrow=True)
    return out


class CompileCache:
    """Compiled nutpie models kept for reuse by :func:`nlme_bayes.inference.fit`.

    Parameters
    ----------
    max_entries : int
        Model structures kept (least recently used dropped first); each holds a few
        megabytes of compiled code.

    Notes
    -----
    Pass one cache to every fit that may share a structure, e.g.
    ``model.fit(sim, sampler="nutpie", reuse=cache)`` in a loop over simulated data sets.
    The batch runner (:mod:`nlme_bayes.batch`) keeps one per worker process. A cache is
    safe to share between threads: fits of one entry take turns.

    Examples
    --------
    >>> cache = CompileCache()
    >>> cache.max_entries
    4
    """

    def __init__(self, max_entries: int = 4) -> None:
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be a positive int, got {max_entries!r}.")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def stats(self) -> dict[str, int]:
        """Hits, misses and the number of cached structures.

        Examples
        --------
        >>> CompileCache(max_entries=2).stats()
        {'hits': 0, 'misses': 0, 'entries': 0}
        """
        return {"hits": self.hits, "misses": self.misses, "entries": len(self._entries)}

    def clear(self) -> None:
        """Drop every compiled model.

        Examples
        --------
        >>> cache = CompileCache()
        >>> cache.clear()
        >>> cache.stats()["entries"]
        0
        """
        with self._lock:
            self._entries.clear()

    # ------------------------------------------------------------------ lookup / compile
    def _find(self, key: tuple) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def _compile(
        self, key: tuple | None, fgraph: Any, initvals: dict[str, Any], jitter: tuple[str, ...]
    ) -> _Entry:
        import nutpie
        from pymc.model.fgraph import model_from_fgraph
        from pytensor.compile import SharedVariable
        from pytensor.graph.traversal import ancestors

        template = model_from_fgraph(fgraph, mutate_fgraph=False)
        # the starts of Model.fit with nutpie (sampling_safety.nutpie_jitter)
        with lean_compilation():
            compiled = nutpie.compile_pymc_model(
                template,
                initial_points=initvals or None,
                jitter_rvs={template[n] for n in jitter if n in template.named_vars},
            )
        roots = [*template.basic_RVs, *template.deterministics, *template.potentials]
        roots += [template.rvs_to_values[rv] for rv in template.observed_RVs]
        shared = {
            v.name: v
            for v in ancestors(roots)
            if isinstance(v, SharedVariable) and v.name is not None and hasattr(v, "set_value")
        }
        entry = _Entry(compiled, shared, threading.Lock())
        if key is None:  # a structure that cannot be matched safely: used once
            return entry
        with self._lock:
            self._entries[key] = entry
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return entry

    # ------------------------------------------------------------------ sampling
    def sample(self, built: Any, model: Any, data: Any, options: dict[str, Any]) -> tuple:
        """Sample ``built`` with nutpie, compiling only on a cache miss.

        Parameters
        ----------
        built : BuiltModel
            From :func:`nlme_bayes.builder.build` on ``data``.
        model, data
            The specification and dataset ``built`` came from.
        options : dict
            ``draws``, ``tune``, ``chains``, ``cores``, ``random_seed``, ``progressbar``,
            ``initvals`` and ``nuts`` (nutpie's sampler options), as
            :func:`nlme_bayes.inference.fit` prepares them for ``pm.sample``.

        Returns
        -------
        (xarray.DataTree, str)
            The results as ``pm.sample`` returns them (posterior, sample_stats,
            observed_data, constant_data) and ``"hit"`` or ``"miss"``.

        Examples
        --------
        Used by :func:`nlme_bayes.inference.fit` (``model.fit(data, sampler="nutpie",
        reuse=cache)``): a second fit of the same model structure, on the same or new DV
        values, reuses the compiled density. Directly, with the Theophylline model built
        (``built``, from ``model`` and ``data``):

        >>> cache = CompileCache()
        >>> options = dict(draws=50, tune=50, chains=1, cores=1, random_seed=1)
        >>> tree, status = cache.sample(built, model, data, options)  # doctest: +SKIP
        >>> status, tree.posterior.sizes["draw"]  # doctest: +SKIP
        ('miss', 50)
        >>> again = {**options, "random_seed": 2}
        >>> _, status = cache.sample(built, model, data, again)  # doctest: +SKIP
        >>> status, cache.stats()  # doctest: +SKIP
        ('hit', {'hits': 1, 'misses': 1, 'entries': 1})
        """
        import nutpie
        from pymc.backends.arviz import patch_nutpie_idata
        from pymc.progress_bar import NutpieProgressBarManager

        store_predictions = "IPRED" in built.pm_model.named_vars
        fgraph = _lifted_fgraph(built, model, data, store_predictions)
        initvals = dict(options.get("initvals") or {})
        values = _shared_values(fgraph)
        key = (_signature(fgraph), _initvals_key(initvals)) if values is not None else None
        entry = self._find(key) if key is not None else None
        status = "hit" if entry is not None else "miss"
        if entry is None:
            entry = self._compile(key, fgraph, initvals, nutpie_jitter(built))
            self.misses += 1
        else:
            self.hits += 1
        with entry.lock:
            compiled = entry.compiled
            if values:
                for name, value in values.items():
                    if name in entry.shared:
                        entry.shared[name].set_value(np.array(value, copy=True))
                known = {v.name for v in compiled.shared_var_keys}
                compiled = compiled.with_data(**{k: v for k, v in values.items() if k in known})
            width = float(options.get("start_jitter", DEFAULT_START_JITTER))
            if width != DEFAULT_START_JITTER:
                compiled = with_start_jitter(compiled, built, initvals, width)
            # PyMC's progress display for nutpie, as pm.sample(nuts_sampler="nutpie") shows it
            bars = NutpieProgressBarManager(
                chains=int(options["chains"]),
                draws=int(options["draws"]),
                progressbar=bool(options.get("progressbar", False)),
            )
            t0 = time.time()
            with bars:
                tree = nutpie.sample(
                    compiled,
                    draws=int(options["draws"]),
                    tune=max(int(options["tune"]), 1),  # nuts-rs needs a warm-up step
                    chains=int(options["chains"]),
                    cores=int(options["cores"]),
                    seed=int(options["random_seed"]),
                    save_warmup=False,
                    progress_bar=False,
                    progress_callback=bars.update,
                    **dict(options.get("nuts") or {}),
                )
            sampling_time = time.time() - t0
        patch_nutpie_idata(tree, built.pm_model, sampling_time=sampling_time)
        _relabel(tree, built.pm_model)
        return tree, status


def with_start_jitter(compiled: Any, built: Any, initvals: dict[str, Any], width: float) -> Any:
    """``compiled`` drawing its chain starts with the jitter ``U(-width, width)``.

    Same variables and overrides as nutpie's own start function; only the jitter width
    differs. The start is laid out by *name* in nutpie's own order (``compiled.shape_info``):
    the cached template comes from ``model_from_fgraph``, whose free variables need not be
    in the order of ``built.pm_model`` -- a concatenation in the model's order would hand
    one variable's start to another whenever the sizes happen to agree.
    """
    import dataclasses

    starts = start_functions(built.pm_model, initvals, nutpie_jitter(built), width=width)
    n_dim = int(compiled.n_dim)
    # shape_info lists the free (unconstrained) variables first, laid end to end over the
    # n_dim entries of a point, then the expanded (stored) variables
    names, slices, shapes, filled = [], [], [], 0
    for name, where, shape in zip(*compiled.shape_info, strict=True):
        if filled >= n_dim:
            break
        names.append(name)
        slices.append(where)
        shapes.append(tuple(shape))
        filled = int(where.stop)
    probe = starts.transformed(0)
    if sorted(probe) != sorted(names):
        raise RuntimeError(
            "start_jitter: nutpie's model has the free variables "
            f"{', '.join(names)}; our start point {', '.join(sorted(probe))}"
        )

    def flat(seed: Any) -> np.ndarray:
        point = starts.transformed(seed)
        out = np.empty(n_dim, dtype="float64")
        for name, where, shape in zip(names, slices, shapes, strict=True):
            value = np.asarray(point[name], dtype="float64")
            if value.shape != tuple(shape):
                raise RuntimeError(
                    f"start_jitter: start of {name} has shape {value.shape}, nutpie's "
                    f"model expects {tuple(shape)}"
                )
            out[where] = value.ravel()
        return out

    return dataclasses.replace(compiled, initial_point_func=flat)


def _relabel(tree: Any, pm_model: Any) -> None:
    """Coordinates (subject IDs, ...) of this fit's model, not of the cached template's."""
    coords = {k: np.asarray(v) for k, v in pm_model.coords.items() if v is not None}
    for node in tree.subtree:
        ds = node.dataset
        fix = {
            d: coords[d]
            for d in ds.dims
            if d in coords and len(coords[d]) == ds.sizes[d] and d in ds.coords
        }
        if fix:
            node.dataset = ds.assign_coords(fix)
