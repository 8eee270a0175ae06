"""Where a model and a dataset come from: the references a plan or the command line gives.

A model is named, never evaluated from a string or unpickled:

=============  =================================================================================
kind           meaning
=============  =================================================================================
``template``   a model of the template library: :func:`nlme_bayes.templates.load` (name, options)
``file``       a Python file that defines ``model`` (a :class:`~nlme_bayes.Model`) or a function
               ``make_model(**options)`` returning one -- user code, like a NONMEM control
               stream, imported with :mod:`importlib` from a path the user gives
``example``    a reference model of :mod:`nlme_bayes.examples` (``theophylline``, ``pheno``)
``json``       a model specification as JSON, the format of ``Model.to_dict()`` and of the
               ``nlme_bayes_model`` attribute of every results file
=============  =================================================================================

Options for templates and ``make_model`` are plain data (TOML or JSON). Specification objects
are written as in the JSON format, e.g. a prior
``{"__type__": "Prior", "dist": "LogNormal", "params": {"mu": 1.0, "sigma": 0.5}}`` or a
covariate ``{"__type__": "Power", "covariate": "WT", "reference": 70, "exponent": 0.75}``;
``"none"`` drops a random effect in ``iiv`` (TOML has no null).

A dataset is a NONMEM-style CSV file (``path``, with an optional ``column_map``) or one of
the shipped data sets (``builtin``, see :func:`nlme_bayes.datasets.list_datasets`).

Examples
--------
>>> from nlme_bayes.batch.inputs import ModelSource, DataSource, load_model, load_data
>>> load_model(ModelSource("example", "theophylline")).parameter_names
('CL', 'V', 'ka')
>>> load_data(DataSource("builtin", "theophylline")).n_subjects
12
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecificationError

__all__ = [
    "DataSource",
    "ModelSource",
    "decode_options",
    "load_data",
    "load_model",
    "load_model_file",
    "model_fingerprint",
    "EXAMPLES",
    "MODEL_KINDS",
]

MODEL_KINDS = ("example", "file", "json", "template")
EXAMPLES = ("pheno", "theophylline")


@dataclass(frozen=True)
class ModelSource:
    """A reference to a model: ``kind`` (one of :data:`MODEL_KINDS`), ``ref``, ``options``.

    Examples
    --------
    >>> load_model(ModelSource("template", "one_cmt_oral")).parameter_names
    ('CL', 'V', 'ka')
    """

    kind: str
    ref: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """``kind:ref`` and the options, as the manifest and the results table show it.

        Examples
        --------
        >>> ModelSource("template", "two_cmt_oral", {"iiv": {"ka": "none"}}).describe()
        'template:two_cmt_oral {"iiv": {"ka": "none"}}'
        """
        opts = f" {json.dumps(dict(self.options), sort_keys=True)}" if self.options else ""
        return f"{self.kind}:{self.ref}{opts}"


@dataclass(frozen=True)
class DataSource:
    """A reference to a dataset: ``kind`` ``"path"`` or ``"builtin"``, ``ref``, ``column_map``.

    Examples
    --------
    >>> load_data(DataSource("builtin", "theophylline")).n_subjects
    12
    """

    kind: str
    ref: str
    column_map: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """``kind:ref`` and the column map, as the manifest and the results table show it.

        Examples
        --------
        >>> DataSource("builtin", "theophylline").describe()
        'builtin:theophylline'
        """
        cmap = f" {json.dumps(dict(self.column_map), sort_keys=True)}" if self.column_map else ""
        return f"{self.kind}:{self.ref}{cmap}"


def decode_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Plain-data options -> Python objects (``__type__`` specs, ``"none"`` in ``iiv``).

    Examples
    --------
    >>> decode_options({"iiv": {"ka": "none"}, "typical": {"CL": 2.0}})
    {'iiv': {'ka': None}, 'typical': {'CL': 2.0}}
    >>> decode_options({"priors": {"CL": {"__type__": "Prior", "dist": "LogNormal",
    ...                                   "params": {"mu": 1.0, "sigma": 0.5}}}})["priors"]["CL"]
    Prior('LogNormal', mu=1.0, sigma=0.5)
    """
    from ..spec import spec_from_dict

    if not isinstance(options, Mapping):
        raise SpecificationError(f"model options must be a table/dict, got {options!r}.")
    out = {str(k): spec_from_dict(v) for k, v in options.items()}
    if isinstance(out.get("iiv"), Mapping):
        out["iiv"] = {k: (None if v == "none" else v) for k, v in out["iiv"].items()}
    return out


