"""The documentation site builds with Sphinx, warnings as errors (docs/).

Notebooks are not executed here (``NLME_DOCS_EXECUTE=off``): tests/test_notebooks.py runs them.
The build directory ``docs/_build`` is kept between runs, so a second run is incremental
(only changed pages are re-read; after a failed build the cache is wiped, so that warnings of
unchanged pages are not hidden); a fresh clone builds everything (~15-40 s on 2 cores).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BUILD = DOCS / "_build"


@pytest.fixture(scope="module")
def html() -> pathlib.Path:
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    env = dict(os.environ, NLME_DOCS_EXECUTE="off", MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [
        sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
        "-d", str(BUILD / "doctrees"), str(DOCS), str(BUILD / "html"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        # An incremental build does not re-read unchanged pages, so it would not repeat
        # their warnings: start the next run from scratch.
        shutil.rmtree(BUILD, ignore_errors=True)
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    return BUILD / "html"


PAGES = [
    "index",
    "getting_started",
    "concepts",
    "migration",
    "contributing_docs",
    "user_guide/data",
    "user_guide/structural_models",
    "user_guide/parameters",
    "user_guide/covariates",
    "user_guide/residual_error",
    "user_guide/fitting",
    "user_guide/diagnostics",
    "user_guide/calibration",
    "user_guide/model_comparison",
    "user_guide/simulation",
    "user_guide/batch",
    "api/generated/index",
    "api/generated/core",
]


@pytest.mark.parametrize("page", PAGES)
def test_page_is_built(html, page):
    text = (html / f"{page}.html").read_text(encoding="utf-8")
    assert "TODO" not in text, f"{page} still has a TODO"


def test_every_notebook_has_a_page(html):
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    for nb in notebooks:
        assert (html / "examples" / f"{nb.stem}.html").exists(), nb.name


def test_every_public_module_has_an_api_page(html):
    import pkgutil

    import nlme_bayes

    for info in pkgutil.walk_packages(nlme_bayes.__path__, prefix="nlme_bayes."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        assert (html / "api" / "generated" / f"{info.name}.html").exists(), info.name


def test_core_api_documents_the_top_level_names(html):
    import inspect

    import nlme_bayes

    text = (html / "api" / "generated" / "core.html").read_text(encoding="utf-8")
    for name in nlme_bayes.__all__:
        obj = getattr(nlme_bayes, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert f'id="nlme_bayes.{name}"' in text, name


def test_concept_figures_are_on_the_page(html):
    figures = sorted((DOCS / "_static" / "concepts").glob("*.png"))
    assert len(figures) >= 6
    text = (html / "concepts.html").read_text(encoding="utf-8")
    for fig in figures:
        assert fig.name in text, f"{fig.name} is not shown on the concepts page"
