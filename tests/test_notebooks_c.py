"""Every notebook runs (continued): group "c" of ``_notebook_runner.GROUPS`` -- the two ODE
notebooks with the longest compilations (warfarin PK/PD, about 2.5 minutes in fast mode, and
nimotuzumab TMDD, about 1), each its own unit of work for the two test workers."""

from __future__ import annotations

import pytest
from _notebook_runner import group, run_notebook

C = group("c")


@pytest.mark.slow
@pytest.mark.parametrize("path", C, ids=[p.stem for p in C])
def test_notebook_runs(path, tmp_path, monkeypatch):
    run_notebook(path, tmp_path, monkeypatch)
