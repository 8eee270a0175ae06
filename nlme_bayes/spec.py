"""Model specification: parameters, covariate effects, random effects and residual error.

Everything here is a frozen dataclass with no PyMC import.  The builder
(:mod:`nlme_bayes.builder`) is the only place that turns a specification into PyMC
variables.  Every spec object round-trips through ``to_dict`` / ``spec_from_dict``
(plain JSON), which is how a saved fit keeps its model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from .errors import SpecificationError
from .priors import Prior

__all__ = [
    "Parameter",
    "Power",
    "Exponential",
    "Linear",
    "Categorical",
    "Omega",
    "Additive",
    "Proportional",
    "Combined",
    "LogAdditive",
    "spec_to_dict",
    "spec_from_dict",
]

IIV_KINDS = ("lognormal", "normal", "logit")


def _as_prior_or_float(value: Any, what: str) -> Prior | float:
    if isinstance(value, Prior):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise SpecificationError(
        f"{what} must be a number (fixed) or a Prior (estimated), got {value!r}."
    )


# --------------------------------------------------------------------------- covariates
@dataclass(frozen=True)
class Power:
    """Power covariate effect: ``P_typ *= (COV / reference) ** exponent``.

    The allometric ``(WT/70)**0.75`` is ``Power("WT", reference=70, exponent=0.75)``;
    give ``exponent=Prior(...)`` to estimate it.

    Examples
    --------
    >>> from nlme_bayes import Power, Prior
    >>> Power("WT", reference=70, exponent=0.75)
    Power(covariate='WT', reference=70.0, exponent=0.75)
    >>> Power("WT", reference=70, exponent=Prior("Normal", mu=0.75, sigma=0.25)).estimated
    True
    """

    covariate: str
    reference: float
    exponent: Prior | float = 0.75

    def __post_init__(self) -> None:
        if not (isinstance(self.reference, (int, float)) and self.reference > 0):
            raise SpecificationError(
                f"Power({self.covariate!r}): reference must be a positive number, "
                f"got {self.reference!r}."
            )
        object.__setattr__(self, "reference", float(self.reference))
        object.__setattr__(
            self,
            "exponent",
            _as_prior_or_float(self.exponent, f"Power({self.covariate!r}).exponent"),
        )

    @property
    def estimated(self) -> bool:
        return isinstance(self.exponent, Prior)

    @property
    def coefficient(self) -> Prior | float:
        return self.exponent


@dataclass(frozen=True)
class _CoefficientEffect:
    """Shared fields of the effects with one coefficient on ``COV - reference``."""

    covariate: str
    reference: float = 0.0
    coefficient: Prior | float = field(default_factory=lambda: Prior("Normal", mu=0.0, sigma=1.0))

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference", float(self.reference))
        what = f"{type(self).__name__}({self.covariate!r}).coefficient"
        object.__setattr__(self, "coefficient", _as_prior_or_float(self.coefficient, what))

    @property
    def estimated(self) -> bool:
        return isinstance(self.coefficient, Prior)


@dataclass(frozen=True)
class Exponential(_CoefficientEffect):
    """Exponential covariate effect: ``P_typ *= exp(coefficient * (COV - reference))``.

    Examples
    --------
    >>> from nlme_bayes import Exponential
    >>> Exponential("AGE", reference=40, coefficient=-0.01).estimated
    False
    """


@dataclass(frozen=True)
class Linear(_CoefficientEffect):
    """Linear covariate effect: ``P_typ *= 1 + coefficient * (COV - reference)``.

    The pheno model's ``V = θ2·WT·(1 + θ3·[APGAR<5])`` uses
    ``Linear("APGAR_LT5", reference=0)`` for θ3.  The factor must stay positive; a draw
    where it does not has zero posterior density.
    """


@dataclass(frozen=True)
class Categorical:
    """Categorical covariate: ``P_typ *= exp(theta[level])``, ``theta[reference] = 0``.

    One coefficient per non-reference level (levels are taken from the data).
    """

    covariate: str
    reference: Any
    coefficient: Prior = field(default_factory=lambda: Prior("Normal", mu=0.0, sigma=1.0))

    def __post_init__(self) -> None:
        if not isinstance(self.coefficient, Prior):
            raise SpecificationError(
                f"Categorical({self.covariate!r}).coefficient must be a Prior, "
                f"got {self.coefficient!r}."
            )

    @property
    def estimated(self) -> bool:
        return True


CovariateEffect = Power | Exponential | Linear | Categorical
_COVARIATE_TYPES = {c.__name__: c for c in (Power, Exponential, Linear, Categorical)}


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Parameter:
    """One structural parameter: typical value, prior, covariates and random effect.

    Parameters
    ----------
    name : str
        The structural model's name for it (``"CL"``, ``"V"``, ``"ka"``, ...).
    typical : float, optional
        A sensible value of the typical (population) parameter on the natural scale.
        Used as the centre of the default prior and as the sampler's starting point.
    prior : Prior, optional
        Prior of the typical value on the natural scale. Default for ``iiv="lognormal"``
        (and ``None``): ``LogNormal(mu=log(typical), sigma=1)`` -- weakly informative on the
        log scale (95 % of the mass within a factor 7 of ``typical``). For ``"normal"``:
        ``Normal(typical, max(|typical|, 1))``; for ``"logit"``: ``LogitNormal(logit(typical), 1)``.
    iiv : {"lognormal", "normal", "logit", None}
        Between-subject variability: ``P_i = P_typ·exp(eta_i)`` (default),
        ``P_i = P_typ + eta_i``, ``logit(P_i) = logit(P_typ) + eta_i``, or none.
    covariates : tuple of covariate effects
        :class:`Power`, :class:`Exponential`, :class:`Linear`, :class:`Categorical`.
    centered : bool
        Sample this random effect centred (``eta ~ N(0, Omega)``) instead of
        non-centred (``eta = L z``). Centred mixes better when subjects are rich in data.
    omega_prior : Prior, optional
        Prior of this random effect's SD (default from :class:`Omega`).
    fixed : bool
        Fix the typical value at ``typical`` (NONMEM's ``FIX``).

    Examples
    --------
    >>> from nlme_bayes import Parameter, Power
    >>> p = Parameter("CL", typical=0.04, covariates=(Power("WT", reference=70),))
    >>> p.iiv, p.centered
    ('lognormal', False)
    """

    name: str
    typical: float | None = None
    prior: Prior | None = None
    iiv: Literal["lognormal", "normal", "logit"] | None = "lognormal"
    covariates: tuple[CovariateEffect, ...] = ()
    centered: bool = False
    omega_prior: Prior | None = None
    fixed: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise SpecificationError(
                f"Parameter name must be an identifier such as 'CL', got {self.name!r}."
            )
        if self.iiv not in (*IIV_KINDS, None):
            raise SpecificationError(
                f"Parameter {self.name}: iiv={self.iiv!r} is not valid; choose one of "
                f"{', '.join(repr(k) for k in sorted(IIV_KINDS))} or None."
            )
        if self.typical is not None:
            if not (isinstance(self.typical, (int, float)) and math.isfinite(self.typical)):
                raise SpecificationError(
                    f"Parameter {self.name}: typical must be a finite number, got {self.typical!r}."
                )
            object.__setattr__(self, "typical", float(self.typical))
        if self.prior is None and self.typical is None:
            raise SpecificationError(
                f"Parameter {self.name}: give a typical value (e.g. typical=1.0) or a prior."
            )
        if self.fixed and self.typical is None:
            raise SpecificationError(f"Parameter {self.name}: fixed=True needs typical=<value>.")
        if self.typical is not None and self.iiv in ("lognormal", None) and self.prior is None:
            if self.typical <= 0:
                raise SpecificationError(
                    f"Parameter {self.name}: a log-normal parameter needs typical > 0, "
                    f"got {self.typical}. Use iiv='normal' for parameters that can be <= 0."
                )
        if self.iiv == "logit" and self.typical is not None and not 0 < self.typical < 1:
            raise SpecificationError(
                f"Parameter {self.name}: a logit-normal parameter needs 0 < typical < 1, "
                f"got {self.typical}."
            )
        if self.prior is not None and not isinstance(self.prior, Prior):
            raise SpecificationError(
                f"Parameter {self.name}: prior must be a nlme_bayes.Prior, got {self.prior!r}."
            )
        covs = tuple(self.covariates)
        for c in covs:
            if not isinstance(c, tuple(_COVARIATE_TYPES.values())):
                raise SpecificationError(
                    f"Parameter {self.name}: covariate effect {c!r} must be one of "
                    + ", ".join(sorted(_COVARIATE_TYPES))
                )
        object.__setattr__(self, "covariates", covs)

    @property
    def effective_prior(self) -> Prior:
        """The prior actually used for the typical value."""
        if self.prior is not None:
            return self.prior
        t = float(self.typical)  # type: ignore[arg-type]
        if self.iiv == "normal":
            return Prior("Normal", mu=t, sigma=max(abs(t), 1.0))
        if self.iiv == "logit":
            return Prior("LogitNormal", mu=math.log(t / (1 - t)), sigma=1.0)
        return Prior("LogNormal", mu=math.log(t), sigma=1.0)


# --------------------------------------------------------------------------- random effects
@dataclass(frozen=True)
class Omega:
    """Structure and priors of the between-subject covariance Omega.

    Parameters
    ----------
    blocks : "block", "diagonal", or a tuple of tuples of parameter names
        ``"block"``: one full (correlated) block over all parameters with a random effect;
        ``"diagonal"``: independent random effects; or explicit blocks such as
        ``(("CL", "V"), ("ka",))``.
    lkj_eta : float
        Shape of the LKJ prior on each block's correlation matrix (1 = uniform,
        2 = mild shrinkage towards no correlation).
    sd_prior : Prior
        Prior of each random effect's SD (omega), unless a parameter overrides it.

    Examples
    --------
    >>> from nlme_bayes import Omega
    >>> Omega(blocks=(("CL", "V"), ("ka",))).blocks
    (('CL', 'V'), ('ka',))
    """

    blocks: Literal["block", "diagonal"] | tuple[tuple[str, ...], ...] = "block"
    lkj_eta: float = 2.0
    sd_prior: Prior = field(default_factory=lambda: Prior("HalfNormal", sigma=1.0))

    def __post_init__(self) -> None:
        if isinstance(self.blocks, str):
            if self.blocks not in ("block", "diagonal"):
                raise SpecificationError(
                    f"Omega: blocks={self.blocks!r} is not valid; choose 'block', 'diagonal' "
                    "or a tuple of tuples of parameter names."
                )
        else:
            blocks = tuple(tuple(b) for b in self.blocks)
            seen: set[str] = set()
            for b in blocks:
                if not b:
                    raise SpecificationError("Omega: an empty block was given.")
                for n in b:
                    if n in seen:
                        raise SpecificationError(f"Omega: parameter {n!r} is in two blocks.")
                    seen.add(n)
            object.__setattr__(self, "blocks", blocks)
        if not (isinstance(self.lkj_eta, (int, float)) and self.lkj_eta > 0):
            raise SpecificationError(f"Omega: lkj_eta must be > 0, got {self.lkj_eta!r}.")
        if not isinstance(self.sd_prior, Prior):
            raise SpecificationError(f"Omega: sd_prior must be a Prior, got {self.sd_prior!r}.")

    def resolve(self, names: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        """The blocks for the parameters ``names`` that carry a random effect."""
        if self.blocks == "block":
            return (names,) if names else ()
        if self.blocks == "diagonal":
            return tuple((n,) for n in names)
        listed = [n for b in self.blocks for n in b]  # type: ignore[union-attr]
        unknown = sorted(set(listed) - set(names))
        if unknown:
            raise SpecificationError(
                f"Omega: {', '.join(unknown)} in the blocks have no random effect (or do not "
                f"exist). Parameters with a random effect: {', '.join(sorted(names))}."
            )
        missing = [n for n in names if n not in listed]
        return tuple(self.blocks) + tuple((n,) for n in missing)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- residual error
@dataclass(frozen=True)
class Additive:
    """Additive error: ``DV ~ Normal(IPRED, sigma)``; ``sigma`` in DV units.

    Default prior ``HalfNormal(sigma = SD of the observed DV)`` (set in the builder).
    """

    sigma: Prior | None = None
    kind: str = field(default="additive", init=False, repr=False)


@dataclass(frozen=True)
class Proportional:
    """Proportional error: ``DV ~ Normal(IPRED, sigma·IPRED)``; default ``HalfNormal(0.5)``."""

    sigma: Prior | None = None
    kind: str = field(default="proportional", init=False, repr=False)


@dataclass(frozen=True)
class Combined:
    """Combined error: ``sd = sqrt(sigma_add**2 + (sigma_prop·IPRED)**2)``."""

    additive: Prior | None = None
    proportional: Prior | None = None
    kind: str = field(default="combined", init=False, repr=False)


@dataclass(frozen=True)
class LogAdditive:
    """Exponential / log-additive error: ``log DV ~ Normal(log IPRED, sigma)``.

    Written as ``DV ~ LogNormal(log IPRED, sigma)`` so that the likelihood stays on the
    DV scale (comparable with the other error models by LOO). Needs ``DV > 0``.
    """

    sigma: Prior | None = None
    kind: str = field(default="log", init=False, repr=False)


ErrorModel = Additive | Proportional | Combined | LogAdditive
_ERROR_TYPES = {c.__name__: c for c in (Additive, Proportional, Combined, LogAdditive)}


# --------------------------------------------------------------------------- (de)serialisation
def spec_to_dict(obj: Any) -> Any:
    """Plain-JSON representation of any spec object (recursively)."""
    if isinstance(obj, Prior):
        return {"__type__": "Prior", **obj.to_dict()}
    if hasattr(obj, "__dataclass_fields__"):
        out: dict[str, Any] = {"__type__": type(obj).__name__}
        for f in fields(obj):
            if f.init:
                out[f.name] = spec_to_dict(getattr(obj, f.name))
        return out
    if isinstance(obj, dict):
        return {"__dict__": [[spec_to_dict(k), spec_to_dict(v)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [spec_to_dict(v) for v in obj]
    return obj


def spec_from_dict(d: Any, registry: dict[str, type] | None = None) -> Any:
    """Inverse of :func:`spec_to_dict`; ``registry`` maps type names to classes."""
    reg = dict(_registry())
    if registry:
        reg.update(registry)
    if isinstance(d, list):
        return tuple(spec_from_dict(v, reg) for v in d)
    if isinstance(d, dict):
        if "__dict__" in d:
            return {spec_from_dict(k, reg): spec_from_dict(v, reg) for k, v in d["__dict__"]}
        if "__type__" in d:
            name = d["__type__"]
            if name == "Prior":
                return Prior.from_dict(d)
            if name not in reg:
                raise SpecificationError(f"Cannot restore unknown specification type {name!r}.")
            kwargs = {k: spec_from_dict(v, reg) for k, v in d.items() if k != "__type__"}
            return reg[name](**kwargs)
        return {k: spec_from_dict(v, reg) for k, v in d.items()}
    return d


def _registry() -> dict[str, type]:
    reg: dict[str, type] = {"Parameter": Parameter, "Omega": Omega}
    reg.update(_COVARIATE_TYPES)
    reg.update(_ERROR_TYPES)
    return reg
