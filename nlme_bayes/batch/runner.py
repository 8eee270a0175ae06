"""Run a plan on Dask: skip what is done, retry what failed, lose nothing when a worker dies.

The client (this process) loads every model and dataset once, computes each task's
fingerprint, reads the manifest, and submits what is left to a ``dask.distributed``
cluster: a ``LocalCluster`` by default, any ``dask-jobqueue`` cluster (SLURM, PBS, SGE,
LSF, HTCondor) or a running scheduler's address, as the plan's ``[cluster]`` table says.
Workers fit and write their results file (temp file + rename); the client appends one
manifest line per finished attempt and writes the results table at the end.

When a worker dies mid-fit (killed, out of memory, its node lost), Dask's scheduler gives
its task to another worker, so that fit is redone and nothing else is touched. If the
scheduler gives up on a task (``KilledWorker`` after repeated deaths), the attempt is
recorded as failed and retried while attempts remain. When the client itself dies, the
next run of the same plan skips every recorded fit and adopts results files that were
written but not recorded. Same plan, same seeds: the same draws, on any cluster.

Examples
--------
>>> from nlme_bayes.batch import load_plan, run_plan
>>> summary = run_plan(load_plan("examples/plans/theophylline_local.toml"))  # doctest: +SKIP
>>> print(summary)  # doctest: +SKIP
>>> summary.table  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..provenance import data_hash
from .inputs import load_data, load_model, model_fingerprint
from .manifest import Manifest, file_sha256, results_table
from .plan import Plan, PlanError, Task

__all__ = ["RunSummary", "collect", "make_cluster", "run_plan", "task_fingerprint"]

_JOBQUEUE = {
    "htcondor": "HTCondorCluster",
    "lsf": "LSFCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "slurm": "SLURMCluster",
}
_SCALE_KEYS = ("jobs", "minimum_jobs", "maximum_jobs")


@dataclass
class RunSummary:
    """What a run did. ``ok`` is true when every task of the plan has its results.

    Examples
    --------
    :func:`run_plan` returns one (``summary = run_plan(plan)``); printed, it says what ran:

    >>> from pathlib import Path
    >>> summary = RunSummary("theophylline", Path("results"), ran=["m1.theo.default.s1"],
    ...                      skipped=["m1.theo.default.s2"],
    ...                      failed={"m1.theo.default.s3": "SamplingError: ..."})
    >>> print(summary)
    plan theophylline: 1 fitted, 1 already done, 0 adopted, 1 failed -> results
      FAILED m1.theo.default.s3: SamplingError: ...
    >>> summary.ok  # run the plan again: only the failed task is fitted
    False

    ``summary.table`` has one row per fit: estimates and diagnostics.
    """

    plan: str
    output: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def ok(self) -> bool:
        """Whether no task failed (every task of the plan has its results).

        Examples
        --------
        >>> from pathlib import Path
        >>> RunSummary("demo", Path("out"), ran=["m1.theo.default.s1"]).ok
        True
        >>> RunSummary("demo", Path("out"), failed={"m1.theo.default.s2": "diverged"}).ok
        False
        """
        return not self.failed

    def __str__(self) -> str:
        lines = [
            f"plan {self.plan}: {len(self.ran)} fitted, {len(self.skipped)} already done, "
            f"{len(self.adopted)} adopted, {len(self.failed)} failed -> {self.output}"
        ]
        lines += [f"  FAILED {t}: {msg}" for t, msg in self.failed.items()]
        return "\n".join(lines)


def task_fingerprint(model_sha: str, data_sha: str, task: Task, reuse: bool) -> str:
    """Hash of everything that determines a task's draws.

    Examples
    --------
    >>> from nlme_bayes.batch.plan import Task
    >>> a = task_fingerprint("m", "d", Task("m", "d", "default", 1, {"draws": 10}), True)
    >>> b = task_fingerprint("m", "d", Task("m", "d", "default", 2, {"draws": 10}), True)
    >>> a == b
    False
    """
    payload = {
        "model": model_sha,
        "data": data_sha,
        "fit_options": dict(sorted(task.fit_options.items())),
        "seed": task.seed,
        "reuse_compiled": bool(reuse),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------- cluster
def make_cluster(spec: Mapping[str, Any]) -> Any:
    """A Dask cluster (or, for ``kind = "address"``, the address) from a ``[cluster]`` table.

    ``kind = "local"``: :class:`distributed.LocalCluster` with one single-threaded worker
    process per core by default (each fit runs its chains one after the other unless the
    plan raises ``cores``); every other key is passed on (``n_workers``,
    ``threads_per_worker``, ``memory_limit``, ...). ``slurm``, ``pbs``, ``sge``, ``lsf``,
    ``htcondor``: the ``dask_jobqueue`` cluster of that name with the table's keys
    (``cores``, ``memory``, ``walltime``, ``queue``, ``account``,
    ``job_extra_directives``, ...; anything not given comes from Dask's configuration file
    ``~/.config/dask/jobqueue.yaml``), scaled to ``jobs`` or adapting between
    ``minimum_jobs`` and ``maximum_jobs``.

    Raises
    ------
    PlanError
        A keyword the cluster class does not take, or ``dask-jobqueue`` not installed.

    Examples
    --------
    >>> cluster = make_cluster({"kind": "local", "n_workers": 1, "processes": False})
    >>> len(cluster.workers)
    1
    >>> cluster.close()
    >>> make_cluster({"kind": "address", "address": "tcp://10.0.0.5:8786"})  # a running scheduler
    'tcp://10.0.0.5:8786'
    >>> make_cluster({"kind": "kubernetes"})
    Traceback (most recent call last):
    ...
    nlme_bayes.batch.plan.PlanError: [cluster] kind 'kubernetes' is not valid.

    On a SLURM cluster (needs ``dask-jobqueue``), ten jobs of 4 cores:

    >>> cluster = make_cluster({"kind": "slurm", "cores": 4, "memory": "8GB",
    ...                         "walltime": "02:00:00", "jobs": 10})  # doctest: +SKIP
    """
    kind = spec.get("kind", "local")
    options = {k: v for k, v in spec.items() if k not in ("kind", "address", *_SCALE_KEYS)}
    if kind == "address":
        if not isinstance(spec.get("address"), str):
            raise PlanError("[cluster] kind = 'address' needs address = 'tcp://host:port'.")
        return spec["address"]
    if kind == "local":
        from distributed import LocalCluster

        options.setdefault("n_workers", max(1, os.cpu_count() or 1))
        options.setdefault("threads_per_worker", 1)
        options.setdefault("processes", True)
        options.setdefault("dashboard_address", None)
        try:
            return LocalCluster(**options)
        except TypeError as exc:
            raise PlanError(f"[cluster] kind = 'local': {exc}.") from exc
    if kind not in _JOBQUEUE:
        raise PlanError(f"[cluster] kind {kind!r} is not valid.")
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise PlanError(
            f"[cluster] kind = {kind!r} needs dask-jobqueue: pip install 'nlme_bayes[cluster]'."
        ) from exc
    cls = getattr(dask_jobqueue, _JOBQUEUE[kind])
    try:
        cluster = cls(**options)
    except TypeError as exc:
        raise PlanError(f"[cluster] kind = {kind!r}: {exc}.") from exc
    if "maximum_jobs" in spec:
        cluster.adapt(
            minimum_jobs=int(spec.get("minimum_jobs", 0)), maximum_jobs=int(spec["maximum_jobs"])
        )
    else:
        cluster.scale(jobs=int(spec.get("jobs", 1)))
    return cluster


# ---------------------------------------------------------------------------- preparation
@dataclass
class _Prepared:
    payloads: dict[str, dict[str, Any]]
    skipped: list[str]
    adopted: list[str]
    gave_up: dict[str, str]
    fingerprints: dict[str, str]


def _read_batch_attrs(path: Path) -> dict[str, Any]:
    try:
        import h5py

        with h5py.File(path, "r") as fh:
            return {
                k: (v.decode() if isinstance(v, bytes) else str(v))
                for k, v in fh.attrs.items()
                if k.startswith("batch_")
            }
    except (OSError, ImportError):
        return {}


def _adopt(plan: Plan, task: Task, path: Path, base: dict[str, Any], manifest: Manifest) -> bool:
    """Record a results file that a previous run wrote but did not get to record."""
    from ..io import load
    from .worker import summarise_fit

    try:
        fit = load(path)
    except Exception:
        return False
    diagnostics, estimates = summarise_fit(fit)
    attrs = fit.results.attrs
    manifest.append(
        {
            **base,
            "status": "done",
            "adopted": True,
            "file": path.name,
            "file_sha256": file_sha256(path),
            "diagnostics": diagnostics,
            "estimates": estimates,
            "timings": json.loads(attrs.get("timings", "{}")),
            "versions": json.loads(attrs.get("versions", "{}")),
            "compile_cache": attrs.get("compile_cache"),
            "host": attrs.get("host"),
        }
    )
    return True


def _prepare(plan: Plan, manifest: Manifest, rerun_changed: bool, max_attempts: int) -> _Prepared:
    models, model_sha, datasets, data_sha = {}, {}, {}, {}
    for task in plan.tasks:
        if task.model not in models:
            models[task.model] = load_model(plan.models[task.model], base=plan.root)
            model_sha[task.model] = model_fingerprint(models[task.model])
        if task.dataset not in datasets:
            datasets[task.dataset] = load_data(plan.datasets[task.dataset], base=plan.root)
            data_sha[task.dataset] = data_hash(datasets[task.dataset])
    records = manifest.records()
    prep = _Prepared({}, [], [], {}, {})
    changed = []
    for task in plan.tasks:
        fp = task_fingerprint(
            model_sha[task.model], data_sha[task.dataset], task, plan.reuse_compiled
        )
        prep.fingerprints[task.id] = fp
        hist = manifest.history(task.id, fp, records)
        path = plan.results_path(task)
        base = {
            "plan": plan.name,
            "task": task.id,
            "model": task.model,
            "dataset": task.dataset,
            "settings": task.settings,
            "seed": task.seed,
            "fingerprint": fp,
            "attempt": hist["failures"] + 1,
            "fit_options": dict(task.fit_options),
            "reuse_compiled": plan.reuse_compiled,
            "inputs": {
                "model": plan.models[task.model].describe(),
                "model_sha256": model_sha[task.model],
                "data": plan.datasets[task.dataset].describe(),
                "data_sha256": data_sha[task.dataset],
            },
        }
        done = hist["done"]
        if done is not None and path.exists() and file_sha256(path) == done.get("file_sha256"):
            prep.skipped.append(task.id)
            continue
        if done is None and hist["other_fingerprint"] is not None and not rerun_changed:
            changed.append(task.id)
            continue
        if done is None and path.exists() and not rerun_changed:
            attrs = _read_batch_attrs(path)
            if attrs.get("batch_fingerprint") == fp and _adopt(plan, task, path, base, manifest):
                prep.adopted.append(task.id)
                continue
            if attrs.get("batch_fingerprint") != fp:
                changed.append(task.id)
                continue
        if done is not None and not rerun_changed:  # recorded, but the file is gone/altered
            if path.exists():
                changed.append(task.id)
                continue
        if hist["failures"] >= max_attempts:
            err = hist["last_error"] or {}
            prep.gave_up[task.id] = (
                f"gave up after {hist['failures']} attempts: {err.get('type')}: "
                f"{err.get('message')}"
            )
            continue
        for stale in path.parent.glob(f"{path.name}.tmp-*"):  # left by a worker killed mid-write
            stale.unlink(missing_ok=True)
        prep.payloads[task.id] = {
            "task": task.id,
            "model": models[task.model],
            "data": datasets[task.dataset],
            "seed": task.seed,
            "fit_options": dict(task.fit_options),
            "path": str(path),
            "output": str(plan.output),
            "reuse": plan.reuse_compiled,
            "record": base,
        }
    if changed:
        shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
        raise PlanError(
            f"{len(changed)} fit(s) already have results in {plan.output} from different "
            f"inputs or a file that changed since it was recorded ({shown}); rerun with "
            "--rerun-changed (rerun_changed=True) to refit them, or choose a new output folder."
        )
    return prep


# ---------------------------------------------------------------------------- running
class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.count, self.enabled = total, 0, enabled
        self._bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import Progress

            self._bar = Progress(transient=False)
            self._bar.start()
            self._task = self._bar.add_task("fits", total=total)

    def update(self, record: Mapping[str, Any]) -> None:
        self.count += 1
        if not self.enabled:
            return
        state = record["status"]
        if state == "done":
            ok = (record.get("diagnostics") or {}).get("ok")
            state = "done" + ("" if ok else " (convergence problems)")
        line = f"[{self.count}/{self.total}] {record['task']}: {state} in {record['wall_s']:.1f} s"
        if self._bar is not None:
            self._bar.update(self._task, advance=1)
            self._bar.console.print(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _infra_failure(payload: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    import datetime as dt

    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    return {
        **payload["record"],
        "status": "failed",
        "started": None,
        "finished": now,
        "wall_s": 0.0,
        "error": {
            "type": type(exc).__name__,
            "message": str(exc).splitlines()[0] if str(exc) else "",
            "detail": str(exc),
            "traceback": None,
        },
    }


def _write_table(plan: Plan, manifest: Manifest) -> pd.DataFrame:
    ids = {t.id for t in plan.tasks}
    table = results_table(r for r in manifest.records() if r["task"] in ids)
    if not table.empty:
        order = {t.id: i for i, t in enumerate(plan.tasks)}
        table = table.sort_values("task", key=lambda s: s.map(order)).reset_index(drop=True)
    tmp = plan.table_path.with_name(f".{plan.table_path.name}.tmp-{os.getpid()}")
    table.to_csv(tmp, index=False)
    os.replace(tmp, plan.table_path)
    return table


def run_plan(
    plan: Plan,
    *,
    client: Any = None,
    progress: bool = False,
    rerun_changed: bool = False,
    max_attempts: int | None = None,
    dry_run: bool = False,
) -> RunSummary:
    """Run every fit of ``plan`` that is not done yet.

    Parameters
    ----------
    plan : Plan
        From :func:`~nlme_bayes.batch.load_plan`.
    client : distributed.Client, optional
        Use this client (and its cluster) instead of creating the plan's cluster.
    progress : bool
        Report each finished fit on stderr (a progress bar on a terminal).
    rerun_changed : bool
        Refit tasks whose existing results come from different inputs (changed model,
        data, settings) instead of refusing to overwrite them.
    max_attempts : int, optional
        Overrides ``[plan] max_attempts``.
    dry_run : bool
        Only report what would run.

    Returns
    -------
    RunSummary
        ``ran``, ``skipped`` (already done), ``adopted``, ``failed`` (task -> error) and
        ``table`` (one row per fit, also written to ``<output>/results.csv``).

    Raises
    ------
    PlanError
        Existing results from different inputs (without ``rerun_changed``), a bad cluster.
    DatasetError, SpecificationError, FileNotFoundError
        A model or dataset of the plan cannot be loaded (nothing has run).

    Examples
    --------
    >>> from nlme_bayes import batch
    >>> plan = batch.parse_plan({"plan": {"output": "out"},
    ...     "models": {"m1": {"example": "theophylline"}},
    ...     "datasets": {"theo": {"builtin": "theophylline"}},
    ...     "fits": [{"models": ["m1"], "datasets": ["theo"], "seeds": [1, 2]}]}, root=".")
    >>> summary = run_plan(plan)  # doctest: +SKIP
    """
    attempts = plan.max_attempts if max_attempts is None else int(max_attempts)
    if attempts < 1:
        raise PlanError(f"max_attempts must be >= 1, got {max_attempts!r}.")
    plan.output.mkdir(parents=True, exist_ok=True)
    with _exclusive(plan.output):
        return _run(plan, client, progress, rerun_changed, attempts, dry_run)


@contextlib.contextmanager
def _exclusive(output: Path) -> Iterator[None]:
    """One run per output folder at a time (an advisory lock on ``<output>/.lock``)."""
    import fcntl

    from ..provenance import host

    with open(output / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise PlanError(
                f"another run is using {output} ({holder}); wait for it to finish, or "
                "choose another output folder."
            ) from exc
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {host()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(
    plan: Plan, client: Any, progress: bool, rerun_changed: bool, attempts: int, dry_run: bool
) -> RunSummary:
    manifest = Manifest(plan.manifest_path)
    prep = _prepare(plan, manifest, rerun_changed, attempts)
    summary = RunSummary(
        plan.name,
        plan.output,
        skipped=prep.skipped,
        adopted=prep.adopted,
        failed=dict(prep.gave_up),
    )
    if dry_run:
        summary.ran = list(prep.payloads)
        return summary
    if not prep.payloads:
        summary.table = _write_table(plan, manifest)
        return summary

    from distributed import Client, as_completed

    own_client = client is None
    cluster = None
    if own_client:
        cluster = make_cluster(plan.cluster)
        client = Client(cluster)
    bar = _Progress(len(prep.payloads), progress)
    futures: dict[Any, str] = {}
    failures = {tid: p["record"]["attempt"] - 1 for tid, p in prep.payloads.items()}
    try:
        from .worker import run_task

        for tid, payload in prep.payloads.items():
            futures[
                client.submit(
                    run_task, payload, key=f"nlme-{tid}-{os.urandom(4).hex()}", pure=False
                )
            ] = tid
        queue = as_completed(list(futures))
        for fut in queue:
            tid = futures.pop(fut)
            payload = prep.payloads[tid]
            try:
                record = fut.result()
            except Exception as exc:  # the task never returned: worker lost, cluster gone
                record = _infra_failure(payload, exc)
            if record["status"] == "done" and not Path(payload["path"]).exists():
                record = {
                    **record,
                    "status": "failed",
                    "error": {
                        "type": "OutputNotShared",
                        "message": f"worker on {record.get('host')} wrote {payload['path']}, "
                        "which this machine cannot see: put the output folder on a file "
                        "system that the workers and this machine share",
                        "detail": "",
                        "traceback": None,
                    },
                }
            manifest.append(record)
            bar.update(record)
            if record["status"] == "done":
                summary.ran.append(tid)
                summary.failed.pop(tid, None)
                continue
            failures[tid] += 1
            err = record["error"]
            summary.failed[tid] = f"{err['type']}: {err['message']}"
            infra = record.get("started") is None
            if infra and failures[tid] < attempts:  # only lost tasks are retried at once
                payload["record"] = {**payload["record"], "attempt": failures[tid] + 1}
                new = client.submit(
                    run_task, payload, key=f"nlme-{tid}-{os.urandom(4).hex()}", pure=False
                )
                futures[new] = tid
                queue.add(new)
    except KeyboardInterrupt:
        for fut in futures:
            fut.cancel()
        raise
    finally:
        bar.close()
        summary.table = _write_table(plan, manifest)
        if own_client:
            client.close()
            if cluster is not None and not isinstance(cluster, str):
                cluster.close()
    return summary


def collect(plan: Plan) -> pd.DataFrame:
    """The results table of a plan from its manifest (one row per fit), without running.

    Examples
    --------
    >>> from nlme_bayes.batch import load_plan
    >>> table = collect(load_plan("examples/plans/theophylline_local.toml"))  # doctest: +SKIP
    >>> len(table)  # no fit of this plan has finished yet  # doctest: +SKIP
    0
    """
    manifest = Manifest(plan.manifest_path)
    ids = {t.id for t in plan.tasks}
    return results_table(r for r in manifest.records() if r["task"] in ids)
