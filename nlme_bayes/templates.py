"""Ready-made models from the ``model_templates/`` library, loadable by name.

Each template is one TOML file (the layout follows nlmixr2lib: one model per file): a
description, the equations, parameter names with units, default priors with their
justification, the expected data columns, a literature reference and an example study
design.  :func:`load` turns a file into an ordinary :class:`~nlme_bayes.Model`, which is
then customised like any other -- nothing in the file needs editing:

>>> import nlme_bayes as nb
>>> from nlme_bayes import templates
>>> model = templates.load("two_cmt_oral")
>>> model.parameter_names
('CL', 'V', 'Q', 'V2', 'ka')
>>> model = templates.load(
...     "two_cmt_oral",
...     priors={"CL": nb.Prior("LogNormal", mu=1.0, sigma=0.5)},       # swap a prior
...     covariates={"CL": nb.Power("WT", reference=70, exponent=0.75)},  # add a covariate
...     iiv={"ka": None},                                                # drop a random effect
... )
>>> model.parameter("ka").iiv, model.parameter("CL").covariates[0].covariate
(None, 'WT')

The same changes work on a loaded model with :func:`update_parameter` and
:func:`add_covariate` (both thin wrappers over ``dataclasses.replace``).

Templates are looked up in the ``model_templates/`` folder of the source tree, then in the
folders listed in the ``NLME_TEMPLATE_PATH`` environment variable; ``load`` also accepts the
path of a ``.toml`` file written in the same layout.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import SpecificationError
from .model import Model
from .priors import Prior
from .spec import (
    Additive,
    Categorical,
    Combined,
    Exponential,
    Linear,
    LogAdditive,
    Omega,
    Parameter,
    Power,
    Proportional,
)

__all__ = [
    "ParameterInfo",
    "Template",
    "add_covariate",
    "available",
    "get",
    "load",
    "template_dirs",
    "update_parameter",
]

_ERRORS = {c.__name__: c for c in (Additive, Proportional, Combined, LogAdditive)}
_COVARIATE_TYPES = (Power, Exponential, Linear, Categorical)
_SECTIONS = (
    "name",
    "title",
    "category",
    "description",
    "equations",
    "reference",
    "units",
    "structure",
    "data",
    "parameters",
    "omega",
    "error",
    "example",
)


def template_dirs() -> tuple[Path, ...]:
    """Folders searched for templates: the library's, then ``NLME_TEMPLATE_PATH``.

    Examples
    --------
    >>> template_dirs()[0].name
    'model_templates'
    """
    dirs = [Path(__file__).resolve().parents[1] / "model_templates"]
    extra = os.environ.get("NLME_TEMPLATE_PATH", "")
    dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    return tuple(dirs)


def _files() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for d in template_dirs():
        if d.is_dir():
            for f in sorted(d.glob("*.toml")):
                out.setdefault(f.stem, f)
    return out


def available() -> tuple[str, ...]:
    """Names of the templates, sorted.

    Examples
    --------
    >>> {"one_cmt_oral", "logistic", "emax"} <= set(available())
    True
    """
    return tuple(sorted(_files()))


# --------------------------------------------------------------------------- the file format
@dataclass(frozen=True)
class ParameterInfo:
    """Documentation of one template parameter (what the gallery shows).

    Examples
    --------
    >>> get("one_cmt_oral").parameters[0].units
    'L/h'
    """

    name: str
    units: str
    description: str
    justification: str


def _prior(value: Any, where: str) -> Prior:
    if not isinstance(value, Mapping) or "dist" not in value:
        raise SpecificationError(
            f'{where}: a prior is a table such as {{dist = "LogNormal", mu = 0.0, sigma = 1.0}}, '
            f"got {value!r}."
        )
    params = {k: v for k, v in value.items() if k != "dist"}
    return Prior(str(value["dist"]), **params)


def _structure(spec: Mapping[str, Any], where: str, options: Mapping[str, Any]) -> Any:
    """The file's structure with the user's structure ``options`` applied."""
    from . import structural
    from .structural.algebraic import Algebraic

    spec = dict(spec)
    kind = spec.pop("type", None)
    classes = {
        n: getattr(structural, n) for n in ("OneCompartment", "TwoCompartment", "ThreeCompartment")
    }
    classes["Algebraic"] = Algebraic
    if kind in classes:
        make = classes[kind]
        valid = [f.name for f in dataclasses.fields(make) if f.init]
    elif kind == "ODE":
        from .structural import ode_templates

        def make(**kw: Any) -> Any:
            return ode_templates.load(kw.pop("template"), **kw)

        valid = ["lag", "bioavailability", "n_transit", "method", "max_step", "min_steps"]
    else:
        raise SpecificationError(
            f"{where}: [structure] type {kind!r} is not known; choose one of "
            f"{', '.join(sorted([*classes, 'ODE']))}."
        )
    default = make(**spec)
    if not options:
        return default
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise SpecificationError(
            f"load({where.removeprefix('template ')!r}): unknown option(s) {', '.join(unknown)}. "
            "Options: typical, priors, covariates, iiv, omega, error, name, and the "
            f"structure's {', '.join(valid)}."
        )
    changed = make(**{**spec, **options})
    if tuple(changed.parameters) != tuple(default.parameters):
        raise SpecificationError(
            f"load({where.removeprefix('template ')!r}): {dict(options)} changes the parameters "
            f"from {', '.join(default.parameters)} to {', '.join(changed.parameters)}; load the "
            "template that has them (see templates.available())."
        )
    return changed


@dataclass(frozen=True)
class Template:
    """One parsed template file.

    Attributes
    ----------
    name, title, category, description : str
    equations : tuple of str
        LaTeX display equations.
    reference : tuple of str
        Literature references.
    units : dict
        Units of time, amount, concentration, ... used by the typical values.
    data_columns : tuple of str
        Columns the data must have.
    data_notes : str
        How the data must be coded (dose compartments, DVID, ...).
    parameters : tuple of ParameterInfo
    notes : dict
        Justifications of the random-effect and residual-error priors (``"omega"``,
        ``"error"``).
    path : pathlib.Path
    spec : dict
        The file's content.

    Examples
    --------
    >>> t = get("logistic")
    >>> t.title
    'Three-parameter logistic growth'
    >>> t.model().structure.function
    'logistic'
    """

    name: str
    title: str
    category: str
    description: str
    equations: tuple[str, ...]
    reference: tuple[str, ...]
    units: dict[str, str]
    data_columns: tuple[str, ...]
    data_notes: str
    parameters: tuple[ParameterInfo, ...]
    notes: dict[str, str]
    path: Path
    spec: dict[str, Any] = dataclasses.field(repr=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Template:
        """Parse and check a template file (see the files in ``model_templates/``).

        Examples
        --------
        >>> t = Template.from_file(template_dirs()[0] / "one_cmt_oral.toml")
        >>> t.name
        'one_cmt_oral'
        """
        path = Path(path)
        where = f"template {path.name}"
        try:
            spec = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SpecificationError(f"{where}: not valid TOML ({exc}).") from exc
        required = (
            "name",
            "title",
            "description",
            "structure",
            "parameters",
            "error",
            "reference",
            "data",
        )
        missing = [k for k in required if k not in spec]
        unknown = sorted(set(spec) - set(_SECTIONS))
        if missing or unknown:
            raise SpecificationError(
                f"{where}: "
                + "; ".join(
                    ([f"missing {', '.join(missing)}"] if missing else [])
                    + ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
                )
                + f". A template has: {', '.join(_SECTIONS)}."
            )
        infos = []
        for i, p in enumerate(spec["parameters"]):
            lacking = [k for k in ("name", "units", "description", "justification") if k not in p]
            if lacking:
                raise SpecificationError(
                    f"{where}: parameter {p.get('name', i + 1)!r} lacks {', '.join(lacking)}."
                )
            infos.append(ParameterInfo(p["name"], p["units"], p["description"], p["justification"]))
        eqs = spec.get("equations", ())
        refs = spec["reference"]
        template = cls(
            name=spec["name"],
            title=spec["title"],
            category=spec.get("category", ""),
            description=spec["description"].strip(),
            equations=(eqs,) if isinstance(eqs, str) else tuple(eqs),
            reference=(refs,) if isinstance(refs, str) else tuple(refs),
            units=dict(spec.get("units", {})),
            data_columns=tuple(spec["data"].get("columns", ())),
            data_notes=spec["data"].get("notes", "").strip(),
            parameters=tuple(infos),
            notes={k: spec.get(k, {}).get("justification", "").strip() for k in ("omega", "error")},
            path=path,
            spec=spec,
        )
        template.model()  # every file must give a valid model
        return template

    # ------------------------------------------------------------------ model
    def model(self, **options: Any) -> Model:
        """The template's :class:`~nlme_bayes.Model`, customised by ``options`` (:func:`load`).

        Examples
        --------
        >>> get("one_cmt_oral").model(iiv={"ka": None}).iiv_names
        ('CL', 'V')
        """
        return _build(self, dict(options))

    @property
    def typical_values(self) -> dict[str, float]:
        """The file's typical values (the example design's truth).

        Examples
        --------
        >>> get("emax").typical_values
        {'E0': 10.0, 'Emax': 100.0, 'ED50': 20.0}
        """
        return {p["name"]: float(p["typical"]) for p in self.spec["parameters"]}

    # ------------------------------------------------------------------ example design
    def example_data(self, *, n_subjects: int | None = None, random_seed: int = 0) -> Any:
        """A study simulated from the template's example design, with the file's values.

        Typical values are the file's ``typical``; the random effects and residual error use
        the ``[example]`` section's SDs (:func:`nlme_bayes.simulation.simulate` at that point).

        Parameters
        ----------
        n_subjects : int, optional
            Default: the example's ``n_subjects``.
        random_seed : int

        Returns
        -------
        NonmemDataset

        Examples
        --------
        >>> data = get("one_cmt_iv_bolus").example_data(n_subjects=3, random_seed=1)
        >>> data.n_subjects, data.n_observations
        (3, 27)
        """
        from .data import read_nonmem
        from .trial_simulation import simulate

        ex = self.spec.get("example")
        if not ex:
            raise SpecificationError(f"template {self.name}: the file has no [example] design.")
        model = self.model()
        frame = _design(ex, int(n_subjects or ex["n_subjects"]))
        design = read_nonmem(frame)
        point: dict[str, Any] = {f"{k}_pop": v for k, v in self.typical_values.items()}
        point.update({"omega": dict(ex.get("omega", {})), **ex["sigma"]})
        sim = simulate(model, design, uncertainty=point, n_draws=1, random_seed=random_seed)
        is_obs = (design.records["EVID"] == 0) & (design.records["MDV"] == 0)
        frame.loc[is_obs.to_numpy(), "DV"] = sim["DV"].values[0]  # observations in record order
        return read_nonmem(frame)


def _design(ex: Mapping[str, Any], n: int) -> pd.DataFrame:
    """NONMEM-style records of the example design (DV = 0, to be simulated).

    ``doses`` is one regimen (a list of dose tables) for every subject, or a list of
    regimens given to the subjects in turn; each time is observed once per ``dvids`` entry.
    """
    times = [float(t) for t in ex["times"]]
    columns = {k: list(v) for k, v in ex.get("columns", {}).items()}
    for k, v in columns.items():
        if len(v) != len(times):
            raise SpecificationError(
                f"[example] columns.{k} has {len(v)} values for {len(times)} times."
            )
    doses = list(ex.get("doses", ()))
    regimens = doses if doses and isinstance(doses[0], list) else [doses]
    obs_cmt = int(ex.get("obs_cmt", 0))
    rows = []
    for i in range(1, n + 1):
        events = []
        for d in regimens[(i - 1) % len(regimens)]:
            dose = dict(AMT=float(d["amt"]), EVID=1, MDV=1, CMT=int(d.get("cmt", 0)),
                        RATE=float(d.get("rate", 0.0)), II=float(d.get("ii", 0.0)),
                        ADDL=int(d.get("addl", 0)), DVID=1)  # fmt: skip
            events.append((float(d["time"]), 0, dose))
        for j, t in enumerate(times):
            extra = {k: float(v[j]) for k, v in columns.items()}
            for dvid in ex.get("dvids", (1,)):
                obs = dict(AMT=0.0, EVID=0, MDV=0, CMT=obs_cmt, RATE=0.0, II=0.0, ADDL=0,
                           DVID=int(dvid), **extra)  # fmt: skip
                events.append((t, 1, obs))
        for t, _, rec in sorted(events, key=lambda e: (e[0], e[1])):
            rows.append({"ID": i, "TIME": t, "DV": 0.0, **rec})
    frame = pd.DataFrame(rows)
    if not doses:
        frame = frame.drop(columns=["AMT", "EVID", "MDV", "CMT", "RATE", "II", "ADDL"])
    if list(ex.get("dvids", (1,))) == [1]:
        frame = frame.drop(columns=["DVID"])
    return frame


# --------------------------------------------------------------------------- customisation
def update_parameter(model: Model, name: str, **changes: Any) -> Model:
    """A copy of ``model`` with fields of parameter ``name`` replaced.

    ``dataclasses.replace`` on the :class:`~nlme_bayes.Parameter`; ``iiv=None`` also takes
    the parameter out of explicit Omega blocks.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> m = update_parameter(load("one_cmt_oral"), "ka", iiv=None,
    ...                      prior=nb.Prior("LogNormal", mu=0.0, sigma=0.5))
    >>> m.iiv_names, m.parameter("ka").prior
    (('CL', 'V'), Prior('LogNormal', mu=0.0, sigma=0.5))
    """
    try:
        new = dataclasses.replace(model.parameter(name), **changes)
    except TypeError as exc:
        fields = ", ".join(f.name for f in dataclasses.fields(Parameter) if f.name != "name")
        raise SpecificationError(
            f"update_parameter({name!r}): {exc}; a Parameter has {fields}."
        ) from None
    omega = model.omega
    if new.iiv is None and not isinstance(omega.blocks, str):
        blocks = tuple(tuple(n for n in b if n != name) for b in omega.blocks)
        omega = dataclasses.replace(omega, blocks=tuple(b for b in blocks if b))
    return model.replace(
        parameters=tuple(new if p.name == name else p for p in model.parameters), omega=omega
    )


def add_covariate(model: Model, name: str, effect: Any) -> Model:
    """A copy of ``model`` with one more covariate effect on parameter ``name``.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> m = add_covariate(load("one_cmt_oral"), "V", nb.Power("WT", reference=70, exponent=1.0))
    >>> m.covariate_names
    ('WT',)
    """
    if not isinstance(effect, _COVARIATE_TYPES):
        raise SpecificationError(
            f"add_covariate({name!r}): {effect!r} is not a covariate effect; use "
            "Power, Exponential, Linear or Categorical."
        )
    p = model.parameter(name)
    return update_parameter(model, name, covariates=(*p.covariates, effect))


def _by_parameter(value: Any, option: str, model: Model) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecificationError(
            f"load: {option}= must be a dict keyed by parameter name, got {value!r}."
        )
    unknown = sorted(set(value) - set(model.parameter_names))
    if unknown:
        raise SpecificationError(
            f"load: {option}= names unknown parameter(s) {', '.join(unknown)}; the template's "
            f"parameters are {', '.join(model.parameter_names)}."
        )
    return dict(value)


def _build(template: Template, options: dict[str, Any]) -> Model:
    spec = template.spec
    where = f"template {template.name}"
    model_opts = {
        k: options.pop(k)
        for k in ("typical", "priors", "covariates", "iiv", "omega", "error", "name", "centered")
        if k in options
    }
    structure = _structure(spec["structure"], where, options)
    params = []
    for p in spec["parameters"]:
        pw = f"{where}, parameter {p['name']}"
        iiv = p.get("iiv", "lognormal")
        params.append(
            Parameter(
                p["name"],
                typical=p.get("typical"),
                prior=_prior(p["prior"], pw) if "prior" in p else None,
                iiv=None if iiv == "none" else iiv,
                omega_prior=_prior(p["omega_prior"], pw) if "omega_prior" in p else None,
                fixed=bool(p.get("fixed", False)),
                centered=p.get("centered", False),
            )
        )
    om = dict(spec.get("omega", {}))
    om.pop("justification", None)
    if "sd_prior" in om:
        om["sd_prior"] = _prior(om["sd_prior"], f"{where}, [omega]")
    if isinstance(om.get("blocks"), list):
        om["blocks"] = tuple(tuple(b) for b in om["blocks"])
    err = dict(spec["error"])
    err.pop("justification", None)
    if "type" in err or not all(str(k).isdigit() for k in err):
        error: Any = _error_model(err, f"{where}, [error]")
    else:  # one table per DVID: [error.1], [error.2]
        error = {int(k): _error_model(v, f"{where}, [error.{k}]") for k, v in err.items()}
    model = Model(
        structure=structure, parameters=params, omega=Omega(**om), error=error, name=template.name
    )

    # ---- customisation, all through dataclasses.replace
    for n, v in _by_parameter(model_opts.get("typical", {}), "typical", model).items():
        p = model.parameter(n)
        model = update_parameter(
            model,
            n,
            typical=float(v),
            prior=None if "prior" not in _param_spec(spec, n) else p.prior,
        )
    for n, v in _by_parameter(model_opts.get("priors", {}), "priors", model).items():
        model = update_parameter(model, n, prior=v)
    for n, v in _by_parameter(model_opts.get("covariates", {}), "covariates", model).items():
        for eff in v if isinstance(v, (tuple, list)) else (v,):
            model = add_covariate(model, n, eff)
    # A random effect added here follows the file's centring policy (the one setting its own
    # random effects share), so that it can join their Omega block.
    policies = {p.get("centered", False) for p in spec["parameters"] if p.get("iiv") != "none"}
    policy = policies.pop() if len(policies) == 1 else False
    for n, v in _by_parameter(model_opts.get("iiv", {}), "iiv", model).items():
        added = v is not None and model.parameter(n).iiv is None
        model = update_parameter(model, n, iiv=v, **({"centered": policy} if added else {}))
    if "centered" in model_opts:
        value = model_opts["centered"]
        if isinstance(value, Mapping):
            for n, v in _by_parameter(value, "centered", model).items():
                model = model.with_centering(v, n)
        else:
            model = model.with_centering(value)
    changes = {k: model_opts[k] for k in ("omega", "error", "name") if k in model_opts}
    return model.replace(**changes) if changes else model


def _error_model(spec: Mapping[str, Any], where: str) -> Any:
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in _ERRORS:
        raise SpecificationError(
            f"{where} type {kind!r}; choose one of {', '.join(sorted(_ERRORS))} (or one table "
            "per DVID, [error.1], [error.2])."
        )
    nu = spec.pop("nu", None)  # Student-t: a number, "estimate" or a prior table
    if isinstance(nu, Mapping):
        nu = _prior(nu, where)
    return _ERRORS[kind](**{k: _prior(v, where) for k, v in spec.items()}, nu=nu)


def _param_spec(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in spec["parameters"] if p["name"] == name)


# --------------------------------------------------------------------------- public access
def get(name: str | os.PathLike[str]) -> Template:
    """The parsed template ``name`` (or a path to a template file).

    Raises
    ------
    SpecificationError
        Unknown name (the message lists the available ones) or an invalid file.

    Examples
    --------
    >>> get("two_cmt_oral").reference[0][:24]
    'Gabrielsson J, Weiner D.'
    """
    p = Path(name)
    if p.suffix == ".toml" and p.is_file():
        return Template.from_file(p)
    files = _files()
    if str(name) not in files:
        raise SpecificationError(
            f"unknown model template {str(name)!r}; available: {', '.join(sorted(files))}."
        )
    return Template.from_file(files[str(name)])


def load(template: str | os.PathLike[str], /, **options: Any) -> Model:
    """A ready-made model by name, optionally customised.

    Parameters
    ----------
    template : str or path
        A name from :func:`available` or the path of a template file.
    **options
        ``typical`` (dict: new typical values -- also the centre of default priors),
        ``priors`` (dict of :class:`~nlme_bayes.Prior`), ``covariates`` (dict of an effect
        or a tuple of effects, added to those of the file), ``iiv`` (dict: ``"lognormal"``,
        ``"normal"``, ``"logit"`` or ``None`` to drop a random effect; a random effect added
        this way takes the file's ``centered`` setting), ``omega``
        (:class:`~nlme_bayes.Omega`), ``error`` (an error model), ``name``, ``centered``
        (``True``, ``False`` or ``"auto"`` for every random effect, or a dict by parameter;
        see :mod:`nlme_bayes.centering`); and the
        structure's own options that keep its parameters (e.g. ``x="TIME"`` for an
        algebraic model).

    Returns
    -------
    Model

    Raises
    ------
    SpecificationError
        Unknown template, option or parameter name (the valid ones are listed).

    Examples
    --------
    >>> load("emax", x="CONC").structure.x
    'CONC'
    >>> load("one_cmt_oral", lag=True)
    Traceback (most recent call last):
    ...
    nlme_bayes.errors.SpecificationError: load('one_cmt_oral'): {'lag': True} changes the ...
    """
    return get(template).model(**options)
