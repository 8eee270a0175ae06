"""Batch plans: a TOML file listing fits (model x dataset x settings x seeds).

A plan (see ``examples/plans/`` for complete ones)::

    [plan]
    name = "theophylline-candidates"
    output = "results"        # relative to the plan file; must stay inside its folder
    max_attempts = 3          # a failing fit is tried at most this often, over all runs
    reuse_compiled = true     # one compiled log density per model structure and worker

    [cluster]                 # where the fits run (default: a LocalCluster on this machine)
    kind = "local"            # local | slurm | pbs | sge | lsf | htcondor | address
    n_workers = 2

    [sampler]                 # settings of every fit (the settings profile "default")
    draws = 500
    tune = 500
    chains = 2

    [settings.long]           # further named profiles: "default" with some keys changed
    draws = 2000

    [models.one_cmt]          # one of: template / file / example / json
    file = "models/one_cmt.py"
    [models.two_cmt]
    template = "two_cmt_oral"
    options = { iiv = { ka = "none" } }

    [datasets.theo]           # one of: builtin / path / glob
    builtin = "theophylline"
    [datasets.sim]
    glob = "sims/*.csv"       # one dataset per file: sim-<file stem>

    [[fits]]                  # the product models x datasets x settings x seeds
    models = ["one_cmt", "two_cmt"]
    datasets = ["theo"]
    settings = ["default"]    # optional
    seeds = [1, 2, 3]         # or { first = 1, count = 20 }

``reuse_compiled = true`` (the default) samples every fit through
:class:`~nlme_bayes.compiled.CompileCache`: the draws of a task are the same on every run and
every cluster (given the same package versions), but not bitwise those of ``Model.fit``
without a cache (the compiled graph orders its variables differently); ``false`` gives the
draws of ``Model.fit`` (and ``nlme-bayes fit``) with the same seed and settings, at the price
of compiling every fit.

Each fit is a :class:`Task` with the id ``model.dataset.settings.s<seed>`` and the results
file ``<output>/<id>.nc``. Names are letters, digits, ``_`` and ``-``, so no task can write
outside the output folder. Paths in the plan (the output folder, model files, data files)
are relative to the plan's folder and must resolve inside it -- symbolic links followed --
unless ``allow_outside = true`` in ``[plan]`` (or ``--allow-outside`` on the command line)
says otherwise. Nothing in a plan is evaluated: it is data, and model files are the only
code, named explicitly.

Examples
--------
>>> plan = parse_plan({
...     "plan": {"name": "demo", "output": "out"},
...     "models": {"theo": {"example": "theophylline"}},
...     "datasets": {"theo": {"builtin": "theophylline"}},
...     "fits": [{"models": ["theo"], "datasets": ["theo"], "seeds": [1, 2]}],
... }, root=".")
>>> [t.id for t in plan.tasks]
['theo.theo.default.s1', 'theo.theo.default.s2']
"""

from __future__ import annotations

import glob as globlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import NLMEError
from .inputs import DataSource, ModelSource

__all__ = [
    "CLUSTER_KINDS",
    "FIT_SETTINGS",
    "Plan",
    "PlanError",
    "Task",
    "inside",
    "load_plan",
    "parse_plan",
    "safe_path",
]

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
CLUSTER_KINDS = ("address", "htcondor", "local", "lsf", "pbs", "sge", "slurm")
#: Keys of ``[sampler]`` / ``[settings.X]`` and their defaults (``fit()`` keyword arguments).
FIT_SETTINGS: dict[str, Any] = {
    "draws": 1000,
    "tune": 1000,
    "chains": 4,
    "cores": 1,
    "sampler": "auto",
    "target_accept": 0.9,
    "max_treedepth": 10,
    "mass_matrix": "diag",
    "store_predictions": True,
}
_PLAN_KEYS = ("allow_outside", "max_attempts", "name", "output", "reuse_compiled")
_SECTIONS = ("cluster", "datasets", "fits", "models", "plan", "sampler", "settings")


class PlanError(NLMEError, ValueError):
    """A plan is invalid: the message names the table and key and says what was expected.

    Examples
    --------
    >>> try:
    ...     parse_plan({"plan": {"output": "out"}}, root=".")
    ... except PlanError as err:
    ...     print(err)
    plan <dict>: the plan defines no [models.NAME].
    """


