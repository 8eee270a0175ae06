"""Sphinx extension: the API reference pages, generated from the package itself.

* ``api/core`` documents what ``import nlme_bayes as nb`` exposes (``nb.Model``, ...), under
  those short names.
* One page per public module (``api/modules/<module>.rst``), written at build start for every
  module that :func:`pkgutil.walk_packages` finds, so a module that lands later gets its page
  without anyone editing the docs.  Objects already on the core page are not repeated.
* A ``missing-reference`` handler resolves a cross-reference to the name under which the same
  object is documented (``nlme_bayes.data.NonmemDataset`` -> ``nlme_bayes.NonmemDataset``), so
  docstrings may use either spelling.

Pages are rewritten only when their text changes (incremental builds stay incremental).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

import nlme_bayes

# Modules for contributors rather than users: documented under "Internals".
INTERNAL = {
    "nlme_bayes.builder",
    "nlme_bayes.data_validation",
    "nlme_bayes.events",
    "nlme_bayes.events_types",
    "nlme_bayes.events_ode",
    "nlme_bayes.inference",
    "nlme_bayes.io",
    "nlme_bayes.main",
    "nlme_bayes.plots",
    "nlme_bayes.predictions",
    "nlme_bayes.report",
    "nlme_bayes.summary",
    "nlme_bayes.errors",
    "nlme_bayes.structural.rosenbrock",
    "nlme_bayes.data_source",
    "nlme_bayes.compiled",
    "nlme_bayes.provenance",
    "nlme_bayes.sampling_safety",
}


def public_modules() -> list[str]:
    """Every importable, non-private module of the package, sorted."""
    names = []
    for info in pkgutil.walk_packages(nlme_bayes.__path__, prefix="nlme_bayes."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        names.append(info.name)
    return sorted(names)


def core_names() -> list[str]:
    """Classes and functions of ``nlme_bayes.__all__`` (not its submodules, not constants)."""
    out = []
    for name in nlme_bayes.__all__:
        obj = getattr(nlme_bayes, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            out.append(name)
    return out


def module_members(modname: str) -> list[str]:
    """The module's own public classes and functions that are not on the core page."""
    mod = importlib.import_module(modname)
    core = {id(getattr(nlme_bayes, n)) for n in core_names()}
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [n for n in vars(mod) if not n.startswith("_")]
    out = []
    for n in names:
        obj = getattr(mod, n, None)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if getattr(obj, "__module__", None) != modname or id(obj) in core:
            continue
        out.append(n)
    return out


def _summary(modname: str) -> str:
    """The first sentence of a module's docstring (as reStructuredText)."""
    doc = inspect.getdoc(importlib.import_module(modname)) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ")
    return first or "(no description)"


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def generate(app: Any) -> None:
    api = Path(app.srcdir) / "api"
    gen = api / "generated"
    gen.mkdir(parents=True, exist_ok=True)
    # ------------------------------------------------------------------ core page
    core = [_title("Core: ``import nlme_bayes as nb``"), ".. currentmodule:: nlme_bayes\n"]
    core.append(
        "Everything a first fit needs is at the top level. The pages under *Modules* hold the\n"
        "free functions over a fit (diagnostics, comparison, simulation, ...).\n"
    )
    for name in core_names():
        obj = getattr(nlme_bayes, name)
        if inspect.isclass(obj):
            core.append(f".. autoclass:: {name}\n   :members:\n")
        else:
            core.append(f".. autofunction:: {name}\n")
    _write(gen / "core.rst", "\n".join(core))
    # ------------------------------------------------------------------ module pages
    user, internal = [], []
    wanted = {"core.rst"}
    for modname in public_modules():
        members = module_members(modname)
        page = [_title(f"``{modname}``"), f".. automodule:: {modname}"]
        if members:
            page.append(f"   :members: {', '.join(members)}")
        else:
            page.append("   :no-members:")
            page.append("")
            page.append("Its public objects are on the :doc:`core page <core>`.")
        _write(gen / f"{modname}.rst", "\n".join(page) + "\n")
        wanted.add(f"{modname}.rst")
        (internal if modname in INTERNAL else user).append(modname)
    for stale in gen.glob("*.rst"):
        if stale.name not in wanted:
            stale.unlink()
    index = [
        _title("API reference"),
        "Generated from the docstrings (numpydoc). Their examples are run by\n"
        "``tests/test_docstrings.py``.\n",
        "- :doc:`core`: what ``import nlme_bayes as nb`` gives you: ``nb.Model``,\n"
        "  ``nb.Parameter``, ``nb.read_nonmem``, ``nb.load``, ...\n",
        _title("Modules", "-"),
        *[f"- :doc:`{m}`: {_summary(m)}" for m in user],
        "",
        _title("Internals (for contributors)", "-"),
        *[f"- :doc:`{m}`: {_summary(m)}" for m in internal],
        "",
        ".. toctree::\n   :hidden:\n\n   core",
        *[f"   {m}" for m in user + internal],
        "",
    ]
    _write(gen / "index.rst", "\n".join(index))


def _documented_name(env: Any, obj: Any) -> str | None:
    objects = env.get_domain("py").objects
    candidates = []
    mod = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    if mod and qual:
        candidates.append(f"{mod}.{qual}")
    name = getattr(obj, "__name__", None)
    if name and getattr(nlme_bayes, name, None) is obj:
        candidates.append(f"nlme_bayes.{name}")
    for c in candidates:
        if c in objects:
            return c
    return None


def _resolve(target: str) -> Any:
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def missing_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target.startswith("nlme_bayes"):
        return None
    obj = _resolve(target)
    if obj is None:
        return None
    name = _documented_name(env, obj)
    if name is None or name == target:
        return None
    found = env.get_domain("py").resolve_any_xref(
        env, node["refdoc"], app.builder, name, node, contnode
    )
    return found[0][1] if found else None

def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    app.connect("missing-reference", missing_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
