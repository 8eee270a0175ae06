"""The manifest of a batch run: one JSON line per finished attempt, and the results table.

``<output>/manifest.jsonl`` is appended to by the client only (never by workers), one line
per attempt, flushed and synced to disk before the next; a line cut short by a crash is
skipped when read. Each line holds:

``task``, ``status`` (``"done"``, ``"failed"``), ``attempt``, ``fingerprint`` (hash of the
model specification, the data, the settings and the seed), ``file`` and ``file_sha256``,
``model``/``dataset``/``settings``/``seed``, ``inputs`` (where the model and data came
from, their hashes), ``fit_options``, ``versions``, ``host``, ``pid``, ``worker``,
``started``/``finished`` (UTC, ISO 8601), ``wall_s``, ``timings``, ``compile_cache``,
``diagnostics`` (the convergence verdict and its figures), ``estimates`` (posterior mean and
SD of the population parameters) and, for a failure, ``error`` (type, message, traceback).

A task is *done* when its latest line says so for the current fingerprint and its results
file exists with the recorded hash. Results that a run wrote but could not record (the
client died in between) carry their task and fingerprint in the file's attributes and are
adopted by the next run instead of being fitted again.

Examples
--------
>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> m = Manifest(os.path.join(d, "manifest.jsonl"))
>>> m.append({"task": "a.b.default.s1", "status": "failed", "fingerprint": "f",
...           "error": {"type": "SamplingError", "message": "bad start"}})
>>> m.append({"task": "a.b.default.s1", "status": "done", "fingerprint": "f", "file": "x.nc"})
>>> [r["status"] for r in m.records()]
['failed', 'done']
>>> m.history("a.b.default.s1", "f")["failures"]
1
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["Manifest", "file_sha256", "results_table"]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (hex).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = path.write_text("abc")
    >>> file_sha256(path)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Manifest:
    """Append-only JSON-lines record of a plan's attempts (see the module docstring).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> manifest = Manifest(pathlib.Path(tempfile.mkdtemp()) / "manifest.jsonl")
    >>> manifest.append({"task": "m1.theo.default.s1", "status": "done"})
    >>> [r["status"] for r in manifest.records()]
    ['done']
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.skipped_lines = 0

    def records(self) -> list[dict[str, Any]]:
        """Every readable line, in order (a torn or foreign line is skipped with a warning).

        Examples
        --------
        >>> import pathlib, tempfile
        >>> manifest = Manifest(pathlib.Path(tempfile.mkdtemp()) / "manifest.jsonl")
        >>> manifest.records()
        []
        """
        if not self.path.exists():
            return []
        out, bad = [], 0
        with self.path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    bad += 1
                    continue
                if isinstance(rec, dict) and "task" in rec and "status" in rec:
                    out.append(rec)
                else:
                    bad += 1
        self.skipped_lines = bad
        if bad:
            warnings.warn(
                f"{self.path}: skipped {bad} unreadable line(s) (a run stopped while writing?)",
                stacklevel=2,
            )
        return out

    def append(self, record: Mapping[str, Any]) -> None:
        """Add one line and make it durable (flush + fsync) before returning.

        Examples
        --------
        >>> import pathlib, tempfile
        >>> manifest = Manifest(pathlib.Path(tempfile.mkdtemp()) / "manifest.jsonl")
        >>> manifest.append({"task": "a", "status": "failed", "error": "SamplingError: ..."})
        >>> len(manifest.records())
        1
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(dict(record), sort_keys=True, default=_json_default)
        with self.path.open("a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() > 0:  # a previous writer may have died mid-line: start afresh
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.write(line.encode("utf-8") + b"\n")
            fh.flush()
            os.fsync(fh.fileno())

    def history(self, task: str, fingerprint: str, records: Iterable[Mapping] | None = None):
        """The state of ``task`` for ``fingerprint``.

        Returns
        -------
        dict
            ``done`` (the latest "done" record or None), ``failures`` (failed attempts),
            ``last_error`` (of the latest failure), ``other_fingerprint`` (a "done" record
            of the same task with different inputs, if any).

        Examples
        --------
        >>> import pathlib, tempfile
        >>> manifest = Manifest(pathlib.Path(tempfile.mkdtemp()) / "manifest.jsonl")
        >>> manifest.append({"task": "a", "fingerprint": "f1", "status": "failed", "error": "boom"})
        >>> manifest.history("a", "f1")["failures"]
        1
        """
        done, failures, last_error, other = None, 0, None, None
        for rec in records if records is not None else self.records():
            if rec.get("task") != task:
                continue
            if rec.get("fingerprint") != fingerprint:
                if rec.get("status") == "done":
                    other = rec
                continue
            if rec.get("status") == "done":
                done = rec
            elif rec.get("status") == "failed":
                failures += 1
                last_error = rec.get("error")
        return {
            "done": done,
            "failures": failures,
            "last_error": last_error,
            "other_fingerprint": other,
        }


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def results_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per task (its latest record): status, diagnostics and key estimates.

    Columns: ``task, model, dataset, settings, seed, status, attempts, converged,
    max_rhat, min_ess_bulk, min_ess_tail, divergences, wall_s, sampling_s, compile_cache,
    host, file``, then ``<parameter>_mean`` and ``<parameter>_sd`` for each population
    parameter, and ``error`` for failed tasks.

    Examples
    --------
    >>> results_table([{"task": "m.d.default.s1", "status": "done", "model": "m",
    ...                 "diagnostics": {"ok": True, "max_rhat": 1.001},
    ...                 "estimates": {"CL_pop": {"mean": 2.0, "sd": 0.1}}}])[
    ...     ["task", "status", "converged", "CL_pop_mean"]]
                 task status converged  CL_pop_mean
    0  m.d.default.s1   done      True          2.0
    """
    latest: dict[str, dict[str, Any]] = {}
    attempts: dict[str, int] = {}
    for rec in records:
        task = rec["task"]
        attempts[task] = attempts.get(task, 0) + 1
        latest[task] = dict(rec)
    rows = []
    for task, rec in latest.items():
        diag = rec.get("diagnostics") or {}
        timings = rec.get("timings") or {}
        row = {
            "task": task,
            "model": rec.get("model"),
            "dataset": rec.get("dataset"),
            "settings": rec.get("settings"),
            "seed": rec.get("seed"),
            "status": rec.get("status"),
            "attempts": attempts[task],
            "converged": diag.get("ok"),
            "max_rhat": diag.get("max_rhat"),
            "min_ess_bulk": diag.get("min_ess_bulk"),
            "min_ess_tail": diag.get("min_ess_tail"),
            "divergences": diag.get("divergences"),
            "wall_s": rec.get("wall_s"),
            "sampling_s": timings.get("sampling_s"),
            "compile_cache": rec.get("compile_cache"),
            "host": rec.get("host"),
            "file": rec.get("file"),
        }
        for name, est in (rec.get("estimates") or {}).items():
            row[f"{name}_mean"] = est.get("mean")
            row[f"{name}_sd"] = est.get("sd")
        err = rec.get("error")
        row["error"] = f"{err.get('type')}: {err.get('message')}" if err else None
        rows.append(row)
    return pd.DataFrame(rows)
