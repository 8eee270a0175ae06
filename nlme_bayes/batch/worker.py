"""What a Dask worker does with one task: fit, write the results file atomically, summarise.

:func:`run_task` never raises for a failed fit: it returns a ``"failed"`` record with the
error's type, message and traceback, which the client writes to the manifest. A worker
process keeps one :class:`~nlme_bayes.compiled.CompileCache`, so the fits of one model
structure that land on it compile once (when the plan says ``reuse_compiled = true``).
"""

from __future__ import annotations

import datetime as dt
import os
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["run_task", "summarise_fit", "worker_cache"]

_CACHE: Any = None  # this process's CompileCache (one per worker process)


def worker_cache() -> Any:
    """The compile cache of this process (created on first use).

    Examples
    --------
    >>> worker_cache() is worker_cache()
    True
    """
    global _CACHE
    if _CACHE is None:
        from ..compiled import CompileCache

        _CACHE = CompileCache()
    return _CACHE


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _finite(x: Any) -> Any:
    import math

    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def summarise_fit(fit: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(diagnostics, estimates) of a fit for the manifest and the results table.

    Examples
    --------
    >>> diagnostics, estimates = summarise_fit(fit)  # doctest: +SKIP
    >>> isinstance(diagnostics["ok"], bool), round(estimates["CL_pop"]["mean"], 2)  # doctest: +SKIP
    (True, 0.04)
    """
    report = fit.check_convergence()
    diagnostics = {"ok": bool(report.ok)}
    diagnostics.update({k: _finite(v) for k, v in report.figures.items()})
    diagnostics["problems"] = list(report.problems)
    table = fit.summary()
    estimates = {
        str(name): {
            "mean": _finite(row["mean"]),
            "sd": _finite(row["sd"]),
            "rhat": _finite(row["rhat"]),
            "ess_bulk": _finite(row["ess_bulk"]),
        }
        for name, row in table.iterrows()
    }
    return diagnostics, estimates


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None


def run_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Fit one task and write its results file; return the manifest record.

    Parameters
    ----------
    payload : dict
        ``task`` (id), ``model`` (Model), ``data`` (NonmemDataset), ``seed``,
        ``fit_options``, ``path`` (results file), ``output`` (the output folder; the file
        must lie inside it), ``reuse`` (bool), ``record`` (fields copied into the record:
        plan, model/dataset/settings names, inputs, fingerprint, attempt).

    Examples
    --------
    Called on a Dask worker by :func:`nlme_bayes.batch.runner.run_plan`, which builds the
    payload from a plan's task; ``record["status"]`` is ``"done"`` and the fit is in
    ``payload["path"]``. A task that fails is a result too, never an exception on the worker:

    >>> record = run_task({"task": "m1.theo.default.s1", "model": None, "data": None,
    ...                    "seed": 1, "fit_options": {}, "path": "/elsewhere/fit.nc",
    ...                    "output": "results", "record": {"plan": "demo"}})
    >>> record["status"], record["error"]["type"]
    ('failed', 'PlanError')
    >>> record["error"]["message"]
    'results file /elsewhere/fit.nc is outside the output folder.'
    """
    import socket

    from ..provenance import host as hostname
    from .manifest import file_sha256
    from .plan import PlanError, inside

    record = dict(payload["record"])
    record.update(
        task=payload["task"],
        host=hostname(),
        pid=os.getpid(),
        worker=_worker_address(),
        started=_now(),
    )
    t0 = time.perf_counter()
    path = Path(payload["path"])
    try:
        if not inside(path, payload["output"]):
            raise PlanError(f"results file {path} is outside the output folder.")
        fit = payload["model"].fit(
            payload["data"],
            random_seed=int(payload["seed"]),
            progressbar=False,
            check=False,
            reuse=worker_cache() if payload.get("reuse") else None,
            **payload["fit_options"],
        )
        fit.results.attrs.update(
            {
                "batch_plan": record.get("plan", ""),
                "batch_task": payload["task"],
                "batch_fingerprint": record.get("fingerprint", ""),
            }
        )
        diagnostics, estimates = summarise_fit(fit)
        path.parent.mkdir(parents=True, exist_ok=True)
        fit.save(path)  # temp file + rename: never a half-written results file
        attrs = fit.results.attrs
        import json

        record.update(
            status="done",
            file=path.name,
            file_sha256=file_sha256(path),
            diagnostics=diagnostics,
            estimates=estimates,
            timings=json.loads(attrs.get("timings", "{}")),
            versions=json.loads(attrs.get("versions", "{}")),
            compile_cache=attrs.get("compile_cache"),
            sampler=attrs.get("sampler"),
            data_sha256=attrs.get("data_sha256"),
        )
    except Exception as exc:  # a failed fit is a result: recorded, retried by a later run
        record.update(
            status="failed",
            error={
                "type": type(exc).__name__,
                "message": str(exc).splitlines()[0] if str(exc) else "",
                "detail": str(exc),
                "traceback": traceback.format_exc(),
            },
        )
    record.update(finished=_now(), wall_s=time.perf_counter() - t0)
    record.setdefault("host", socket.gethostname())
    return record
