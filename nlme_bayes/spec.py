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
    "BLQ",
    "Occasions",
    "spec_to_dict",
    "spec_from_dict",
]

IIV_KINDS = ("lognormal", "normal", "logit")
#: Data-derived covariate references (resolved on the fitted data, then stored as numbers).
REFERENCE_RULES = ("mean", "median")


def _check_reference(effect: str, covariate: str, reference: Any, *, positive: bool) -> Any:
    """A finite number (> 0 for ``positive``), or one of :data:`REFERENCE_RULES`."""
    if isinstance(reference, str):
        if reference not in REFERENCE_RULES:
            raise SpecificationError(
                f"{effect}({covariate!r}): reference={reference!r} is not valid; give a number "
                f"or one of {', '.join(repr(r) for r in REFERENCE_RULES)} (computed on the "
                "subjects' values of the fitted data and stored in the fitted model)."
            )
        return reference
    ok = (
        isinstance(reference, (int, float))
        and not isinstance(reference, bool)
        and math.isfinite(reference)
    )
    if not ok or (positive and reference <= 0):
        what = "a positive number" if positive else "a finite number"
        raise SpecificationError(
            f"{effect}({covariate!r}): reference must be {what} or one of "
            f"{', '.join(repr(r) for r in REFERENCE_RULES)}, got {reference!r}."
        )
    return float(reference)


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

    The allometric ``(WT/70)**0.75`` is ``Power("WT", reference=70, exponent=0.75)``
    (the exponent fixed, NONMEM's ``FIX``); give ``exponent=Prior(...)`` to estimate it.

    The covariate is normalised by ``reference`` and by nothing else: a number, or
    ``"median"`` / ``"mean"`` of the subjects' values in the fitted data -- resolved when
    the model is fitted and stored as that number in the fit's model (``fit.model``), so
    that the reference is always visible and a saved fit predicts new subjects the same way.

    Examples
    --------
    >>> from nlme_bayes import Power, Prior
    >>> Power("WT", reference=70, exponent=0.75)
    Power(covariate='WT', reference=70.0, exponent=0.75)
    >>> Power("WT", reference=70, exponent=Prior("Normal", mu=0.75, sigma=0.25)).estimated
    True
    >>> Power("WT", reference="median").reference
    'median'
    """

    covariate: str
    reference: float | str
    exponent: Prior | float = 0.75

    def __post_init__(self) -> None:
        ref = _check_reference("Power", self.covariate, self.reference, positive=True)
        object.__setattr__(self, "reference", ref)
        object.__setattr__(
            self,
            "exponent",
            _as_prior_or_float(self.exponent, f"Power({self.covariate!r}).exponent"),
        )

    @property
    def estimated(self) -> bool:
        """Whether the exponent is estimated (a Prior) rather than fixed (a number).

        Examples
        --------
        >>> from nlme_bayes import Power, Prior
        >>> Power("WT", reference=70, exponent=0.75).estimated
        False
        >>> Power("WT", reference=70, exponent=Prior("Normal", mu=0.75, sigma=0.25)).estimated
        True
        """
        return isinstance(self.exponent, Prior)

    @property
    def coefficient(self) -> Prior | float:
        """The exponent, under the name the other covariate effects use.

        Examples
        --------
        >>> from nlme_bayes import Power
        >>> Power("WT", reference=70, exponent=0.75).coefficient
        0.75
        """
        return self.exponent


@dataclass(frozen=True)
class _CoefficientEffect:
    """Shared fields of the effects with one coefficient on ``COV - reference``."""

    covariate: str
    reference: float | str = 0.0
    coefficient: Prior | float = field(default_factory=lambda: Prior("Normal", mu=0.0, sigma=1.0))

    def __post_init__(self) -> None:
        ref = _check_reference(type(self).__name__, self.covariate, self.reference, positive=False)
        object.__setattr__(self, "reference", ref)
        what = f"{type(self).__name__}({self.covariate!r}).coefficient"
        object.__setattr__(self, "coefficient", _as_prior_or_float(self.coefficient, what))

    @property
    def estimated(self) -> bool:
        """Whether the coefficient is estimated (a Prior) rather than fixed (a number).

        Examples
        --------
        >>> from nlme_bayes import Linear
        >>> Linear("APGAR_LT5", reference=0).estimated, Linear("CRCL", coefficient=0.01).estimated
        (True, False)
        """
        return isinstance(self.coefficient, Prior)


@dataclass(frozen=True)
class Exponential(_CoefficientEffect):
    """Exponential covariate effect: ``P_typ *= exp(coefficient * (COV - reference))``.

    ``reference`` centres the covariate: a number (default 0, i.e. not centred), or
    ``"median"`` / ``"mean"`` of the subjects' values, resolved on the fitted data and
    stored as a number in the fit's model.

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
    where it does not has zero posterior density. ``reference`` centres the covariate as
    for :class:`Exponential`.

    Examples
    --------
    >>> from nlme_bayes import Linear
    >>> Linear("CRCL", reference="median", coefficient=0.01).reference
    'median'
    """


@dataclass(frozen=True)
class Categorical:
    """Categorical covariate: ``P_typ *= exp(theta[level])``, ``theta[reference] = 0``.

    One coefficient per non-reference level (levels are taken from the data).

    Examples
    --------
    >>> from nlme_bayes import Categorical, Parameter
    >>> Parameter("CL", typical=3.0, covariates=(Categorical("SEX", reference="M"),)).covariates
    (Categorical(covariate='SEX', reference='M', coefficient=Prior('Normal', mu=0.0, sigma=1.0)),)
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
        """Always True: the level coefficients are estimated (their prior is required).

        Examples
        --------
        >>> from nlme_bayes import Categorical
        >>> Categorical("SEX", reference="M").estimated
        True
        """
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
    centered : bool or "auto"
        Sample this random effect centred (``eta ~ N(0, Omega)``) instead of
        non-centred (``eta = L z``, the default). Centred mixes better when subjects are rich
        in data. ``"auto"``: chosen from the data when the model is built, by the
        information the data carry about each subject's eta relative to the prior's
        (:mod:`nlme_bayes.centering`); the fit keeps the choice.
    omega_prior : Prior, optional
        Prior of this random effect's SD (default from :class:`Omega`).
    fixed : bool
        Fix the typical value at ``typical`` (NONMEM's ``FIX``).
    iov : bool
        Inter-occasion variability: ``P_ij = P_typ·exp(eta_i + kappa_ij)`` for occasion ``j``
        of subject ``i`` (on the scale of ``iiv``), ``kappa_ij ~ N(0, omega_iov)``, sampled
        non-centred. Needs ``Model(occasions=Occasions(...))``.
    iov_prior : Prior, optional
        Prior of this parameter's between-occasion SD ``omega_iov`` (default from
        :class:`Occasions`).

    Examples
    --------
    >>> from nlme_bayes import Parameter, Power
    >>> p = Parameter("CL", typical=0.04, covariates=(Power("WT", reference=70),))
    >>> p.iiv, p.centered
    ('lognormal', False)
    >>> Parameter("CL", typical=0.04, iov=True).iov
    True
    """

    name: str
    typical: float | None = None
    prior: Prior | None = None
    iiv: Literal["lognormal", "normal", "logit"] | None = "lognormal"
    covariates: tuple[CovariateEffect, ...] = ()
    centered: bool | Literal["auto"] = False
    omega_prior: Prior | None = None
    fixed: bool = False
    iov: bool = False
    iov_prior: Prior | None = None

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
        if not isinstance(self.iov, bool):
            raise SpecificationError(f"Parameter {self.name}: iov must be True or False.")
        if not (isinstance(self.centered, bool) or self.centered == "auto"):
            raise SpecificationError(
                f"Parameter {self.name}: centered must be True, False or 'auto', "
                f"got {self.centered!r}."
            )
        if self.iov_prior is not None:
            if not isinstance(self.iov_prior, Prior):
                raise SpecificationError(
                    f"Parameter {self.name}: iov_prior must be a nlme_bayes.Prior, "
                    f"got {self.iov_prior!r}."
                )
            if not self.iov:
                raise SpecificationError(
                    f"Parameter {self.name}: iov_prior is given but iov=False; set iov=True "
                    "to give this parameter inter-occasion variability."
                )

    @property
    def effective_prior(self) -> Prior:
        """The prior actually used for the typical value.

        ``prior`` when given; otherwise centred on ``typical`` with a wide scale:
        ``LogNormal(log(typical), 1)`` for a log-normal (or no) random effect,
        ``Normal(typical, max(|typical|, 1))`` for ``iiv="normal"``,
        ``LogitNormal(logit(typical), 1)`` for ``iiv="logit"``.

        Examples
        --------
        >>> from nlme_bayes import Parameter, Prior
        >>> Parameter("CL", typical=1.0).effective_prior
        Prior('LogNormal', mu=0.0, sigma=1.0)
        >>> Parameter("E0", typical=-2.0, iiv="normal").effective_prior
        Prior('Normal', mu=-2.0, sigma=2.0)
        >>> Parameter("CL", prior=Prior("LogNormal", mu=-3.2, sigma=0.5)).effective_prior
        Prior('LogNormal', mu=-3.2, sigma=0.5)
        """
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
        """The blocks for the parameters ``names`` that carry a random effect.

        Examples
        --------
        >>> Omega(blocks=(("CL", "V"),)).resolve(("CL", "V", "ka"))
        (('CL', 'V'), ('ka',))
        """
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
#: ``nu="estimate"``: the degrees of freedom get ``Gamma(2, 0.1)`` (Juarez & Steel 2010, J Bus
#: Econ Stat 28:52; brms's default): median 17, 95 % interval [2.4, 56], so the data decide
#: between heavy tails (nu < 5) and near-normal errors (nu > 30).
DEFAULT_NU_PRIOR = Prior("Gamma", alpha=2.0, beta=0.1)


def _check_nu(owner: str, nu: Any) -> float | Prior | None:
    """``None`` (normal), a number > 0 (fixed degrees of freedom), a Prior, or "estimate"."""
    if nu is None or isinstance(nu, Prior):
        return nu
    if isinstance(nu, str) and nu == "estimate":
        return DEFAULT_NU_PRIOR
    if isinstance(nu, (int, float)) and not isinstance(nu, bool) and math.isfinite(nu) and nu > 0:
        return float(nu)
    raise SpecificationError(
        f"{owner}: nu={nu!r} is not valid; give None (normal errors), a number > 0 (Student-t "
        'errors with fixed degrees of freedom, e.g. 4), "estimate" (nu ~ Gamma(2, 0.1)) or a '
        "Prior."
    )


class _ErrorModel:
    """Shared by the residual error models: ``nu`` (Student-t) validation and a short repr.

    ``nu=None`` (default): normal errors. ``nu`` a number: Student-t errors with that many
    degrees of freedom (heavy tails: outlying observations pull the fit less; 4 is a common
    robust choice). ``nu="estimate"`` or a :class:`~nlme_bayes.priors.Prior`: ``nu`` is
    estimated (variable ``nu``, ``nu_DVID<k>`` with several outputs). With ``nu`` the
    ``sigma`` parameters are the t distribution's scale, not its SD
    (``SD = scale * sqrt(nu / (nu - 2))`` for ``nu > 2``).
    """

    def __post_init__(self) -> None:
        object.__setattr__(self, "nu", _check_nu(type(self).__name__, self.nu))

    @property
    def student_t(self) -> bool:
        """Whether the errors are Student-t (``nu`` given).

        Examples
        --------
        >>> Additive().student_t, Additive(nu=4).student_t
        (False, True)
        """
        return self.nu is not None

    def __repr__(self) -> str:
        shown = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)  # type: ignore[arg-type]
            if f.init and not (f.name == "nu" and self.nu is None)
        ]
        return f"{type(self).__name__}({', '.join(shown)})"


@dataclass(frozen=True, repr=False)
class Additive(_ErrorModel):
    """Additive error: ``DV ~ Normal(IPRED, sigma)``; ``sigma`` in DV units.

    Default prior ``HalfNormal(sigma = SD of the observed DV)`` (set in the builder).
    ``nu`` makes the errors Student-t: ``DV ~ StudentT(nu, IPRED, sigma)`` (see ``nu`` of
    :class:`_ErrorModel`).

    Examples
    --------
    >>> from nlme_bayes import Additive, Prior
    >>> Additive(sigma=Prior("HalfNormal", sigma=0.5))
    Additive(sigma=Prior('HalfNormal', sigma=0.5))
    >>> Additive(nu="estimate")  # robust: Student-t errors, degrees of freedom estimated
    Additive(sigma=None, nu=Prior('Gamma', alpha=2.0, beta=0.1))
    """

    sigma: Prior | None = None
    nu: float | Prior | None = None
    kind: str = field(default="additive", init=False, repr=False)


@dataclass(frozen=True, repr=False)
class Proportional(_ErrorModel):
    """Proportional error: ``DV ~ Normal(IPRED, sigma·IPRED)``; default ``HalfNormal(0.5)``.

    ``nu``: Student-t errors with scale ``sigma·IPRED`` (see :class:`_ErrorModel`).

    Examples
    --------
    >>> from nlme_bayes import Prior, Proportional
    >>> Proportional(sigma=Prior("HalfNormal", sigma=0.2))
    Proportional(sigma=Prior('HalfNormal', sigma=0.2))
    >>> Proportional(nu=4)
    Proportional(sigma=None, nu=4.0)
    """

    sigma: Prior | None = None
    nu: float | Prior | None = None
    kind: str = field(default="proportional", init=False, repr=False)


@dataclass(frozen=True, repr=False)
class Combined(_ErrorModel):
    """Combined error: ``sd = sqrt(sigma_add**2 + (sigma_prop·IPRED)**2)``.

    ``nu``: Student-t errors with that scale (see :class:`_ErrorModel`).

    Examples
    --------
    >>> from nlme_bayes import Combined, Prior
    >>> Combined(additive=Prior("HalfNormal", sigma=0.1))
    Combined(additive=Prior('HalfNormal', sigma=0.1), proportional=None)
    """

    additive: Prior | None = None
    proportional: Prior | None = None
    nu: float | Prior | None = None
    kind: str = field(default="combined", init=False, repr=False)


@dataclass(frozen=True, repr=False)
class LogAdditive(_ErrorModel):
    """Exponential / log-additive error: ``log DV ~ Normal(log IPRED, sigma)``.

    Written as ``DV ~ LogNormal(log IPRED, sigma)`` so that the likelihood stays on the
    DV scale (comparable with the other error models by LOO). Needs ``DV > 0``.
    ``nu``: ``log DV ~ StudentT(nu, log IPRED, sigma)`` (log-t; see :class:`_ErrorModel`).

    Examples
    --------
    >>> from nlme_bayes import LogAdditive
    >>> LogAdditive()
    LogAdditive(sigma=None)
    >>> LogAdditive(nu=4)
    LogAdditive(sigma=None, nu=4.0)
    """

    sigma: Prior | None = None
    nu: float | Prior | None = None
    kind: str = field(default="log", init=False, repr=False)


ErrorModel = Additive | Proportional | Combined | LogAdditive
_ERROR_TYPES = {c.__name__: c for c in (Additive, Proportional, Combined, LogAdditive)}


# --------------------------------------------------------------------------- occasions (IOV)
@dataclass(frozen=True)
class Occasions:
    """Where the occasions of inter-occasion variability (IOV) come from.

    Parameters
    ----------
    column : str, optional
        A data column (default ``"OCC"``) holding each record's occasion (numbers or text);
        every observation record needs a value.
    from_doses : bool
        Instead of a column: every dose record of the source data (``EVID`` 1 or 4; the
        doses implied by ``ADDL`` do not count) starts a new occasion; observations before
        a subject's first dose belong to its first occasion.
    sd_prior : Prior
        Default prior of each between-occasion SD ``omega_iov`` (log scale for log-normal
        parameters): ``HalfNormal(0.5)``, i.e. most mass below ~100 % CV.

    Notes
    -----
    The closed-form models predict each observation with the parameters of its occasion
    applied to the whole dosing history of its subject (up to the last reset). This is exact
    when occasions are separated by a reset record (``EVID`` 3/4) or by a complete washout,
    as in crossover studies. When doses of an earlier occasion still contribute, their
    contribution is computed with the later occasion's parameters (NONMEM would switch the
    parameters at the boundary); the build then warns with the number of such dose
    contributions.

    Examples
    --------
    >>> from nlme_bayes import Occasions
    >>> Occasions().column, Occasions(from_doses=True).column
    ('OCC', None)
    """

    column: str | None = "OCC"
    from_doses: bool = False
    sd_prior: Prior = field(default_factory=lambda: Prior("HalfNormal", sigma=0.5))

    def __post_init__(self) -> None:
        if self.from_doses and self.column == "OCC":
            object.__setattr__(self, "column", None)
        if self.from_doses and self.column is not None:
            raise SpecificationError(
                f"Occasions: give either column={self.column!r} or from_doses=True, not both."
            )
        if not self.from_doses and not (isinstance(self.column, str) and self.column):
            raise SpecificationError(
                "Occasions: name the occasion column (column='OCC') or derive the occasions "
                "from the doses (from_doses=True)."
            )
        if not isinstance(self.sd_prior, Prior):
            raise SpecificationError(f"Occasions: sd_prior must be a Prior, got {self.sd_prior!r}.")


# --------------------------------------------------------------------------- censoring (BLQ)
BLQ_METHODS = ("M1", "M3", "M4")


@dataclass(frozen=True)
class BLQ:
    """How observations below the lower limit of quantification (LLOQ) enter the likelihood.

    Parameters
    ----------
    method : {"M3", "M4", "M1"}
        ``"M3"`` (Beal 2001): a censored observation contributes the probability mass below
        its LLOQ, ``P(DV < LLOQ)``. ``"M4"``: for quantities that are positive by nature,
        every observation is conditioned on ``DV > 0``: ``P(0 < DV < LLOQ) / P(DV > 0)`` for
        a censored one, ``p(DV) / P(DV > 0)`` for the others (with ``LogAdditive`` error DV
        is positive anyway and M4 equals M3). ``"M1"``: censored observations are dropped
        from the likelihood (they stay in the records, so diagnostics and the VPC still show
        them as BLQ). Works with every error model.
    lloq : float or "DV", optional
        The LLOQ of every observation without a value in the ``LLOQ`` column: a number in
        DV units, or ``"DV"`` when the DV of each censored record holds its LLOQ (Monolix's
        convention). Without it, the data need an ``LLOQ`` column.
    flag : str, optional
        The censoring flag column (1 = below the LLOQ, 0 = quantified). Default: ``BLQ`` or
        ``CENS``, whichever the data have. Without a flag column an observation is censored
        when its ``DV < LLOQ``.
    lloq_column : str
        The column holding each record's LLOQ (used where it has a value).

    Examples
    --------
    >>> from nlme_bayes import BLQ
    >>> BLQ("M3", lloq=0.1)
    BLQ(method='M3', lloq=0.1, flag=None, lloq_column='LLOQ')
    """

    method: Literal["M1", "M3", "M4"] = "M3"
    lloq: float | str | None = None
    flag: str | None = None
    lloq_column: str = "LLOQ"

    def __post_init__(self) -> None:
        if self.method not in BLQ_METHODS:
            raise SpecificationError(
                f"BLQ: method={self.method!r} is not valid; choose one of "
                f"{', '.join(repr(m) for m in BLQ_METHODS)}."
            )
        if isinstance(self.lloq, str):
            if self.lloq != "DV":
                raise SpecificationError(
                    f"BLQ: lloq={self.lloq!r} is not valid; give a positive number (DV units) "
                    "or 'DV' (the DV of each censored record is its LLOQ)."
                )
        elif self.lloq is not None:
            ok = isinstance(self.lloq, (int, float)) and not isinstance(self.lloq, bool)
            if not ok or not math.isfinite(self.lloq) or self.lloq <= 0:
                raise SpecificationError(
                    f"BLQ: lloq must be a positive number (DV units) or 'DV', got {self.lloq!r}."
                )
            object.__setattr__(self, "lloq", float(self.lloq))


# --------------------------------------------------------------------------- (de)serialisation
def spec_to_dict(obj: Any) -> Any:
    """Plain-JSON representation of any spec object (recursively).

    Examples
    --------
    >>> from nlme_bayes import Power
    >>> spec_to_dict(Power("WT", reference=70))
    {'__type__': 'Power', 'covariate': 'WT', 'reference': 70.0, 'exponent': 0.75}
    """
    if isinstance(obj, Prior):
        return {"__type__": "Prior", **obj.to_dict()}
    if hasattr(obj, "to_spec_dict"):  # objects holding functions (ODE models) describe themselves
        return obj.to_spec_dict()
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
    """Inverse of :func:`spec_to_dict`; ``registry`` maps type names to classes.

    Examples
    --------
    >>> from nlme_bayes import Power
    >>> spec_from_dict(spec_to_dict(Power("WT", reference=70))) == Power("WT", reference=70)
    True
    """
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
            if hasattr(reg[name], "from_spec_dict"):
                return reg[name].from_spec_dict(d)
            kwargs = {k: spec_from_dict(v, reg) for k, v in d.items() if k != "__type__"}
            return reg[name](**kwargs)
        return {k: spec_from_dict(v, reg) for k, v in d.items()}
    return d


def _registry() -> dict[str, type]:
    reg: dict[str, type] = {"Parameter": Parameter, "Omega": Omega}
    reg.update({"Occasions": Occasions, "BLQ": BLQ})
    reg.update(_COVARIATE_TYPES)
    reg.update(_ERROR_TYPES)
    return reg
