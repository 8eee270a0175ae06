"""Runs one notebook top to bottom in fast mode (``NLME_FAST=1``); shared by the notebook tests.

The notebooks are split over three test files by :data:`GROUPS`; ``tests/conftest.py`` makes
each notebook its own unit of work for ``pytest -n 2 --dist loadfile`` and hands them out
longest first by :data:`NOTEBOOK_SECONDS`. A new notebook goes into any group (and into
NOTEBOOK_SECONDS once timed); ``test_every_notebook_is_run_once`` fails until it is placed.
"""

from __future__ import annotations

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

#: Seconds each notebook takes in fast mode on a 2-core machine with the other pytest worker busy
#: (2026-12-08); tests/conftest.py schedules the longest first.
NOTEBOOK_SECONDS = {
    "warfarin_pkpd": 145,
    "theophylline_workflow": 140,
    "michaelis_menten_ode": 110,
    "batch_walkthrough": 80,
    "growth_and_dose_response": 75,
    "model_comparison": 65,
    "nimotuzumab_tmdd": 65,
    "pheno_vs_nonmem": 45,
    "phenobarbital_covariates": 40,
    "mavoglurant_occasions": 35,
    "dose_individualization": 20,
}

GROUPS = {
    "a": ("michaelis_menten_ode", "model_comparison", "pheno_vs_nonmem"),
    "b": (
        "theophylline_workflow",
        "growth_and_dose_response",
        "mavoglurant_occasions",
        "batch_walkthrough",
        "phenobarbital_covariates",
        "dose_individualization",
    ),
    "c": ("warfarin_pkpd", "nimotuzumab_tmdd"),
}


def group(name: str) -> list[pathlib.Path]:
    """The notebooks of group ``name`` that exist."""
    return [p for p in NOTEBOOKS if p.stem in GROUPS[name]]


def run_notebook(path: pathlib.Path, tmp_path: pathlib.Path, monkeypatch) -> None:
    """Execute ``path`` in a fresh kernel; fail on any error output or if it shows no figure."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("NLME_FAST", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows figures
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    images = sum(
        1
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    )
    assert images >= 1, "the notebook shows no figure"
