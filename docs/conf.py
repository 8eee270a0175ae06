"""Sphinx configuration of the nlme_bayes documentation.

Why Sphinx (and not MkDocs): see ``docs/contributing_docs.md``.  In short: MyST-NB renders our
executed notebooks, numpydoc renders the numpydoc docstrings the package is written in (and that
``tests/test_docstrings.py`` runs), and autodoc/autosummary build the API reference from the
code -- the same stack as PyMC and ArviZ, whose objects we link to.

Notebooks live in ``notebooks/`` (where users open them).  At configuration time they are copied
into ``docs/examples/`` (git-ignored), with the outputs of the executed copies that
``scripts/run_notebooks.sh`` writes to ``build/notebooks/`` when their code is unchanged, so the
site shows real outputs.
Notebooks are never executed by Sphinx unless ``NLME_DOCS_EXECUTE`` asks for it (MyST-NB's
``nb_execution_mode``: ``off`` by default, ``cache``/``force`` on request).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import nlme_bayes  # noqa: E402

project = "nlme_bayes"
author = "the nlme_bayes developers"
copyright = "2026, the nlme_bayes developers"
release = nlme_bayes.__version__
version = release

sys.path.insert(0, str(DOCS / "_ext"))
extensions = [
    "nlme_api",  # docs/_ext/nlme_api.py: API pages generated from the package
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "_scripts", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# --------------------------------------------------------------------------- notebooks
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "build" / "notebooks"
GALLERY = DOCS / "examples"


def _with_outputs(src: Path, executed: Path) -> bytes:
    """The source notebook with the executed copy's outputs, if its code is the same.

    Only code decides: an edit of the markdown keeps the outputs, an edit of any code cell
    drops them (the notebook is then shown without outputs until it is run again).
    """
    source = json.loads(src.read_text(encoding="utf-8"))
    if not executed.exists():
        return src.read_bytes()
    done = json.loads(executed.read_text(encoding="utf-8"))

    def code(nb: dict) -> list[str]:
        return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]

    if code(source) != code(done):
        return src.read_bytes()
    outputs = iter(c for c in done["cells"] if c["cell_type"] == "code")
    for cell in source["cells"]:
        if cell["cell_type"] == "code":
            ran = next(outputs)
            cell["outputs"] = ran.get("outputs", [])
            cell["execution_count"] = ran.get("execution_count")
    return (json.dumps(source, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _sync_notebooks() -> None:
    """Copy notebooks (with executed outputs where available) into docs/examples.

    Writes only what changed, so Sphinx's incremental build does not re-read them.
    """
    GALLERY.mkdir(exist_ok=True)
    wanted = set()
    for src in sorted(NOTEBOOKS.glob("*.ipynb")):
        content = _with_outputs(src, EXECUTED / src.name)
        dst = GALLERY / src.name
        wanted.add(dst.name)
        if not dst.exists() or dst.read_bytes() != content:
            dst.write_bytes(content)
    for stale in GALLERY.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()


_sync_notebooks()

nb_execution_mode = os.environ.get("NLME_DOCS_EXECUTE", "off")
nb_execution_timeout = 1800
nb_execution_raise_on_error = True
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --------------------------------------------------------------------------- API reference
autosummary_generate = True
autodoc_typehints = "none"  # numpydoc's Parameters section says it, in words
autodoc_member_order = "bysource"
autodoc_default_options: dict[str, object] = {}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

intersphinx_mapping: dict[str, tuple[str, None]] = {}  # offline builds: no inventories

# --------------------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"nlme_bayes {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    # notebook pages: no sidebars, so that their figures get the whole width
    "secondary_sidebar_items": {"*": ["page-toc"], "user_guide/*": ["page-toc"],
                                "api/**": ["page-toc"], "gallery/**": ["page-toc"],
                                "examples/*": []},
}
# pages without sub-pages: no (empty) section navigation on the left, more room for figures
_NO_NAVIGATION = ("index", "getting_started", "concepts", "migration", "contributing_docs")
html_sidebars = {page: [] for page in (*_NO_NAVIGATION, "examples/*", "gallery/*")}
html_show_sourcelink = False
