"""Every notebook runs (continued): group "b" of ``_notebook_runner.GROUPS`` (see
``test_notebooks.py``)."""

from __future__ import annotations

import pytest
from _notebook_runner import group, run_notebook

B = group("b")


@pytest.mark.slow
@pytest.mark.parametrize("path", B, ids=[p.stem for p in B])
def test_notebook_runs(path, tmp_path, monkeypatch):
    run_notebook(path, tmp_path, monkeypatch)