@dataclass(frozen=True)
class Task:
    """One fit of a plan: a model, a dataset, a settings profile and a seed.

    Examples
    --------
    >>> plan = parse_plan({"plan": {"output": "out"},
    ...     "models": {"m1": {"example": "theophylline"}},
    ...     "datasets": {"theo": {"builtin": "theophylline"}},
    ...     "fits": [{"models": ["m1"], "datasets": ["theo"], "seeds": [1, 2]}]}, root=".")
    >>> task = plan.tasks[1]
    >>> task.id, task.seed, task.fit_options["draws"]
    ('m1.theo.default.s2', 2, 1000)
    """

    model: str
    dataset: str
    settings: str
    seed: int
    fit_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The task's id, ``model.dataset.settings.s<seed>``.

        Examples
        --------
        >>> Task("one_cmt", "theo", "long", 3).id
        'one_cmt.theo.long.s3'
        """
        return f"{self.model}.{self.dataset}.{self.settings}.s{self.seed}"

    @property
    def filename(self) -> str:
        """The name of the task's results file, ``<id>.nc``.

        Examples
        --------
        >>> Task("one_cmt", "theo", "default", 1).filename
        'one_cmt.theo.default.s1.nc'
        """
        return f"{self.id}.nc"


@dataclass(frozen=True)
class Plan:
    """A parsed, validated plan. Build it with :func:`load_plan` or :func:`parse_plan`.

    Examples
    --------
    >>> plan = parse_plan({"plan": {"output": "out"},
    ...     "models": {"m1": {"example": "theophylline"}},
    ...     "datasets": {"theo": {"builtin": "theophylline"}},
    ...     "fits": [{"models": ["m1"], "datasets": ["theo"], "seeds": [1, 2]}]}, root=".")
    >>> [task.id for task in plan.tasks]
    ['m1.theo.default.s1', 'm1.theo.default.s2']
    """

    name: str
    root: Path
    output: Path
    models: Mapping[str, ModelSource]
    datasets: Mapping[str, DataSource]
    settings: Mapping[str, Mapping[str, Any]]
    tasks: tuple[Task, ...]
    cluster: Mapping[str, Any] = field(default_factory=lambda: {"kind": "local"})
    max_attempts: int = 3
    reuse_compiled: bool = True
    allow_outside: bool = False
    source: str = "<dict>"

    def results_path(self, task: Task) -> Path:
        """Where ``task``'s results file goes (always inside :attr:`output`).

        Examples
        --------
        >>> plan = parse_plan({"plan": {"output": "out"},
        ...     "models": {"m1": {"example": "theophylline"}},
        ...     "datasets": {"theo": {"builtin": "theophylline"}},
        ...     "fits": [{"models": ["m1"], "datasets": ["theo"], "seeds": [1, 2]}]}, root=".")
        >>> plan.results_path(plan.tasks[0]).name
        'm1.theo.default.s1.nc'
        """
        return safe_path(self.output, task.filename, what=f"results file of {task.id}")

    @property
    def manifest_path(self) -> Path:
        """The run manifest, ``<output>/manifest.jsonl`` (one JSON line per attempt).

        Examples
        --------
        >>> plan = parse_plan({"plan": {"output": "out"},
        ...     "models": {"m1": {"example": "theophylline"}},
        ...     "datasets": {"theo": {"builtin": "theophylline"}},
        ...     "fits": [{"models": ["m1"], "datasets": ["theo"], "seeds": [1]}]}, root=".")
        >>> plan.manifest_path.relative_to(plan.root).as_posix()
        'out/manifest.jsonl'
        """
        return self.output / "manifest.jsonl"

    @property
    def table_path(self) -> Path:
        """The results table, ``<output>/results.csv`` (one row per fit).

        Examples
        --------
        >>> plan = parse_plan({"plan": {"output": "out"},
        ...     "models": {"m1": {"example": "theophylline"}},
        ...     "datasets": {"theo": {"builtin": "theophylline"}},
        ...     "fits": [{"models": ["m1"], "datasets": ["theo"], "seeds": [1]}]}, root=".")
        >>> plan.table_path.relative_to(plan.root).as_posix()
        'out/results.csv'
        """
        return self.output / "results.csv"


# ---------------------------------------------------------------------------- paths
def inside(path: str | os.PathLike[str], base: str | os.PathLike[str]) -> bool:
    """Whether ``path`` resolves (symbolic links followed) to ``base`` or below it.

    Examples
    --------
    >>> inside("/data/plan/results/x.nc", "/data/plan"), inside("/data/plan/../x", "/data/plan")
    (True, False)
    """
    p, b = Path(path).resolve(), Path(base).resolve()
    return p == b or b in p.parents


def safe_path(
    base: str | os.PathLike[str],
    relative: str | os.PathLike[str],
    *,
    what: str,
    allow_outside: bool = False,
) -> Path:
    """``base / relative``, refused when it resolves outside ``base``.

    Raises
    ------
    PlanError
        The path leaves ``base`` (``..``, an absolute path, a symbolic link pointing out)
        and ``allow_outside`` is false.

    Examples
    --------
    >>> safe_path("/data/plan", "results", what="output").as_posix()
    '/data/plan/results'
    >>> safe_path("/data/plan", "../../etc", what="output")
    Traceback (most recent call last):
    ...
    nlme_bayes.batch.plan.PlanError: output '../../etc' resolves to ... outside ...
    """
    path = Path(base) / Path(relative)
    if not allow_outside and not inside(path, base):
        raise PlanError(
            f"{what} {str(relative)!r} resolves to {Path(path).resolve()}, outside "
            f"{Path(base).resolve()}; paths in a plan stay inside its folder unless "
            "allow_outside = true in [plan] (or --allow-outside) says otherwise."
        )
    return path


# ---------------------------------------------------------------------------- parsing
def _table(raw: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise PlanError(f"{where}: [{key}] must be a table, got {type(value).__name__}.")
    return dict(value)


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise PlanError(
            f"{where}: name {value!r} is not valid; use 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit."
        )
    return value


def _unknown(table: Mapping[str, Any], valid: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise PlanError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}."
        )


def _fit_settings(table: Mapping[str, Any], base: Mapping[str, Any], where: str) -> dict:
    _unknown(table, tuple(FIT_SETTINGS), where)
    out = dict(base)
    for k, v in table.items():
        expected = type(FIT_SETTINGS[k])
        ok = isinstance(v, expected) and not (expected is int and isinstance(v, bool))
        if expected is float and isinstance(v, int) and not isinstance(v, bool):
            ok, v = True, float(v)
        if not ok:
            raise PlanError(f"{where}: {k} must be {expected.__name__}, got {v!r}.")
        out[k] = v
    if out["sampler"] == "pymc" and out["cores"] > 1:
        raise PlanError(
            f"{where}: sampler = 'pymc' with cores = {out['cores']}: PyMC runs parallel chains in "
            "child processes, which a Dask worker process cannot start; use cores = 1 (the "
            "workers run fits in parallel) or sampler = 'nutpie' (chains in threads)."
        )
    return out


def _models(raw: Mapping[str, Any], root: Path, allow: bool, where: str) -> dict:
    out = {}
    for name, spec in _table(raw, "models", where).items():
        w = f"{where}: [models.{name}]"
        _name(name, w)
        if not isinstance(spec, Mapping):
            raise PlanError(f"{w} must be a table.")
        _unknown(spec, ("example", "file", "json", "options", "template"), w)
        kinds = [k for k in ("template", "file", "example", "json") if k in spec]
        if len(kinds) != 1:
            raise PlanError(f"{w}: give exactly one of template, file, example, json.")
        kind, ref = kinds[0], spec[kinds[0]]
        if not isinstance(ref, str):
            raise PlanError(f"{w}: {kind} must be a string, got {ref!r}.")
        if kind in ("file", "json"):
            safe_path(root, ref, what=f"{w} {kind}", allow_outside=allow)
        options = spec.get("options", {})
        if not isinstance(options, Mapping):
            raise PlanError(f"{w}: options must be a table, got {options!r}.")
        out[name] = ModelSource(kind, ref, dict(options))
    if not out:
        raise PlanError(f"{where}: the plan defines no [models.NAME].")
    return out


def _datasets(raw: Mapping[str, Any], root: Path, allow: bool, where: str) -> dict:
    out: dict[str, DataSource] = {}
    for name, spec in _table(raw, "datasets", where).items():
        w = f"{where}: [datasets.{name}]"
        _name(name, w)
        if not isinstance(spec, Mapping):
            raise PlanError(f"{w} must be a table.")
        _unknown(spec, ("builtin", "column_map", "glob", "path"), w)
        kinds = [k for k in ("builtin", "path", "glob") if k in spec]
        if len(kinds) != 1:
            raise PlanError(f"{w}: give exactly one of builtin, path, glob.")
        kind, ref = kinds[0], spec[kinds[0]]
        if not isinstance(ref, str):
            raise PlanError(f"{w}: {kind} must be a string, got {ref!r}.")
        cmap = spec.get("column_map", {})
        if not isinstance(cmap, Mapping) or not all(isinstance(v, str) for v in cmap.values()):
            raise PlanError(f"{w}: column_map must be a table of strings, got {cmap!r}.")
        if kind == "builtin":
            out[name] = DataSource("builtin", ref)
        elif kind == "path":
            safe_path(root, ref, what=f"{w} path", allow_outside=allow)
            out[name] = DataSource("path", ref, dict(cmap))
        else:
            if Path(ref).is_absolute() and not allow:
                safe_path(root, ref, what=f"{w} glob", allow_outside=False)
            matches = sorted(globlib.glob(ref, root_dir=root))
            if not matches:
                raise PlanError(f"{w}: glob {ref!r} matches no file under {root}.")
            for m in matches:
                safe_path(root, m, what=f"{w} glob match", allow_outside=allow)
                sub = _name(f"{name}-{Path(m).stem}", f"{w} (file {m})")
                if sub in out:
                    raise PlanError(f"{w}: dataset name {sub!r} is defined twice.")
                out[sub] = DataSource("path", m, dict(cmap))
    if not out:
        raise PlanError(f"{where}: the plan defines no [datasets.NAME].")
    return out


def _seeds(value: Any, where: str) -> list[int]:
    if isinstance(value, Mapping):
        _unknown(value, ("count", "first"), f"{where} seeds")
        first, count = value.get("first", 0), value.get("count")
        if not isinstance(first, int) or not isinstance(count, int) or count < 1 or first < 0:
            raise PlanError(f"{where}: seeds = {{ first = N >= 0, count = N >= 1 }}, got {value}.")
        return list(range(first, first + count))
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    ):
        raise PlanError(f"{where}: seeds must be a non-empty list of integers >= 0, got {value!r}.")
    if len(set(value)) != len(value):
        raise PlanError(f"{where}: seeds {value} repeat a seed.")
    return list(value)


def _names(
    block: Mapping[str, Any],
    key: str,
    known: Mapping[str, Any],
    where: str,
    default: list[str] | None = None,
) -> list[str]:
    value = block.get(key, default)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise PlanError(f"{where}: {key} must be a non-empty list of names, got {value!r}.")
    out: list[str] = []
    for v in value:
        # a glob dataset "sim" stands for all of its files "sim-*"
        expanded = [v] if v in known else sorted(k for k in known if k.startswith(f"{v}-"))
        if not expanded:
            raise PlanError(
                f"{where}: {key} names {v!r}, which is not defined; defined: "
                f"{', '.join(sorted(known))}."
            )
        out += expanded
    return out


def parse_plan(
    raw: Mapping[str, Any],
    *,
    root: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    allow_outside: bool | None = None,
    cluster: Mapping[str, Any] | None = None,
    source: str = "<dict>",
) -> Plan:
    """Validate a plan given as a dict (the parsed TOML) and expand its tasks.

    Parameters
    ----------
    raw : mapping
        The plan's tables.
    root : path-like
        The plan's folder: relative paths are relative to it.
    output : path-like, optional
        Overrides ``[plan] output`` (a path the user gives on the command line is taken
        as it is).
    allow_outside : bool, optional
        Overrides ``[plan] allow_outside``.
    cluster : mapping, optional
        Overrides the ``[cluster]`` table.

    Raises
    ------
    PlanError
        Every problem names the table and key (unknown keys list the valid ones).

    Examples
    --------
    >>> plan = parse_plan({"plan": {"output": "out"},
    ...     "models": {"m1": {"example": "theophylline"}},
    ...     "datasets": {"theo": {"builtin": "theophylline"}},
    ...     "fits": [{"models": ["m1"], "datasets": ["theo"], "seeds": [1, 2]}]}, root=".")
    >>> len(plan.tasks)
    2
    """
    where = f"plan {source}"
    root_path = Path(root)
    _unknown(raw, _SECTIONS, where)
    head = _table(raw, "plan", where)
    _unknown(head, _PLAN_KEYS, f"{where}: [plan]")
    allow = bool(head.get("allow_outside", False)) if allow_outside is None else allow_outside
    name = _name(head.get("name", Path(source).stem if source != "<dict>" else "plan"), where)
    if output is None:
        out_rel = head.get("output", "results")
        if not isinstance(out_rel, str):
            raise PlanError(f"{where}: [plan] output must be a string, got {out_rel!r}.")
        out = safe_path(root_path, out_rel, what=f"{where}: [plan] output", allow_outside=allow)
    else:
        out = Path(output)
    max_attempts = head.get("max_attempts", 3)
    if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
        raise PlanError(f"{where}: [plan] max_attempts must be an integer >= 1.")
    reuse = head.get("reuse_compiled", True)
    if not isinstance(reuse, bool):
        raise PlanError(f"{where}: [plan] reuse_compiled must be true or false.")

    clus = dict(cluster) if cluster is not None else _table(raw, "cluster", where)
    clus.setdefault("kind", "local")
    if clus["kind"] not in CLUSTER_KINDS:
        raise PlanError(
            f"{where}: [cluster] kind {clus['kind']!r} is not valid; choose one of "
            f"{', '.join(CLUSTER_KINDS)}."
        )

    models = _models(raw, root_path, allow, where)
    datasets = _datasets(raw, root_path, allow, where)
    default = _fit_settings(_table(raw, "sampler", where), FIT_SETTINGS, f"{where}: [sampler]")
    settings: dict[str, dict[str, Any]] = {"default": default}
    for sname, table in _table(raw, "settings", where).items():
        w = f"{where}: [settings.{sname}]"
        _name(sname, w)
        if sname == "default":
            raise PlanError(f"{w}: 'default' is the [sampler] table; choose another name.")
        if not isinstance(table, Mapping):
            raise PlanError(f"{w} must be a table.")
        settings[sname] = _fit_settings(table, default, w)

    fits = raw.get("fits")
    if not isinstance(fits, list) or not fits:
        raise PlanError(f"{where}: the plan has no [[fits]] block.")
    tasks: dict[str, Task] = {}
    for i, block in enumerate(fits, start=1):
        w = f"{where}: [[fits]] block {i}"
        if not isinstance(block, Mapping):
            raise PlanError(f"{w} must be a table.")
        _unknown(block, ("datasets", "models", "seeds", "settings"), w)
        ms = _names(block, "models", models, w)
        ds = _names(block, "datasets", datasets, w)
        ss = _names(block, "settings", settings, w, default=["default"])
        seeds = _seeds(block.get("seeds", [0]), w)
        for m in ms:
            for d in ds:
                for s in ss:
                    for seed in seeds:
                        t = Task(m, d, s, seed, dict(settings[s]))
                        if t.id in tasks:
                            raise PlanError(f"{w}: fit {t.id} is listed twice.")
                        tasks[t.id] = t
    return Plan(
        name=name,
        root=root_path,
        output=out,
        models=models,
        datasets=datasets,
        settings=settings,
        tasks=tuple(tasks.values()),
        cluster=clus,
        max_attempts=max_attempts,
        reuse_compiled=reuse,
        allow_outside=allow,
        source=source,
    )


def read_toml(path: str | os.PathLike[str], what: str = "plan") -> dict[str, Any]:
    """Parse a TOML file, with a :class:`PlanError` naming the file on a syntax error."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file {str(path)!r} does not exist.")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{what} file {str(path)!r} is not valid TOML: {exc}.") from exc
    except UnicodeDecodeError as exc:
        raise PlanError(f"{what} file {str(path)!r} is not UTF-8 text.") from exc


def load_plan(
    path: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    allow_outside: bool | None = None,
    cluster: Mapping[str, Any] | None = None,
) -> Plan:
    """Read and validate a plan file (see the module docstring for the format).

    Parameters
    ----------
    path : path-like
        The TOML plan.
    output, allow_outside, cluster
        Overrides, see :func:`parse_plan`.

    Raises
    ------
    FileNotFoundError
        No such plan file.
    PlanError
        Invalid TOML or an invalid plan.

    Examples
    --------
    >>> plan = load_plan("examples/plans/theophylline_local.toml")  # doctest: +SKIP
    >>> len(plan.tasks)  # one model, one dataset, two seeds  # doctest: +SKIP
    2
    """
    raw = read_toml(path)
    return parse_plan(
        raw,
        root=Path(path).parent,
        output=output,
        allow_outside=allow_outside,
        cluster=cluster,
        source=str(path),
    )
