"""The model's Deterministics (eta, Omega, individual parameters, IPRED, PRED) from the draws.

nutpie computes a model's Deterministics while it samples, through a second compiled
function (its "expand" function) that it compiles next to the log density. On a
closed-form model that compile is a third or more of the whole compile -- Theophylline,
warm caches: 8.9 s with the Deterministics, 5.3 s without -- and compiling is most of a
short fit's wait. For graphs without loops, :func:`compute` does the same after sampling:
the Deterministics as one graph vectorised over draws (``vectorize_graph``), compiled with
PyTensor's Python linker (no Numba or C compile: 0.4 s) and evaluated on blocks of draws
(14 ms for 400 draws of Theophylline; the same values to 1e-14). Graphs with a ``Scan``
(ODE solutions) would then loop in Python per draw, so :func:`vectorizable` says no for
them and the sampler keeps computing their Deterministics.

Examples
--------
>>> import numpy as np, pymc as pm, xarray as xr
>>> from nlme_bayes import deterministics
>>> with pm.Model(coords={"subject": [1, 2]}) as m:
...     log_cl = pm.Normal("log_CL", 0.0, 1.0, dims="subject")
...     _ = pm.Deterministic("CL", pm.math.exp(log_cl), dims="subject")
>>> deterministics.vectorizable(m)
True
>>> post = xr.Dataset({"log_CL": (("chain", "draw", "subject"), np.zeros((1, 3, 2)))},
...                   coords={"subject": [1, 2]})
>>> deterministics.compute(m, post)["CL"].values.tolist()
[[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["vectorizable", "compute"]

#: Draws per evaluation are chosen so that one block of the outputs holds about this many
#: numbers (intermediate arrays are of the same order): memory stays bounded on large studies.
BLOCK_ELEMENTS = 2_000_000


def _has_loop(outputs: list[Any]) -> bool:
    """Whether any of ``outputs`` depends on a ``Scan`` (e.g. an ODE solution)."""
    from pytensor.graph.traversal import apply_ancestors
    from pytensor.scan.op import Scan

    return any(isinstance(node.op, Scan) for node in apply_ancestors(outputs))


def vectorizable(pm_model: Any) -> bool:
    """Whether :func:`compute` can evaluate ``pm_model``'s Deterministics after sampling.

    True when the model has Deterministics and none of them depends on a ``Scan`` (an ODE
    solution): those are left to the sampler.

    Examples
    --------
    >>> from nlme_bayes import deterministics
    >>> from nlme_bayes.builder import build
    >>> from nlme_bayes.examples import theophylline_model
    >>> import nlme_bayes as nb
    >>> built = build(theophylline_model(), nb.datasets.theophylline())
    >>> deterministics.vectorizable(built.pm_model)
    True
    """
    dets = list(pm_model.deterministics)
    return bool(dets) and not _has_loop(dets)


def compute(pm_model: Any, posterior: xr.Dataset) -> xr.Dataset:
    """``pm_model``'s Deterministics at every draw of ``posterior``.

    Parameters
    ----------
    pm_model : pymc.Model
        The model; its Deterministics must be :func:`vectorizable`.
    posterior : xarray.Dataset
        The draws of every free variable of ``pm_model`` (dims ``chain``, ``draw``, then the
        variable's own).

    Returns
    -------
    xarray.Dataset
        One variable per Deterministic, dims ``chain``, ``draw`` and the model's dims for it,
        coordinates from the model.

    Raises
    ------
    ValueError
        A free variable is missing from ``posterior``, or a Deterministic depends on a loop.

    Examples
    --------
    >>> import numpy as np, pymc as pm, xarray as xr
    >>> from nlme_bayes.deterministics import compute
    >>> with pm.Model() as m:
    ...     x = pm.Normal("x")
    ...     _ = pm.Deterministic("two_x", 2 * x)
    >>> post = xr.Dataset({"x": (("chain", "draw"), np.array([[0.5, 1.5]]))})
    >>> compute(m, post)["two_x"].values.tolist()
    [[1.0, 3.0]]
    """
    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph.replace import vectorize_graph

    dets = list(pm_model.deterministics)
    if _has_loop(dets):
        raise ValueError("a Deterministic depends on a Scan (an ODE): leave it to the sampler")
    free = list(pm_model.free_RVs)
    missing = [rv.name for rv in free if rv.name not in posterior]
    if missing:
        raise ValueError(f"posterior has no draws of the free variable(s) {', '.join(missing)}")
    batched = {
        rv: pt.tensor(f"{rv.name}_draws", shape=(None, *rv.type.shape), dtype=rv.type.dtype)
        for rv in free
    }
    outputs = vectorize_graph(dets, replace=batched)
    # Python linker: no Numba/C compile for a function evaluated a few times on many draws
    fn = pytensor.function(
        list(batched.values()), outputs, mode="FAST_COMPILE", on_unused_input="ignore"
    )
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    flat = [
        np.asarray(posterior[rv.name].values, dtype=rv.type.dtype).reshape(
            (n_chain * n_draw, *posterior[rv.name].shape[2:])
        )
        for rv in free
    ]
    n = n_chain * n_draw
    per_draw = sum(int(np.prod(_shape(pm_model, d), dtype=np.int64)) for d in dets)
    block = max(1, min(n, BLOCK_ELEMENTS // max(per_draw, 1)))
    parts: list[list[np.ndarray]] = [[] for _ in dets]
    for lo in range(0, n, block):
        size = min(block, n - lo)
        values = fn(*[a[lo : lo + block] for a in flat])
        for i, (det, value) in enumerate(zip(dets, values, strict=True)):
            value = np.asarray(value)
            if value.ndim == det.ndim:  # depends on no free variable: the same at every draw
                value = np.broadcast_to(value, (size, *value.shape))
            parts[i].append(value)
    out = {}
    for det, chunks in zip(dets, parts, strict=True):
        values = np.concatenate(chunks, axis=0) if chunks else np.empty((0,))
        values = values.reshape((n_chain, n_draw, *values.shape[1:]))
        dims = list(pm_model.named_vars_to_dims.get(det.name, ()) or ())
        dims += [f"{det.name}_dim_{k}" for k in range(len(dims), values.ndim - 2)]
        out[det.name] = (("chain", "draw", *dims), values)
    coords = {d: posterior.coords[d].values for d in ("chain", "draw") if d in posterior.coords}
    used = {d for _, (dims, _) in out.items() for d in dims}
    for name, values in (pm_model.coords or {}).items():
        if name in used and values is not None:
            coords[name] = np.asarray(values)
    return xr.Dataset(out, coords=coords)


def _shape(pm_model: Any, var: Any) -> tuple[int, ...]:
    """A Deterministic's shape, from its static type or the model's dims."""
    static = tuple(var.type.shape)
    if all(s is not None for s in static):
        return tuple(int(s) for s in static)
    dims = pm_model.named_vars_to_dims.get(var.name, ()) or ()
    return tuple(len(pm_model.coords[d]) for d in dims) or (1,)
