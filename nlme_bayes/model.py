"""The user's model: structure + parameters + random effects + residual error.

:class:`Model` is a frozen specification (like ``bambi.Model``, but immutable: change it
with :meth:`Model.replace`). ``Model.build(data)`` emits a plain ``pm.Model``;
``Model.fit(data, ...)`` samples it and returns a :class:`~nlme_bayes.results.Fit`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .errors import SpecificationError
from .spec import (
    BLQ,
    Additive,
    Combined,
    ErrorModel,
    LogAdditive,
    Occasions,
    Omega,
    Parameter,
    Proportional,
    spec_from_dict,
    spec_to_dict,
)

if TYPE_CHECKING:
    import pymc as pm

    from .data import NonmemDataset
    from .results import Fit

__all__ = ["Model"]

_ERROR_CLASSES = (Additive, Proportional, Combined, LogAdditive)
#: How a missing covariate value may be imputed, on request only (``impute_covariates=``).
IMPUTATION_RULES = ("mean", "median", "mode")


@dataclass(frozen=True)
class Model:
    """A population model, ready to be built on a dataset and fitted.

    Parameters
    ----------
    structure
        A structural model, e.g. ``OneCompartment(route="oral")`` (names its parameters).
    parameters : sequence of Parameter
        One :class:`~nlme_bayes.Parameter` per structural parameter, keyed by name.
    omega : Omega
        Structure and priors of the random-effect covariance (default: one full block with
        an LKJ(2) prior on the correlations and HalfNormal(1) on the SDs).
    error : error model or mapping DVID -> error model
        :class:`Additive` (default), :class:`Proportional`, :class:`Combined`,
        :class:`LogAdditive`; a dict gives one per ``DVID``.
    name : str
        A label for reports.
    time_varying_covariates : {"error", "baseline"}
        The closed-form models need one covariate value per subject. ``"error"`` (default)
        refuses a covariate that changes within a subject, naming the rows; ``"baseline"``
        uses each subject's first-record value -- explicitly, never silently.
    occasions : Occasions, optional
        Where occasions come from, for parameters with ``iov=True`` (inter-occasion
        variability): an ``OCC`` column or the dose records.
    blq : BLQ, optional
        How observations below the limit of quantification enter the likelihood (M3, M4 or
        M1). Required when the data flag censored observations (``BLQ``/``CENS`` column):
        they are never used as if quantified.
    impute_covariates : mapping of covariate name to {"median", "mean", "mode"}
        Missing covariate values are an error naming the rows, unless imputed here on
        request: a subject's missing value is filled from its own other records (the first
        value given), and otherwise with the median/mean/mode of the other subjects' values,
        with a :class:`~nlme_bayes.errors.DatasetWarning` naming the subjects and values.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> model = nb.Model(
    ...     structure=nb.OneCompartment(route="oral"),
    ...     parameters=[nb.Parameter("CL", 0.04), nb.Parameter("V", 0.5), nb.Parameter("ka", 1.5)],
    ...     error=nb.Additive(),
    ... )
    >>> model.parameter_names
    ('CL', 'V', 'ka')
    >>> fit = model.fit(nb.datasets.theophylline(), draws=200, tune=200, chains=2,
    ...                 random_seed=1, progressbar=False)  # doctest: +SKIP
    """

    structure: Any
    parameters: tuple[Parameter, ...]
    omega: Omega = field(default_factory=Omega)
    error: ErrorModel | Mapping[int, ErrorModel] = field(default_factory=Additive)
    name: str = "model"
    time_varying_covariates: Literal["error", "baseline"] = "error"
    occasions: Occasions | None = None
    blq: BLQ | None = None
    impute_covariates: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.time_varying_covariates not in ("error", "baseline"):
            raise SpecificationError(
                f"Model: time_varying_covariates={self.time_varying_covariates!r} is not valid; "
                "choose 'baseline' or 'error'."
            )
        params = tuple(self.parameters)
        for p in params:
            if not isinstance(p, Parameter):
                raise SpecificationError(
                    f"Model: parameters must be nlme_bayes.Parameter objects, got {p!r}."
                )
        object.__setattr__(self, "parameters", params)
        names = [p.name for p in params]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise SpecificationError(f"Model: parameter(s) {', '.join(dups)} given twice.")
        expected = tuple(getattr(self.structure, "parameters", ()))
        if not expected:
            raise SpecificationError(
                f"Model: structure {self.structure!r} is not a structural model "
                "(e.g. nlme_bayes.OneCompartment(route='oral'))."
            )
        unknown = sorted(set(names) - set(expected))
        missing = [n for n in expected if n not in names]
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown parameter(s) {', '.join(unknown)}")
            if missing:
                parts.append(f"missing parameter(s) {', '.join(missing)}")
            raise SpecificationError(
                f"Model: {'; '.join(parts)} for {self.structure.describe()}. "
                f"Its parameters are: {', '.join(expected)}."
            )
        # Keep the structural model's order: reports then read CL, V, ka, ...
        order = {n: i for i, n in enumerate(expected)}
        object.__setattr__(self, "parameters", tuple(sorted(params, key=lambda p: order[p.name])))
        if not isinstance(self.omega, Omega):
            raise SpecificationError(
                f"Model: omega must be an nlme_bayes.Omega, got {self.omega!r}."
            )
        self.omega.resolve(self.iiv_names)  # raises on blocks naming unknown parameters
        for block in self.omega.resolve(self.iiv_names):
            centered = {self.parameter(n).centered for n in block}
            if len(centered) > 1:
                raise SpecificationError(
                    f"Model: parameters {', '.join(block)} share an Omega block but disagree on "
                    "centered=; a correlated block is sampled one way. Set the same centered= "
                    "for all of them or put them in separate blocks (Omega(blocks=...))."
                )
        errors = self.error
        if isinstance(errors, Mapping):
            if not errors:
                raise SpecificationError("Model: error={} is empty; give at least one DVID.")
            errs = dict(errors)
            for k, e in errs.items():
                if not isinstance(e, _ERROR_CLASSES):
                    raise SpecificationError(f"Model: error model for DVID {k} is {e!r}.")
            kinds = {isinstance(e, LogAdditive) for e in errs.values()}
            if len(kinds) > 1:
                raise SpecificationError(
                    "Model: mixing LogAdditive with natural-scale error models across DVIDs is "
                    "not supported yet; use one family for all DVIDs."
                )
        elif not isinstance(errors, _ERROR_CLASSES):
            raise SpecificationError(
                f"Model: error must be one of Additive, Combined, LogAdditive, Proportional "
                f"(or a dict DVID -> error model), got {errors!r}."
            )
        self._check_iov_blq_imputation()

    def _check_iov_blq_imputation(self) -> None:
        iov = self.iov_names
        if self.occasions is not None and not isinstance(self.occasions, Occasions):
            raise SpecificationError(
                f"Model: occasions must be an nlme_bayes.Occasions, got {self.occasions!r}."
            )
        if iov and self.occasions is None:
            raise SpecificationError(
                f"Model: parameter(s) {', '.join(iov)} have iov=True but the model has no "
                "occasions; add occasions=Occasions(column='OCC') (or Occasions(from_doses=True))."
            )
        if self.occasions is not None and not iov:
            raise SpecificationError(
                "Model: occasions are given but no parameter has iov=True; set "
                "Parameter(..., iov=True) on the parameters that vary between occasions."
            )
        if self.blq is not None and not isinstance(self.blq, BLQ):
            raise SpecificationError(f"Model: blq must be an nlme_bayes.BLQ, got {self.blq!r}.")
        rules = dict(self.impute_covariates or {})
        object.__setattr__(self, "impute_covariates", rules)
        unknown = sorted(set(rules) - set(self.covariate_names))
        if unknown:
            raise SpecificationError(
                f"Model: impute_covariates names {', '.join(map(repr, unknown))}, which the model "
                f"does not use; its covariates are {', '.join(self.covariate_names) or '(none)'}."
            )
        for name, rule in rules.items():
            if rule not in IMPUTATION_RULES:
                raise SpecificationError(
                    f"Model: impute_covariates[{name!r}]={rule!r} is not valid; choose one of "
                    f"{', '.join(repr(r) for r in IMPUTATION_RULES)}."
                )

    # ------------------------------------------------------------------ accessors
    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the structural parameters, in the structural model's order.

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> model = nb.Model(structure=nb.OneCompartment(route="oral"),
        ...                  parameters=[nb.Parameter("ka", 1.5), nb.Parameter("CL", 0.04),
        ...                              nb.Parameter("V", 0.5)])
        >>> model.parameter_names  # given ka, CL, V: kept as the structure lists them
        ('CL', 'V', 'ka')
        """
        return tuple(p.name for p in self.parameters)

    @property
    def iiv_names(self) -> tuple[str, ...]:
        """Parameters that carry a random effect, in model order.

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> model = nb.Model(structure=nb.OneCompartment(route="oral"),
        ...                  parameters=[nb.Parameter("CL", 0.04), nb.Parameter("V", 0.5),
        ...                              nb.Parameter("ka", 1.5, iiv=None)])
        >>> model.iiv_names
        ('CL', 'V')
        """
        return tuple(p.name for p in self.parameters if p.iiv is not None)

    def parameter(self, name: str) -> Parameter:
        """The :class:`~nlme_bayes.Parameter` called ``name``.

        Examples
        --------
        >>> from nlme_bayes.examples import theophylline_model
        >>> theophylline_model().parameter("CL").typical
        0.04
        """
        for p in self.parameters:
            if p.name == name:
                return p
        raise SpecificationError(
            f"Model: no parameter {name!r}; parameters are {', '.join(self.parameter_names)}."
        )

    @property
    def iov_names(self) -> tuple[str, ...]:
        """Parameters with inter-occasion variability, in model order.

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> model = nb.Model(structure=nb.OneCompartment(route="iv"), occasions=nb.Occasions(),
        ...                  parameters=[nb.Parameter("CL", 1.0, iov=True),
        ...                              nb.Parameter("V", 10.0)])
        >>> model.iov_names, model.iiv_names
        (('CL',), ('CL', 'V'))
        """
        return tuple(p.name for p in self.parameters if p.iov)

    @property
    def covariate_names(self) -> tuple[str, ...]:
        """Covariates the parameters use, each once, in order of first use.

        Examples
        --------
        >>> from nlme_bayes.examples import pheno_model, theophylline_model
        >>> pheno_model().covariate_names
        ('WT', 'APGAR_LT5')
        >>> theophylline_model().covariate_names
        ()
        """
        seen: list[str] = []
        for p in self.parameters:
            for c in p.covariates:
                if c.covariate not in seen:
                    seen.append(c.covariate)
        return tuple(seen)

    def replace(self, **changes: Any) -> Model:
        """A copy with some fields changed (``dataclasses.replace``).

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> from nlme_bayes.examples import theophylline_model
        >>> model = theophylline_model()
        >>> diagonal = model.replace(name="diagonal", omega=nb.Omega(blocks="diagonal"))
        >>> diagonal.omega.blocks, model.omega.blocks
        ('diagonal', 'block')
        """
        return dataclasses.replace(self, **changes)

    def with_centering(self, centered: bool | str, *names: str) -> Model:
        """A copy with ``centered=`` set for the random effects ``names`` (default: all).

        ``centered`` is ``True`` (centred), ``False`` (non-centred) or ``"auto"`` (chosen from
        the data when the model is built; see :mod:`nlme_bayes.centering`).

        Examples
        --------
        >>> from nlme_bayes.examples import theophylline_model
        >>> m = theophylline_model().with_centering("auto")
        >>> [m.parameter(n).centered for n in m.iiv_names]
        ['auto', 'auto', 'auto']
        """
        unknown = [n for n in names if n not in self.iiv_names]
        if unknown:
            raise SpecificationError(
                f"Model.with_centering: {', '.join(unknown)} has no random effect; those with "
                f"one are {', '.join(self.iiv_names) or '(none)'}."
            )
        chosen = set(names or self.iiv_names)
        params = tuple(
            dataclasses.replace(p, centered=centered) if p.name in chosen else p
            for p in self.parameters
        )
        return self.replace(parameters=params)

    def with_parameter(self, parameter: Parameter) -> Model:
        """A copy with one parameter replaced (matched by name).

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> from nlme_bayes.examples import theophylline_model
        >>> model = theophylline_model()
        >>> no_ka_iiv = model.with_parameter(nb.Parameter("ka", typical=1.5, iiv=None))
        >>> no_ka_iiv.iiv_names
        ('CL', 'V')
        """
        self.parameter(parameter.name)
        return self.replace(
            parameters=tuple(parameter if p.name == parameter.name else p for p in self.parameters)
        )

    def with_priors(self, priors: Mapping[str, Any]) -> Model:
        """A copy with priors set by posterior name (``CL_pop``, ``omega_CL``, ``sigma_prop``).

        See :func:`nlme_bayes.informed_priors.apply_priors`; priors from a previous fit come
        from :func:`nlme_bayes.informed_priors.priors_from_fit`.

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> from nlme_bayes.examples import pheno_model
        >>> m = pheno_model().with_priors({"V_pop": nb.Prior.typical(0.96, cv=15)})
        >>> m.parameter("V").prior
        Prior('LogNormal', mu=-0.040822, sigma=0.149166)
        """
        from .informed_priors import apply_priors

        return apply_priors(self, priors)

    def prior_predictive(self, data: NonmemDataset, **kwargs: Any) -> Any:
        """Simulate from the priors on ``data``'s design; see
        :func:`nlme_bayes.prior_predictive.prior_predictive`.

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> from nlme_bayes.examples import theophylline_model
        >>> pp = theophylline_model().prior_predictive(nb.datasets.theophylline())  # doctest: +SKIP
        """
        from .prior_predictive import prior_predictive

        return prior_predictive(self, data, **kwargs)

    # ------------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """The specification as plain JSON-ready data (how a saved fit keeps its model).

        Examples
        --------
        >>> import json
        >>> from nlme_bayes.examples import pheno_model
        >>> d = pheno_model().to_dict()
        >>> Model.from_dict(json.loads(json.dumps(d))) == pheno_model()
        True
        """
        return spec_to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Model:
        """Inverse of :meth:`to_dict`.

        Examples
        --------
        >>> from nlme_bayes.examples import theophylline_model
        >>> Model.from_dict(theophylline_model().to_dict()).parameter_names
        ('CL', 'V', 'ka')
        """
        from . import structural
        from .structural.algebraic import Algebraic

        registry = {name: getattr(structural, name) for name in structural.__all__}
        registry["Algebraic"] = Algebraic
        registry["Model"] = cls
        out = spec_from_dict(dict(d), registry)
        if not isinstance(out, Model):
            raise SpecificationError("Stored specification is not a Model.")
        return out

    # ------------------------------------------------------------------ actions
    def build(self, data: NonmemDataset) -> pm.Model:
        """The plain ``pm.Model`` of this specification on ``data`` (extend it freely).

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> from nlme_bayes.examples import theophylline_model
        >>> model = theophylline_model()
        >>> pm_model = model.build(nb.datasets.theophylline())
        >>> [v.name for v in pm_model.free_RVs][:3]
        ['CL_pop', 'V_pop', 'ka_pop']
        """
        from .builder import build

        return build(self, data).pm_model

    def fit(self, data: NonmemDataset, **kwargs: Any) -> Fit:
        """Sample the posterior with NUTS; see :func:`nlme_bayes.inference.fit`.

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> from nlme_bayes.examples import theophylline_model
        >>> model = theophylline_model()
        >>> fit = model.fit(nb.datasets.theophylline(), draws=1000, tune=1000, chains=4,
        ...                 random_seed=1)  # doctest: +SKIP
        """
        from .inference import fit

        return fit(self, data, **kwargs)

    def describe(self) -> str:
        """A readable summary: structure, priors, random effects, Omega and error model.

        Examples
        --------
        >>> from nlme_bayes.examples import pheno_model
        >>> print(pheno_model().describe())  # doctest: +ELLIPSIS
        Model 'pheno': One-compartment model, IV input (ADVAN1); parameters CL, V
          CL     prior Prior('LogNormal', ...)  IIV lognormal  covariates: Power(WT)
        ...
        """
        lines = [f"Model {self.name!r}: {self.structure.describe()}"]
        for p in self.parameters:
            cov = ", ".join(type(c).__name__ + f"({c.covariate})" for c in p.covariates)
            lines.append(
                f"  {p.name:<6} prior {p.effective_prior!r}"
                + (f"  IIV {p.iiv}{_centering_label(p.centered)}" if p.iiv else "")
                + (f"  covariates: {cov}" if cov else "")
                + ("  IOV" if p.iov else "")
                + ("  FIXED" if p.fixed else "")
            )
        lines.append(
            f"  Omega blocks: {self.omega.resolve(self.iiv_names)}  LKJ({self.omega.lkj_eta})"
        )
        lines.append(f"  error: {self.error!r}")
        if self.occasions is not None:
            lines.append(f"  occasions: {self.occasions!r}")
        if self.blq is not None:
            lines.append(f"  censoring: {self.blq!r}")
        if self.impute_covariates:
            lines.append(f"  imputed covariates: {self.impute_covariates!r}")
        return "\n".join(lines)


def _centering_label(centered: bool | str) -> str:
    if centered == "auto":
        return " (centered: auto)"
    return " (centered)" if centered else ""
