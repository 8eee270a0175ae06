"""Every notebook in notebooks/ runs top to bottom (fast mode: NLME_FAST=1, small draws).

This file runs group "a" of ``_notebook_runner.GROUPS``; ``test_notebooks_b.py`` runs "b", so
that the two test workers share them.
"""

from __future__ import annotations

import pytest
from _notebook_runner import GROUPS, NOTEBOOKS, group, run_notebook

A = group("a")


def test_every_notebook_is_run_once():
    placed = [n for names in GROUPS.values() for n in names]
    assert sorted(placed) == sorted(p.stem for p in NOTEBOOKS), "place new notebooks in GROUPS"


@pytest.mark.slow
@pytest.mark.parametrize("path", A, ids=[p.stem for p in A])
def test_notebook_runs(path, tmp_path, monkeypatch):
    run_notebook(path, tmp_path, monkeypatch)
