"""Every notebook runs (continued): group "c" of ``_notebook_runner.GROUPS`` -- the warfarin
PK/PD notebook on its own (about 6 minutes in fast mode, most of it compiling the Rosenbrock
solver's gradient), so that the test workers can run it beside groups "a" and "b"."""

from __future__ import annotations

import pytest
from _notebook_runner import group, run_notebook

C = group("c")


@pytest.mark.slow
@pytest.mark.parametrize("path", C, ids=[p.stem for p in C])
def test_notebook_runs(path, tmp_path, monkeypatch):
    run_notebook(path, tmp_path, monkeypatch)
