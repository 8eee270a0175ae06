"""Batch fitting: many fits from one plan, on a laptop or a cluster, losing nothing.

A plan (TOML, :mod:`nlme_bayes.batch.plan`) lists fits as the product of models, datasets,
settings profiles and seeds. :func:`run_plan` runs those not done yet on Dask
(:mod:`nlme_bayes.batch.runner`): a ``LocalCluster`` by default, a SLURM/PBS/SGE/LSF/HTCondor
cluster through ``dask-jobqueue``, or a running scheduler. Each fit is written atomically to
``<output>/<task>.nc`` and recorded in ``<output>/manifest.jsonl``
(:mod:`nlme_bayes.batch.manifest`); ``<output>/results.csv`` has one row per fit with its
key estimates and diagnostics. From the command line: ``nlme-bayes batch plan.toml``.

Examples
--------
>>> from nlme_bayes import batch
>>> plan = batch.parse_plan({
...     "plan": {"output": "out"},
...     "models": {"m1": {"example": "theophylline"}},
...     "datasets": {"theo": {"builtin": "theophylline"}},
...     "sampler": {"draws": 200, "tune": 200, "chains": 2},
...     "fits": [{"models": ["m1"], "datasets": ["theo"], "seeds": {"first": 1, "count": 3}}],
... }, root=".")
>>> len(plan.tasks), plan.tasks[0].fit_options["draws"]
(3, 200)
>>> summary = batch.run_plan(plan)  # doctest: +SKIP
"""

from __future__ import annotations

from .inputs import DataSource, ModelSource, load_data, load_model
from .manifest import Manifest, results_table
from .plan import Plan, PlanError, Task, load_plan, parse_plan
from .runner import RunSummary, collect, make_cluster, run_plan, task_fingerprint

__all__ = [
    "DataSource",
    "Manifest",
    "ModelSource",
    "Plan",
    "PlanError",
    "RunSummary",
    "Task",
    "collect",
    "load_data",
    "load_model",
    "load_plan",
    "make_cluster",
    "parse_plan",
    "results_table",
    "run_plan",
    "task_fingerprint",
]