def load_model_file(path: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> Any:
    """Import a Python model file and return its ``model`` (or ``make_model(**options)``).

    Parameters
    ----------
    path : path-like
        A ``.py`` file. It is imported as a module with a name derived from its path, so
        the same file always gives the same module name.
    options : mapping, optional
        Keyword arguments for ``make_model``; a file that only defines ``model`` takes none.

    Raises
    ------
    FileNotFoundError
        No such file.
    SpecificationError
        Not a ``.py`` file, or it defines neither ``model`` nor ``make_model``, or what it
        defines is not a :class:`~nlme_bayes.Model`.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "my_model.py"
    >>> code = ["from nlme_bayes.examples import pheno_model", "model = pheno_model()"]
    >>> _ = path.write_text(chr(10).join(code))
    >>> load_model_file(path).name
    'pheno'
    """
    from ..model import Model

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist.")
    if p.suffix != ".py":
        raise SpecificationError(
            f"model file {str(path)!r}: expected a Python file (.py) that defines `model` or "
            "`make_model()`; for a JSON specification use the json model kind."
        )
    resolved = p.resolve()
    name = "nlme_bayes_user_model_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:  # pragma: no cover - guarded by the suffix check
        raise SpecificationError(f"model file {str(path)!r} cannot be imported.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(name, None)
        raise
    _pickle_by_value(module)
    options = dict(options or {})
    if hasattr(module, "make_model"):
        import inspect

        kwargs = decode_options(options)
        try:
            inspect.signature(module.make_model).bind(**kwargs)
        except TypeError as exc:
            raise SpecificationError(
                f"model file {str(path)!r}: make_model{inspect.signature(module.make_model)} "
                f"does not take these options: {exc}."
            ) from exc
        model = module.make_model(**kwargs)
    elif hasattr(module, "model"):
        if options:
            raise SpecificationError(
                f"model file {str(path)!r} defines `model`, which takes no options (got "
                f"{', '.join(sorted(options))}); define `make_model(**options)` instead."
            )
        model = module.model
    else:
        raise SpecificationError(
            f"model file {str(path)!r} defines neither `model` nor `make_model()`."
        )
    if not isinstance(model, Model):
        raise SpecificationError(
            f"model file {str(path)!r}: `model` must be an nlme_bayes.Model, got "
            f"{type(model).__name__}."
        )
    return model


def _pickle_by_value(module: Any) -> None:
    """Let Dask ship objects defined in a user's model file to workers that cannot import it."""
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle comes with dask
        return
    try:
        cloudpickle.register_pickle_by_value(module)
    except ValueError:  # pragma: no cover - already registered
        pass


def load_model(source: ModelSource, *, base: str | os.PathLike[str] | None = None) -> Any:
    """The :class:`~nlme_bayes.Model` that ``source`` refers to.

    Parameters
    ----------
    source : ModelSource
    base : path-like, optional
        Folder that relative file paths are relative to (default: the working directory).

    Raises
    ------
    SpecificationError
        Unknown kind, template or example (the valid ones are listed), bad options.
    FileNotFoundError
        A model file or JSON file that does not exist.

    Examples
    --------
    >>> load_model(ModelSource("example", "theophylline")).name
    'theophylline_1cmt_oral'
    """
    kind, ref, options = source.kind, source.ref, dict(source.options)
    if kind == "template":
        from .. import templates

        return templates.load(ref, **decode_options(options))
    if kind == "example":
        from .. import examples

        if ref not in EXAMPLES:
            raise SpecificationError(
                f"unknown example model {ref!r}; available: {', '.join(EXAMPLES)}."
            )
        if options:
            raise SpecificationError(f"example model {ref!r} takes no options.")
        return getattr(examples, f"{ref}_model")()
    path = Path(base or ".") / ref
    if kind == "file":
        return load_model_file(path, options)
    if kind == "json":
        from ..model import Model

        if not path.is_file():
            raise FileNotFoundError(f"model JSON file {ref!r} does not exist.")
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SpecificationError(f"model JSON file {ref!r} is not valid JSON: {exc}.") from exc
        return Model.from_dict(spec)
    raise SpecificationError(
        f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}."
    )


def load_data(source: DataSource, *, base: str | os.PathLike[str] | None = None) -> Any:
    """The validated :class:`~nlme_bayes.NonmemDataset` that ``source`` refers to.

    Raises
    ------
    DatasetError
        The file's records are invalid (every violation listed).
    FileNotFoundError
        No such file.
    SpecificationError
        Unknown built-in dataset or kind.

    Examples
    --------
    >>> load_data(DataSource("builtin", "phenobarbital")).n_observations
    155
    """
    from .. import datasets
    from ..data import read_nonmem

    if source.kind == "builtin":
        if source.ref not in datasets.list_datasets():
            raise SpecificationError(
                f"unknown dataset {source.ref!r}; available: {', '.join(datasets.list_datasets())}."
            )
        return getattr(datasets, source.ref)()
    if source.kind == "path":
        path = Path(base or ".") / source.ref
        if not path.is_file():
            raise FileNotFoundError(f"data file {source.ref!r} does not exist.")
        return read_nonmem(path, column_map=dict(source.column_map) or None)
    raise SpecificationError(f"unknown dataset kind {source.kind!r}; choose builtin or path.")


def model_fingerprint(model: Any) -> str:
    """SHA-256 of the model's JSON specification (what the results file stores).

    Examples
    --------
    >>> from nlme_bayes.examples import theophylline_model
    >>> model_fingerprint(theophylline_model()) == model_fingerprint(theophylline_model())
    True
    """
    text = json.dumps(model.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
