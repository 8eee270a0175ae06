"""Runs one notebook top to bottom in fast mode (``NLME_FAST=1``); shared by the notebook tests.

The notebooks are split over three test files so that ``pytest -n 2 --dist loadfile`` runs
them on both workers (about 19 CPU-minutes in one file before). :data:`GROUPS` says which file
runs which notebook, balanced by their fast-mode times (2026-12-07, 2 cores: michaelis_menten_ode
415 s, theophylline_workflow 200 s, growth_and_dose_response 120 s, model_comparison 105 s,
mavoglurant_occasions 95 s, batch_walkthrough 91 s, pheno_vs_nonmem 54 s,
phenobarbital_covariates 52 s, dose_individualization 21 s; warfarin_pkpd, alone in group c,
518 s). A new notebook goes into the lighter group; ``test_every_notebook_is_run_once`` fails
until it is placed.
"""

from __future__ import annotations

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

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
    "c": ("warfarin_pkpd",),
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
